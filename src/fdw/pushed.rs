//! Joins and aggregates computed by CARTO: the plan-time state of a pushed join or upper relation,
//! its one remote statement, and its ForeignScan (scanrelid 0, rows described by fdw_scan_tlist).
//!
//! join.rs decides which joins ship (GetForeignJoinPaths), upper.rs which aggregates, sorts and
//! limits above them (GetForeignUpperPaths); both leave a [`PushedRel`] in the relation's
//! fdw_private. The remote SQL is written here, once at path time (to know that it can be
//! written at all) and again at plan time, with one [`Deparser`] so that every execution-time
//! parameter of every clause is numbered once.
//!
//! The remote statement is `SELECT e0 AS c0, e1 AS c1, … FROM … [WHERE] [GROUP BY] [HAVING]
//! [ORDER BY] [LIMIT]`; the scan reads it as a subquery whose columns are cast to text (or sent
//! raw through COPY), so values arrive in PostgreSQL's text form and go through the local types'
//! input functions like a scan's. GROUP BY names the select list's positions, so the grouping is
//! by the expressions' own values, not by their text.

use pgrx::pg_sys;
use pgrx::{PgList, PgMemoryContexts};

use crate::fdw::connection::client_for;
use crate::fdw::deparse::{Deparser, Member, RelInfo, SqlTemplate};
use crate::fdw::options::ScanMethod;
use crate::fdw::scan_plan::{rel_state, scan_plan_to_private, RelState, ScanPlan, Transport};
use crate::pg::error::{FdwError, FdwResult};
use crate::pg::runtime::block_on;

/// A base foreign table inside a pushed join or aggregate.
#[derive(Clone, Debug)]
pub struct BaseTable {
    /// Range-table index.
    pub rti: u32,
    pub relid: pg_sys::Oid,
    /// Its FROM item with its alias (`"t12" r1`).
    pub from: String,
    /// Its name in EXPLAIN's Relations (`ft12`, or `ft12 a` under an alias).
    pub label: String,
}

/// Settings that steer a pushed statement, taken from its tables and server.
#[derive(Clone, Debug)]
pub struct PushOptions {
    pub server_name: String,
    pub api_key: Option<String>,
    pub fdw_startup_cost: f64,
    pub fdw_tuple_cost: f64,
    pub use_remote_estimate: bool,
    pub scan_method: ScanMethod,
    pub copy_threshold: f64,
    pub fetch_size: u64,
}

pub enum Shape {
    /// `(outer JOIN inner ON (on))`; a semi-/anti-join is the outer side with
    /// `[NOT] EXISTS (SELECT NULL FROM inner WHERE on)`.
    Join { outer: *mut pg_sys::RelOptInfo, inner: *mut pg_sys::RelOptInfo, jointype: pg_sys::JoinType::Type, on: Vec<*mut pg_sys::Expr> },
    /// GROUP BY (or a plain aggregate) over a base or join relation. `tlist` is the scan's target
    /// list (TargetEntry nodes, every expression shipped), `group_by` 1-based positions in it.
    Grouped { input: *mut pg_sys::RelOptInfo, tlist: *mut pg_sys::List, group_by: Vec<usize>, having: Vec<*mut pg_sys::Expr> },
    /// ORDER BY over a pushed join or aggregate.
    Ordered { input: *mut pg_sys::RelOptInfo, pathkeys: *mut pg_sys::List },
    /// LIMIT/OFFSET over a pushed join, aggregate or sort.
    Final { input: *mut pg_sys::RelOptInfo, limit: Option<Count>, offset: Option<Count> },
}

/// A LIMIT or OFFSET count: a constant, or an expression of parameters (a prepared statement's `LIMIT $1` on
/// a generic plan) sent as its value at execution, like any other parameter.
#[derive(Clone, Copy, Debug)]
pub enum Count {
    Const(i64),
    Expr(*mut pg_sys::Node),
}

/// Plan-time state of a pushed join or upper relation (its fdw_private).
pub struct PushedRel {
    pub shape: Shape,
    /// The base tables' columns, for the deparser (qualified by their aliases).
    pub info: RelInfo,
    pub tables: Vec<BaseTable>,
    /// A join's conditions that go to WHERE (the ON ones are in the shape).
    pub where_conds: Vec<*mut pg_sys::Expr>,
    /// A join's conditions evaluated locally above the pushed join.
    pub local_conds: Vec<*mut pg_sys::RestrictInfo>,
    /// `(ft1) INNER JOIN (ft2)`, `Aggregate on (ft)`.
    pub relations: String,
    pub opts: PushOptions,
    /// A base relation inside, whose server access (client) the estimates use.
    pub first_base: *mut pg_sys::RelOptInfo,
    /// Cost of CARTO's work before it sends the first row (a join's, an aggregation's).
    pub remote_cost: f64,
}

/// Whether a relation is a plain foreign table scan (plan.rs) rather than a pushed one.
///
/// # Safety
/// `rel` a valid RelOptInfo.
pub unsafe fn is_scan_rel(rel: *mut pg_sys::RelOptInfo) -> bool {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        matches!((*rel).reloptkind, pg_sys::RelOptKind::RELOPT_BASEREL | pg_sys::RelOptKind::RELOPT_OTHER_MEMBER_REL)
    }
}

/// The pushed state of a join or upper relation, when it was pushed.
///
/// # Safety
/// `rel` a valid RelOptInfo of this FDW's planning.
pub unsafe fn pushed_state<'a>(rel: *mut pg_sys::RelOptInfo) -> Option<&'a PushedRel> {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        if is_scan_rel(rel) || (*rel).fdw_private.is_null() {
            return None;
        }
        Some(&*((*rel).fdw_private as *const PushedRel))
    }
}

/// A relation that can be the input of a pushed join or aggregate.
pub enum Input<'a> {
    Scan(*mut pg_sys::RelOptInfo, &'a RelState),
    Pushed(&'a PushedRel),
}

impl<'a> Input<'a> {
    /// # Safety
    /// `rel` a valid RelOptInfo of this FDW's planning.
    pub unsafe fn of(root: *mut pg_sys::PlannerInfo, rel: *mut pg_sys::RelOptInfo) -> Option<(Input<'a>, Vec<BaseTable>, Vec<Member>)> {
        // SAFETY: the caller upholds this function's contract (# Safety above).
        unsafe {
            if is_scan_rel(rel) {
                if (*rel).fdw_private.is_null() {
                    return None;
                }
                let state = rel_state(rel);
                let rti = (*rel).relid;
                let alias = format!("r{rti}");
                let table = &state.table;
                let from = match &table.options.query {
                    Some(q) => format!("({q}) {alias}"),
                    None => format!("{} {alias}", table.from_clause()),
                };
                let rte = *(*root).simple_rte_array.add(rti as usize);
                let refname = crate::pg::cstr::cstr_owned((*(*rte).eref).aliasname).unwrap_or_default();
                let label = if refname == table.local_name { table.local_name.clone() } else { format!("{} {refname}", table.local_name) };
                let base = BaseTable { rti, relid: table.relid, from, label };
                let member = Member { relid: rti, alias, remote_names: table.remote_names() };
                Some((Input::Scan(rel, state), vec![base], vec![member]))
            } else {
                let p = pushed_state(rel)?;
                Some((Input::Pushed(p), p.tables.clone(), p.info.members.clone()))
            }
        }
    }

    /// Whether conditions must be evaluated locally on this input (then nothing above it ships).
    /// (The methods below read planner state: call them while planning, on the backend thread.)
    pub fn has_local_conds(&self) -> bool {
        match self {
            Input::Scan(_, s) => !s.local_conds.is_empty(),
            Input::Pushed(p) => !p.local_conds.is_empty(),
        }
    }

    /// Conditions that filter this input's rows (a table's WHERE, a join's WHERE part).
    /// # Safety
    /// While planning.
    pub unsafe fn where_conds(&self) -> Vec<*mut pg_sys::Expr> {
        // SAFETY: the caller upholds this function's contract (# Safety above).
        unsafe {
            match self {
                Input::Scan(_, s) => s.remote_conds.iter().map(|(ri, _)| (**ri).clause).collect(),
                Input::Pushed(p) => p.where_conds.clone(),
            }
        }
    }

    /// # Safety
    /// While planning.
    pub unsafe fn opts(&self) -> PushOptions {
        match self {
            Input::Scan(_, s) => {
                let t = &s.table;
                PushOptions {
                    server_name: t.access.server_name.clone(),
                    api_key: t.access.api_key.clone(),
                    fdw_startup_cost: t.access.options.fdw_startup_cost,
                    fdw_tuple_cost: t.access.options.fdw_tuple_cost,
                    use_remote_estimate: t.options.use_remote_estimate,
                    scan_method: t.options.scan_method,
                    copy_threshold: t.options.copy_threshold,
                    fetch_size: t.options.fetch_size,
                }
            }
            Input::Pushed(p) => p.opts.clone(),
        }
    }

    pub fn postgis_ext(&self) -> Option<pg_sys::Oid> {
        match self {
            Input::Scan(_, s) => s.info.postgis_ext,
            Input::Pushed(p) => p.info.postgis_ext,
        }
    }

    /// # Safety
    /// While planning.
    pub unsafe fn first_base(&self) -> *mut pg_sys::RelOptInfo {
        match self {
            Input::Scan(rel, _) => *rel,
            Input::Pushed(p) => p.first_base,
        }
    }

    pub fn remote_cost(&self) -> f64 {
        match self {
            Input::Scan(..) => 0.0,
            Input::Pushed(p) => p.remote_cost,
        }
    }
}

/// Leaves the state in the relation's fdw_private, in the planner's memory.
///
/// # Safety
/// `rel` a valid RelOptInfo.
pub unsafe fn attach(rel: *mut pg_sys::RelOptInfo, state: PushedRel) {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        (*rel).fdw_private = PgMemoryContexts::CurrentMemoryContext.leak_and_drop_on_delete(state).cast();
    }
}

/// The parts of the remote statement of a relation, before they are joined into text.
struct Parts {
    /// The scan's target list (TargetEntry nodes): the statement's select list.
    tlist: *mut pg_sys::List,
    /// Whether the select list holds aggregates (ORDER BY may then name them).
    grouped: bool,
    from: SqlTemplate,
    where_: Vec<SqlTemplate>,
    group_by: Vec<usize>,
    /// An aggregate without GROUP BY items whose select list lost its aggregates (unused
    /// outputs of a subquery become NULLs): `GROUP BY ()` keeps it one row.
    empty_grouping: bool,
    having: Vec<SqlTemplate>,
    order_by: Option<SqlTemplate>,
    limit: Option<SqlTemplate>,
    offset: Option<SqlTemplate>,
}

/// A LIMIT or OFFSET count as SQL; None when its expression does not ship.
unsafe fn count_sql(c: Count, d: &mut Deparser) -> Option<SqlTemplate> {
    // SAFETY: this function's contract: called on the backend thread, inside a transaction.
    unsafe {
        match c {
            Count::Const(n) => Some(SqlTemplate::text(n.to_string())),
            Count::Expr(e) => d.clause(e),
        }
    }
}

/// A join's (or a table's) FROM item.
unsafe fn from_item(root: *mut pg_sys::PlannerInfo, rel: *mut pg_sys::RelOptInfo, d: &mut Deparser) -> Option<SqlTemplate> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        if is_scan_rel(rel) {
            let (_, tables, _) = Input::of(root, rel)?;
            return Some(SqlTemplate::text(tables.first()?.from.clone()));
        }
        let p = pushed_state(rel)?;
        let Shape::Join { outer, inner, jointype, on } = &p.shape else { return None };
        let mut out = SqlTemplate::text("(");
        out.append(&from_item(root, *outer, d)?);
        out.push_str(&format!(" {} ", join_keyword(*jointype)?));
        out.append(&from_item(root, *inner, d)?);
        out.push_str(" ON (");
        if on.is_empty() {
            out.push_str("TRUE");
        }
        for (i, c) in on.iter().enumerate() {
            if i > 0 {
                out.push_str(" AND ");
            }
            out.append(&d.clause((*c).cast())?);
        }
        out.push_str("))");
        Some(out)
    }
}

pub fn join_keyword(jointype: pg_sys::JoinType::Type) -> Option<&'static str> {
    match jointype {
        pg_sys::JoinType::JOIN_INNER => Some("INNER JOIN"),
        pg_sys::JoinType::JOIN_LEFT => Some("LEFT JOIN"),
        pg_sys::JoinType::JOIN_RIGHT => Some("RIGHT JOIN"),
        pg_sys::JoinType::JOIN_FULL => Some("FULL JOIN"),
        _ => None,
    }
}

/// The columns a pushed join delivers: the Vars its target and its local conditions need.
unsafe fn join_tlist(rel: *mut pg_sys::RelOptInfo, p: &PushedRel) -> *mut pg_sys::List {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let flags = pg_sys::PVC_RECURSE_PLACEHOLDERS as i32;
        let mut tlist = pg_sys::add_to_flat_tlist(std::ptr::null_mut(), pg_sys::pull_var_clause((*(*rel).reltarget).exprs.cast(), flags));
        for ri in &p.local_conds {
            tlist = pg_sys::add_to_flat_tlist(tlist, pg_sys::pull_var_clause((**ri).clause.cast(), flags));
        }
        tlist
    }
}

/// Whether a join is a semi- or anti-join (`EXISTS` / `NOT EXISTS` in WHERE).
pub fn is_semi_or_anti(jointype: pg_sys::JoinType::Type) -> bool {
    matches!(jointype, pg_sys::JoinType::JOIN_SEMI | pg_sys::JoinType::JOIN_ANTI)
}

/// FROM and WHERE of a table or join: a table's own conditions, a join's WHERE part, and for a
/// semi-/anti-join the outer side with `[NOT] EXISTS (SELECT NULL FROM inner WHERE on)`.
unsafe fn from_where(
    root: *mut pg_sys::PlannerInfo,
    rel: *mut pg_sys::RelOptInfo,
    d: &mut Deparser,
) -> Option<(SqlTemplate, Vec<SqlTemplate>)> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let (input, _, _) = Input::of(root, rel)?;
        let mut where_ = Vec::new();
        for c in input.where_conds() {
            where_.push(d.clause(c.cast())?);
        }
        if let Some(PushedRel { shape: Shape::Join { outer, inner, jointype, on }, .. }) = pushed_state(rel) {
            if is_semi_or_anti(*jointype) {
                let mut exists = SqlTemplate::text(if *jointype == pg_sys::JoinType::JOIN_ANTI { "NOT EXISTS (" } else { "EXISTS (" });
                exists.push_str("SELECT NULL FROM ");
                exists.append(&from_item(root, *inner, d)?);
                for (i, c) in on.iter().enumerate() {
                    exists.push_str(if i == 0 { " WHERE " } else { " AND " });
                    exists.append(&d.clause((*c).cast())?);
                }
                exists.push_str(")");
                where_.push(exists);
                return Some((from_item(root, *outer, d)?, where_));
            }
        }
        Some((from_item(root, rel, d)?, where_))
    }
}

unsafe fn parts(root: *mut pg_sys::PlannerInfo, rel: *mut pg_sys::RelOptInfo, d: &mut Deparser) -> Option<Parts> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let p = pushed_state(rel)?;
        match &p.shape {
            Shape::Join { .. } => {
                let (from, where_) = from_where(root, rel, d)?;
                Some(Parts {
                    tlist: join_tlist(rel, p),
                    grouped: false,
                    from,
                    where_,
                    group_by: Vec::new(),
                    empty_grouping: false,
                    having: Vec::new(),
                    order_by: None,
                    limit: None,
                    offset: None,
                })
            }
            Shape::Grouped { input, tlist, group_by, having } => {
                let (from, where_) = from_where(root, *input, d)?;
                let mut having_sql = Vec::new();
                d.allow_aggs = true;
                for h in having {
                    having_sql.push(d.clause((*h).cast())?);
                }
                d.allow_aggs = false;
                Some(Parts {
                    tlist: *tlist,
                    grouped: true,
                    from,
                    where_,
                    group_by: group_by.clone(),
                    empty_grouping: group_by.is_empty()
                        && having.is_empty()
                        && !pg_sys::contain_agg_clause((*tlist).cast()),
                    having: having_sql,
                    order_by: None,
                    limit: None,
                    offset: None,
                })
            }
            Shape::Ordered { input, pathkeys } => {
                let mut parts = parts(root, *input, d)?;
                parts.order_by = Some(order_by(*pathkeys, &parts, d)?);
                Some(parts)
            }
            Shape::Final { input, limit, offset } => {
                let mut parts = parts(root, *input, d)?;
                parts.limit = match limit {
                    Some(c) => Some(count_sql(*c, d)?),
                    None => None,
                };
                parts.offset = match offset {
                    None | Some(Count::Const(0)) => None,
                    Some(c) => Some(count_sql(*c, d)?),
                };
                Some(parts)
            }
        }
    }
}

/// ORDER BY for pathkeys, each key an expression of the select list (over an aggregate) or of
/// the joined tables' columns, sorted by a built-in btree operator family.
unsafe fn order_by(pathkeys: *mut pg_sys::List, parts: &Parts, d: &mut Deparser) -> Option<SqlTemplate> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        crate::fdw::deparse::order_by_sql(pathkeys, |em| {
            let e = (*em).em_expr;
            if parts.grouped && pg_sys::tlist_member(e, parts.tlist).is_null() {
                // Over an aggregate only what the select list computes can be sorted on.
                return None;
            }
            d.allow_aggs = parts.grouped;
            let sql = d.clause(e.cast());
            d.allow_aggs = false;
            sql
        })
    }
}

/// The remote statement of a pushed relation and the target list of its columns; None when some
/// part cannot be written (then the relation is not pushed).
///
/// # Safety
/// `rel` a pushed relation of this planning.
pub unsafe fn statement(root: *mut pg_sys::PlannerInfo, rel: *mut pg_sys::RelOptInfo, d: &mut Deparser) -> Option<(*mut pg_sys::List, SqlTemplate)> {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        let parts = parts(root, rel, d)?;
        let mut sql = SqlTemplate::text("SELECT ");
        let entries = PgList::<pg_sys::TargetEntry>::from_pg(parts.tlist);
        if entries.is_empty() {
            sql.push_str("NULL");
        }
        d.allow_aggs = parts.grouped;
        for (i, te) in entries.iter_ptr().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            let expr = (*te).expr;
            if (*expr.cast::<pg_sys::Node>()).type_ == pg_sys::NodeTag::T_Var && (*expr.cast::<pg_sys::Var>()).varattno == 0 {
                // A whole row (an UPDATE/DELETE's old row of its target, or a row-mark copy of another
                // table): its columns in the local order, read back by the row type's input function.
                let member = d.rel.members.iter().find(|m| m.relid == (*expr.cast::<pg_sys::Var>()).varno as u32);
                let Some(member) = member else {
                    d.allow_aggs = false;
                    return None;
                };
                let cols: Vec<String> = member
                    .remote_names
                    .iter()
                    .flatten()
                    .map(|n| format!("{}.{}", member.alias, crate::pg::sql_text::quote_ident(n)))
                    .collect();
                sql.push_str(&format!("ROW({}) AS c{i}", cols.join(", ")));
                continue;
            }
            let e = d.clause(expr.cast());
            let Some(e) = e else {
                d.allow_aggs = false;
                return None;
            };
            sql.append(&e);
            sql.push_str(&format!(" AS c{i}"));
        }
        d.allow_aggs = false;
        sql.push_str(" FROM ");
        sql.append(&parts.from);
        for (i, w) in parts.where_.iter().enumerate() {
            sql.push_str(if i == 0 { " WHERE " } else { " AND " });
            sql.append(w);
        }
        if !parts.group_by.is_empty() {
            let cols: Vec<String> = parts.group_by.iter().map(|c| c.to_string()).collect();
            sql.push_str(&format!(" GROUP BY {}", cols.join(", ")));
        } else if parts.empty_grouping {
            sql.push_str(" GROUP BY ()");
        }
        for (i, h) in parts.having.iter().enumerate() {
            sql.push_str(if i == 0 { " HAVING " } else { " AND " });
            sql.append(h);
        }
        if let Some(o) = &parts.order_by {
            sql.push_str(" ORDER BY ");
            sql.append(o);
        }
        if let Some(l) = &parts.limit {
            sql.push_str(" LIMIT ");
            sql.append(l);
        }
        if let Some(o) = &parts.offset {
            sql.push_str(" OFFSET ");
            sql.append(o);
        }
        Some((parts.tlist, sql))
    }
}

/// Whether the statement of a relation can be written (checked before a path is offered).
///
/// # Safety
/// `rel` a pushed relation of this planning.
pub unsafe fn can_write(root: *mut pg_sys::PlannerInfo, rel: *mut pg_sys::RelOptInfo) -> bool {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        let Some(p) = pushed_state(rel) else { return false };
        let mut d = Deparser::new(&p.info);
        statement(root, rel, &mut d).is_some()
    }
}

/// CARTO's planner's row estimate of a pushed relation's statement, for use_remote_estimate;
/// None when it cannot be asked (parameters, an error).
///
/// # Safety
/// `rel` a pushed relation of this planning.
pub unsafe fn remote_estimate(root: *mut pg_sys::PlannerInfo, rel: *mut pg_sys::RelOptInfo) -> Option<f64> {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        let p = pushed_state(rel)?;
        if !p.opts.use_remote_estimate {
            return None;
        }
        let mut d = Deparser::new(&p.info);
        let (_, sql) = statement(root, rel, &mut d)?;
        if !d.params.is_empty() {
            return None;
        }
        let base = rel_state(p.first_base);
        let client = client_for(&base.table.access).ok()?;
        let sql = format!("EXPLAIN (FORMAT JSON) {}", sql.render(None));
        let resp = block_on(client.query_readonly(&sql)).ok()?.ok()?;
        Some(crate::fdw::remote_catalog::explain_plan_rows(&resp)?.max(1.0))
    }
}

/// The ForeignScan of a pushed join or aggregate.
///
/// # Safety
/// Called from GetForeignPlan for a relation whose path a pushed state made.
pub unsafe fn plan(
    root: *mut pg_sys::PlannerInfo,
    rel: *mut pg_sys::RelOptInfo,
    best_path: *mut pg_sys::ForeignPath,
    tlist: *mut pg_sys::List,
    outer_plan: *mut pg_sys::Plan,
) -> FdwResult<*mut pg_sys::ForeignScan> {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        let p = pushed_state(rel).ok_or_else(|| FdwError::internal("pushed relation without its plan state"))?;
        let mut d = Deparser::new(&p.info);
        let (scan_tlist, sql) =
            statement(root, rel, &mut d).ok_or_else(|| FdwError::internal("pushed statement could not be written"))?;
        let ncols = PgList::<pg_sys::TargetEntry>::from_pg(scan_tlist).len();

        let mut local_exprs = PgList::<pg_sys::Expr>::new();
        for ri in &p.local_conds {
            local_exprs.push((**ri).clause);
        }

        let has_aggregate = upper_has_aggregate(rel);
        let rows = (*best_path).path.rows;
        let transport = if has_aggregate || !d.params.is_empty() {
            Transport::Query
        } else {
            match p.opts.scan_method {
                ScanMethod::Copy => Transport::Copy,
                ScanMethod::Query => Transport::Query,
                ScanMethod::Auto if rows <= p.opts.copy_threshold => Transport::Query,
                ScanMethod::Auto => Transport::Copy,
            }
        };
        let plan = ScanPlan {
            relid: p.tables.first().map(|t| u32::from(t.relid)).unwrap_or(0),
            table_label: p.tables.iter().map(|t| t.label.clone()).collect::<Vec<_>>().join(", "),
            from: String::new(),
            columns: (0..ncols).map(|i| ((i + 1) as i16, format!("c{i}"))).collect(),
            where_: None,
            order_by: None,
            limit: None,
            rowid: None,
            transport,
            fetch_size: p.opts.fetch_size,
            // A pushed join or aggregate reads COPY text (or /sql): its columns are expressions over
            // several tables, not columns whose CARTO types transport.rs looked up, so the rule that
            // lets a column go binary (the remote type is the local one) cannot be checked for them.
            binary_casts: None,
            binary_read_as: Vec::new(),
            switch_after_rows: None,
            subquery: Some(sql),
            relations: Some(p.relations.clone()),
            member_relids: p.tables.iter().map(|t| u32::from(t.relid)).collect(),
            user_rti: p.tables.first().map(|t| t.rti).unwrap_or(0),
            member_rtis: p.tables.iter().map(|t| t.rti).collect(),
        };
        let private = scan_plan_to_private(&plan)?;
        let mut fdw_exprs = PgList::<pg_sys::Expr>::new();
        for e in &d.params {
            fdw_exprs.push(*e);
        }
        Ok(pg_sys::make_foreignscan(
            tlist,
            local_exprs.into_pg(),
            0,
            fdw_exprs.into_pg(),
            private,
            scan_tlist,
            std::ptr::null_mut(),
            outer_plan,
        ))
    }
}

/// Whether the pushed statement aggregates (its result is small: read through /sql).
unsafe fn upper_has_aggregate(rel: *mut pg_sys::RelOptInfo) -> bool {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        match pushed_state(rel).map(|p| &p.shape) {
            Some(Shape::Grouped { .. }) => true,
            Some(Shape::Ordered { input, .. }) | Some(Shape::Final { input, .. }) => upper_has_aggregate(*input),
            _ => false,
        }
    }
}

/// The statement of an UPDATE ... FROM / DELETE ... USING whose scan is a pushed inner join of the
/// target with other tables: `UPDATE t r1 SET "c" = … FROM u r2 WHERE …` / `DELETE FROM t r1 USING u
/// r2 WHERE …`, with every join and table condition in WHERE. None when it cannot be written (an
/// outer or semi join, a condition evaluated locally, a SET expression that does not ship); the
/// statement then runs row by row over the pushed join.
///
/// `params` holds the scan's execution-time parameters; new ones are appended.
///
/// # Safety
/// Called from PlanDirectModify with the ForeignScan of the joined relation.
pub unsafe fn direct_modify_sql(
    root: *mut pg_sys::PlannerInfo,
    fscan: *mut pg_sys::ForeignScan,
    rti: pg_sys::Index,
    params: &mut Vec<*mut pg_sys::Expr>,
) -> Option<(SqlTemplate, Vec<u32>)> {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        let joinrel = pg_sys::find_join_rel(root, (*fscan).fs_relids);
        if joinrel.is_null() {
            return None;
        }
        let p = pushed_state(joinrel)?;
        if !p.local_conds.is_empty() {
            return None;
        }
        let mut conds: Vec<*mut pg_sys::Expr> = Vec::new();
        collect_inner_conds(joinrel, &mut conds)?;
        let target = p.tables.iter().find(|t| t.rti == rti)?;
        let target_rel = *(*root).simple_rel_array.add(rti as usize);
        if target_rel.is_null() || (*target_rel).fdw_private.is_null() {
            return None;
        }
        let rs = rel_state(target_rel);
        // A `query` table anywhere in the statement: its SQL must run read-only, and a write cannot be;
        // the statement then runs row by row over the pushed join, which reads it read-only.
        let any_query_table = p.tables.iter().any(|t| {
            let rel = *(*root).simple_rel_array.add(t.rti as usize);
            rel.is_null() || (*rel).fdw_private.is_null() || rel_state(rel).table.options.query.is_some()
        });
        if any_query_table {
            return None;
        }
        let mut d = Deparser::new(&p.info);
        d.params = std::mem::take(params);
        let others: Vec<&str> = p.tables.iter().filter(|t| t.rti != rti).map(|t| t.from.as_str()).collect();
        let op = (*(*root).parse).commandType;
        let mut sql = SqlTemplate::default();
        let written = (|| {
            if op == pg_sys::CmdType::CMD_UPDATE {
                sql = crate::fdw::deparse::update_set_sql(root, rti, &rs.table, &target.from, &mut d)?;
                if !others.is_empty() {
                    sql.push_str(&format!(" FROM {}", others.join(", ")));
                }
            } else {
                sql.push_str(&format!("DELETE FROM {}", target.from));
                if !others.is_empty() {
                    sql.push_str(&format!(" USING {}", others.join(", ")));
                }
            }
            for (i, c) in conds.iter().enumerate() {
                sql.push_str(if i == 0 { " WHERE " } else { " AND " });
                sql.append(&d.clause((*c).cast())?);
            }
            Some(())
        })();
        *params = d.params;
        written?;
        Some((sql, p.tables.iter().map(|t| u32::from(t.relid)).collect()))
    }
}

/// Every condition of a tree of inner joins, or None for another join kind. (An inner join's ON
/// holds its tables' own conditions too: join.rs moved them there.)
unsafe fn collect_inner_conds(rel: *mut pg_sys::RelOptInfo, out: &mut Vec<*mut pg_sys::Expr>) -> Option<()> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        if is_scan_rel(rel) {
            return Some(());
        }
        let p = pushed_state(rel)?;
        let Shape::Join { outer, inner, jointype, on } = &p.shape else { return None };
        if *jointype != pg_sys::JoinType::JOIN_INNER || !p.local_conds.is_empty() {
            return None;
        }
        out.extend(p.where_conds.iter().copied());
        out.extend(on.iter().copied());
        collect_inner_conds(*outer, out)?;
        collect_inner_conds(*inner, out)
    }
}
