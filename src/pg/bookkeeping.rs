//! The extension's own bookkeeping tables (`carto.batch_jobs`, `carto.sync_runs`, `carto.sync_locks`)
//! are written only by the extension's functions, never by a role directly: nobody is granted INSERT,
//! UPDATE or DELETE on them, row-level security shows each role its own rows (the rows of the roles
//! whose privileges it has), and the functions write them as the tables' owner for the duration of one
//! fixed, parameterized statement — as PostgreSQL's own internal checks switch user (the RI triggers).
//! So a role can neither read another role's job SQL nor forge a run or a watermark.

use std::panic::AssertUnwindSafe;

use pgrx::{pg_sys, PgTryBuilder, Spi};

use crate::pg::error::{FdwError, FdwResult};

/// The role calling the function (the one whose rows these are).
pub fn caller() -> pg_sys::Oid {
    unsafe { pg_sys::GetUserId() }
}

/// The caller's role name, recorded for people reading the tables.
pub fn caller_name() -> String {
    unsafe { crate::fdw::deparse::cstr_owned(pg_sys::GetUserNameFromId(pg_sys::GetUserId(), true)) }.unwrap_or_default()
}

/// Runs `work` (SPI statements on `carto.<table>`) as the owner of that table, then switches back to
/// the caller, also when `work` raises.
pub fn as_owner_of<T>(table: &str, work: impl FnOnce() -> FdwResult<T>) -> FdwResult<T> {
    // No privilege is needed to read pg_class (a regclass cast would need USAGE on the schema).
    let owner: pg_sys::Oid = Spi::get_one_with_args(
        "SELECT c.relowner FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'carto' AND c.relname = $1",
        &[table.into()],
    )
    .map_err(|e| FdwError::internal(format!("looking up carto.{table}: {e}")))?
    .ok_or_else(|| FdwError::internal(format!("the table carto.{table} is missing")))?;
    unsafe {
        let mut saved_user = pg_sys::InvalidOid;
        let mut saved_context: i32 = 0;
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        pg_sys::SetUserIdAndSecContext(
            owner,
            saved_context
                | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
        );
        PgTryBuilder::new(AssertUnwindSafe(work))
            .finally(|| pg_sys::SetUserIdAndSecContext(saved_user, saved_context))
            .execute()
    }
}
