//! The extension's own bookkeeping tables (`carto.batch_jobs`, `carto.sync_runs`, `carto.sync_locks`)
//! are written only by the extension's functions, never by a role directly: nobody is granted INSERT,
//! UPDATE or DELETE on them, row-level security shows each role its own rows (the rows of the roles
//! whose privileges it has), and the functions write them as the tables' owner for the duration of one
//! fixed, parameterized statement — as PostgreSQL's own internal checks switch user (the RI triggers).
//! So a role can neither read another role's job SQL nor forge a run or a watermark.

use pgrx::{pg_sys, Spi};

use crate::pg::error::{FdwError, FdwResult};
use crate::pg::identity;

/// The role calling the function (the one whose rows these are).
pub fn caller() -> pg_sys::Oid {
    // SAFETY: GetUserId only reads this backend's current user id (backend thread).
    unsafe { pg_sys::GetUserId() }
}

/// The caller's role name, recorded for people reading the tables.
pub fn caller_name() -> String {
    // SAFETY: backend thread in a transaction (SQL-callable functions); noerr = true gives NULL, not an ERROR, for a
    // dropped role, and cstr_owned accepts NULL.
    unsafe { crate::pg::cstr::cstr_owned(pg_sys::GetUserNameFromId(pg_sys::GetUserId(), true)) }.unwrap_or_default()
}

/// Runs `work` (SPI statements on `carto.<table>`) as the owner of that table, then switches back to
/// the caller, also when `work` raises. Through crate::pg::identity: search_path is pinned to
/// `pg_catalog, pg_temp` meanwhile, and the statements name every object with its schema.
pub fn as_owner_of<T>(table: &str, work: impl FnOnce() -> FdwResult<T>) -> FdwResult<T> {
    // No privilege is needed to read pg_class (a regclass cast would need USAGE on the schema).
    // Run as the caller, but qualified all the same: nothing here depends on the caller's path.
    let owner: pg_sys::Oid = Spi::get_one_with_args(
        "SELECT c.relowner FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n \
         ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
         WHERE n.nspname OPERATOR(pg_catalog.=) 'carto'::pg_catalog.name AND c.relname OPERATOR(pg_catalog.=) $1::pg_catalog.name",
        &[table.into()],
    )
    .map_err(|e| FdwError::internal(format!("looking up carto.{table}: {e}")))?
    .ok_or_else(|| FdwError::internal(format!("the table carto.{table} is missing")))?;
    identity::as_role(owner, work)
}
