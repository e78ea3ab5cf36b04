//! Planning a scan: size estimates, paths (plain, sorted, parameterized) and the plan node.
//!
//! Plan-time work ends in a [`ScanPlan`], serialized into the ForeignScan's fdw_private, which the
//! executor (scan.rs) reads back; the expressions of execution-time parameters go into fdw_exprs.

use pgrx::pg_sys;
use pgrx::{PgList, PgMemoryContexts};

use crate::fdw::connection::client_for;
use crate::fdw::deparse::{Deparser, RelInfo, SqlTemplate};
use crate::fdw::options::{ScanMethod, TableOptions};
use crate::fdw::remote_catalog::{explain_plan_rows, remote_table, Freshness};
use crate::fdw::scan_plan::{const_int, rel_state, scan_plan_to_private, RelState, ScanPlan, Transport};
use crate::fdw::table::TableDef;
use crate::pg::error::{FdwError, FdwResult, OrReport};
use crate::pg::runtime::block_on;

/// Rows assumed for a table of unknown size (CARTO's catalogue could not be read).
const DEFAULT_ROWS: f64 = 1000.0;
/// How much more a remotely sorted scan costs than an unsorted one (as postgres_fdw).
const SORT_MULTIPLIER: f64 = 1.2;
/// A `/sql` read switches to `/copyto` once it has read this many times the rows the plan expected (and
/// at least this many full pages): a wrong estimate costs a few requests, never hundreds.
const SWITCH_FACTOR: u64 = 2;

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn get_foreign_rel_size(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    foreigntableid: pg_sys::Oid,
) {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        rel_size(root, baserel, foreigntableid).or_report()
    }
}

unsafe fn user_of(baserel: *mut pg_sys::RelOptInfo) -> pg_sys::Oid {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        if (*baserel).userid != pg_sys::InvalidOid {
            (*baserel).userid
        } else {
            pg_sys::GetUserId()
        }
    }
}

unsafe fn rel_size(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    relid: pg_sys::Oid,
) -> FdwResult<()> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
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

        let mut state = RelState { table, info, remote_conds, local_conds, retrieved_rows: 0.0 };
        let shipped: Vec<*mut pg_sys::RestrictInfo> = state.remote_conds.iter().map(|(r, _)| *r).collect();
        let local_sel = clause_selectivity(root, baserel, &state.local_conds);

        if state.table.options.use_remote_estimate {
            // CARTO's planner estimated the filtered result of the shipped clauses; only the local
            // clauses' selectivity is applied on top.
            let remote_rows = remote_estimate(&state)?;
            (*baserel).tuples = (*baserel).tuples.max(remote_rows);
            state.retrieved_rows = remote_rows;
        } else {
            let tuples = if (*baserel).tuples > 0.0 {
                // ANALYZE on the foreign table sampled it.
                (*baserel).tuples
            } else {
                remote_row_count(&state)?.unwrap_or(DEFAULT_ROWS)
            };
            (*baserel).tuples = tuples;
            state.retrieved_rows = pg_sys::clamp_row_est(tuples * clause_selectivity(root, baserel, &shipped));
        }
        (*baserel).rows = pg_sys::clamp_row_est(state.retrieved_rows * local_sel);
        (*baserel).fdw_private = PgMemoryContexts::CurrentMemoryContext.leak_and_drop_on_delete(state).cast();
        Ok(())
    }
}

unsafe fn clause_selectivity(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    clauses: &[*mut pg_sys::RestrictInfo],
) -> f64 {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
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
}

/// CARTO's own idea of the table's size (crate::fdw::remote_catalog: its row count once analyzed, else its
/// planner's estimate); None for a `query` table or when the catalogue could not be read.
fn remote_row_count(state: &RelState) -> FdwResult<Option<f64>> {
    if state.table.options.query.is_some() {
        return Ok(None);
    }
    // No client (no user mapping yet): planning goes on with the default; the scan reports it.
    let Ok(client) = client_for(&state.table.access) else { return Ok(None) };
    Ok(remote_table(&state.table, &client, Freshness::Recent)?.rows)
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

/// A path's estimate: its rows, startup and total cost.
struct PathCost {
    rows: f64,
    startup: f64,
    total: f64,
}

/// Adds a ForeignPath to the relation.
unsafe fn add_foreign_path(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    cost: PathCost,
    pathkeys: *mut pg_sys::List,
    required_outer: pg_sys::Relids,
) {
    let PathCost { rows, startup, total } = cost;
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let shape = crate::pg::compat::PathShape { target: std::ptr::null_mut(), rows, startup, total, pathkeys, required_outer };
        let path = crate::pg::compat::create_foreignscan_path(root, baserel, shape);
        pg_sys::add_path(baserel, path.cast());
    }
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn get_foreign_paths(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    _foreigntableid: pg_sys::Oid,
) {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        let state = rel_state(baserel);
        let opts = &state.table.access.options;
        let rows = (*baserel).rows;
        let startup = opts.fdw_startup_cost;
        let per_row = opts.fdw_tuple_cost + pg_sys::cpu_tuple_cost;
        let total = startup + rows * per_row;
        add_foreign_path(root, baserel, PathCost { rows, startup, total }, std::ptr::null_mut(), std::ptr::null_mut());

        // A path sorted by CARTO for the query's ORDER BY, when every sort key can be shipped.
        let wanted = (*root).query_pathkeys;
        if !wanted.is_null() && deparse_pathkeys(state, wanted).is_some() {
            let sorted = PathCost { rows, startup, total: total * SORT_MULTIPLIER };
            add_foreign_path(root, baserel, sorted, wanted, std::ptr::null_mut());
        }

        add_parameterized_paths(root, baserel, state, startup, per_row);
    }
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
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
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
            if crate::pg::compat::bms_is_empty(required_outer)
                || seen_outer.iter().any(|&r| pg_sys::bms_equal(r, required_outer))
            {
                continue;
            }
            seen_outer.push(required_outer);
            let ppi = pg_sys::get_baserel_parampathinfo(root, baserel, required_outer);
            let rows = (*ppi).ppi_rows;
            let cost = PathCost { rows, startup, total: startup + rows * per_row };
            add_foreign_path(root, baserel, cost, std::ptr::null_mut(), required_outer);
        }
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
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        let e = (*em).em_expr;
        if e.is_null() || (*e.cast::<pg_sys::Node>()).type_ != pg_sys::NodeTag::T_Var {
            return false;
        }
        let v: *mut pg_sys::Var = e.cast();
        (*v).varno as u32 == (*rel).relid && (*v).varattno > 0 && (*v).varlevelsup == 0
    }
}

/// ORDER BY text for pathkeys, when every key is an expression of this relation we can ship
/// (columns, or expressions of them without parameters),
/// sorted by its type's default btree order.
unsafe fn deparse_pathkeys(state: &RelState, pathkeys: *mut pg_sys::List) -> Option<String> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
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
}

/// The LIMIT CARTO can apply: only for a query over this one relation with nothing evaluated
/// locally between the scan and the LIMIT, and only when the scan delivers the query's order.
unsafe fn pushable_limit(
    root: *mut pg_sys::PlannerInfo,
    has_local_conds: bool,
    sorted_as_query: bool,
    parameterized: bool,
) -> Option<i64> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
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
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
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
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        if !crate::fdw::pushed::is_scan_rel(baserel) {
            // A join or an aggregate computed by CARTO (scanrelid 0).
            return crate::fdw::pushed::plan(root, baserel, best_path, tlist, outer_plan).or_report();
        }
        let state = rel_state(baserel);
        let mut d = Deparser::new(&state.info);
        d.allow_outer_params = true;
        let (where_, local_ris) = split_scan_clauses(&mut d, state, scan_clauses);
        let mut local_exprs = PgList::<pg_sys::Expr>::new();
        for ri in &local_ris {
            local_exprs.push((**ri).clause);
        }
        let columns = needed_columns(baserel, state, &local_ris);

        let pathkeys = (*best_path).path.pathkeys;
        let order_by = if pathkeys.is_null() { None } else { deparse_pathkeys(state, pathkeys) };
        let sorted_as_query = order_by.is_some()
            && pg_sys::pathkeys_contained_in((*root).sort_pathkeys, pathkeys);
        let parameterized = !(*best_path).path.param_info.is_null();
        let limit = pushable_limit(root, !local_ris.is_empty(), sorted_as_query, parameterized);

        let opts = &state.table.options;
        // What CARTO will send: a parameterized path's rows per outer row, else the shipped clauses'
        // result (local filters come after the transfer), at most the pushed LIMIT.
        let sent_rows = if parameterized { (*best_path).path.rows } else { state.retrieved_rows };
        let expected_rows = match limit {
            Some(l) => sent_rows.min(l as f64),
            None => sent_rows,
        };
        let transport = choose_transport(opts, parameterized || !d.params.is_empty(), expected_rows);
        // An `auto` read through /sql that pages by keyset switches to /copyto when its pages keep coming
        // full (scan.rs): the estimate was wrong. Not for a parameterized path (a rescan per outer row).
        let rowid = state.table.rowid().map(str::to_string);
        let switch_after_rows = (opts.scan_method == ScanMethod::Auto
            && transport == Transport::Query
            && !parameterized
            && rowid.is_some()
            && order_by.is_none()
            && limit.is_none())
        .then(|| SWITCH_FACTOR * opts.fetch_size.max(expected_rows.ceil() as u64));

        let read = if transport == Transport::Copy || switch_after_rows.is_some() {
            crate::fdw::transport::read_casts(&state.table, &columns).or_report()
        } else {
            None
        };
        let (binary_casts, binary_read_as) = match read {
            Some(r) => (Some(r.casts), r.read_as),
            None => (None, Vec::new()),
        };
        let plan = ScanPlan {
            relid: u32::from(state.table.relid),
            table_label: state.table.local_name.clone(),
            from: state.table.from_clause(),
            columns,
            where_: if where_.is_empty() { None } else { Some(where_) },
            order_by,
            limit,
            rowid,
            binary_casts,
            binary_read_as,
            switch_after_rows,
            transport,
            fetch_size: opts.fetch_size,
            subquery: None,
            relations: None,
            member_relids: Vec::new(),
            user_rti: 0,
            member_rtis: Vec::new(),
        };
        let private = scan_plan_to_private(&plan).or_report();

        let mut fdw_exprs = PgList::<pg_sys::Expr>::new();
        for p in &d.params {
            fdw_exprs.push(*p);
        }

        pg_sys::make_foreignscan(
            tlist,
            local_exprs.into_pg(),
            (*baserel).relid,
            fdw_exprs.into_pg(),
            private,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            outer_plan,
        )
    }
}

/// The scan's clauses split into the ones CARTO evaluates, as one WHERE template (empty for none), and
/// the ones left to the local ForeignScan (the relation's local conditions and what `d` cannot
/// write). Pseudoconstant clauses are the planner's (a gating Result), neither.
///
/// # Safety
/// Planning on the backend thread; `scan_clauses` the RestrictInfo list GetForeignPlan was given.
unsafe fn split_scan_clauses(
    d: &mut Deparser,
    state: &RelState,
    scan_clauses: *mut pg_sys::List,
) -> (SqlTemplate, Vec<*mut pg_sys::RestrictInfo>) {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        let mut where_ = SqlTemplate::default();
        let mut shipped = 0;
        let mut local_ris: Vec<*mut pg_sys::RestrictInfo> = Vec::new();
        for ri in PgList::<pg_sys::RestrictInfo>::from_pg(scan_clauses).iter_ptr() {
            if (*ri).pseudoconstant {
                continue;
            }
            if state.local_conds.contains(&ri) {
                local_ris.push(ri);
                continue;
            }
            match d.clause((*ri).clause.cast()) {
                Some(sql) => {
                    if shipped > 0 {
                        where_.push_str(" AND ");
                    }
                    where_.append(&sql);
                    shipped += 1;
                }
                None => local_ris.push(ri),
            }
        }
        (where_, local_ris)
    }
}

/// The columns the query needs, (attnum, remote name) in the table's order: the relation's target list
/// and what the local conditions read (every column for a whole-row reference).
///
/// # Safety
/// Planning on the backend thread; `baserel` the relation `state` belongs to.
unsafe fn needed_columns(
    baserel: *mut pg_sys::RelOptInfo,
    state: &RelState,
    local_ris: &[*mut pg_sys::RestrictInfo],
) -> Vec<(i16, String)> {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        let mut attrs: *mut pg_sys::Bitmapset = std::ptr::null_mut();
        pg_sys::pull_varattnos((*(*baserel).reltarget).exprs.cast(), (*baserel).relid, &mut attrs);
        for ri in local_ris {
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
        columns
    }
}

/// The transport of a scan: the table's scan_method, or for `auto` the `query` one (/sql) when the scan
/// takes parameters or expects at most copy_threshold rows, COPY otherwise.
fn choose_transport(opts: &TableOptions, has_params: bool, expected_rows: f64) -> Transport {
    match opts.scan_method {
        ScanMethod::Copy => Transport::Copy,
        ScanMethod::Query => Transport::Query,
        ScanMethod::Auto => {
            if has_params || expected_rows <= opts.copy_threshold {
                Transport::Query
            } else {
                Transport::Copy
            }
        }
    }
}
