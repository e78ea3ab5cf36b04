//! Values through the column types' own input and output functions (COPY text form), as
//! postgres_fdw does: so every type — geometry, arrays, numeric, timestamptz, enums — arrives
//! exactly, and typmods (geometry(Point,4326), numeric(10,2), varchar(n)) are checked on input.

use std::ffi::c_char;

use pgrx::pg_sys;

use crate::pg::cstr::cstr_owned;
use crate::pg::guc::GucLevel;
use crate::pg::sql_text::literal_for_type;

/// A column's input function, looked up once per scan.
pub struct ColumnInput {
    pub attnum: i16,
    flinfo: Box<pg_sys::FmgrInfo>,
    ioparam: pg_sys::Oid,
    typmod: i32,
}

impl ColumnInput {
    /// The input function of column `attnum`, of type `type_oid` with `typmod`.
    ///
    /// # Safety
    /// Backend thread, in a transaction; the FmgrInfo's extra state lives in the current context.
    pub unsafe fn new(attnum: i16, type_oid: pg_sys::Oid, typmod: i32) -> Self {
        // SAFETY: the caller upholds this function's contract (# Safety above).
        unsafe {
            let mut func = pg_sys::InvalidOid;
            let mut ioparam = pg_sys::InvalidOid;
            pg_sys::getTypeInputInfo(type_oid, &mut func, &mut ioparam);
            let mut flinfo: Box<pg_sys::FmgrInfo> = Box::new(std::mem::zeroed());
            pg_sys::fmgr_info(func, flinfo.as_mut());
            ColumnInput { attnum, flinfo, ioparam, typmod }
        }
    }

    /// # Safety
    /// `value` is a NUL-terminated string; may raise an ERROR for invalid input.
    pub unsafe fn input(&mut self, value: *const c_char) -> pg_sys::Datum {
        // SAFETY: the caller upholds this function's contract (# Safety above).
        unsafe {
            pg_sys::InputFunctionCall(self.flinfo.as_mut(), value as *mut c_char, self.ioparam, self.typmod)
        }
    }

    /// NULL goes through the input function too, so a domain's NOT NULL is checked.
    ///
    /// # Safety
    /// Backend thread, in a transaction; may raise an ERROR (a domain's constraint).
    pub unsafe fn input_null(&mut self) -> pg_sys::Datum {
        // SAFETY: the caller upholds this function's contract (# Safety above).
        unsafe {
            pg_sys::InputFunctionCall(self.flinfo.as_mut(), std::ptr::null_mut(), self.ioparam, self.typmod)
        }
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
        // SAFETY: the caller upholds this function's contract (# Safety above).
        unsafe {
            let mut func = pg_sys::InvalidOid;
            let mut varlena = false;
            pg_sys::getTypeOutputInfo(type_oid, &mut func, &mut varlena);
            let mut flinfo: Box<pg_sys::FmgrInfo> = Box::new(std::mem::zeroed());
            pg_sys::fmgr_info(func, flinfo.as_mut());
            ColumnOutput { flinfo }
        }
    }

    /// The value's text form, palloc'd in the current memory context. Only under the
    /// transmission modes: the guard is asked for so no caller can forget them.
    ///
    /// # Safety
    /// Backend thread, in a transaction; `value` a valid Datum of the type this output function was made for
    /// (not NULL); may raise an ERROR.
    pub unsafe fn output(&mut self, _modes: &TransmissionModes, value: pg_sys::Datum) -> *mut c_char {
        // SAFETY: the caller upholds this function's contract (# Safety above).
        unsafe {
            pg_sys::OutputFunctionCall(self.flinfo.as_mut(), value)
        }
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
        // SAFETY: the caller upholds this function's contract (# Safety above).
        unsafe {
            let type_oid = pg_sys::exprType(expr.cast());
            let typmod = pg_sys::exprTypmod(expr.cast());
            let name = cstr_owned(pg_sys::format_type_with_typemod(type_oid, typmod)).unwrap_or_default();
            let type_name = crate::pg::sql_text::strip_schema(&name);
            ParamOutput {
                state: pg_sys::ExecInitExpr(expr, parent),
                type_oid,
                type_name,
                output: ColumnOutput::new(type_oid),
            }
        }
    }

    /// # Safety
    /// `econtext` the scan's expression context.
    pub unsafe fn render(&mut self, econtext: *mut pg_sys::ExprContext) -> String {
        // SAFETY: the caller upholds this function's contract (# Safety above).
        unsafe {
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
            let modes = TransmissionModes::enter();
            let text = cstr_owned(self.output.output(&modes, value)).unwrap_or_default();
            drop(modes);
            literal_for_type(self.type_oid, &text, &self.type_name)
        }
    }
}

/// The settings under which every value sent to CARTO is printed — the one place that owns the
/// rule (as postgres_fdw's set_transmission_modes): `DateStyle` ISO (the date order is kept, it
/// only matters for input), `IntervalStyle` postgres, `extra_float_digits` 3. So a value means the
/// same on CARTO whatever the local session's (or database's, or cron job's) settings.
///
/// `TimeZone` is deliberately left alone: `timestamp without time zone`, `date` and `time` print
/// no zone and do not depend on it (they never shift), and `timestamptz`/`timetz` print with their
/// UTC offset (`2024-03-04 05:06:07+05:45`), so the instant CARTO stores is the local one whatever
/// the session's zone. `bytea_output` is left alone too: CARTO's bytea input reads both the hex
/// and the escape form exactly.
///
/// A guard: the settings hold while it lives and are restored when it is dropped — also when an
/// ERROR unwinds through it (pgrx turns the ERROR into an unwinding panic, which runs the drop;
/// and an abort unwinds any GUC nest level left open anyway). Set it once around a batch of
/// values, never per value: with the settings already equivalent (the defaults: DateStyle ISO,
/// IntervalStyle postgres, extra_float_digits > 0 — which all print floats shortest-exact) it
/// costs three comparisons; otherwise it opens one GUC nest level.
///
/// Only output functions may run while it lives: user code (triggers, the statement's own
/// expressions) must see the session's settings.
pub struct TransmissionModes {
    _level: Option<GucLevel>,
}

const MODES: [(&std::ffi::CStr, &std::ffi::CStr); 3] =
    [(c"datestyle", c"ISO"), (c"intervalstyle", c"postgres"), (c"extra_float_digits", c"3")];

impl TransmissionModes {
    /// Applies the transmission modes until the guard is dropped. Backend thread, in a transaction.
    pub fn enter() -> Self {
        // SAFETY: plain reads of GUC variables on the backend thread.
        if unsafe { Self::already_portable() } {
            return TransmissionModes { _level: None };
        }
        TransmissionModes { _level: Some(GucLevel::set(&MODES)) }
    }

    /// True when the session's settings print every value as the transmission modes would.
    unsafe fn already_portable() -> bool {
        // SAFETY: this function's contract: called on the backend thread, inside a transaction.
        unsafe {
            pg_sys::DateStyle == pg_sys::USE_ISO_DATES as i32
                && pg_sys::IntervalStyle == pg_sys::INTSTYLE_POSTGRES as i32
                && pg_sys::extra_float_digits > 0
        }
    }
}

/// Runs `f` under [`TransmissionModes`].
pub fn with_transmission_modes<T>(f: impl FnOnce() -> T) -> T {
    let _modes = TransmissionModes::enter();
    f()
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use super::{with_transmission_modes, TransmissionModes};

    fn settings() -> String {
        Spi::get_one::<String>(
            "SELECT current_setting('DateStyle') || '|' || current_setting('IntervalStyle') || '|' || current_setting('extra_float_digits')",
        )
        .unwrap()
        .unwrap()
    }

    #[pg_test]
    fn transmission_modes_apply_and_are_restored() {
        Spi::run("SET DateStyle = 'SQL, DMY'; SET IntervalStyle = 'iso_8601'; SET extra_float_digits = -15").unwrap();
        let inside = with_transmission_modes(|| {
            (
                settings(),
                Spi::get_one::<String>("SELECT (date '2024-03-04')::text || ' ' || (0.1234567890123456789::float8)::text || ' ' || (interval '1 day 02:00')::text")
                    .unwrap()
                    .unwrap(),
            )
        });
        // The date order is kept (it only matters for input).
        assert_eq!(inside.0, "ISO, DMY|postgres|3");
        assert_eq!(inside.1, "2024-03-04 0.12345678901234568 1 day 02:00:00");
        assert_eq!(settings(), "SQL, DMY|iso_8601|-15");
    }

    #[pg_test]
    fn transmission_modes_are_a_no_op_when_already_portable() {
        Spi::run("SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 1").unwrap();
        // Already printing as the modes would (extra_float_digits > 0 is shortest-exact too): nothing is set.
        let g = TransmissionModes::enter();
        assert!(g._level.is_none());
        assert_eq!(settings(), "ISO, MDY|postgres|1");
        drop(g);
        Spi::run("SET extra_float_digits = 0").unwrap();
        let g = TransmissionModes::enter();
        assert!(g._level.is_some());
        assert_eq!(settings(), "ISO, MDY|postgres|3");
        drop(g);
        assert_eq!(settings(), "ISO, MDY|postgres|0");
    }

    #[pg_test]
    fn transmission_modes_are_restored_when_an_error_unwinds() {
        Spi::run("SET DateStyle = 'German'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 1").unwrap();
        // An ERROR reaches Rust code as an unwinding panic: the guard restores the settings on its way.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            with_transmission_modes(|| {
                assert!(settings().starts_with("ISO"));
                panic!("an error while printing values");
            })
        }));
        assert!(r.is_err());
        assert_eq!(settings(), "German, DMY|postgres|1");
    }
}
