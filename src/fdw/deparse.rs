//! What can be shipped to CARTO, and the remote SQL.
//!
//! A clause is shipped only when every node in it is understood here, every function and operator
//! is built in (or belongs to PostGIS when the server option `extensions` lists postgis) and
//! immutable, and every collation is the default. Everything else is evaluated locally, so a
//! clause is never shipped in a form whose meaning could differ on the remote side.
//!
//! Constants are rendered as quoted literals with an explicit cast, identifiers are always
//! double-quoted, so no value or name can change the structure of the remote statement.
//! Values that are only known at execution time (parameters of a prepared statement, the outer
//! side of a nested loop) become [`Segment::Param`]s, rendered as literals when the scan starts.

use pgrx::pg_sys;
use pgrx::PgList;
use serde::{Deserialize, Serialize};

use crate::fdw::table::TableDef;
use crate::pg::builtin::is_builtin;
use crate::pg::cstr::cstr_owned;
use crate::pg::sql_text::{literal_for_type, quote_ident, strip_schema};

/// A piece of remote SQL: text, or the value of the n-th execution-time parameter.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Segment {
    Text(String),
    Param(usize),
}

/// Remote SQL with parameter holes. Rendered when the scan starts or restarts.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SqlTemplate {
    pub segments: Vec<Segment>,
}

impl SqlTemplate {
    pub fn text(s: impl Into<String>) -> Self {
        SqlTemplate { segments: vec![Segment::Text(s.into())] }
    }

    pub fn push_str(&mut self, s: &str) {
        if let Some(Segment::Text(last)) = self.segments.last_mut() {
            last.push_str(s);
        } else {
            self.segments.push(Segment::Text(s.to_string()));
        }
    }

    pub fn push_param(&mut self, index: usize) {
        self.segments.push(Segment::Param(index));
    }

    pub fn append(&mut self, other: &SqlTemplate) {
        for s in &other.segments {
            match s {
                Segment::Text(t) => self.push_str(t),
                Segment::Param(i) => self.push_param(*i),
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.segments.iter().all(|s| matches!(s, Segment::Text(t) if t.is_empty()))
    }

    /// The SQL with each parameter replaced by its rendered literal (`$n` when unknown, for EXPLAIN).
    pub fn render(&self, params: Option<&[String]>) -> String {
        let mut out = String::new();
        for s in &self.segments {
            match s {
                Segment::Text(t) => out.push_str(t),
                Segment::Param(i) => match params.and_then(|p| p.get(*i)) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&format!("${}", i + 1)),
                },
            }
        }
        out
    }
}

/// What the deparser knows of the foreign table being scanned.
pub struct RelInfo {
    /// Range-table index of the foreign table.
    pub relid: u32,
    /// Remote column name per local attribute number (index attnum - 1); None for dropped columns.
    pub remote_names: Vec<Option<String>>,
    /// OID of the local postgis extension when the server lists postgis, else None.
    pub postgis_ext: Option<pg_sys::Oid>,
    /// For a statement over several relations (a pushed join, an aggregate): every base relation
    /// in it, whose columns are written qualified by its alias. Empty for a plain scan.
    pub members: Vec<Member>,
}

/// A base relation inside a pushed join or aggregate.
#[derive(Clone, Debug)]
pub struct Member {
    /// Range-table index.
    pub relid: u32,
    /// Its alias in the remote statement (`r<relid>`).
    pub alias: String,
    /// Remote column name per local attribute number (index attnum - 1).
    pub remote_names: Vec<Option<String>>,
}

/// Deparse state: the SQL being written and the execution-time parameters found so far.
pub struct Deparser<'a> {
    pub rel: &'a RelInfo,
    /// Expressions evaluated at execution time, in Param order (become the plan's fdw_exprs).
    pub params: Vec<*mut pg_sys::Expr>,
    /// Whether Vars of other relations may become parameters (parameterized paths).
    pub allow_outer_params: bool,
    /// Whether aggregates may appear (the target list, HAVING and ORDER BY of a pushed aggregate).
    pub allow_aggs: bool,
    /// Set for one argument of COALESCE, CASE, NULLIF, GREATEST/LEAST: an implicit cast there is
    /// written out, since those resolve one common type from all their arguments, and without it
    /// CARTO could resolve another (`COALESCE(geom, 'N'::text)` fails where `COALESCE(geom::text, …)`
    /// does not). Columns there are cast to their local type for the same reason.
    cast_implicit: bool,
}

impl<'a> Deparser<'a> {
    pub fn new(rel: &'a RelInfo) -> Self {
        Deparser { rel, params: Vec::new(), allow_outer_params: false, allow_aggs: false, cast_implicit: false }
    }

    /// Deparses a clause, or returns None when any part of it cannot be shipped.
    /// On None, parameters collected while trying are discarded.
    ///
    /// # Safety
    /// `node` must be a valid planner expression tree.
    pub unsafe fn clause(&mut self, node: *mut pg_sys::Node) -> Option<SqlTemplate> {
        // SAFETY: the caller upholds this function's contract (# Safety above).
        unsafe {
            let saved = self.params.len();
            if pg_sys::contain_mutable_functions(node) {
                return None;
            }
            let mut out = SqlTemplate::default();
            if self.expr(node, &mut out) {
                Some(out)
            } else {
                self.params.truncate(saved);
                None
            }
        }
    }

    unsafe fn expr(&mut self, node: *mut pg_sys::Node, out: &mut SqlTemplate) -> bool {
        // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
        unsafe {
            if node.is_null() {
                return false;
            }
            match (*node).type_ {
                pg_sys::NodeTag::T_Var => self.var(node.cast(), out),
                pg_sys::NodeTag::T_Const => self.konst(node.cast(), out),
                pg_sys::NodeTag::T_Param => self.param(node.cast(), out),
                pg_sys::NodeTag::T_OpExpr => self.op_expr(node.cast(), out),
                pg_sys::NodeTag::T_DistinctExpr => self.distinct_expr(node.cast(), out),
                pg_sys::NodeTag::T_ScalarArrayOpExpr => self.scalar_array_op(node.cast(), out),
                pg_sys::NodeTag::T_BoolExpr => self.bool_expr(node.cast(), out),
                pg_sys::NodeTag::T_NullTest => self.null_test(node.cast(), out),
                pg_sys::NodeTag::T_FuncExpr => self.func_expr(node.cast(), out),
                pg_sys::NodeTag::T_RelabelType => {
                    let r: *mut pg_sys::RelabelType = node.cast();
                    if !self.collation_ok((*r).resultcollid) {
                        return false;
                    }
                    self.expr((*r).arg.cast(), out)
                }
                pg_sys::NodeTag::T_CoerceViaIO => {
                    let c: *mut pg_sys::CoerceViaIO = node.cast();
                    let Some(ty) = self.type_name((*c).resulttype, -1) else { return false };
                    out.push_str("(");
                    if !self.expr((*c).arg.cast(), out) {
                        return false;
                    }
                    out.push_str(&format!(")::{ty}"));
                    true
                }
                pg_sys::NodeTag::T_ArrayExpr => self.array_expr(node.cast(), out),
                pg_sys::NodeTag::T_Aggref if self.allow_aggs => self.aggref(node.cast(), out),
                pg_sys::NodeTag::T_CaseExpr => self.case_expr(node.cast(), out),
                pg_sys::NodeTag::T_CoalesceExpr => {
                    let c: *mut pg_sys::CoalesceExpr = node.cast();
                    self.collation_ok((*c).coalescecollid) && self.call("COALESCE", (*c).args, out)
                }
                pg_sys::NodeTag::T_MinMaxExpr => {
                    let m: *mut pg_sys::MinMaxExpr = node.cast();
                    let name = if (*m).op == pg_sys::MinMaxOp::IS_GREATEST { "GREATEST" } else { "LEAST" };
                    self.collation_ok((*m).minmaxcollid)
                        && self.collation_ok((*m).inputcollid)
                        && self.type_name((*m).minmaxtype, -1).is_some()
                        && self.call(name, (*m).args, out)
                }
                pg_sys::NodeTag::T_NullIfExpr => {
                    let op: *mut pg_sys::NullIfExpr = node.cast();
                    self.shippable_operator((*op).opno, (*op).inputcollid).is_some()
                        && self.collation_ok((*op).opcollid)
                        && self.call("NULLIF", (*op).args, out)
                }
                pg_sys::NodeTag::T_BooleanTest => self.boolean_test(node.cast(), out),
                pg_sys::NodeTag::T_SubscriptingRef => self.subscript(node.cast(), out),
                _ => false,
            }
        }
    }

    /// Only the default collation ships: the remote SQL never names a collation, so a `COLLATE "C"`
    /// comparison shipped as is would be made under CARTO's default collation instead.
    fn collation_ok(&self, coll: pg_sys::Oid) -> bool {
        default_collation(coll)
    }

    unsafe fn var(&mut self, var: *mut pg_sys::Var, out: &mut SqlTemplate) -> bool {
        // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
        unsafe {
            if !self.rel.members.is_empty() && (*var).varlevelsup == 0 {
                let member = self.rel.members.iter().find(|m| m.relid == (*var).varno as u32);
                if let Some(m) = member {
                    let attno = (*var).varattno;
                    if attno <= 0 || !self.collation_ok((*var).varcollid) {
                        return false;
                    }
                    return match m.remote_names.get(attno as usize - 1) {
                        Some(Some(name)) => {
                            out.push_str(&format!("{}.{}", m.alias, quote_ident(name)));
                            true
                        }
                        _ => false,
                    };
                }
            }
            if (*var).varno as u32 == self.rel.relid && (*var).varlevelsup == 0 {
                let attno = (*var).varattno;
                if attno <= 0 || !self.collation_ok((*var).varcollid) {
                    return false;
                }
                match self.rel.remote_names.get(attno as usize - 1) {
                    Some(Some(name)) => {
                        out.push_str(&quote_ident(name));
                        true
                    }
                    _ => false,
                }
            } else if self.allow_outer_params && (*var).varlevelsup == 0 {
                // A Var of another relation: its value comes from the outer side at execution time.
                self.add_param(var.cast(), out)
            } else {
                false
            }
        }
    }

    unsafe fn add_param(&mut self, expr: *mut pg_sys::Expr, out: &mut SqlTemplate) -> bool {
        // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
        unsafe {
            let typid = pg_sys::exprType(expr.cast());
            if self.type_name(typid, -1).is_none() {
                return false;
            }
            let existing = self.params.iter().position(|&e| pg_sys::equal(e.cast(), expr.cast()));
            let index = existing.unwrap_or_else(|| {
                self.params.push(expr);
                self.params.len() - 1
            });
            out.push_param(index);
            true
        }
    }

    unsafe fn param(&mut self, p: *mut pg_sys::Param, out: &mut SqlTemplate) -> bool {
        // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
        unsafe {
            match (*p).paramkind {
                pg_sys::ParamKind::PARAM_EXTERN | pg_sys::ParamKind::PARAM_EXEC => {
                    self.add_param(p.cast(), out)
                }
                _ => false,
            }
        }
    }

    unsafe fn konst(&mut self, c: *mut pg_sys::Const, out: &mut SqlTemplate) -> bool {
        // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
        unsafe {
            let Some(ty) = self.type_name((*c).consttype, (*c).consttypmod) else { return false };
            if (*c).constisnull {
                out.push_str(&format!("NULL::{ty}"));
                return true;
            }
            let text = const_text((*c).consttype, (*c).constvalue);
            out.push_str(&literal_for_type((*c).consttype, &text, &ty));
            true
        }
    }

    /// The operator's name when it can be shipped (built in or PostGIS, default collation,
    /// a plain symbolic name); None otherwise.
    unsafe fn shippable_operator(&self, opno: pg_sys::Oid, inputcollid: pg_sys::Oid) -> Option<String> {
        // SAFETY: this function's contract: called on the backend thread, inside a transaction.
        unsafe {
            if !self.object_ok(pg_sys::OperatorRelationId, opno) || !self.collation_ok(inputcollid) {
                return None;
            }
            let name = cstr_owned(pg_sys::get_opname(opno))?;
            name.chars().all(|c| "+-*/<>=~!@#%^&|`?".contains(c)).then_some(name)
        }
    }

    /// `(left <middle> right)` for a two-argument list.
    unsafe fn binary(&mut self, args: *mut pg_sys::List, middle: &str, close: &str, out: &mut SqlTemplate) -> bool {
        // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
        unsafe {
            let args = PgList::<pg_sys::Node>::from_pg(args);
            if args.len() != 2 {
                return false;
            }
            out.push_str("(");
            if !self.expr(args.get_ptr(0).unwrap_or(std::ptr::null_mut()), out) {
                return false;
            }
            out.push_str(middle);
            if !self.expr(args.get_ptr(1).unwrap_or(std::ptr::null_mut()), out) {
                return false;
            }
            out.push_str(close);
            true
        }
    }

    unsafe fn op_expr(&mut self, op: *mut pg_sys::OpExpr, out: &mut SqlTemplate) -> bool {
        // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
        unsafe {
            let Some(name) = self.shippable_operator((*op).opno, (*op).inputcollid) else { return false };
            let args = PgList::<pg_sys::Node>::from_pg((*op).args);
            if args.len() == 1 {
                // Prefix operator.
                out.push_str(&format!("({name} "));
                if !self.expr(args.get_ptr(0).unwrap_or(std::ptr::null_mut()), out) {
                    return false;
                }
                out.push_str(")");
                return true;
            }
            self.binary((*op).args, &format!(" {name} "), ")", out)
        }
    }

    unsafe fn distinct_expr(&mut self, op: *mut pg_sys::DistinctExpr, out: &mut SqlTemplate) -> bool {
        // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
        unsafe {
            if self.shippable_operator((*op).opno, (*op).inputcollid).is_none() {
                return false;
            }
            self.binary((*op).args, " IS DISTINCT FROM ", ")", out)
        }
    }

    unsafe fn scalar_array_op(
        &mut self,
        op: *mut pg_sys::ScalarArrayOpExpr,
        out: &mut SqlTemplate,
    ) -> bool {
        // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
        unsafe {
            let Some(name) = self.shippable_operator((*op).opno, (*op).inputcollid) else { return false };
            let quantifier = if (*op).useOr { "ANY" } else { "ALL" };
            self.binary((*op).args, &format!(" {name} {quantifier} ("), "))", out)
        }
    }

    unsafe fn bool_expr(&mut self, b: *mut pg_sys::BoolExpr, out: &mut SqlTemplate) -> bool {
        // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
        unsafe {
            let args = PgList::<pg_sys::Node>::from_pg((*b).args);
            let joiner = match (*b).boolop {
                pg_sys::BoolExprType::AND_EXPR => " AND ",
                pg_sys::BoolExprType::OR_EXPR => " OR ",
                pg_sys::BoolExprType::NOT_EXPR => {
                    out.push_str("(NOT ");
                    if !self.expr(args.get_ptr(0).unwrap_or(std::ptr::null_mut()), out) {
                        return false;
                    }
                    out.push_str(")");
                    return true;
                }
                _ => return false,
            };
            out.push_str("(");
            for (i, arg) in args.iter_ptr().enumerate() {
                if i > 0 {
                    out.push_str(joiner);
                }
                if !self.expr(arg, out) {
                    return false;
                }
            }
            out.push_str(")");
            true
        }
    }

    unsafe fn null_test(&mut self, n: *mut pg_sys::NullTest, out: &mut SqlTemplate) -> bool {
        // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
        unsafe {
            if (*n).argisrow {
                return false;
            }
            out.push_str("(");
            if !self.expr((*n).arg.cast(), out) {
                return false;
            }
            out.push_str(match (*n).nulltesttype {
                pg_sys::NullTestType::IS_NULL => " IS NULL)",
                _ => " IS NOT NULL)",
            });
            true
        }
    }

    unsafe fn func_expr(&mut self, f: *mut pg_sys::FuncExpr, out: &mut SqlTemplate) -> bool {
        // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
        unsafe {
            if !self.object_ok(pg_sys::ProcedureRelationId, (*f).funcid)
                || !self.collation_ok((*f).inputcollid)
                || (*f).funcvariadic
            {
                return false;
            }
            let args = PgList::<pg_sys::Node>::from_pg((*f).args);
            match (*f).funcformat {
                pg_sys::CoercionForm::COERCE_IMPLICIT_CAST if !std::mem::take(&mut self.cast_implicit) => {
                    // As postgres_fdw: the remote side applies the same implicit cast.
                    return !args.is_empty()
                        && self.expr(args.get_ptr(0).unwrap_or(std::ptr::null_mut()), out);
                }
                pg_sys::CoercionForm::COERCE_EXPLICIT_CAST | pg_sys::CoercionForm::COERCE_IMPLICIT_CAST => {
                    let typmod = if args.len() >= 2 {
                        let m = args.get_ptr(1).unwrap_or(std::ptr::null_mut());
                        if !m.is_null() && (*m).type_ == pg_sys::NodeTag::T_Const {
                            let c: *mut pg_sys::Const = m.cast();
                            (*c).constvalue.value() as i32
                        } else {
                            -1
                        }
                    } else {
                        -1
                    };
                    let Some(ty) = self.type_name((*f).funcresulttype, typmod) else { return false };
                    out.push_str("(");
                    if !self.expr(args.get_ptr(0).unwrap_or(std::ptr::null_mut()), out) {
                        return false;
                    }
                    out.push_str(&format!(")::{ty}"));
                    return true;
                }
                _ => {}
            }
            let Some(name) = cstr_owned(pg_sys::get_func_name((*f).funcid)) else { return false };
            out.push_str(&quote_func_name(&name));
            out.push_str("(");
            for (i, arg) in args.iter_ptr().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                if !self.expr(arg, out) {
                    return false;
                }
            }
            out.push_str(")");
            true
        }
    }

    unsafe fn array_expr(&mut self, a: *mut pg_sys::ArrayExpr, out: &mut SqlTemplate) -> bool {
        // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
        unsafe {
            let Some(ty) = self.type_name((*a).array_typeid, -1) else { return false };
            let elems = PgList::<pg_sys::Node>::from_pg((*a).elements);
            out.push_str("ARRAY[");
            for (i, e) in elems.iter_ptr().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                if !self.expr(e, out) {
                    return false;
                }
            }
            out.push_str(&format!("]::{ty}"));
            true
        }
    }

    /// An argument of a node that resolves a common type: its own implicit cast written out.
    /// A column is cast to its local type too: it may be declared `text` over a remote geometry.
    unsafe fn typed_arg(&mut self, node: *mut pg_sys::Node, out: &mut SqlTemplate) -> bool {
        // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
        unsafe {
            if !node.is_null() && (*node).type_ == pg_sys::NodeTag::T_Var {
                let Some(ty) = self.type_name(pg_sys::exprType(node), -1) else { return false };
                out.push_str("(");
                if !self.expr(node, out) {
                    return false;
                }
                out.push_str(&format!(")::{ty}"));
                return true;
            }
            self.cast_implicit = !node.is_null() && (*node).type_ == pg_sys::NodeTag::T_FuncExpr;
            let ok = self.expr(node, out);
            self.cast_implicit = false;
            ok
        }
    }

    /// `NAME(arg, ...)` for a list of arguments (of one common type).
    unsafe fn call(&mut self, name: &str, args: *mut pg_sys::List, out: &mut SqlTemplate) -> bool {
        // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
        unsafe {
            out.push_str(name);
            out.push_str("(");
            for (i, arg) in PgList::<pg_sys::Node>::from_pg(args).iter_ptr().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                if !self.typed_arg(arg, out) {
                    return false;
                }
            }
            out.push_str(")");
            true
        }
    }

    unsafe fn case_expr(&mut self, c: *mut pg_sys::CaseExpr, out: &mut SqlTemplate) -> bool {
        // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
        unsafe {
            if !self.collation_ok((*c).casecollid) {
                return false;
            }
            let simple = !(*c).arg.is_null();
            out.push_str("(CASE");
            if simple {
                out.push_str(" ");
                if !self.expr((*c).arg.cast(), out) {
                    return false;
                }
            }
            for w in PgList::<pg_sys::CaseWhen>::from_pg((*c).args).iter_ptr() {
                out.push_str(" WHEN ");
                let cond = (*w).expr.cast::<pg_sys::Node>();
                let ok = if simple {
                    // `CASE x WHEN v`: the parser made `CaseTestExpr = v`; only v is written.
                    self.simple_case_value(cond, out)
                } else {
                    self.expr(cond, out)
                };
                if !ok {
                    return false;
                }
                out.push_str(" THEN ");
                if !self.typed_arg((*w).result.cast(), out) {
                    return false;
                }
            }
            if !(*c).defresult.is_null() {
                out.push_str(" ELSE ");
                if !self.typed_arg((*c).defresult.cast(), out) {
                    return false;
                }
            }
            out.push_str(" END)");
            true
        }
    }

    unsafe fn simple_case_value(&mut self, cond: *mut pg_sys::Node, out: &mut SqlTemplate) -> bool {
        // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
        unsafe {
            if cond.is_null() || (*cond).type_ != pg_sys::NodeTag::T_OpExpr {
                return false;
            }
            let op: *mut pg_sys::OpExpr = cond.cast();
            if self.shippable_operator((*op).opno, (*op).inputcollid).as_deref() != Some("=") {
                return false;
            }
            let args = PgList::<pg_sys::Node>::from_pg((*op).args);
            let (Some(mut left), Some(right)) = (args.get_ptr(0), args.get_ptr(1)) else { return false };
            while (*left).type_ == pg_sys::NodeTag::T_RelabelType {
                left = (*left.cast::<pg_sys::RelabelType>()).arg.cast();
            }
            if (*left).type_ != pg_sys::NodeTag::T_CaseTestExpr {
                return false;
            }
            self.expr(right, out)
        }
    }

    unsafe fn boolean_test(&mut self, b: *mut pg_sys::BooleanTest, out: &mut SqlTemplate) -> bool {
        // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
        unsafe {
            use pg_sys::BoolTestType::*;
            let test = match (*b).booltesttype {
                IS_TRUE => " IS TRUE)",
                IS_NOT_TRUE => " IS NOT TRUE)",
                IS_FALSE => " IS FALSE)",
                IS_NOT_FALSE => " IS NOT FALSE)",
                IS_UNKNOWN => " IS UNKNOWN)",
                IS_NOT_UNKNOWN => " IS NOT UNKNOWN)",
                _ => return false,
            };
            out.push_str("(");
            if !self.expr((*b).arg.cast(), out) {
                return false;
            }
            out.push_str(test);
            true
        }
    }

    /// `(array)[i]` / `[i][j]`: element fetches of built-in array types (no slices, no assignment).
    unsafe fn subscript(&mut self, r: *mut pg_sys::SubscriptingRef, out: &mut SqlTemplate) -> bool {
        // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
        unsafe {
            if !(*r).refassgnexpr.is_null()
                || !(*r).reflowerindexpr.is_null()
                || !self.collation_ok((*r).refcollid)
                || !is_builtin((*r).refcontainertype)
                || self.type_name((*r).refcontainertype, -1).is_none_or(|t| !t.ends_with("[]"))
            {
                return false;
            }
            out.push_str("(");
            if !self.expr((*r).refexpr.cast(), out) {
                return false;
            }
            out.push_str(")");
            for i in PgList::<pg_sys::Node>::from_pg((*r).refupperindexpr).iter_ptr() {
                out.push_str("[");
                if !self.expr(i, out) {
                    return false;
                }
                out.push_str("]");
            }
            true
        }
    }

    /// An aggregate call: built-in or PostGIS, plain (not ordered-set), not split for partial
    /// aggregation; its arguments, ORDER BY and FILTER shippable like any expression.
    unsafe fn aggref(&mut self, a: *mut pg_sys::Aggref, out: &mut SqlTemplate) -> bool {
        // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
        unsafe {
            if (*a).aggkind as u8 != b'n'
                || (*a).aggsplit != pg_sys::AggSplit::AGGSPLIT_SIMPLE
                || (*a).agglevelsup != 0
                || (*a).aggvariadic
                || !self.object_ok(pg_sys::ProcedureRelationId, (*a).aggfnoid)
                || !default_collation((*a).inputcollid)
                || !default_collation((*a).aggcollid)
            {
                return false;
            }
            let Some(name) = cstr_owned(pg_sys::get_func_name((*a).aggfnoid)) else { return false };
            out.push_str(&quote_func_name(&name));
            out.push_str("(");
            if (*a).aggstar {
                out.push_str("*");
            } else {
                if !(*a).aggdistinct.is_null() {
                    out.push_str("DISTINCT ");
                }
                let args = PgList::<pg_sys::TargetEntry>::from_pg((*a).args);
                let mut first = true;
                for te in args.iter_ptr() {
                    if (*te).resjunk {
                        continue;
                    }
                    if !first {
                        out.push_str(", ");
                    }
                    first = false;
                    if !self.expr((*te).expr.cast(), out) {
                        return false;
                    }
                }
                if !(*a).aggorder.is_null() {
                    out.push_str(" ORDER BY ");
                    let sorts = PgList::<pg_sys::SortGroupClause>::from_pg((*a).aggorder);
                    for (i, sgc) in sorts.iter_ptr().enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        let te = pg_sys::get_sortgroupclause_tle(sgc, (*a).args);
                        if te.is_null() || !self.expr((*te).expr.cast(), out) {
                            return false;
                        }
                        let Some(dir) = self.sort_direction((*sgc).sortop, pg_sys::exprType((*te).expr.cast())) else {
                            return false;
                        };
                        out.push_str(&dir);
                        out.push_str(if (*sgc).nulls_first { " NULLS FIRST" } else { " NULLS LAST" });
                    }
                }
            }
            out.push_str(")");
            if !(*a).aggfilter.is_null() {
                out.push_str(" FILTER (WHERE ");
                if !self.expr((*a).aggfilter.cast(), out) {
                    return false;
                }
                out.push_str(")");
            }
            true
        }
    }

    /// ` ASC` / ` DESC` when `sortop` is the `<` / `>` of the type's default btree opclass, else
    /// ` USING op` for a shippable operator; None when the sort cannot be written.
    unsafe fn sort_direction(&self, sortop: pg_sys::Oid, typid: pg_sys::Oid) -> Option<String> {
        // SAFETY: this function's contract: called on the backend thread, inside a transaction.
        unsafe {
            let mut lt = pg_sys::InvalidOid;
            let mut gt = pg_sys::InvalidOid;
            pg_sys::get_sort_group_operators(typid, false, false, false, &mut lt, std::ptr::null_mut(), &mut gt, std::ptr::null_mut());
            if sortop == lt {
                Some(" ASC".into())
            } else if sortop == gt {
                Some(" DESC".into())
            } else {
                let name = self.shippable_operator(sortop, pg_sys::InvalidOid)?;
                Some(format!(" USING {name}"))
            }
        }
    }

    /// Built in, or part of PostGIS when PostGIS is enabled for the server.
    unsafe fn object_ok(&self, class: pg_sys::Oid, oid: pg_sys::Oid) -> bool {
        // SAFETY: this function's contract: called on the backend thread, inside a transaction.
        unsafe {
            if is_builtin(oid) {
                return true;
            }
            match self.rel.postgis_ext {
                Some(ext) => pg_sys::getExtensionOfObject(class, oid) == ext,
                None => false,
            }
        }
    }

    /// The remote spelling of a type, or None when the remote side may not know it.
    ///
    /// # Safety
    /// Backend thread, in a transaction (reads the catalogs; may raise an ERROR for an unknown type).
    pub unsafe fn type_name(&self, typid: pg_sys::Oid, typmod: i32) -> Option<String> {
        // SAFETY: the caller upholds this function's contract (# Safety above).
        unsafe {
            if !self.object_ok(pg_sys::TypeRelationId, typid) {
                return None;
            }
            let name = cstr_owned(pg_sys::format_type_with_typemod(typid, typmod))?;
            if is_builtin(typid) {
                Some(name)
            } else {
                Some(strip_schema(&name))
            }
        }
    }
}

/// The default collation (or none): what CARTO applies to a statement that names no collation.
/// Sorting, `min`/`max` and other collation-dependent results ship only under it (a `COLLATE "C"`
/// is not written into the remote statement).
pub fn default_collation(coll: pg_sys::Oid) -> bool {
    coll == pg_sys::InvalidOid || coll == pg_sys::DEFAULT_COLLATION_OID
}

fn quote_func_name(name: &str) -> String {
    // quote_identifier also quotes keywords: position, extract, overlay... are only callable quoted.
    // It reads the database encoding: a non-ASCII name (UTF-8 here) is quoted by our own rule.
    if !name.is_ascii() {
        return quote_ident(name);
    }
    match std::ffi::CString::new(name) {
        // SAFETY: planner code on the backend thread; `c` is NUL-terminated and outlives the call, quote_identifier
        // returns a valid string.
        Ok(c) => unsafe { cstr_owned(pg_sys::quote_identifier(c.as_ptr())) }.unwrap_or_else(|| quote_ident(name)),
        Err(_) => quote_ident(name),
    }
}

/// The select list of a `/sql` read: each remote column cast to text (so its value arrives in
/// PostgreSQL's exact text form) under the alias `c0`, `c1`, … (JSON keys never collide); `NULL`
/// when no column is needed.
pub fn text_select_list<'a>(remote_names: impl Iterator<Item = &'a str>) -> String {
    let list: Vec<String> =
        remote_names.enumerate().map(|(i, n)| format!("{}::text AS c{i}", quote_ident(n))).collect();
    if list.is_empty() {
        "NULL".into()
    } else {
        list.join(", ")
    }
}

/// The aliases `text_select_list` gives `n` columns.
pub fn text_aliases(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("c{i}")).collect()
}

/// The text form of a constant through its type's output function.
///
/// # Safety
/// `value` must be a valid datum of type `typid`.
pub unsafe fn const_text(typid: pg_sys::Oid, value: pg_sys::Datum) -> String {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        let mut out_fn = pg_sys::InvalidOid;
        let mut is_varlena = false;
        pg_sys::getTypeOutputInfo(typid, &mut out_fn, &mut is_varlena);
        // Portable text form whatever the local DateStyle, IntervalStyle or extra_float_digits.
        crate::pg::typeio::with_transmission_modes(|| cstr_owned(pg_sys::OidOutputFunctionCall(out_fn, value)).unwrap_or_default())
    }
}

/// `UPDATE <target> SET "col" = value, …` for the statement's update target list of relation `rti` (the first
/// N entries are the new values of the N updated columns; junk entries follow). None when a value does not ship.
/// Direct modification of one table (here) and of a pushed join (pushed.rs) write their SET the same way.
///
/// # Safety
/// While planning an UPDATE whose result relation is `rti`.
pub unsafe fn update_set_sql(
    root: *mut pg_sys::PlannerInfo,
    rti: pg_sys::Index,
    table: &TableDef,
    target: &str,
    d: &mut Deparser,
) -> Option<SqlTemplate> {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        let mut tlist: *mut pg_sys::List = std::ptr::null_mut();
        let mut attrs: *mut pg_sys::List = std::ptr::null_mut();
        pg_sys::get_translated_update_targetlist(root, rti, &mut tlist, &mut attrs);
        let tles = PgList::<pg_sys::TargetEntry>::from_pg(tlist);
        let attnos = PgList::<i32>::from_pg(attrs);
        let mut sql = SqlTemplate::text(format!("UPDATE {target} SET "));
        for (i, tle) in tles.iter_ptr().enumerate().take(attnos.len()) {
            let col = table.column(attnos.get_int(i)? as i16)?;
            let expr = d.clause((*tle).expr.cast())?;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("{} = ", quote_ident(&col.remote_name)));
            sql.append(&expr);
        }
        Some(sql)
    }
}

/// ORDER BY for `pathkeys`: for each key, the first member of its equivalence class that `member` can write,
/// then its direction and NULLS order. None when a key sorts by a non-built-in operator family or a collation
/// other than the default, has volatile members, or has no member `member` writes: the sort stays local.
/// Scans (plan.rs) and pushed joins and aggregates (pushed.rs) differ only in which members they accept.
///
/// # Safety
/// `pathkeys` a list of PathKey of this planning.
pub unsafe fn order_by_sql(
    pathkeys: *mut pg_sys::List,
    mut member: impl FnMut(*mut pg_sys::EquivalenceMember) -> Option<SqlTemplate>,
) -> Option<SqlTemplate> {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        let mut out = SqlTemplate::default();
        for (i, pk) in PgList::<pg_sys::PathKey>::from_pg(pathkeys).iter_ptr().enumerate() {
            if !is_builtin((*pk).pk_opfamily) {
                return None;
            }
            let ec = (*pk).pk_eclass;
            if (*ec).ec_has_volatile || !default_collation((*ec).ec_collation) {
                return None;
            }
            let expr = PgList::<pg_sys::EquivalenceMember>::from_pg((*ec).ec_members)
                .iter_ptr()
                .filter(|em| !(**em).em_is_const && !(**em).em_is_child)
                .find_map(&mut member)?;
            if i > 0 {
                out.push_str(", ");
            }
            out.append(&expr);
            out.push_str(if crate::pg::compat::pathkey_descending(pk) { " DESC" } else { " ASC" });
            out.push_str(if (*pk).pk_nulls_first { " NULLS FIRST" } else { " NULLS LAST" });
        }
        Some(out)
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn templates_render_params() {
        let mut t = SqlTemplate::text("a = ");
        t.push_param(0);
        t.push_str(" AND b = ");
        t.push_param(1);
        assert_eq!(t.render(None), "a = $1 AND b = $2");
        assert_eq!(t.render(Some(&["1".into(), "'x'::text".into()])), "a = 1 AND b = 'x'::text");
    }
}
