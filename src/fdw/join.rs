//! Joins of foreign tables computed by CARTO (GetForeignJoinPaths).
//!
//! Two relations of the same server and user mapping (PostgreSQL only asks when both sides share
//! the server and the checkAsUser; the mapped key is compared again here) join remotely when:
//! the join is INNER, LEFT, RIGHT or FULL, or a semi-/anti-join (EXISTS, NOT EXISTS, IN) that
//! nothing joins to afterwards (written as `[NOT] EXISTS (…)` in WHERE); neither side has conditions that must be evaluated
//! locally (they would have to filter before the join); every join condition of an outer join
//! ships (an inner join's other conditions may stay local, above the pushed join); the target
//! needs only plain columns (no placeholder evaluated inside the join, no whole-row reference);
//! the statement is a SELECT without row locks (no EvalPlanQual recheck of a remote join).
//! Conditions go as postgres_fdw places them: an inner join's into ON; an outer join's own
//! conditions into ON, the preserved side's filters into WHERE, the nullable side's into ON.

use pgrx::pg_sys;
use pgrx::PgList;

use crate::fdw::deparse::{Deparser, RelInfo};
use crate::fdw::pushed::{
    attach, can_write, is_semi_or_anti, join_keyword, remote_estimate, BaseTable, Input, PushOptions, PushedRel, Shape,
};

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn get_foreign_join_paths(
    root: *mut pg_sys::PlannerInfo,
    joinrel: *mut pg_sys::RelOptInfo,
    outerrel: *mut pg_sys::RelOptInfo,
    innerrel: *mut pg_sys::RelOptInfo,
    jointype: pg_sys::JoinType::Type,
    extra: *mut pg_sys::JoinPathExtraData,
) {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        // Considered once per join relation, as postgres_fdw (the first outer/inner split decides).
        if !(*joinrel).fdw_private.is_null() {
            return;
        }
        let Some(state) = join_state(root, joinrel, outerrel, innerrel, jointype, extra) else { return };
        attach(joinrel, state);
        if !can_write(root, joinrel) {
            (*joinrel).fdw_private = std::ptr::null_mut();
            return;
        }
        add_join_path(root, joinrel, outerrel, innerrel);
    }
}

/// The pushed join of `outerrel` and `innerrel`, or None when CARTO cannot compute it: another
/// statement than SELECT (or an UPDATE/DELETE over remote tables only), another server or key, a
/// side with local conditions, an output that is more than plain columns, a condition that must stay
/// local where it cannot.
unsafe fn join_state(
    root: *mut pg_sys::PlannerInfo,
    joinrel: *mut pg_sys::RelOptInfo,
    outerrel: *mut pg_sys::RelOptInfo,
    innerrel: *mut pg_sys::RelOptInfo,
    jointype: pg_sys::JoinType::Type,
    extra: *mut pg_sys::JoinPathExtraData,
) -> Option<PushedRel> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let modify = statement_kind(root)?;
        let semi = is_semi_or_anti(jointype);
        let keyword = match jointype {
            pg_sys::JoinType::JOIN_SEMI => "SEMI JOIN",
            pg_sys::JoinType::JOIN_ANTI => "ANTI JOIN",
            _ => join_keyword(jointype)?,
        };
        let (outer, otables, omembers) = Input::of(root, outerrel)?;
        let (inner, itables, imembers) = Input::of(root, innerrel)?;
        if outer.has_local_conds() || inner.has_local_conds() {
            return None;
        }
        // A semi-/anti-join is a WHERE condition of its outer side: nothing joins to it afterwards.
        for side in [&outer, &inner] {
            if let Input::Pushed(PushedRel { shape: Shape::Join { jointype, .. }, .. }) = side {
                if is_semi_or_anti(*jointype) {
                    return None;
                }
            }
        }
        let oopts = outer.opts();
        let iopts = inner.opts();
        if oopts.server_name != iopts.server_name || oopts.api_key != iopts.api_key {
            return None;
        }
        if !output_is_plain_columns(joinrel, outerrel, modify, semi) {
            return None;
        }

        let mut members = omembers;
        members.extend(imembers);
        let mut tables = otables;
        tables.extend(itables);
        let info = RelInfo { relid: 0, remote_names: Vec::new(), postgis_ext: outer.postgis_ext(), members };

        let mut conds = classify_conds(joinrel, innerrel, jointype, extra, &info)?;
        conds.add_side_filters(jointype, outer.where_conds(), inner.where_conds())?;
        let JoinConds { on, where_conds, local_conds } = conds;

        let olabel = side_label(&outer, &tables[..1]);
        let ilabel = match &inner {
            Input::Pushed(p) => format!("({})", p.relations),
            Input::Scan(..) => format!("({})", tables.last().map(|t| t.label.as_str()).unwrap_or("")),
        };
        let relations = format!("{olabel} {keyword} {ilabel}");
        let remote_cost = outer.remote_cost() + inner.remote_cost();
        let first_base = outer.first_base();
        Some(PushedRel {
            shape: Shape::Join { outer: outerrel, inner: innerrel, jointype, on },
            info,
            tables,
            where_conds,
            local_conds,
            relations,
            opts: PushOptions { use_remote_estimate: oopts.use_remote_estimate || iopts.use_remote_estimate, ..oopts },
            first_base,
            remote_cost,
        })
    }
}

/// Whether the statement may have its joins pushed: Some(true) for an UPDATE/DELETE, Some(false) for
/// a SELECT without row marks, None otherwise.
unsafe fn statement_kind(root: *mut pg_sys::PlannerInfo) -> Option<bool> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let q = (*root).parse;
        let modify = matches!((*q).commandType, pg_sys::CmdType::CMD_UPDATE | pg_sys::CmdType::CMD_DELETE);
        if modify {
            // UPDATE ... FROM / DELETE ... USING over tables that are all remote: no local row is
            // locked, so no EvalPlanQual re-check (which would need a local join to re-run) can happen.
            if !every_rel_remote(root) {
                return None;
            }
        } else if (*q).commandType != pg_sys::CmdType::CMD_SELECT || !(*root).rowMarks.is_null() {
            return None;
        }
        Some(modify)
    }
}

/// Whether the join's output is plain columns of its tables only (and, for a semi-/anti-join, of its
/// outer side only).
unsafe fn output_is_plain_columns(
    joinrel: *mut pg_sys::RelOptInfo,
    outerrel: *mut pg_sys::RelOptInfo,
    modify: bool,
    semi: bool,
) -> bool {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let flags = pg_sys::PVC_INCLUDE_PLACEHOLDERS as i32;
        let vars = PgList::<pg_sys::Node>::from_pg(pg_sys::pull_var_clause((*(*joinrel).reltarget).exprs.cast(), flags));
        for v in vars.iter_ptr() {
            if (*v).type_ != pg_sys::NodeTag::T_Var {
                return false;
            }
            let attno = (*v.cast::<pg_sys::Var>()).varattno;
            // Whole rows (an UPDATE's old target row, row-mark copies of the other tables) only in an
            // UPDATE/DELETE, whose joins are inner or keep the target's rows (ROW(...) in pushed.rs).
            if attno < 0 || (attno == 0 && !modify) {
                return false;
            }
            // What a semi-/anti-join delivers comes from its outer side alone.
            if semi && !pg_sys::bms_is_member((*v.cast::<pg_sys::Var>()).varno, (*outerrel).relids) {
                return false;
            }
        }
        true
    }
}

/// Where a pushed join's conditions go: its ON, its WHERE (both computed by CARTO), or local, above
/// the foreign scan.
struct JoinConds {
    on: Vec<*mut pg_sys::Expr>,
    where_conds: Vec<*mut pg_sys::Expr>,
    local_conds: Vec<*mut pg_sys::RestrictInfo>,
}

/// The join's own conditions (its restrictlist) placed by what they are and whether they ship; None
/// when one must be computed remotely but cannot be, or must not be.
unsafe fn classify_conds(
    joinrel: *mut pg_sys::RelOptInfo,
    innerrel: *mut pg_sys::RelOptInfo,
    jointype: pg_sys::JoinType::Type,
    extra: *mut pg_sys::JoinPathExtraData,
    info: &RelInfo,
) -> Option<JoinConds> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let mut on = Vec::new();
        let mut where_conds = Vec::new();
        let mut local_conds = Vec::new();
        let is_outer = !matches!(jointype, pg_sys::JoinType::JOIN_INNER | pg_sys::JoinType::JOIN_SEMI);
        for ri in PgList::<pg_sys::RestrictInfo>::from_pg((*extra).restrictlist).iter_ptr() {
            let ships = {
                let mut d = Deparser::new(info);
                d.clause((*ri).clause.cast()).is_some()
            };
            let pushed_down = (*ri).is_pushed_down || !pg_sys::bms_is_subset((*ri).required_relids, (*joinrel).relids);
            if jointype == pg_sys::JoinType::JOIN_ANTI
                && pushed_down
                && pg_sys::bms_overlap((*ri).clause_relids, (*innerrel).relids)
            {
                return None;
            }
            if jointype == pg_sys::JoinType::JOIN_SEMI && !ships {
                // A semi-join's conditions (all "pushed down", as for an inner join) read the inner
                // side, which this join does not deliver: none can stay local.
                return None;
            }
            if is_outer && !pushed_down {
                if !ships {
                    return None;
                }
                on.push((*ri).clause);
            } else if ships {
                where_conds.push((*ri).clause);
            } else {
                local_conds.push(ri);
            }
        }
        Some(JoinConds { on, where_conds, local_conds })
    }
}

impl JoinConds {
    /// Adds the sides' own remote filters (`owhere` of the outer side, `iwhere` of the inner) where the join
    /// type keeps their meaning; None for a FULL join with any.
    fn add_side_filters(
        &mut self,
        jointype: pg_sys::JoinType::Type,
        owhere: Vec<*mut pg_sys::Expr>,
        iwhere: Vec<*mut pg_sys::Expr>,
    ) -> Option<()> {
        match jointype {
            pg_sys::JoinType::JOIN_INNER => {
                // All alike: into ON, so the join stays one unit inside a bigger one.
                self.on.append(&mut self.where_conds);
                self.on.extend(owhere);
                self.on.extend(iwhere);
            }
            pg_sys::JoinType::JOIN_SEMI => {
                // Every condition into the EXISTS, the outer side's filters stay in WHERE.
                self.on.append(&mut self.where_conds);
                self.on.extend(iwhere);
                self.where_conds.extend(owhere);
            }
            pg_sys::JoinType::JOIN_LEFT | pg_sys::JoinType::JOIN_ANTI => {
                self.on.extend(iwhere);
                self.where_conds.extend(owhere);
            }
            pg_sys::JoinType::JOIN_RIGHT => {
                self.on.extend(owhere);
                self.where_conds.extend(iwhere);
            }
            _ => {
                // FULL: a side's filter can go neither to ON nor to WHERE.
                if !owhere.is_empty() || !iwhere.is_empty() {
                    return None;
                }
            }
        }
        Some(())
    }
}

fn side_label(input: &Input, first: &[BaseTable]) -> String {
    match input {
        Input::Pushed(p) => format!("({})", p.relations),
        Input::Scan(..) => format!("({})", first.first().map(|t| t.label.as_str()).unwrap_or("")),
    }
}

/// Whether every relation of the statement is a foreign table of this wrapper, the row marks
/// only the copies of the tables an UPDATE/DELETE reads (no lock of a local row).
unsafe fn every_rel_remote(root: *mut pg_sys::PlannerInfo) -> bool {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        for i in 1..(*root).simple_rel_array_size as usize {
            let rel = *(*root).simple_rel_array.add(i);
            if rel.is_null() || (*rel).reloptkind != pg_sys::RelOptKind::RELOPT_BASEREL {
                continue;
            }
            if (*rel).fdwroutine.is_null() || (*rel).fdw_private.is_null() || (*rel).serverid == pg_sys::InvalidOid {
                return false;
            }
            let handler = (*(*rel).fdwroutine).GetForeignJoinPaths.map(|f| f as *const () as usize);
            if handler != Some(get_foreign_join_paths as *const () as usize) {
                return false;
            }
        }
        PgList::<pg_sys::PlanRowMark>::from_pg((*root).rowMarks)
            .iter_ptr()
            .all(|rm| (*rm).markType == pg_sys::RowMarkType::ROW_MARK_COPY)
    }
}

/// Offers the pushed join, costed as CARTO's work (a hash join of the two sides, or its own
/// estimate) plus the transfer of the joined rows, against PostgreSQL's local joins of the sides.
unsafe fn add_join_path(
    root: *mut pg_sys::PlannerInfo,
    joinrel: *mut pg_sys::RelOptInfo,
    outerrel: *mut pg_sys::RelOptInfo,
    innerrel: *mut pg_sys::RelOptInfo,
) {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let Some(p) = crate::fdw::pushed::pushed_state(joinrel) else { return };
        let opts = p.opts.clone();
        let per_row = opts.fdw_tuple_cost + pg_sys::cpu_tuple_cost;
        // Conditions evaluated locally filter after the transfer: CARTO sends the rows before them.
        let mut local = PgList::<pg_sys::RestrictInfo>::new();
        for ri in &p.local_conds {
            local.push(*ri);
        }
        let local = local.into_pg();
        let sel = if p.local_conds.is_empty() {
            1.0
        } else {
            pg_sys::clauselist_selectivity(root, local, 0, pg_sys::JoinType::JOIN_INNER, std::ptr::null_mut()).max(1e-10)
        };
        let mut local_cost: pg_sys::QualCost = std::mem::zeroed();
        pg_sys::cost_qual_eval(&mut local_cost, local, root);
        // CARTO's planner's row count under use_remote_estimate (the costs stay in this model, as
        // the local alternatives are costed without CARTO's side).
        let rows = match remote_estimate(root, joinrel) {
            Some(rows) => rows,
            None => pg_sys::clamp_row_est((*joinrel).rows / sel),
        };
        let work = ((*outerrel).rows + (*innerrel).rows + rows) * pg_sys::cpu_tuple_cost;
        let remote_cost = p.remote_cost + work;
        let out_rows = pg_sys::clamp_row_est(rows * sel);
        let startup = opts.fdw_startup_cost;
        // Every transferred row is also filtered here by the local conditions.
        let total = startup + remote_cost + rows * (per_row + local_cost.per_tuple) + local_cost.startup;
        if let Some(state) = ((*joinrel).fdw_private as *mut PushedRel).as_mut() {
            state.remote_cost = remote_cost;
        }
        let shape = crate::pg::compat::PathShape {
            target: std::ptr::null_mut(),
            rows: out_rows,
            startup,
            total,
            pathkeys: std::ptr::null_mut(),
            required_outer: (*joinrel).lateral_relids,
        };
        let path = crate::pg::compat::create_foreign_join_path(root, joinrel, shape);
        pg_sys::add_path(joinrel, path.cast());
    }
}
