//! Direct modification: the whole UPDATE or DELETE as one remote statement.

use carto_client::Client;
use pgrx::pg_sys;
use pgrx::{PgList, PgMemoryContexts};
use serde::{Deserialize, Serialize};
use crate::fdw::connection::client_for;
use crate::fdw::deparse::{update_set_sql, Deparser, SqlTemplate};
use crate::pg::cstr::cstr_owned;
use crate::fdw::scan_plan::{scan_plan_from_private, RelState};
use crate::pg::executor::explain_text;
use crate::fdw::table::TableDef;
use crate::fdw::xact::{cleanup_stale_uploads, finish_pending_for};
use crate::pg::error::{FdwError, FdwResult, OrReport};
use crate::pg::runtime::block_on;
use crate::pg::typeio::ParamOutput;

use super::shared::{check_plan_refusals, json_from_list, json_list, result_user, rte_of};

// ---------------------------------------------------------------------------------------------
// Direct modification: the whole UPDATE or DELETE as one remote statement.

#[derive(Serialize, Deserialize, Debug, Clone)]
struct DirectPlan {
    label: String,
    sql: SqlTemplate,
    can_set_tag: bool,
    /// The other foreign tables an UPDATE ... FROM / DELETE ... USING reads (pending inserts flushed first).
    #[serde(default)]
    members: Vec<u32>,
}

unsafe fn find_modifytable_subplan(
    plan: *mut pg_sys::ModifyTable,
    rtindex: pg_sys::Index,
    subplan_index: i32,
) -> *mut pg_sys::ForeignScan {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let mut sub = (*plan).plan.lefttree;
        if sub.is_null() {
            return std::ptr::null_mut();
        }
        if (*sub).type_ == pg_sys::NodeTag::T_Append {
            let app = sub as *mut pg_sys::Append;
            let l = PgList::<pg_sys::Plan>::from_pg((*app).appendplans);
            match l.get_ptr(subplan_index as usize) {
                Some(p) => sub = p,
                None => return std::ptr::null_mut(),
            }
        } else if (*sub).type_ == pg_sys::NodeTag::T_Result
            && !(*sub).lefttree.is_null()
            && (*(*sub).lefttree).type_ == pg_sys::NodeTag::T_Append
        {
            let app = (*sub).lefttree as *mut pg_sys::Append;
            let l = PgList::<pg_sys::Plan>::from_pg((*app).appendplans);
            match l.get_ptr(subplan_index as usize) {
                Some(p) => sub = p,
                None => return std::ptr::null_mut(),
            }
        }
        if (*sub).type_ == pg_sys::NodeTag::T_ForeignScan {
            let fs = sub as *mut pg_sys::ForeignScan;
            if pg_sys::bms_is_member(rtindex as i32, (*fs).fs_relids) {
                return fs;
            }
        }
        std::ptr::null_mut()
    }
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn plan_direct_modify(
    root: *mut pg_sys::PlannerInfo,
    plan: *mut pg_sys::ModifyTable,
    result_relation: pg_sys::Index,
    subplan_index: i32,
) -> bool {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        plan_direct(root, plan, result_relation, subplan_index).or_report()
    }
}

unsafe fn plan_direct(
    root: *mut pg_sys::PlannerInfo,
    plan: *mut pg_sys::ModifyTable,
    rti: pg_sys::Index,
    subplan_index: i32,
) -> FdwResult<bool> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let op = (*plan).operation;
        let relid = (*rte_of(root, rti)).relid;
        // Refused before anything is sent, whichever way the statement would run.
        check_plan_refusals(plan, relid)?;
        if op != pg_sys::CmdType::CMD_UPDATE && op != pg_sys::CmdType::CMD_DELETE {
            return Ok(false);
        }
        let fscan = find_modifytable_subplan(plan, rti, subplan_index);
        if fscan.is_null() || !(*fscan).scan.plan.qual.is_null() {
            return Ok(false);
        }
        if (*fscan).scan.scanrelid == 0 {
            // UPDATE ... FROM / DELETE ... USING over a join computed by CARTO (pushed.rs).
            let mut params: Vec<*mut pg_sys::Expr> = PgList::<pg_sys::Expr>::from_pg((*fscan).fdw_exprs).iter_ptr().collect();
            let Some((sql, members)) = crate::fdw::pushed::direct_modify_sql(root, fscan, rti, &mut params) else {
                return Ok(false);
            };
            let label = cstr_owned(pg_sys::get_rel_name(relid)).unwrap_or_default();
            let dp = DirectPlan { label, sql, can_set_tag: (*plan).canSetTag, members };
            let mut exprs = PgList::<pg_sys::Expr>::new();
            for p in &params {
                exprs.push(*p);
            }
            (*fscan).operation = op;
            (*fscan).resultRelation = rti;
            (*fscan).fdw_exprs = exprs.into_pg();
            (*fscan).fdw_private = json_list(&dp);
            return Ok(true);
        }
        if (*fscan).scan.scanrelid != rti {
            return Ok(false);
        }
        let Ok(scan) = scan_plan_from_private((*fscan).fdw_private) else { return Ok(false) };
        if scan.limit.is_some() {
            return Ok(false);
        }
        let rel = *(*root).simple_rel_array.add(rti as usize);
        if rel.is_null() || (*rel).fdw_private.is_null() {
            return Ok(false);
        }
        let rs = &*((*rel).fdw_private as *mut RelState);
        if rs.table.options.query.is_some() {
            return Ok(false);
        }
        let mut d = Deparser::new(&rs.info);
        d.params = PgList::<pg_sys::Expr>::from_pg((*fscan).fdw_exprs).iter_ptr().collect();
        let mut sql = SqlTemplate::default();
        if op == pg_sys::CmdType::CMD_UPDATE {
            let Some(set) = update_set_sql(root, rti, &rs.table, &rs.table.from_clause(), &mut d) else { return Ok(false) };
            sql = set;
        } else {
            sql.push_str(&format!("DELETE FROM {}", rs.table.from_clause()));
        }
        if let Some(w) = &scan.where_ {
            sql.push_str(" WHERE ");
            sql.append(w);
        }
        let dp = DirectPlan { label: rs.table.local_name.clone(), sql, can_set_tag: (*plan).canSetTag, members: Vec::new() };
        let mut exprs = PgList::<pg_sys::Expr>::new();
        for p in &d.params {
            exprs.push(*p);
        }
        (*fscan).operation = op;
        (*fscan).resultRelation = rti;
        (*fscan).fdw_exprs = exprs.into_pg();
        (*fscan).fdw_private = json_list(&dp);
        Ok(true)
    }
}

pub struct DirectState {
    plan: DirectPlan,
    client: Client,
    params: Vec<ParamOutput>,
    done: bool,
    affected: u64,
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn begin_direct_modify(node: *mut pg_sys::ForeignScanState, eflags: i32) {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        if eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as i32 != 0 {
            return;
        }
        begin_direct(node).or_report()
    }
}

unsafe fn begin_direct(node: *mut pg_sys::ForeignScanState) -> FdwResult<()> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let fsplan = (*node).ss.ps.plan as *mut pg_sys::ForeignScan;
        let plan: DirectPlan = json_from_list((*fsplan).fdw_private)?;
        let rinfo = (*node).resultRelInfo;
        let estate = (*node).ss.ps.state;
        let relid = (*(*rinfo).ri_RelationDesc).rd_id;
        let userid = result_user(estate, rinfo);
        let table = TableDef::load(relid, userid)?;
        finish_pending_for(relid)?;
        for r in &plan.members {
            finish_pending_for(pg_sys::Oid::from(*r))?;
        }
        let client = client_for(&table.access)?;
        // A COPY left open on the table would make the statement wait for its lock.
        cleanup_stale_uploads(&client);
        let mut params = Vec::new();
        for e in PgList::<pg_sys::Expr>::from_pg((*fsplan).fdw_exprs).iter_ptr() {
            params.push(ParamOutput::new(e, node.cast()));
        }
        let st = DirectState { plan, client, params, done: false, affected: 0 };
        (*node).fdw_state = PgMemoryContexts::CurrentMemoryContext.leak_and_drop_on_delete(st).cast();
        Ok(())
    }
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn iterate_direct_modify(node: *mut pg_sys::ForeignScanState) -> *mut pg_sys::TupleTableSlot {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        let slot = (*node).ss.ss_ScanTupleSlot;
        if let Some(st) = ((*node).fdw_state as *mut DirectState).as_mut() {
            if !st.done {
                st.done = true;
                let econtext = (*node).ss.ps.ps_ExprContext;
                let rendered: Vec<String> = st.params.iter_mut().map(|p| p.render(econtext)).collect();
                let sql = st.plan.sql.render(Some(&rendered));
                let resp = block_on(st.client.query(&sql))
                    .or_report()
                    .map_err(|e| FdwError::remote(e, format!("modifying foreign table \"{}\"", st.plan.label)))
                    .or_report();
                st.affected = resp.total_rows;
                if st.plan.can_set_tag {
                    (*(*node).ss.ps.state).es_processed += resp.total_rows;
                }
                let instr = (*node).ss.ps.instrument;
                if !instr.is_null() {
                    (*instr).tuplecount += resp.total_rows as f64;
                }
            }
        }
        if let Some(clear) = (*(*slot).tts_ops).clear {
            clear(slot);
        }
        slot
    }
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn end_direct_modify(_node: *mut pg_sys::ForeignScanState) {}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn explain_direct_modify(node: *mut pg_sys::ForeignScanState, es: *mut pg_sys::ExplainState) {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        let fsplan = (*node).ss.ps.plan as *mut pg_sys::ForeignScan;
        let Ok(plan) = json_from_list::<DirectPlan>((*fsplan).fdw_private) else { return };
        explain_text(es, "CARTO endpoint", "SQL API (/sql), whole statement");
        if (*es).verbose {
            explain_text(es, "Remote SQL", &plan.sql.render(None));
        }
    }
}
