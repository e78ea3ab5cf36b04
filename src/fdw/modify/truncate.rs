//! TRUNCATE of foreign tables.

use pgrx::pg_sys;
use pgrx::PgList;
use crate::fdw::connection::client_for;
use crate::fdw::table::TableDef;
use crate::fdw::xact::{cleanup_stale_uploads, finish_pending_for};
use crate::pg::error::{FdwError, FdwResult, OrReport};
use crate::pg::runtime::block_on;

use super::shared::not_supported;

// ---------------------------------------------------------------------------------------------
// TRUNCATE.

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn exec_foreign_truncate(rels: *mut pg_sys::List, behavior: pg_sys::DropBehavior::Type, restart_seqs: bool) {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        truncate(rels, behavior, restart_seqs).or_report()
    }
}

unsafe fn truncate(rels: *mut pg_sys::List, behavior: pg_sys::DropBehavior::Type, restart_seqs: bool) -> FdwResult<()> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let userid = pg_sys::GetUserId();
        // Group by server: one statement per server (all tables of one account truncate together).
        let mut groups: Vec<(pg_sys::Oid, Vec<TableDef>)> = Vec::new();
        for rel in PgList::<pg_sys::RelationData>::from_pg(rels).iter_ptr() {
            let relid = (*rel).rd_id;
            let table = TableDef::load(relid, userid)?;
            if table.options.query.is_some() {
                return Err(not_supported(
                    format!("cannot truncate foreign table \"{}\": it reads a query, not a table", table.local_name),
                    None,
                ));
            }
            if !table.options.truncatable {
                return Err(not_supported(
                    format!("foreign table \"{}\" does not allow truncates", table.local_name),
                    Some("The option truncatable is false on the foreign table or its server."),
                ));
            }
            let serverid = (*pg_sys::GetForeignTable(relid)).serverid;
            match groups.iter_mut().find(|(s, _)| *s == serverid) {
                Some((_, v)) => v.push(table),
                None => groups.push((serverid, vec![table])),
            }
        }
        for (_, tables) in groups {
            for t in &tables {
                finish_pending_for(t.relid)?;
            }
            let names: Vec<String> = tables.iter().map(|t| t.from_clause()).collect();
            let mut sql = format!("TRUNCATE {}", names.join(", "));
            if restart_seqs {
                sql.push_str(" RESTART IDENTITY");
            }
            if behavior == pg_sys::DropBehavior::DROP_CASCADE {
                sql.push_str(" CASCADE");
            }
            let client = client_for(&tables[0].access)?;
            cleanup_stale_uploads(&client);
            let labels: Vec<String> = tables.iter().map(|t| format!("\"{}\"", t.local_name)).collect();
            block_on(client.query(&sql))?
                .map_err(|e| FdwError::remote(e, format!("truncating foreign table {}", labels.join(", "))))?;
        }
        Ok(())
    }
}
