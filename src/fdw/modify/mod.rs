//! Writes: INSERT and COPY FROM (streamed into one `/copyfrom` request per foreign table and
//! transaction, see xact.rs), UPDATE and DELETE (the whole statement shipped as one `/sql` request
//! when it can be — direct modify — else row by row, addressed by the rowid column and batched),
//! and TRUNCATE. Everything that cannot be honoured (RETURNING, ON CONFLICT, ...) fails at plan
//! or executor start, before anything is sent.
//!
//! Values cross as their types' own text form (output functions), exactly as reads use the input
//! functions, so every type round-trips.

use pgrx::pg_sys;
use pgrx::PgMemoryContexts;

use crate::pg::cstr::cstr_owned;
use crate::fdw::options::{deflist_to_pairs, ServerOptions, TableOptions};
use crate::pg::executor::{explain_int, explain_text};
use crate::pg::error::{FdwError, FdwResult, OrReport};
use crate::pg::typeio::TransmissionModes;

mod direct;
mod insert;
mod rowwise;
mod shared;
mod truncate;

use direct::{begin_direct_modify, end_direct_modify, explain_direct_modify, iterate_direct_modify, plan_direct_modify};
use insert::{new_insert_state, InsertState};
use rowwise::{new_rowwise_state, RowwiseState};
use shared::{check_plan_refusals, json_from_list, json_list, not_supported, rte_of, ModifyPlan, ROWID_JUNK};
use truncate::exec_foreign_truncate;

// ---------------------------------------------------------------------------------------------
// Options without a user mapping (IsForeignRelUpdatable runs before any mapping is needed).

unsafe fn table_options(relid: pg_sys::Oid) -> (ServerOptions, TableOptions, String) {
    // SAFETY: this function's contract: called on the backend thread, inside a transaction.
    unsafe {
        let table = pg_sys::GetForeignTable(relid);
        let server = pg_sys::GetForeignServer((*table).serverid);
        let so = ServerOptions::from_pairs(&deflist_to_pairs((*server).options));
        let name = cstr_owned(pg_sys::get_rel_name(relid)).unwrap_or_default();
        let to = TableOptions::from_pairs(&deflist_to_pairs((*table).options), &name, &so);
        (so, to, name)
    }
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn is_foreign_rel_updatable(rel: pg_sys::Relation) -> i32 {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        let (_, opts, _) = table_options((*rel).rd_id);
        // A foreign table over a query is read-only; `updatable false` forbids INSERT, UPDATE and DELETE.
        if opts.query.is_some() || !opts.updatable {
            return 0;
        }
        (1 << pg_sys::CmdType::CMD_INSERT) | (1 << pg_sys::CmdType::CMD_UPDATE) | (1 << pg_sys::CmdType::CMD_DELETE)
    }
}

// ---------------------------------------------------------------------------------------------
// Planning.

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn plan_foreign_modify(
    root: *mut pg_sys::PlannerInfo,
    plan: *mut pg_sys::ModifyTable,
    result_relation: pg_sys::Index,
    _subplan_index: i32,
) -> *mut pg_sys::List {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        plan_modify(root, plan, result_relation).or_report()
    }
}

unsafe fn plan_modify(
    root: *mut pg_sys::PlannerInfo,
    plan: *mut pg_sys::ModifyTable,
    rti: pg_sys::Index,
) -> FdwResult<*mut pg_sys::List> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let rte = rte_of(root, rti);
        let relid = (*rte).relid;
        check_plan_refusals(plan, relid)?;
        let op = (*plan).operation;
        let mut update_attnums = Vec::new();
        if op == pg_sys::CmdType::CMD_UPDATE || op == pg_sys::CmdType::CMD_DELETE {
            let (_, opts, name) = table_options(relid);
            let has_rowid = rowid_attnum(relid, &opts.rowid_column).is_some();
            if !has_rowid {
                let verb = if op == pg_sys::CmdType::CMD_UPDATE { "update" } else { "delete from" };
                return Err(not_supported(
                    format!(
                        "cannot {verb} foreign table \"{name}\" row by row: it has no column for its rowid column \"{}\"",
                        opts.rowid_column
                    ),
                    Some("Add the remote table's key column (cartodb_id, or the table option rowid_column) to the foreign table, or write the statement so that CARTO can run it whole (WHERE and SET only with built-in immutable operators and functions)."),
                ));
            }
        }
        if op == pg_sys::CmdType::CMD_UPDATE {
            let cols = crate::pg::compat::updated_cols(root, rte);
            let mut col = -1;
            loop {
                col = pg_sys::bms_next_member(cols, col);
                if col < 0 {
                    break;
                }
                let attno = col + pg_sys::FirstLowInvalidHeapAttributeNumber;
                if attno <= 0 {
                    return Err(not_supported("updating a system column of a CARTO foreign table is not supported", None));
                }
                update_attnums.push(attno as i16);
            }
        }
        let mp = ModifyPlan { op, update_attnums };
        Ok(json_list(&mp))
    }
}

/// The local column whose remote name is the rowid column: attnum, type, typmod, collation.
unsafe fn rowid_attnum(relid: pg_sys::Oid, rowid: &str) -> Option<(i16, pg_sys::Oid, i32, pg_sys::Oid)> {
    // SAFETY: this function's contract: called on the backend thread, inside a transaction.
    unsafe {
        crate::fdw::table::columns_of(relid)
            .into_iter()
            .flatten()
            .find(|c| c.remote_name == rowid)
            .map(|c| (c.attnum, c.type_oid, c.typmod, c.collation))
    }
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn add_foreign_update_targets(
    root: *mut pg_sys::PlannerInfo,
    rtindex: pg_sys::Index,
    target_rte: *mut pg_sys::RangeTblEntry,
    _target_relation: pg_sys::Relation,
) {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        let relid = (*target_rte).relid;
        let (_, opts, _) = table_options(relid);
        // Without a rowid column only direct modification can work; plan_foreign_modify says so.
        if let Some((attnum, typid, typmod, coll)) = rowid_attnum(relid, &opts.rowid_column) {
            let var = pg_sys::makeVar(rtindex as _, attnum, typid, typmod, coll, 0);
            pg_sys::add_row_identity_var(root, var, rtindex, ROWID_JUNK.as_ptr());
        }
    }
}

enum ModifyState {
    Insert(InsertState),
    Rowwise(RowwiseState),
}

unsafe fn modify_state<'a>(rinfo: *mut pg_sys::ResultRelInfo) -> Option<&'a mut ModifyState> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        ((*rinfo).ri_FdwState as *mut ModifyState).as_mut()
    }
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn begin_foreign_modify(
    mtstate: *mut pg_sys::ModifyTableState,
    rinfo: *mut pg_sys::ResultRelInfo,
    fdw_private: *mut pg_sys::List,
    _subplan_index: i32,
    eflags: i32,
) {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        begin_modify(mtstate, rinfo, fdw_private, eflags).or_report()
    }
}

unsafe fn begin_modify(
    mtstate: *mut pg_sys::ModifyTableState,
    rinfo: *mut pg_sys::ResultRelInfo,
    fdw_private: *mut pg_sys::List,
    eflags: i32,
) -> FdwResult<()> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let explain_only = eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as i32 != 0;
        let plan: ModifyPlan = json_from_list(fdw_private)?;
        let estate = (*mtstate).ps.state;
        let state = if plan.op == pg_sys::CmdType::CMD_INSERT {
            ModifyState::Insert(new_insert_state(estate, rinfo, explain_only)?)
        } else {
            ModifyState::Rowwise(new_rowwise_state(mtstate, rinfo, &plan, explain_only)?)
        };
        (*rinfo).ri_FdwState = PgMemoryContexts::CurrentMemoryContext.leak_and_drop_on_delete(state).cast();
        Ok(())
    }
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn exec_foreign_insert(
    _estate: *mut pg_sys::EState,
    rinfo: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    _plan_slot: *mut pg_sys::TupleTableSlot,
) -> *mut pg_sys::TupleTableSlot {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        if let Some(ModifyState::Insert(st)) = modify_state(rinfo) {
            let modes = TransmissionModes::enter();
            st.encode_row(&modes, slot);
            drop(modes);
            st.flush_full().or_report();
        }
        slot
    }
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn exec_foreign_batch_insert(
    _estate: *mut pg_sys::EState,
    rinfo: *mut pg_sys::ResultRelInfo,
    slots: *mut *mut pg_sys::TupleTableSlot,
    _plan_slots: *mut *mut pg_sys::TupleTableSlot,
    num_slots: *mut i32,
) -> *mut *mut pg_sys::TupleTableSlot {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        let n = (*num_slots).max(0) as usize;
        if let Some(ModifyState::Insert(st)) = modify_state(rinfo) {
            // The settings are switched once for the whole batch, not per row or value.
            let modes = TransmissionModes::enter();
            for i in 0..n {
                st.encode_row(&modes, *slots.add(i));
            }
            drop(modes);
            st.flush_full().or_report();
        }
        slots
    }
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn get_foreign_modify_batch_size(rinfo: *mut pg_sys::ResultRelInfo) -> i32 {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        // Rows are buffered into COPY chunks anyway; batching only saves a function call per row.
        // Row triggers need each row as it is inserted (as postgres_fdw does).
        let td = (*rinfo).ri_TrigDesc;
        if !(*rinfo).ri_projectReturning.is_null()
            || (!td.is_null() && ((*td).trig_insert_after_row || (*td).trig_insert_before_row))
        {
            return 1;
        }
        100
    }
}

/// ExecForeignUpdate and ExecForeignDelete alike: a row-wise statement collects the row's rowid
/// (and, for UPDATE, its changed columns) into the next batch.
///
/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn exec_foreign_update_or_delete(
    _estate: *mut pg_sys::EState,
    rinfo: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    plan_slot: *mut pg_sys::TupleTableSlot,
) -> *mut pg_sys::TupleTableSlot {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        if let Some(ModifyState::Rowwise(st)) = modify_state(rinfo) {
            st.add_row(slot, plan_slot).or_report();
        }
        slot
    }
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn end_foreign_modify(_estate: *mut pg_sys::EState, rinfo: *mut pg_sys::ResultRelInfo) {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        match modify_state(rinfo) {
            // The rest of the statement's rows go into the upload, which stays open until pre-commit.
            Some(ModifyState::Insert(st)) => st.flush_all().or_report(),
            Some(ModifyState::Rowwise(st)) => st.flush().or_report(),
            None => {}
        }
    }
}

// BeginForeignInsert / EndForeignInsert: COPY FROM and tuple routing into a foreign partition.

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn begin_foreign_insert(mtstate: *mut pg_sys::ModifyTableState, rinfo: *mut pg_sys::ResultRelInfo) {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        begin_insert(mtstate, rinfo).or_report()
    }
}

unsafe fn begin_insert(mtstate: *mut pg_sys::ModifyTableState, rinfo: *mut pg_sys::ResultRelInfo) -> FdwResult<()> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let relid = (*(*rinfo).ri_RelationDesc).rd_id;
        let name = cstr_owned(pg_sys::get_rel_name(relid)).unwrap_or_default();
        if !(*rinfo).ri_returningList.is_null() {
            return Err(not_supported(format!("RETURNING is not supported on CARTO foreign table \"{name}\""), None));
        }
        let mut estate = std::ptr::null_mut();
        if !mtstate.is_null() {
            let plan = (*mtstate).ps.plan as *mut pg_sys::ModifyTable;
            if !plan.is_null() && (*plan).onConflictAction != pg_sys::OnConflictAction::ONCONFLICT_NONE {
                return Err(not_supported(format!("ON CONFLICT is not supported on CARTO foreign table \"{name}\""), None));
            }
            estate = (*mtstate).ps.state;
        }
        let st = if estate.is_null() {
            // COPY FROM passes a ModifyTableState whose state is the EState; be defensive anyway.
            return Err(FdwError::internal("BeginForeignInsert without an executor state"));
        } else {
            new_insert_state(estate, rinfo, false)?
        };
        (*rinfo).ri_FdwState = PgMemoryContexts::CurrentMemoryContext.leak_and_drop_on_delete(ModifyState::Insert(st)).cast();
        Ok(())
    }
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn end_foreign_insert(_estate: *mut pg_sys::EState, rinfo: *mut pg_sys::ResultRelInfo) {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        if let Some(ModifyState::Insert(st)) = modify_state(rinfo) {
            st.flush_all().or_report();
        }
    }
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn explain_foreign_modify(
    _mtstate: *mut pg_sys::ModifyTableState,
    rinfo: *mut pg_sys::ResultRelInfo,
    _fdw_private: *mut pg_sys::List,
    _subplan_index: i32,
    es: *mut pg_sys::ExplainState,
) {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        match modify_state(rinfo) {
            Some(ModifyState::Insert(st)) => {
                explain_text(es, "CARTO endpoint", "COPY (/copyfrom)");
                if (*es).verbose {
                    explain_text(es, "CARTO transport", if st.binary.is_some() { "COPY binary" } else { "COPY text" });
                    explain_text(es, "Remote SQL", &st.sql_with);
                    if let Some(s) = &st.sql_without {
                        explain_text(es, "Remote SQL for a NULL rowid", s);
                    }
                }
            }
            Some(ModifyState::Rowwise(st)) => {
                explain_text(es, "CARTO endpoint", "SQL API (/sql), batched by rowid");
                if (*es).verbose {
                    explain_text(es, "Remote SQL", &st.explain_sql);
                }
                if (*es).analyze {
                    explain_int(es, "CARTO requests", st.requests as i64);
                }
            }
            None => {}
        }
    }
}

/// The write slots of the FdwRoutine (kept here so the handler changes by one line).
pub fn assign_slots(r: &mut pg_sys::FdwRoutine) {
    r.IsForeignRelUpdatable = Some(is_foreign_rel_updatable);
    r.AddForeignUpdateTargets = Some(add_foreign_update_targets);
    r.PlanForeignModify = Some(plan_foreign_modify);
    r.BeginForeignModify = Some(begin_foreign_modify);
    r.ExecForeignInsert = Some(exec_foreign_insert);
    r.ExecForeignBatchInsert = Some(exec_foreign_batch_insert);
    r.GetForeignModifyBatchSize = Some(get_foreign_modify_batch_size);
    r.ExecForeignUpdate = Some(exec_foreign_update_or_delete);
    r.ExecForeignDelete = Some(exec_foreign_update_or_delete);
    r.EndForeignModify = Some(end_foreign_modify);
    r.BeginForeignInsert = Some(begin_foreign_insert);
    r.EndForeignInsert = Some(end_foreign_insert);
    r.ExplainForeignModify = Some(explain_foreign_modify);
    r.PlanDirectModify = Some(plan_direct_modify);
    r.BeginDirectModify = Some(begin_direct_modify);
    r.IterateDirectModify = Some(iterate_direct_modify);
    r.EndDirectModify = Some(end_direct_modify);
    r.ExplainDirectModify = Some(explain_direct_modify);
    r.ExecForeignTruncate = Some(exec_foreign_truncate);
}
