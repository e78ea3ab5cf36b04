//! What differs between the PostgreSQL versions carto_fdw builds for (15 and 18), in one place: the
//! callbacks and planners call these and carry no `cfg` of their own.

use pgrx::pg_sys;

/// Whether a relid set is empty (a function in 15, a NULL test since 16).
///
/// # Safety
/// `a` a valid Bitmapset or null.
pub unsafe fn bms_is_empty(a: pg_sys::Relids) -> bool {
    #[cfg(feature = "pg15")]
    // SAFETY: a valid set or null: this function's contract.
    return unsafe { pg_sys::bms_is_empty(a) };
    #[cfg(not(feature = "pg15"))]
    return a.is_null();
}

/// Whether a path key sorts descending (btree strategy in 15, compare type since 18).
///
/// # Safety
/// `pk` a valid PathKey.
pub unsafe fn pathkey_descending(pk: *const pg_sys::PathKey) -> bool {
    // SAFETY: a valid PathKey: this function's contract.
    unsafe {
        #[cfg(feature = "pg15")]
        return (*pk).pk_strategy == pg_sys::BTGreaterStrategyNumber as i32;
        #[cfg(not(feature = "pg15"))]
        return (*pk).pk_cmptype == pg_sys::CompareType::COMPARE_GT;
    }
}

/// `parseTypeString`: the type named by `name` and its typmod; InvalidOid for an unknown type in
/// 15 (missing_ok), an ERROR there since 16 (no soft-error context given). Callers catch both.
///
/// # Safety
/// Backend thread, in a transaction; `name` NUL-terminated.
pub unsafe fn parse_type_string(name: *const std::ffi::c_char, oid: &mut pg_sys::Oid, typmod: &mut i32) {
    // SAFETY: backend thread in a transaction, a valid C string: this function's contract.
    unsafe {
        #[cfg(feature = "pg15")]
        pg_sys::parseTypeString(name, oid, typmod, true);
        #[cfg(not(feature = "pg15"))]
        pg_sys::parseTypeString(name, oid, typmod, std::ptr::null_mut());
    }
}

/// Costs and shape of a foreign path (the arguments every create_foreign*_path takes).
pub struct PathShape {
    pub target: *mut pg_sys::PathTarget,
    pub rows: f64,
    pub startup: f64,
    pub total: f64,
    pub pathkeys: *mut pg_sys::List,
    pub required_outer: pg_sys::Relids,
}

/// `create_foreignscan_path` for a base relation, without an outer path or fdw_private.
///
/// # Safety
/// While planning `rel`.
pub unsafe fn create_foreignscan_path(
    root: *mut pg_sys::PlannerInfo,
    rel: *mut pg_sys::RelOptInfo,
    s: PathShape,
) -> *mut pg_sys::ForeignPath {
    // SAFETY: planning `rel`: this function's contract.
    unsafe {
        #[cfg(feature = "pg15")]
        return pg_sys::create_foreignscan_path(root, rel, s.target, s.rows, s.startup, s.total, s.pathkeys, s.required_outer, std::ptr::null_mut(), std::ptr::null_mut());
        #[cfg(not(feature = "pg15"))]
        return pg_sys::create_foreignscan_path(root, rel, s.target, s.rows, 0, s.startup, s.total, s.pathkeys, s.required_outer, std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut());
    }
}

/// `create_foreign_join_path`, without an outer path or fdw_private.
///
/// # Safety
/// While planning the join `rel`.
pub unsafe fn create_foreign_join_path(
    root: *mut pg_sys::PlannerInfo,
    rel: *mut pg_sys::RelOptInfo,
    s: PathShape,
) -> *mut pg_sys::ForeignPath {
    // SAFETY: planning the join `rel`: this function's contract.
    unsafe {
        #[cfg(feature = "pg15")]
        return pg_sys::create_foreign_join_path(root, rel, s.target, s.rows, s.startup, s.total, s.pathkeys, s.required_outer, std::ptr::null_mut(), std::ptr::null_mut());
        #[cfg(not(feature = "pg15"))]
        return pg_sys::create_foreign_join_path(root, rel, s.target, s.rows, 0, s.startup, s.total, s.pathkeys, s.required_outer, std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut());
    }
}

/// `create_foreign_upper_path`, without an outer path or fdw_private (`required_outer` unused).
///
/// # Safety
/// While planning the upper relation `rel`.
pub unsafe fn create_foreign_upper_path(
    root: *mut pg_sys::PlannerInfo,
    rel: *mut pg_sys::RelOptInfo,
    s: PathShape,
) -> *mut pg_sys::ForeignPath {
    // SAFETY: planning `rel`: this function's contract.
    unsafe {
        #[cfg(feature = "pg15")]
        return pg_sys::create_foreign_upper_path(root, rel, s.target, s.rows, s.startup, s.total, s.pathkeys, std::ptr::null_mut(), std::ptr::null_mut());
        #[cfg(not(feature = "pg15"))]
        return pg_sys::create_foreign_upper_path(root, rel, s.target, s.rows, 0, s.startup, s.total, s.pathkeys, std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut());
    }
}

/// The role whose privileges (and user mapping) apply to range-table entry `rte` of the running
/// statement: the view owner's inside a view, else InvalidOid (the current user). In the RTE in 15,
/// in its RTEPermissionInfo since 16.
///
/// # Safety
/// Backend thread; `rte` an entry of `estate`'s range table.
pub unsafe fn check_as_user(estate: *mut pg_sys::EState, rte: *mut pg_sys::RangeTblEntry) -> pg_sys::Oid {
    // SAFETY: an entry of the running statement's range table: this function's contract.
    unsafe {
        #[cfg(feature = "pg15")]
        {
            let _ = estate;
            (*rte).checkAsUser
        }
        #[cfg(not(feature = "pg15"))]
        {
            if (*rte).perminfoindex == 0 {
                return pg_sys::InvalidOid;
            }
            (*pg_sys::getRTEPermissionInfo((*estate).es_rteperminfos, rte)).checkAsUser
        }
    }
}

/// The columns an UPDATE of `rte` assigns (offset by FirstLowInvalidHeapAttributeNumber), generated
/// columns included in 15 (PostgreSQL 16 computes those in the planner; foreign tables rarely have them).
///
/// # Safety
/// While planning the statement whose range-table entry `rte` is.
pub unsafe fn updated_cols(root: *mut pg_sys::PlannerInfo, rte: *mut pg_sys::RangeTblEntry) -> *mut pg_sys::Bitmapset {
    // SAFETY: planning the statement of `rte`: this function's contract.
    unsafe {
        #[cfg(feature = "pg15")]
        {
            let _ = root;
            pg_sys::bms_union((*rte).updatedCols, (*rte).extraUpdatedCols)
        }
        #[cfg(not(feature = "pg15"))]
        {
            if (*rte).perminfoindex == 0 {
                return std::ptr::null_mut();
            }
            (*pg_sys::getRTEPermissionInfo((*(*root).parse).rteperminfos, rte)).updatedCols
        }
    }
}

/// The attributes of a tuple descriptor (a plain array in 15, behind TupleDescAttr since 18).
///
/// # Safety
/// `tupdesc` valid for the lifetime the caller gives the slice.
pub unsafe fn tuple_desc_attrs<'a>(tupdesc: pg_sys::TupleDesc) -> Vec<&'a pg_sys::FormData_pg_attribute> {
    // SAFETY: a valid descriptor: this function's contract; natts entries.
    unsafe {
        let natts = (*tupdesc).natts;
        #[cfg(feature = "pg15")]
        return (*tupdesc).attrs.as_slice(natts as usize).iter().collect();
        #[cfg(not(feature = "pg15"))]
        return (0..natts).map(|i| &*pg_sys::TupleDescAttr(tupdesc, i)).collect();
    }
}

/// This backend's local transaction id (0 outside a backend with a PGPROC).
pub fn local_xact_id() -> u32 {
    // SAFETY: plain reads of this backend's own PGPROC on its thread.
    unsafe {
        if pg_sys::MyProc.is_null() {
            return 0;
        }
        #[cfg(feature = "pg15")]
        return (*pg_sys::MyProc).lxid;
        #[cfg(not(feature = "pg15"))]
        return (*pg_sys::MyProc).vxid.lxid;
    }
}
