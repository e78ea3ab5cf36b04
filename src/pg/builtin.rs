//! What counts as a built-in object: the one definition the whole extension uses.
//!
//! As postgres_fdw's `is_builtin` (shippable.c): an object whose OID is below FirstGenbkiObjectId was
//! assigned by genbki from the catalog sources, so it is the same object with the same OID in every
//! PostgreSQL installation of the same major version, CARTO's included. OIDs between
//! FirstGenbkiObjectId and FirstNormalObjectId are assigned by initdb (information_schema, the system
//! views' row types, ...) and may differ from one installation to another: they are not built in here.

use pgrx::pg_sys;

/// The first OID that is not assigned from the catalog sources.
pub const FIRST_NON_BUILTIN_OID: u32 = pg_sys::FirstGenbkiObjectId;

/// Whether `oid` names a built-in object (see the module's documentation).
pub fn is_builtin(oid: pg_sys::Oid) -> bool {
    u32::from(oid) < FIRST_NON_BUILTIN_OID
}

#[cfg(test)]
mod unit {
    #[test]
    fn the_genbki_boundary() {
        assert!(super::is_builtin(pgrx::pg_sys::Oid::from(25u32)));
        assert!(!super::is_builtin(pgrx::pg_sys::Oid::from(10_000u32)));
        assert!(!super::is_builtin(pgrx::pg_sys::Oid::from(16_384u32)));
    }
}
