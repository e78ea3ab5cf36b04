//! Aggregates, DISTINCT, ORDER BY and LIMIT computed by CARTO (GetForeignUpperPaths).
//!
//! - GROUP BY / aggregates (UPPERREL_GROUP_AGG) over a foreign table or a pushed join ship when
//!   the input has no locally evaluated condition, there are no grouping sets, every grouping
//!   expression ships, every other output either ships whole or is computed locally from shipped
//!   aggregates and grouping columns, and every HAVING condition ships. Aggregates ship by the
//!   deparser's rules (built in or PostGIS, plain, with DISTINCT, ORDER BY and FILTER).
//! - DISTINCT (UPPERREL_DISTINCT) over a foreign table or pushed join ships as a GROUP BY of all
//!   its columns when every one ships (not DISTINCT ON).
//! - ORDER BY (UPPERREL_ORDERED) over a pushed aggregate, DISTINCT or join ships when every sort
//!   key does (over an aggregate: an output column); a plain table's sort is a sorted scan path
//!   (plan.rs).
//! - LIMIT/OFFSET (UPPERREL_FINAL) over any of those ships when both are constants or shippable
//!   expressions of parameters (`LIMIT $1` of a generic plan, sent as its value), there are no
//!   set-returning functions or row locks, and the rows come in the query's order when it has one.

use pgrx::pg_sys;
use pgrx::PgList;

use crate::fdw::deparse::{Deparser, RelInfo};
use crate::fdw::pushed::{attach, can_write, pushed_state, remote_estimate, Count, Input, PushedRel, Shape};

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn get_foreign_upper_paths(
    root: *mut pg_sys::PlannerInfo,
    stage: pg_sys::UpperRelationKind::Type,
    input_rel: *mut pg_sys::RelOptInfo,
    output_rel: *mut pg_sys::RelOptInfo,
    extra: *mut std::ffi::c_void,
) {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        if !(*output_rel).fdw_private.is_null() || (*(*root).parse).commandType != pg_sys::CmdType::CMD_SELECT {
            return;
        }
        match stage {
            pg_sys::UpperRelationKind::UPPERREL_GROUP_AGG => {
                add_grouping_path(root, input_rel, output_rel, extra.cast());
            }
            pg_sys::UpperRelationKind::UPPERREL_DISTINCT => add_distinct_path(root, input_rel, output_rel),
            pg_sys::UpperRelationKind::UPPERREL_ORDERED => add_ordered_path(root, input_rel, output_rel),
            pg_sys::UpperRelationKind::UPPERREL_FINAL => add_final_path(root, input_rel, output_rel, extra.cast()),
            _ => {}
        }
    }
}

/// The PushedRel of an upper relation over `input`, before its shape-specific parts.
unsafe fn upper_state(root: *mut pg_sys::PlannerInfo, input_rel: *mut pg_sys::RelOptInfo, shape: Shape) -> Option<PushedRel> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let (input, tables, members) = Input::of(root, input_rel)?;
        if input.has_local_conds() {
            return None;
        }
        let inner = match &input {
            Input::Pushed(p) => p.relations.clone(),
            Input::Scan(..) => format!("({})", tables.first()?.label),
        };
        let relations = match &shape {
            Shape::Grouped { .. } => format!("Aggregate on {}", wrap(&inner)),
            _ => inner,
        };
        Some(PushedRel {
            shape,
            info: RelInfo { relid: 0, remote_names: Vec::new(), postgis_ext: input.postgis_ext(), members },
            tables,
            where_conds: Vec::new(),
            local_conds: Vec::new(),
            relations,
            opts: input.opts(),
            first_base: input.first_base(),
            remote_cost: input.remote_cost(),
        })
    }
}

/// `(x)` for a join's relations (`(ft1) INNER JOIN (ft2)` → `((ft1) INNER JOIN (ft2))`).
fn wrap(relations: &str) -> String {
    if relations.starts_with('(') && relations.ends_with(')') && !relations.contains(" JOIN ") {
        relations.to_string()
    } else {
        format!("({relations})")
    }
}

/// Rows of a relation as its cheapest path delivers them.
unsafe fn rows_of(rel: *mut pg_sys::RelOptInfo) -> f64 {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let p = (*rel).cheapest_total_path;
        if p.is_null() {
            (*rel).rows.max(1.0)
        } else {
            (*p).rows.max(1.0)
        }
    }
}

/// Adds the path of an upper relation whose state is attached, costed as CARTO's work so far
/// plus `work`, and the transfer of `rows` (CARTO's own count under use_remote_estimate).
unsafe fn add_upper_path(
    root: *mut pg_sys::PlannerInfo,
    rel: *mut pg_sys::RelOptInfo,
    target: *mut pg_sys::PathTarget,
    rows: f64,
    work: f64,
    pathkeys: *mut pg_sys::List,
    discount: f64,
) {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        if !can_write(root, rel) {
            (*rel).fdw_private = std::ptr::null_mut();
            return;
        }
        let Some(p) = ((*rel).fdw_private as *mut PushedRel).as_mut() else { return };
        let per_row = p.opts.fdw_tuple_cost + pg_sys::cpu_tuple_cost;
        // CARTO's planner's row count under use_remote_estimate; costs stay in this model (see join.rs).
        let rows = remote_estimate(root, rel).unwrap_or(rows);
        let remote_cost = p.remote_cost + work;
        p.remote_cost = remote_cost;
        let startup = p.opts.fdw_startup_cost + remote_cost;
        let total = (startup + rows * per_row) * discount;
        let shape = crate::pg::compat::PathShape {
            target,
            rows,
            startup: startup.min(total),
            total,
            pathkeys,
            required_outer: std::ptr::null_mut(),
        };
        let path = crate::pg::compat::create_foreign_upper_path(root, rel, shape);
        pg_sys::add_path(rel, path.cast());
    }
}

unsafe fn add_grouping_path(
    root: *mut pg_sys::PlannerInfo,
    input_rel: *mut pg_sys::RelOptInfo,
    grouped_rel: *mut pg_sys::RelOptInfo,
    extra: *mut pg_sys::GroupPathExtraData,
) {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let q = (*root).parse;
        if !(*q).groupingSets.is_null()
            || extra.is_null()
            || (*extra).patype != pg_sys::PartitionwiseAggregateType::PARTITIONWISE_AGGREGATE_NONE
        {
            return;
        }
        let placeholder = Shape::Grouped { input: input_rel, tlist: std::ptr::null_mut(), group_by: Vec::new(), having: Vec::new() };
        let Some(mut state) = upper_state(root, input_rel, placeholder) else { return };
        let target = (*grouped_rel).reltarget;
        let Some(tlist) = grouping_tlist(&state.info, target, (*q).groupClause) else { return };
        let Some(group_by) = group_positions(tlist, (*q).groupClause) else { return };
        let mut having = Vec::new();
        for h in PgList::<pg_sys::Expr>::from_pg((*extra).havingQual.cast()).iter_ptr() {
            let mut d = Deparser::new(&state.info);
            d.allow_aggs = true;
            if d.clause(h.cast()).is_none() {
                return;
            }
            having.push(h);
        }
        let input_rows = rows_of(input_rel);
        let groups = if (*q).groupClause.is_null() {
            1.0
        } else {
            let exprs = pg_sys::get_sortgrouplist_exprs((*q).groupClause, (*q).targetList);
            pg_sys::estimate_num_groups(root, exprs, input_rows, std::ptr::null_mut(), std::ptr::null_mut())
        };
        let ncols = PgList::<pg_sys::TargetEntry>::from_pg(tlist).len().max(1) as f64;
        let work = input_rows * pg_sys::cpu_operator_cost * ncols;
        state.shape = Shape::Grouped { input: input_rel, tlist, group_by, having };
        attach(grouped_rel, state);
        add_upper_path(root, grouped_rel, target, pg_sys::clamp_row_est(groups), work, std::ptr::null_mut(), 1.0);
    }
}

/// The select list of a pushed aggregate: each grouping expression (with its sortgroupref), each
/// other output that ships whole, else the aggregates and grouping columns it is computed from.
unsafe fn grouping_tlist(info: &RelInfo, target: *mut pg_sys::PathTarget, group_clause: *mut pg_sys::List) -> Option<*mut pg_sys::List> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let exprs = PgList::<pg_sys::Expr>::from_pg((*target).exprs);
        let mut tlist = PgList::<pg_sys::TargetEntry>::new();
        let mut group_exprs = Vec::new();
        let sortgroupref = |i: usize| -> u32 {
            if (*target).sortgrouprefs.is_null() {
                0
            } else {
                *(*target).sortgrouprefs.add(i)
            }
        };
        for (i, e) in exprs.iter_ptr().enumerate() {
            let sgref = sortgroupref(i);
            if sgref != 0 && !pg_sys::get_sortgroupref_clause_noerr(sgref, group_clause).is_null() {
                group_exprs.push(e);
            }
        }
        for (i, e) in exprs.iter_ptr().enumerate() {
            let sgref = sortgroupref(i);
            let is_group = sgref != 0 && !pg_sys::get_sortgroupref_clause_noerr(sgref, group_clause).is_null();
            // An output of constants and parameters alone is computed locally: as a column of the
            // scan, setrefs would also turn the parameter sent to CARTO into that very column.
            if !pg_sys::contain_var_clause(e.cast()) && !pg_sys::contain_agg_clause(e.cast()) {
                if is_group {
                    return None;
                }
                continue;
            }
            let mut d = Deparser::new(info);
            d.allow_aggs = true;
            let ships = d.clause(e.cast()).is_some();
            if is_group {
                // Grouped by remotely: must ship, and keeps its own entry (duplicates included).
                if !ships {
                    return None;
                }
                let te = pg_sys::makeTargetEntry(e, (tlist.len() + 1) as i16, std::ptr::null_mut(), false);
                (*te).ressortgroupref = sgref;
                tlist.push(te);
                continue;
            }
            if ships {
                add_flat(&mut tlist, e);
                continue;
            }
            // Computed locally from what ships: aggregates and grouping columns.
            let flags = (pg_sys::PVC_INCLUDE_AGGREGATES | pg_sys::PVC_INCLUDE_PLACEHOLDERS) as i32;
            for n in PgList::<pg_sys::Node>::from_pg(pg_sys::pull_var_clause(e.cast(), flags)).iter_ptr() {
                match (*n).type_ {
                    pg_sys::NodeTag::T_Aggref => {
                        let mut d = Deparser::new(info);
                        d.allow_aggs = true;
                        d.clause(n).is_some().then_some(())?;
                    }
                    pg_sys::NodeTag::T_Var => {
                        group_exprs.iter().any(|g| pg_sys::equal((*g).cast(), n.cast())).then_some(())?;
                    }
                    _ => return None,
                }
                add_flat(&mut tlist, n.cast());
            }
        }
        Some(tlist.into_pg())
    }
}

/// Appends an expression to a target list unless an entry already computes it.
unsafe fn add_flat(tlist: &mut PgList<pg_sys::TargetEntry>, e: *mut pg_sys::Expr) {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        if tlist.iter_ptr().any(|te| pg_sys::equal((*te).expr.cast(), e.cast())) {
            return;
        }
        let te = pg_sys::makeTargetEntry(e, (tlist.len() + 1) as i16, std::ptr::null_mut(), false);
        tlist.push(te);
    }
}

/// GROUP BY positions in the select list, in the query's grouping order.
unsafe fn group_positions(tlist: *mut pg_sys::List, clauses: *mut pg_sys::List) -> Option<Vec<usize>> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let entries = PgList::<pg_sys::TargetEntry>::from_pg(tlist);
        let mut out = Vec::new();
        for sgc in PgList::<pg_sys::SortGroupClause>::from_pg(clauses).iter_ptr() {
            let pos = entries.iter_ptr().position(|te| (*te).ressortgroupref == (*sgc).tleSortGroupRef)?;
            out.push(pos + 1);
        }
        Some(out)
    }
}

unsafe fn add_distinct_path(root: *mut pg_sys::PlannerInfo, input_rel: *mut pg_sys::RelOptInfo, distinct_rel: *mut pg_sys::RelOptInfo) {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let q = (*root).parse;
        if (*q).hasDistinctOn || (*q).distinctClause.is_null() || (*q).hasTargetSRFs {
            return;
        }
        // Over a table or a join only: a DISTINCT over an aggregate stays local.
        if let Some(p) = pushed_state(input_rel) {
            if !matches!(p.shape, Shape::Join { .. }) {
                return;
            }
        }
        let Some(mut state) = upper_state(root, input_rel, Shape::Final { input: input_rel, limit: None, offset: None }) else {
            return;
        };
        // The distinct relation's own reltarget is left empty by the planner.
        let target = (*root).upper_targets[pg_sys::UpperRelationKind::UPPERREL_DISTINCT as usize];
        let exprs = PgList::<pg_sys::Expr>::from_pg((*target).exprs);
        let mut tlist = PgList::<pg_sys::TargetEntry>::new();
        for (i, e) in exprs.iter_ptr().enumerate() {
            let mut d = Deparser::new(&state.info);
            if !pg_sys::contain_var_clause(e.cast()) || d.clause(e.cast()).is_none() {
                return;
            }
            let te = pg_sys::makeTargetEntry(e, (tlist.len() + 1) as i16, std::ptr::null_mut(), false);
            if !(*target).sortgrouprefs.is_null() {
                (*te).ressortgroupref = *(*target).sortgrouprefs.add(i);
            }
            tlist.push(te);
        }
        let tlist = tlist.into_pg();
        let Some(group_by) = group_positions(tlist, (*q).distinctClause) else { return };
        let input_rows = rows_of(input_rel);
        let exprs = pg_sys::get_sortgrouplist_exprs((*q).distinctClause, (*q).targetList);
        let groups = pg_sys::estimate_num_groups(root, exprs, input_rows, std::ptr::null_mut(), std::ptr::null_mut());
        let work = input_rows * pg_sys::cpu_operator_cost * group_by.len().max(1) as f64;
        state.shape = Shape::Grouped { input: input_rel, tlist, group_by, having: Vec::new() };
        attach(distinct_rel, state);
        add_upper_path(root, distinct_rel, target, pg_sys::clamp_row_est(groups), work, std::ptr::null_mut(), 1.0);
    }
}

unsafe fn add_ordered_path(root: *mut pg_sys::PlannerInfo, input_rel: *mut pg_sys::RelOptInfo, ordered_rel: *mut pg_sys::RelOptInfo) {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let q = (*root).parse;
        let pathkeys = (*root).sort_pathkeys;
        // A plain table's ORDER BY is a sorted scan (plan.rs).
        if pathkeys.is_null() || (*q).hasTargetSRFs || pushed_state(input_rel).is_none() {
            return;
        }
        let Some(state) = upper_state(root, input_rel, Shape::Ordered { input: input_rel, pathkeys }) else { return };
        let rows = rows_of(input_rel);
        // CARTO sorts before sending (no local Sort node); the same comparisons as a local sort.
        let work = rows * rows.max(2.0).log2() * pg_sys::cpu_operator_cost;
        attach(ordered_rel, state);
        let target = (*root).upper_targets[pg_sys::UpperRelationKind::UPPERREL_ORDERED as usize];
        add_upper_path(root, ordered_rel, target, rows, work, pathkeys, 1.0);
    }
}

unsafe fn add_final_path(
    root: *mut pg_sys::PlannerInfo,
    input_rel: *mut pg_sys::RelOptInfo,
    final_rel: *mut pg_sys::RelOptInfo,
    extra: *mut pg_sys::FinalPathExtraData,
) {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let q = (*root).parse;
        if extra.is_null()
            || !(*extra).limit_needed
            || (*q).hasTargetSRFs
            || !(*root).rowMarks.is_null()
            || (*q).limitOption != pg_sys::LimitOption::LIMIT_OPTION_COUNT
        {
            return;
        }
        let Some(input) = pushed_state(input_rel) else { return };
        // With an ORDER BY, the rows must come sorted by CARTO (a pushed sort below).
        if !(*q).sortClause.is_null() && !matches!(input.shape, Shape::Ordered { .. }) {
            return;
        }
        // Constants, or expressions of parameters (`LIMIT $1` on a generic plan): whether those ship is the
        // deparser's to say (upper_state writes the statement once).
        let count = |node: *mut pg_sys::Node| match crate::fdw::scan_plan::const_int(node) {
            Some(n) => Count::Const(n),
            None => Count::Expr(node),
        };
        let limit = (!(*q).limitCount.is_null()).then(|| count((*q).limitCount));
        let offset = (!(*q).limitOffset.is_null()).then(|| count((*q).limitOffset));
        let pathkeys = if (*q).sortClause.is_null() { std::ptr::null_mut() } else { (*root).sort_pathkeys };
        let join_input = matches!(input.shape, Shape::Join { .. });
        let Some(mut state) = upper_state(root, input_rel, Shape::Final { input: input_rel, limit, offset }) else { return };
        let in_rows = rows_of(input_rel);
        // A count known only at execution is estimated as PostgreSQL estimates a local Limit's: 10 % of the rows.
        let offset = match offset {
            Some(Count::Const(o)) => o as f64,
            _ => 0.0,
        };
        let rows = match limit {
            Some(Count::Const(l)) => (in_rows - offset).max(0.0).min(l as f64),
            Some(Count::Expr(_)) => (in_rows - offset).max(0.0) * 0.10,
            None => (in_rows - offset).max(0.0),
        };
        if join_input {
            // A join streams: CARTO stops joining once the rows past the limit are not wanted.
            state.remote_cost *= ((rows + offset) / in_rows).min(1.0);
        }
        attach(final_rel, state);
        let target = (*root).upper_targets[pg_sys::UpperRelationKind::UPPERREL_FINAL as usize];
        // CARTO stops after the limit: modeled as a small discount over a local Limit of the same
        // rows, whose estimate is otherwise equal (the offset rows are not sent either).
        add_upper_path(root, final_rel, target, pg_sys::clamp_row_est(rows), 0.0, pathkeys, 0.99);
    }
}
