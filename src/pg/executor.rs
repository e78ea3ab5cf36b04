//! Small helpers over the executor shared by the scans and the modifications: slots, errors that name
//! the column, EXPLAIN properties.

use std::ffi::CString;

use pgrx::pg_sys;
use pgrx::pg_sys::panic::{CaughtError, ErrorReport};
use pgrx::PgLogLevel;

/// Clears `slot` for a new virtual tuple: its values and null flags, every column NULL until set.
///
/// # Safety
/// Backend thread; `slot` a valid slot, not used through other references while these live.
pub unsafe fn empty_slot<'a>(slot: *mut pg_sys::TupleTableSlot) -> (&'a mut [pg_sys::Datum], &'a mut [bool]) {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        if let Some(clear) = (*(*slot).tts_ops).clear {
            clear(slot);
        }
        let natts = (*(*slot).tts_tupleDescriptor).natts as usize;
        let datums = std::slice::from_raw_parts_mut((*slot).tts_values, natts);
        let nulls = std::slice::from_raw_parts_mut((*slot).tts_isnull, natts);
        nulls.fill(true);
        (datums, nulls)
    }
}

/// Raises the ERROR `e` (caught while a type's input or receive function converted a value) again,
/// naming the column and the foreign table in its detail, as postgres_fdw's conversion errors do.
pub fn reraise_with_column(e: CaughtError, column: &str, table: &str) -> ! {
    let report = match &e {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
        CaughtError::RustPanic { ereport, .. } => ereport,
    };
    let context = format!("column \"{column}\" of foreign table \"{table}\"");
    let detail = match report.detail() {
        Some(d) => format!("{d}\nWhile converting {context}."),
        None => format!("While converting {context}."),
    };
    // Names are UTF-8 here: written for the database encoding (crate::pg::error::for_database).
    ErrorReport::new(report.sql_error_code(), crate::pg::error::for_database(report.message().to_string()), "carto_fdw")
        .set_detail(crate::pg::error::for_database(detail))
        .report(PgLogLevel::ERROR);
    unreachable!()
}

/// One property line of EXPLAIN (text, JSON, ...), any API key in `value` masked.
///
/// # Safety
/// Backend thread; `es` the ExplainState of the EXPLAIN being written.
pub unsafe fn explain_text(es: *mut pg_sys::ExplainState, label: &str, value: &str) {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        let l = CString::new(label).unwrap_or_default();
        // The remote SQL is UTF-8 (what CARTO gets): EXPLAIN prints it in the database encoding.
        let v = crate::pg::encoding::server_cstring(&crate::pg::error::mask_secrets(value)).unwrap_or_default();
        pg_sys::ExplainPropertyText(l.as_ptr(), v.as_ptr(), es);
    }
}

/// One integer property line of EXPLAIN.
///
/// # Safety
/// Backend thread; `es` the ExplainState of the EXPLAIN being written.
pub unsafe fn explain_int(es: *mut pg_sys::ExplainState, label: &str, value: i64) {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        let l = CString::new(label).unwrap_or_default();
        pg_sys::ExplainPropertyInteger(l.as_ptr(), std::ptr::null(), value, es);
    }
}
