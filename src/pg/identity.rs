//! Running code under another identity: the one mechanism for it in this extension.
//!
//! Code that runs as another role than the caller (today: the bookkeeping functions that write the
//! `carto.*` tables as their owner, crate::pg::bookkeeping) must not resolve a single name through
//! the caller's `search_path`: a caller who puts a schema of their own before `pg_catalog` would
//! otherwise have their functions and operators run with the other role's privileges (the class of
//! CVE-2018-1058; PostgreSQL 17 pins `search_path` for its own maintenance commands the same way).
//! So [`as_role`] switches the user id with `SECURITY_RESTRICTED_OPERATION` *and* pins
//! `search_path` to `pg_catalog, pg_temp` (a GUC nest level) for the duration, and restores both
//! on success and on ERROR. The SQL run inside still names every function, operator and table with
//! its schema (`pg_catalog.now()`, `OPERATOR(pg_catalog.=)`, `carto.sync_runs`): the pin is the
//! safety net, the qualification what a reader can check.

use std::panic::AssertUnwindSafe;

use pgrx::{pg_sys, PgTryBuilder};

use crate::pg::guc::GucLevel;

/// The search_path every statement run under another identity sees (PostgreSQL's own
/// GUC_SAFE_SEARCH_PATH): the system catalog, then the session's temporary schema (which is never
/// searched for functions or operators).
const SAFE_SEARCH_PATH: &std::ffi::CStr = c"pg_catalog, pg_temp";

/// Runs `work` as `role`, in a security-restricted operation, with `search_path` pinned to
/// `pg_catalog, pg_temp`; the caller's user id, security context and search_path are back in place
/// afterwards, also when `work` raises an ERROR (which then goes on unwinding).
///
/// Backend thread only, inside a transaction.
pub fn as_role<T>(role: pg_sys::Oid, work: impl FnOnce() -> T) -> T {
    let mut saved_user = pg_sys::InvalidOid;
    let mut saved_context: i32 = 0;
    // SAFETY: the GUC and user-id API on the backend thread inside a transaction (this function's
    // contract). The nest level opened here and the identity set here are both undone in `finally`,
    // which PgTryBuilder runs on success and on an ERROR before re-raising it.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        let pinned = std::cell::Cell::new(Some(GucLevel::set(&[(c"search_path", SAFE_SEARCH_PATH)])));
        pg_sys::SetUserIdAndSecContext(
            role,
            saved_context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32 | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
        );
        PgTryBuilder::new(AssertUnwindSafe(work))
            .finally(|| {
                pg_sys::SetUserIdAndSecContext(saved_user, saved_context);
                drop(pinned.take());
            })
            .execute()
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn as_role_pins_search_path_and_restores_it() {
        Spi::run("CREATE SCHEMA shadow; SET search_path = shadow, pg_catalog").unwrap();
        // SAFETY: GetUserId only reads this backend's current user id (a #[pg_test], backend thread).
        let me = unsafe { pg_sys::GetUserId() };
        let inside = super::as_role(me, || Spi::get_one::<String>("SELECT pg_catalog.current_setting('search_path')"));
        assert_eq!(inside, Ok(Some("pg_catalog, pg_temp".to_string())));
        let after = Spi::get_one::<String>("SELECT pg_catalog.current_setting('search_path')");
        assert_eq!(after, Ok(Some("shadow, pg_catalog".to_string())));
    }
}
