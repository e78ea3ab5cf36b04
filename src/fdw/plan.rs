//! Planning a scan: size estimates, paths (plain, sorted, parameterized) and the plan node.
//!
//! Plan-time work ends in a [`ScanPlan`], serialized into the ForeignScan's fdw_private, which the
//! executor (scan.rs) reads back; the expressions of execution-time parameters go into fdw_exprs.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use pgrx::pg_sys;
use pgrx::{PgList, PgMemoryContexts};
use serde::{Deserialize, Serialize};

use crate::fdw::connection::client_for;
use crate::fdw::deparse::{Deparser, RelInfo, SqlTemplate};
use crate::fdw::options::ScanMethod;
use crate::fdw::table::TableDef;
use crate::pg::error::{FdwError, FdwResult, OrReport};
use crate::pg::runtime::block_on;

/// Rows assumed for a table of unknown size (no ANALYZE, no remote statistics).
const DEFAULT_ROWS: f64 = 1000.0;
/// How much more a remotely sorted scan costs than an unsorted one (as postgres_fdw).
const SORT_MULTIPLIER: f64 = 1.2;

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Transport {
    /// `/copyto`: one streaming request.
    Copy,
    /// `/sql`: every column cast to text, paged by keyset on the rowid column.
    Query,
}

impl Transport {
    pub fn endpoint(self) -> &'static str {
        match self {
            Transport::Copy => "copyto",
            Transport::Query => "sql",
        }
    }
}

/// One request of a keyset-paged `/sql` read. Keys are compared as the rowid's text form.
///
/// Paging stays exact whatever the rowid column holds: a page never ends inside a group of equal
/// keys (the trailing group is re-read from `>= K`), a group larger than a page is read in one
/// request, and rows with a NULL rowid come last (NULLS LAST): when they do not fit in the last
/// page they are read in one request of their own.
#[derive(Clone, Debug, PartialEq)]
pub enum Page {
    First,
    After(String),
    From(String),
    Group(String),
    Nulls,
}

/// Everything the executor needs to run the scan.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScanPlan {
    pub relid: u32,
    pub table_label: String,
    pub from: String,
    /// Retrieved columns: (local attnum, remote name).
    pub columns: Vec<(i16, String)>,
    pub where_: Option<SqlTemplate>,
    pub order_by: Option<String>,
    pub limit: Option<i64>,
    pub rowid: Option<String>,
    pub transport: Transport,
    pub fetch_size: u64,
    /// COPY binary (transport.rs): the remote casts of the columns, parallel to `columns`; None for COPY text.
    #[serde(default)]
    pub binary_casts: Option<Vec<String>>,
    /// A pushed join or aggregate (pushed.rs): the whole remote SELECT, whose columns are named
    /// `c0`, `c1`, … as the columns above; read as `FROM (subquery) s`.
    #[serde(default)]
    pub subquery: Option<SqlTemplate>,
    /// What a pushed join or aggregate covers, for EXPLAIN (`Aggregate on (ft)`).
    #[serde(default)]
    pub relations: Option<String>,
    /// Foreign tables read by a pushed join or aggregate (their pending inserts are flushed first).
    #[serde(default)]
    pub member_relids: Vec<u32>,
    /// Range-table index whose checkAsUser picks the user mapping of a pushed join or aggregate.
    #[serde(default)]
    pub user_rti: u32,
    /// The range-table index of each of `member_relids`: at execution every member is loaded with
    /// its own user, so each keeps its guarantees (a `query` table's owner rule, read-only `/sql`).
    #[serde(default)]
    pub member_rtis: Vec<u32>,
}

impl ScanPlan {
    fn select_list(&self, cast_text: bool) -> String {
        let names = self.columns.iter().map(|(_, name)| name.as_str());
        if cast_text {
            return crate::fdw::deparse::text_select_list(names);
        }
        let list: Vec<String> = names.map(crate::fdw::deparse::quote_ident).collect();
        if list.is_empty() {
            "NULL".into()
        } else {
            list.join(", ")
        }
    }

    /// What follows FROM: the table, or the pushed statement as a subquery.
    fn from_sql(&self, params: Option<&[String]>) -> String {
        match &self.subquery {
            Some(q) => format!("({}) s", q.render(params)),
            None => self.from.clone(),
        }
    }

    fn tail(&self, params: Option<&[String]>, extra_cond: Option<&str>, order: Option<&str>, limit: Option<i64>) -> String {
        let mut s = String::new();
        let mut conds = Vec::new();
        if let Some(w) = &self.where_ {
            conds.push(w.render(params));
        }
        if let Some(c) = extra_cond {
            conds.push(c.to_string());
        }
        if !conds.is_empty() {
            s.push_str(" WHERE ");
            s.push_str(&conds.join(" AND "));
        }
        if let Some(o) = order {
            s.push_str(" ORDER BY ");
            s.push_str(o);
        }
        if let Some(l) = limit {
            s.push_str(&format!(" LIMIT {l}"));
        }
        s
    }

    /// The statement of the `/copyto` transport.
    pub fn copy_sql(&self, params: Option<&[String]>) -> String {
        format!(
            "COPY (SELECT {} FROM {}{}) TO STDOUT",
            self.select_list(false),
            self.from_sql(params),
            self.tail(params, None, self.order_by.as_deref(), self.limit)
        )
    }

    /// The statement of the `/copyto` transport in COPY binary: each column cast to the local type (`casts`).
    pub fn copy_sql_binary(&self, params: Option<&[String]>, casts: &[String]) -> String {
        let list: Vec<String> = self
            .columns
            .iter()
            .zip(casts)
            .map(|((_, name), cast)| format!("{}::{cast}", crate::fdw::deparse::quote_ident(name)))
            .collect();
        format!(
            "COPY (SELECT {} FROM {}{}) TO STDOUT (FORMAT binary)",
            list.join(", "),
            self.from_sql(params),
            self.tail(params, None, self.order_by.as_deref(), self.limit)
        )
    }

    /// Whether the `/sql` transport pages by keyset (else it reads the result in one request).
    pub fn pages_by_keyset(&self) -> bool {
        self.rowid.is_some() && self.order_by.is_none() && self.limit.is_none()
    }

    /// The statement of the `/sql` transport for one page.
    pub fn query_sql(&self, params: Option<&[String]>, page: &Page) -> String {
        if !self.pages_by_keyset() {
            return format!(
                "SELECT {} FROM {}{}",
                self.select_list(true),
                self.from_sql(params),
                self.tail(params, None, self.order_by.as_deref(), self.limit)
            );
        }
        let rowid = crate::fdw::deparse::quote_ident(self.rowid.as_deref().unwrap_or("cartodb_id"));
        let lit = crate::fdw::deparse::quote_literal;
        // Rows with a NULL rowid come after every key (NULLS LAST) on the ordinary pages.
        let (cond, limit) = match page {
            Page::First => (None, Some(self.fetch_size as i64)),
            Page::After(k) => (Some(format!("({rowid} > {} OR {rowid} IS NULL)", lit(k))), Some(self.fetch_size as i64)),
            Page::From(k) => (Some(format!("({rowid} >= {} OR {rowid} IS NULL)", lit(k))), Some(self.fetch_size as i64)),
            Page::Group(k) => (Some(format!("{rowid} = {}", lit(k))), None),
            Page::Nulls => (Some(format!("{rowid} IS NULL")), None),
        };
        let order_by = format!("{rowid} ASC NULLS LAST");
        let order = if limit.is_some() { Some(order_by.as_str()) } else { None };
        format!(
            "SELECT {}, {rowid}::text AS k FROM {}{}",
            self.select_list(true),
            self.from,
            self.tail(params, cond.as_deref(), order, limit)
        )
    }

    /// The statement EXPLAIN shows: the one the chosen transport sends first.
    pub fn explain_sql(&self) -> String {
        match self.transport {
            Transport::Copy => match &self.binary_casts {
                Some(casts) => self.copy_sql_binary(None, casts),
                None => self.copy_sql(None),
            },
            Transport::Query => self.query_sql(None, &Page::First),
        }
    }
}

/// Plan-time state of one foreign relation (baserel->fdw_private).
pub struct RelState {
    pub table: TableDef,
    pub info: RelInfo,
    /// Restriction clauses shipped to CARTO, with their SQL.
    pub remote_conds: Vec<(*mut pg_sys::RestrictInfo, SqlTemplate)>,
    pub local_conds: Vec<*mut pg_sys::RestrictInfo>,
}

thread_local! {
    /// Remote row counts by (server, relation), so planning does not ask CARTO every time.
    static REMOTE_ROWS: RefCell<HashMap<String, (Instant, f64)>> = RefCell::new(HashMap::new());
}

const REMOTE_ROWS_TTL: Duration = Duration::from_secs(300);

pub(crate) unsafe fn rel_state<'a>(baserel: *mut pg_sys::RelOptInfo) -> &'a mut RelState {
    &mut *((*baserel).fdw_private as *mut RelState)
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn get_foreign_rel_size(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    foreigntableid: pg_sys::Oid,
) {
    rel_size(root, baserel, foreigntableid).or_report()
}

unsafe fn user_of(baserel: *mut pg_sys::RelOptInfo) -> pg_sys::Oid {
    if (*baserel).userid != pg_sys::InvalidOid {
        (*baserel).userid
    } else {
        pg_sys::GetUserId()
    }
}

unsafe fn rel_size(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    relid: pg_sys::Oid,
) -> FdwResult<()> {
    let table = TableDef::load(relid, user_of(baserel))?;
    let postgis_ext = if table.access.options.has_postgis() {
        let ext = pg_sys::get_extension_oid(c"postgis".as_ptr(), true);
        (ext != pg_sys::InvalidOid).then_some(ext)
    } else {
        None
    };
    let info = RelInfo { relid: (*baserel).relid, remote_names: table.remote_names(), postgis_ext, members: Vec::new() };

    let mut remote_conds = Vec::new();
    let mut local_conds = Vec::new();
    for ri in PgList::<pg_sys::RestrictInfo>::from_pg((*baserel).baserestrictinfo).iter_ptr() {
        let mut d = Deparser::new(&info);
        match d.clause((*ri).clause.cast()) {
            // Params (a prepared statement's $n, a correlated subquery's outer values) are known
            // when the scan starts: shipped as literals then.
            Some(sql) => remote_conds.push((ri, sql)),
            _ => local_conds.push(ri),
        }
    }

    let state = RelState { table, info, remote_conds, local_conds };
    let all = state.all_conds();
    let selectivity = clause_selectivity(root, baserel, &all);

    if state.table.options.use_remote_estimate {
        // CARTO's planner estimated the filtered result of the shipped clauses; only the local
        // clauses' selectivity is applied on top.
        let remote_rows = remote_estimate(&state)?;
        let local: Vec<*mut pg_sys::RestrictInfo> = state.local_conds.clone();
        let local_sel = clause_selectivity(root, baserel, &local);
        (*baserel).tuples = (*baserel).tuples.max(remote_rows);
        (*baserel).rows = pg_sys::clamp_row_est(remote_rows * local_sel);
    } else {
        let tuples = if (*baserel).tuples > 0.0 {
            // ANALYZE on the foreign table sampled it.
            (*baserel).tuples
        } else {
            remote_row_count(&state).unwrap_or(DEFAULT_ROWS)
        };
        (*baserel).tuples = tuples;
        (*baserel).rows = pg_sys::clamp_row_est(tuples * selectivity);
    }
    (*baserel).fdw_private = PgMemoryContexts::CurrentMemoryContext.leak_and_drop_on_delete(state).cast();
    Ok(())
}

impl RelState {
    /// Every restriction clause of the relation, shipped or not.
    fn all_conds(&self) -> Vec<*mut pg_sys::RestrictInfo> {
        self.remote_conds.iter().map(|(r, _)| *r).chain(self.local_conds.iter().copied()).collect()
    }
}

unsafe fn clause_selectivity(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    clauses: &[*mut pg_sys::RestrictInfo],
) -> f64 {
    let mut list = PgList::<pg_sys::RestrictInfo>::new();
    for &c in clauses {
        list.push(c);
    }
    pg_sys::clauselist_selectivity(
        root,
        list.into_pg(),
        (*baserel).relid as i32,
        pg_sys::JoinType::JOIN_INNER,
        std::ptr::null_mut(),
    )
}

/// CARTO's own idea of the table's size (pg_class.reltuples), cached for a few minutes.
fn remote_row_count(state: &RelState) -> Option<f64> {
    if state.table.options.query.is_some() {
        return None;
    }
    let key = format!("{}|{}", state.table.access.server_name, state.table.from_clause());
    let cached = REMOTE_ROWS.with(|m| {
        m.borrow().get(&key).filter(|(at, _)| at.elapsed() < REMOTE_ROWS_TTL).map(|(_, n)| *n)
    });
    if cached.is_some() {
        return cached;
    }
    let client = client_for(&state.table.access).ok()?;
    let sql = format!(
        "SELECT greatest(c.reltuples, 0)::float8 AS n, c.relpages::float8 AS p FROM pg_class c WHERE c.oid = to_regclass({})",
        crate::fdw::deparse::quote_literal(&state.table.from_clause())
    );
    let resp = block_on(client.query_readonly(&sql)).ok()?.ok()?;
    let row = resp.rows.first()?;
    let n = row.get("n").and_then(|v| v.as_f64()).unwrap_or(0.0);
    let pages = row.get("p").and_then(|v| v.as_f64()).unwrap_or(0.0);
    // A table never analyzed on CARTO's side says 0 rows; guess from its pages then.
    let rows = if n > 0.0 { n } else if pages > 0.0 { pages * 50.0 } else { DEFAULT_ROWS };
    REMOTE_ROWS.with(|m| m.borrow_mut().insert(key, (Instant::now(), rows)));
    Some(rows)
}

/// Rows CARTO's planner expects for the scan (use_remote_estimate), via EXPLAIN through /sql.
unsafe fn remote_estimate(state: &RelState) -> FdwResult<f64> {
    let client = client_for(&state.table.access)?;
    let mut where_ = SqlTemplate::default();
    for (i, (_, sql)) in state.remote_conds.iter().enumerate() {
        if i > 0 {
            where_.push_str(" AND ");
        }
        where_.append(sql);
    }
    let sql = format!(
        "EXPLAIN (FORMAT JSON) SELECT * FROM {}{}",
        state.table.from_clause(),
        if where_.is_empty() { String::new() } else { format!(" WHERE {}", where_.render(None)) }
    );
    let resp = block_on(client.query_readonly(&state.table.read_sql(sql)))?
        .map_err(|e| FdwError::remote(e, format!("estimating foreign table \"{}\"", state.table.local_name)))?;
    Ok(explain_plan_rows(&resp).unwrap_or(DEFAULT_ROWS).max(1.0))
}

/// CARTO's row estimate from the answer to `EXPLAIN (FORMAT JSON) …` through `/sql` (the plan arrives as a
/// JSON value or as its text, depending on the server).
pub(crate) fn explain_plan_rows(resp: &carto_client::QueryResponse) -> Option<f64> {
    resp.rows
        .first()
        .and_then(|r| r.values().next().cloned())
        .and_then(|v| match v {
            serde_json::Value::String(s) => serde_json::from_str::<serde_json::Value>(&s).ok(),
            other => Some(other),
        })
        .and_then(|v| v.get(0)?.get("Plan")?.get("Plan Rows")?.as_f64())
}

/// Adds a ForeignPath to the relation.
#[allow(clippy::too_many_arguments)]
unsafe fn add_foreign_path(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    rows: f64,
    startup: f64,
    total: f64,
    pathkeys: *mut pg_sys::List,
    required_outer: pg_sys::Relids,
) {
    let path = pg_sys::create_foreignscan_path(
        root,
        baserel,
        std::ptr::null_mut(),
        rows,
        startup,
        total,
        pathkeys,
        required_outer,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    );
    pg_sys::add_path(baserel, path.cast());
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn get_foreign_paths(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    _foreigntableid: pg_sys::Oid,
) {
    let state = rel_state(baserel);
    let opts = &state.table.access.options;
    let rows = (*baserel).rows;
    let startup = opts.fdw_startup_cost;
    let per_row = opts.fdw_tuple_cost + pg_sys::cpu_tuple_cost;
    let total = startup + rows * per_row;
    add_foreign_path(root, baserel, rows, startup, total, std::ptr::null_mut(), std::ptr::null_mut());

    // A path sorted by CARTO for the query's ORDER BY, when every sort key can be shipped.
    let wanted = (*root).query_pathkeys;
    if !wanted.is_null() && deparse_pathkeys(state, wanted).is_some() {
        add_foreign_path(root, baserel, rows, startup, total * SORT_MULTIPLIER, wanted, std::ptr::null_mut());
    }

    add_parameterized_paths(root, baserel, state, startup, per_row);
}

/// Paths whose join clauses are evaluated by CARTO with the outer row's values, so a join with
/// a few local rows reads only the matching remote rows (a nested loop over /sql lookups).
unsafe fn add_parameterized_paths(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    state: &RelState,
    startup: f64,
    per_row: f64,
) {
    let mut candidates: Vec<*mut pg_sys::RestrictInfo> = Vec::new();
    for ri in PgList::<pg_sys::RestrictInfo>::from_pg((*baserel).joininfo).iter_ptr() {
        if pg_sys::join_clause_is_movable_to(ri, baserel) {
            candidates.push(ri);
        }
    }
    let ec_clauses = pg_sys::generate_implied_equalities_for_column(
        root,
        baserel,
        Some(ec_member_is_our_column),
        std::ptr::null_mut(),
        (*baserel).lateral_referencers,
    );
    for ri in PgList::<pg_sys::RestrictInfo>::from_pg(ec_clauses).iter_ptr() {
        if pg_sys::join_clause_is_movable_to(ri, baserel) {
            candidates.push(ri);
        }
    }

    let mut seen_outer: Vec<pg_sys::Relids> = Vec::new();
    for ri in candidates {
        let mut d = Deparser::new(&state.info);
        d.allow_outer_params = true;
        if d.clause((*ri).clause.cast()).is_none() {
            continue;
        }
        let required_outer = pg_sys::bms_difference((*ri).clause_relids, (*baserel).relids);
        if pg_sys::bms_is_empty(required_outer)
            || seen_outer.iter().any(|&r| pg_sys::bms_equal(r, required_outer))
        {
            continue;
        }
        seen_outer.push(required_outer);
        let ppi = pg_sys::get_baserel_parampathinfo(root, baserel, required_outer);
        let rows = (*ppi).ppi_rows;
        add_foreign_path(root, baserel, rows, startup, startup + rows * per_row, std::ptr::null_mut(), required_outer);
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn ec_member_is_our_column(
    _root: *mut pg_sys::PlannerInfo,
    rel: *mut pg_sys::RelOptInfo,
    _ec: *mut pg_sys::EquivalenceClass,
    em: *mut pg_sys::EquivalenceMember,
    _arg: *mut std::ffi::c_void,
) -> bool {
    let e = (*em).em_expr;
    if e.is_null() || (*e.cast::<pg_sys::Node>()).type_ != pg_sys::NodeTag::T_Var {
        return false;
    }
    let v: *mut pg_sys::Var = e.cast();
    (*v).varno as u32 == (*rel).relid && (*v).varattno > 0 && (*v).varlevelsup == 0
}

/// ORDER BY text for pathkeys, when every key is an expression of this relation we can ship
/// (columns, or expressions of them without parameters),
/// sorted by its type's default btree order.
unsafe fn deparse_pathkeys(state: &RelState, pathkeys: *mut pg_sys::List) -> Option<String> {
    let relid = pg_sys::bms_make_singleton(state.info.relid as i32);
    let sql = crate::fdw::deparse::order_by_sql(pathkeys, |em| {
        // A column or an expression over this relation's columns alone (`lower(t)`,
        // `the_geom <-> point`), shippable like a WHERE clause.
        if !pg_sys::bms_equal((*em).em_relids, relid) {
            return None;
        }
        let mut d = Deparser::new(&state.info);
        d.clause((*em).em_expr.cast()).filter(|_| d.params.is_empty())
    })?;
    (!sql.is_empty()).then(|| sql.render(None))
}

/// The LIMIT CARTO can apply: only for a query over this one relation with nothing evaluated
/// locally between the scan and the LIMIT, and only when the scan delivers the query's order.
unsafe fn pushable_limit(
    root: *mut pg_sys::PlannerInfo,
    has_local_conds: bool,
    sorted_as_query: bool,
    parameterized: bool,
) -> Option<i64> {
    let q = (*root).parse;
    if has_local_conds || parameterized || q.is_null() {
        return None;
    }
    let q = &*q;
    if q.limitCount.is_null()
        || q.limitOption != pg_sys::LimitOption::LIMIT_OPTION_COUNT
        || !q.groupClause.is_null()
        || !q.groupingSets.is_null()
        || q.hasAggs
        || q.hasWindowFuncs
        || q.hasTargetSRFs
        || !q.distinctClause.is_null()
        || !q.setOperations.is_null()
        || !q.rowMarks.is_null()
        || !q.havingQual.is_null()
        || pg_sys::bms_membership((*root).all_baserels) != pg_sys::BMS_Membership::BMS_SINGLETON
    {
        return None;
    }
    if !q.sortClause.is_null() && !sorted_as_query {
        return None;
    }
    let count = const_int(q.limitCount)?;
    let offset = if q.limitOffset.is_null() { 0 } else { const_int(q.limitOffset)? };
    count.checked_add(offset)
}

pub(crate) unsafe fn const_int(node: *mut pg_sys::Node) -> Option<i64> {
    if (*node).type_ != pg_sys::NodeTag::T_Const {
        return None;
    }
    let c: *mut pg_sys::Const = node.cast();
    if (*c).constisnull || (*c).consttype != pg_sys::INT8OID {
        return None;
    }
    Some((*c).constvalue.value() as i64).filter(|v| *v >= 0)
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn get_foreign_plan(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    _foreigntableid: pg_sys::Oid,
    best_path: *mut pg_sys::ForeignPath,
    tlist: *mut pg_sys::List,
    scan_clauses: *mut pg_sys::List,
    outer_plan: *mut pg_sys::Plan,
) -> *mut pg_sys::ForeignScan {
    if !crate::fdw::pushed::is_scan_rel(baserel) {
        // A join or an aggregate computed by CARTO (scanrelid 0).
        return crate::fdw::pushed::plan(root, baserel, best_path, tlist, outer_plan).or_report();
    }
    let state = rel_state(baserel);
    let mut d = Deparser::new(&state.info);
    d.allow_outer_params = true;
    let mut where_parts: Vec<SqlTemplate> = Vec::new();
    let mut local_exprs = PgList::<pg_sys::Expr>::new();
    let mut local_ris: Vec<*mut pg_sys::RestrictInfo> = Vec::new();
    for ri in PgList::<pg_sys::RestrictInfo>::from_pg(scan_clauses).iter_ptr() {
        if (*ri).pseudoconstant {
            continue;
        }
        if state.local_conds.contains(&ri) {
            local_exprs.push((*ri).clause);
            local_ris.push(ri);
            continue;
        }
        match d.clause((*ri).clause.cast()) {
            Some(sql) => where_parts.push(sql),
            None => {
                local_exprs.push((*ri).clause);
                local_ris.push(ri);
            }
        }
    }
    let mut where_ = SqlTemplate::default();
    for (i, w) in where_parts.iter().enumerate() {
        if i > 0 {
            where_.push_str(" AND ");
        }
        where_.append(w);
    }

    // Columns the query needs: the rel's target list and what local quals read.
    let mut attrs: *mut pg_sys::Bitmapset = std::ptr::null_mut();
    pg_sys::pull_varattnos((*(*baserel).reltarget).exprs.cast(), (*baserel).relid, &mut attrs);
    for ri in &local_ris {
        pg_sys::pull_varattnos((**ri).clause.cast(), (*baserel).relid, &mut attrs);
    }
    let offset = pg_sys::FirstLowInvalidHeapAttributeNumber;
    let whole_row = pg_sys::bms_is_member(-offset, attrs);
    let mut columns = Vec::new();
    for c in state.table.columns.iter().flatten() {
        if whole_row || pg_sys::bms_is_member(c.attnum as i32 - offset, attrs) {
            columns.push((c.attnum, c.remote_name.clone()));
        }
    }

    let pathkeys = (*best_path).path.pathkeys;
    let order_by = if pathkeys.is_null() { None } else { deparse_pathkeys(state, pathkeys) };
    let sorted_as_query = order_by.is_some()
        && pg_sys::pathkeys_contained_in((*root).sort_pathkeys, pathkeys);
    let parameterized = !(*best_path).path.param_info.is_null();
    let limit = pushable_limit(root, !local_ris.is_empty(), sorted_as_query, parameterized);

    let opts = &state.table.options;
    let expected_rows = match limit {
        Some(l) => ((*best_path).path.rows).min(l as f64),
        None => (*best_path).path.rows,
    };
    let transport = match opts.scan_method {
        ScanMethod::Copy => Transport::Copy,
        ScanMethod::Query => Transport::Query,
        ScanMethod::Auto => {
            if parameterized || !d.params.is_empty() || expected_rows <= opts.copy_threshold {
                Transport::Query
            } else {
                Transport::Copy
            }
        }
    };

    let binary_casts = match transport {
        Transport::Copy => crate::fdw::transport::read_casts(&state.table, &columns).or_report(),
        Transport::Query => None,
    };
    let plan = ScanPlan {
        relid: u32::from(state.table.relid),
        table_label: state.table.local_name.clone(),
        from: state.table.from_clause(),
        columns,
        where_: if where_.is_empty() { None } else { Some(where_) },
        order_by,
        limit,
        rowid: state.table.rowid().map(str::to_string),
        binary_casts,
        transport,
        fetch_size: opts.fetch_size,
        subquery: None,
        relations: None,
        member_relids: Vec::new(),
        user_rti: 0,
        member_rtis: Vec::new(),
    };
    let json = serde_json::to_string(&plan).unwrap_or_default();
    let mut private = PgList::<pg_sys::Node>::new();
    let cjson = std::ffi::CString::new(json).unwrap_or_default();
    private.push(pg_sys::makeString(pg_sys::pstrdup(cjson.as_ptr())).cast());

    let mut fdw_exprs = PgList::<pg_sys::Expr>::new();
    for p in &d.params {
        fdw_exprs.push(*p);
    }

    pg_sys::make_foreignscan(
        tlist,
        local_exprs.into_pg(),
        (*baserel).relid,
        fdw_exprs.into_pg(),
        private.into_pg(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        outer_plan,
    )
}

/// Reads the ScanPlan back from a ForeignScan's fdw_private.
///
/// # Safety
/// `private` must be the list get_foreign_plan built.
pub unsafe fn scan_plan_from_private(private: *mut pg_sys::List) -> FdwResult<ScanPlan> {
    let list = PgList::<pg_sys::Node>::from_pg(private);
    let node = list.get_ptr(0).ok_or_else(|| FdwError::internal("foreign scan without a plan"))?;
    let s = crate::fdw::deparse::cstr_owned((*node.cast::<pg_sys::String>()).sval as *const _)
        .ok_or_else(|| FdwError::internal("foreign scan without a plan"))?;
    serde_json::from_str(&s).map_err(|e| FdwError::internal(format!("unreadable scan plan: {e}")))
}
