//! Being told when the catalogue of foreign servers, user mappings or foreign tables changes, so that
//! caches built from it (crate::fdw::remote_catalog) are dropped, as postgres_fdw's connection cache is.
//!
//! pgrx does not bind utils/inval.h: its two registration functions are declared here.

use std::cell::Cell;
use std::ffi::c_int;

use pgrx::pg_sys;

type SyscacheCallback = unsafe extern "C-unwind" fn(arg: pg_sys::Datum, cacheid: c_int, hashvalue: u32);
type RelcacheCallback = unsafe extern "C-unwind" fn(arg: pg_sys::Datum, relid: pg_sys::Oid);

extern "C-unwind" {
    fn CacheRegisterSyscacheCallback(cacheid: c_int, func: SyscacheCallback, arg: pg_sys::Datum);
    fn CacheRegisterRelcacheCallback(func: RelcacheCallback, arg: pg_sys::Datum);
}

/// What changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatalogChange {
    /// A foreign server or a user mapping: anything built from them may be wrong.
    ServerOrMapping,
    /// The pg_foreign_table entry whose syscache hash is this ([`foreign_table_hash`]); 0 for all of them.
    ForeignTable(u32),
    /// A relation's definition (its columns); InvalidOid for all relations.
    Relation(pg_sys::Oid),
}

thread_local! {
    /// The one function called on a change; registered once per backend (PostgreSQL keeps a callback for the
    /// backend's life and has no way to remove one).
    static ON_CHANGE: Cell<Option<fn(CatalogChange)>> = const { Cell::new(None) };
}

/// Calls `f` whenever a foreign server, a user mapping, a foreign table's options or a relation changes in
/// this database (also by other sessions), from now on for the life of the backend. Relations change often
/// (ANALYZE, autovacuum's statistics, every CREATE): `f` must be cheap and drop only what concerns it. The
/// first call's `f` wins.
pub fn on_foreign_catalog_change(f: fn(CatalogChange)) {
    if ON_CHANGE.with(|c| c.get()).is_some() {
        return;
    }
    ON_CHANGE.with(|c| c.set(Some(f)));
    // SAFETY: backend thread; the callbacks are plain functions that live as long as the library, and
    // PostgreSQL copies the registration into its own fixed array (an ERROR when it is full).
    unsafe {
        for cache in [
            pg_sys::SysCacheIdentifier::FOREIGNSERVEROID,
            pg_sys::SysCacheIdentifier::USERMAPPINGOID,
            pg_sys::SysCacheIdentifier::FOREIGNTABLEREL,
        ] {
            CacheRegisterSyscacheCallback(cache as c_int, syscache_changed, pg_sys::Datum::from(0));
        }
        CacheRegisterRelcacheCallback(relcache_changed, pg_sys::Datum::from(0));
    }
}

/// The hash a change of foreign table `relid`'s pg_foreign_table entry is announced with. Not from inside an
/// invalidation callback: the first use of the cache reads the catalog.
pub fn foreign_table_hash(relid: pg_sys::Oid) -> u32 {
    // SAFETY: backend thread, in a transaction (the callers plan or execute a scan): the first call may
    // initialize the catalog cache, which opens pg_foreign_table.
    unsafe {
        pg_sys::GetSysCacheHashValue(
            pg_sys::SysCacheIdentifier::FOREIGNTABLEREL as c_int,
            pg_sys::Datum::from(relid),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
        )
    }
}

fn changed(change: CatalogChange) {
    if let Some(f) = ON_CHANGE.with(|c| c.get()) {
        f(change);
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn syscache_changed(_arg: pg_sys::Datum, cacheid: c_int, hashvalue: u32) {
    if cacheid == pg_sys::SysCacheIdentifier::FOREIGNTABLEREL as c_int {
        changed(CatalogChange::ForeignTable(hashvalue));
    } else {
        changed(CatalogChange::ServerOrMapping);
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn relcache_changed(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    changed(CatalogChange::Relation(relid));
}
