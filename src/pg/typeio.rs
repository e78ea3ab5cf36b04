//! Values through the column types' own input and output functions (COPY text form), as
//! postgres_fdw does: so every type — geometry, arrays, numeric, timestamptz, enums — arrives
//! exactly, and typmods (geometry(Point,4326), numeric(10,2), varchar(n)) are checked on input.

use std::ffi::c_char;

use pgrx::pg_sys;

use crate::fdw::deparse::{cstr_owned, literal_for_type};
use crate::fdw::table::Column;

/// A column's input function, looked up once per scan.
pub struct ColumnInput {
    pub attnum: i16,
    flinfo: Box<pg_sys::FmgrInfo>,
    ioparam: pg_sys::Oid,
    typmod: i32,
}

impl ColumnInput {
    /// # Safety
    /// Backend thread, in a transaction; the FmgrInfo's extra state lives in the current context.
    pub unsafe fn new(col: &Column) -> Self {
        let mut func = pg_sys::InvalidOid;
        let mut ioparam = pg_sys::InvalidOid;
        pg_sys::getTypeInputInfo(col.type_oid, &mut func, &mut ioparam);
        let mut flinfo: Box<pg_sys::FmgrInfo> = Box::new(std::mem::zeroed());
        pg_sys::fmgr_info(func, flinfo.as_mut());
        ColumnInput { attnum: col.attnum, flinfo, ioparam, typmod: col.typmod }
    }

    /// # Safety
    /// `value` is a NUL-terminated string; may raise an ERROR for invalid input.
    pub unsafe fn input(&mut self, value: *const c_char) -> pg_sys::Datum {
        pg_sys::InputFunctionCall(self.flinfo.as_mut(), value as *mut c_char, self.ioparam, self.typmod)
    }

    /// NULL goes through the input function too, so a domain's NOT NULL is checked.
    pub unsafe fn input_null(&mut self) -> pg_sys::Datum {
        pg_sys::InputFunctionCall(self.flinfo.as_mut(), std::ptr::null_mut(), self.ioparam, self.typmod)
    }
}

/// A column's output function, for values sent to CARTO.
pub struct ColumnOutput {
    flinfo: Box<pg_sys::FmgrInfo>,
}

impl ColumnOutput {
    /// # Safety
    /// Backend thread, in a transaction.
    pub unsafe fn new(type_oid: pg_sys::Oid) -> Self {
        let mut func = pg_sys::InvalidOid;
        let mut varlena = false;
        pg_sys::getTypeOutputInfo(type_oid, &mut func, &mut varlena);
        let mut flinfo: Box<pg_sys::FmgrInfo> = Box::new(std::mem::zeroed());
        pg_sys::fmgr_info(func, flinfo.as_mut());
        ColumnOutput { flinfo }
    }

    /// The value's text form, palloc'd in the current memory context.
    pub unsafe fn output(&mut self, value: pg_sys::Datum) -> *mut c_char {
        pg_sys::OutputFunctionCall(self.flinfo.as_mut(), value)
    }
}

/// An execution-time parameter of a scan (a prepared statement's $n, or the outer row's value
/// in a nested loop), rendered as a literal with an explicit cast.
pub struct ParamOutput {
    state: *mut pg_sys::ExprState,
    type_oid: pg_sys::Oid,
    type_name: String,
    output: ColumnOutput,
}

impl ParamOutput {
    /// # Safety
    /// `expr` from the plan's fdw_exprs; `parent` the scan's PlanState.
    pub unsafe fn new(expr: *mut pg_sys::Expr, parent: *mut pg_sys::PlanState) -> Self {
        let type_oid = pg_sys::exprType(expr.cast());
        let typmod = pg_sys::exprTypmod(expr.cast());
        let name = cstr_owned(pg_sys::format_type_with_typemod(type_oid, typmod)).unwrap_or_default();
        let type_name = crate::fdw::deparse::strip_schema(&name);
        ParamOutput {
            state: pg_sys::ExecInitExpr(expr, parent),
            type_oid,
            type_name,
            output: ColumnOutput::new(type_oid),
        }
    }

    /// # Safety
    /// `econtext` the scan's expression context.
    pub unsafe fn render(&mut self, econtext: *mut pg_sys::ExprContext) -> String {
        let mut isnull = false;
        let value = match (*self.state).evalfunc {
            Some(f) => f(self.state, econtext, &mut isnull),
            None => {
                isnull = true;
                pg_sys::Datum::from(0usize)
            }
        };
        if isnull {
            return format!("NULL::{}", self.type_name);
        }
        let text = with_transmission_modes(|| cstr_owned(self.output.output(value)).unwrap_or_default());
        literal_for_type(self.type_oid, &text, &self.type_name)
    }
}

/// Runs `f` with the settings that make values' text forms portable (as postgres_fdw's
/// set_transmission_modes): DateStyle ISO, IntervalStyle postgres, extra_float_digits 3. So a
/// constant or parameter sent to CARTO means the same there whatever the local session's settings.
pub fn with_transmission_modes<T>(f: impl FnOnce() -> T) -> T {
    unsafe {
        let level = pg_sys::NewGUCNestLevel();
        for (name, value) in [(c"datestyle", c"ISO"), (c"intervalstyle", c"postgres"), (c"extra_float_digits", c"3")] {
            pg_sys::set_config_option(name.as_ptr(), value.as_ptr(), pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION, pg_sys::GucAction::GUC_ACTION_SAVE, true, 0, false);
        }
        let out = f();
        pg_sys::AtEOXact_GUC(true, level);
        out
    }
}
