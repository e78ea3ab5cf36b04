//! What the write files share: the names CARTO gives columns, the refusals at plan time, the plan handed from
//! PlanForeignModify to the executor (as JSON in fdw_private), and whose user mapping a write uses.

use std::ffi::{c_char, CString};

use pgrx::pg_sys;
use pgrx::PgList;
use serde::{Deserialize, Serialize};

use crate::pg::cstr::cstr_owned;
use crate::pg::error::{FdwError, FdwResult};

/// CARTO's trigger fills it from the_geom: never sent on INSERT.
pub(super) const WEBMERCATOR: &str = "the_geom_webmercator";

/// Name of the junk column that carries the rowid of each row to update or delete.
pub(super) const ROWID_JUNK: &std::ffi::CStr = c"carto_rowid";

pub(super) fn not_supported(message: impl Into<String>, hint: Option<&str>) -> FdwError {
    FdwError::NotSupported { message: message.into(), hint: hint.map(str::to_string) }
}

/// What the executor of a row-wise modification needs (ModifyTable's fdw_private, as JSON).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(super) struct ModifyPlan {
    /// pg_sys::CmdType
    pub(super) op: u32,
    /// UPDATE: the attnums of the changed columns (only those are sent).
    pub(super) update_attnums: Vec<i16>,
}

pub(super) unsafe fn rte_of(root: *mut pg_sys::PlannerInfo, rti: pg_sys::Index) -> *mut pg_sys::RangeTblEntry {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        *(*root).simple_rte_array.add(rti as usize)
    }
}

pub(super) unsafe fn check_plan_refusals(plan: *mut pg_sys::ModifyTable, relid: pg_sys::Oid) -> FdwResult<()> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let name = cstr_owned(pg_sys::get_rel_name(relid)).unwrap_or_default();
        if !(*plan).returningLists.is_null() {
            return Err(not_supported(
                format!("RETURNING is not supported on CARTO foreign table \"{name}\""),
                Some("CARTO's COPY and the batched /sql writes return no rows; read the table back after the statement instead."),
            ));
        }
        if (*plan).onConflictAction != pg_sys::OnConflictAction::ONCONFLICT_NONE {
            return Err(not_supported(
                format!("ON CONFLICT is not supported on CARTO foreign table \"{name}\""),
                Some("Rows are streamed through COPY, which has no conflict handling; use carto.exec() with an INSERT ... ON CONFLICT statement, or carto.push() in upsert mode."),
            ));
        }
        Ok(())
    }
}

pub(super) unsafe fn json_list<T: Serialize>(v: &T) -> *mut pg_sys::List {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let json = serde_json::to_string(v).unwrap_or_default();
        let c = CString::new(json).unwrap_or_default();
        let mut l = PgList::<pg_sys::Node>::new();
        l.push(pg_sys::makeString(pg_sys::pstrdup(c.as_ptr())).cast());
        l.into_pg()
    }
}

pub(super) unsafe fn json_from_list<T: for<'de> Deserialize<'de>>(list: *mut pg_sys::List) -> FdwResult<T> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let l = PgList::<pg_sys::Node>::from_pg(list);
        let node = l.get_ptr(0).ok_or_else(|| FdwError::internal("modify plan missing"))?;
        let s = crate::pg::cstr::cstr_as_written((*node.cast::<pg_sys::String>()).sval as *const c_char)
            .ok_or_else(|| FdwError::internal("modify plan missing"))?;
        serde_json::from_str(&s).map_err(|e| FdwError::internal(format!("unreadable modify plan: {e}")))
    }
}

/// The user whose mapping applies to a result relation, as ExecCheckRTPerms sees it.
pub(super) unsafe fn result_user(estate: *mut pg_sys::EState, rinfo: *mut pg_sys::ResultRelInfo) -> pg_sys::Oid {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let mut rti = (*rinfo).ri_RangeTableIndex as usize;
        // A partition reached by tuple routing has no range-table entry of its own: use its root's.
        if rti == 0 && !(*rinfo).ri_RootResultRelInfo.is_null() {
            rti = (*(*rinfo).ri_RootResultRelInfo).ri_RangeTableIndex as usize;
        }
        let rtable = PgList::<pg_sys::RangeTblEntry>::from_pg((*estate).es_range_table);
        match rtable.get_ptr(rti.wrapping_sub(1)) {
            Some(rte) if crate::pg::compat::check_as_user(estate, rte) != pg_sys::InvalidOid => {
                crate::pg::compat::check_as_user(estate, rte)
            }
            _ => pg_sys::GetUserId(),
        }
    }
}
