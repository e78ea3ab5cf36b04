//! ANALYZE on a foreign table: a random sample of CARTO's rows, fetched in one `/sql` request
//! (every column cast to text, converted with the local input functions), so the planner gets
//! real statistics for selectivity and join estimates.

use std::ffi::CString;

use pgrx::pg_sys;

use crate::fdw::connection::client_for;
use crate::fdw::deparse::{text_aliases, text_select_list};
use crate::fdw::table::TableDef;
use crate::pg::error::{FdwError, FdwResult, OrReport};
use crate::pg::runtime::block_on;
use crate::pg::typeio::ColumnInput;

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn analyze_foreign_table(
    _relation: pg_sys::Relation,
    func: *mut pg_sys::AcquireSampleRowsFunc,
    totalpages: *mut pg_sys::BlockNumber,
) -> bool {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        *func = Some(acquire_sample_rows);
        // Pages mean nothing remotely; 1 keeps ANALYZE's arithmetic sane.
        *totalpages = 1;
        true
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn acquire_sample_rows(
    relation: pg_sys::Relation,
    _elevel: i32,
    rows: *mut pg_sys::HeapTuple,
    targrows: i32,
    totalrows: *mut f64,
    totaldeadrows: *mut f64,
) -> i32 {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        let (n, total) = sample(relation, rows, targrows).or_report();
        *totalrows = total;
        *totaldeadrows = 0.0;
        n
    }
}

unsafe fn sample(relation: pg_sys::Relation, rows: *mut pg_sys::HeapTuple, targrows: i32) -> FdwResult<(i32, f64)> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let table = TableDef::load((*relation).rd_id, pg_sys::GetUserId())?;
        let client = client_for(&table.access)?;
        let context = || format!("sampling foreign table \"{}\" for ANALYZE", table.local_name);

        // How many rows CARTO has: the count decides the sampling fraction.
        let from = table.from_clause();
        let count_sql = format!("SELECT count(*)::text AS n FROM {from}");
        let resp = block_on(client.query_readonly(&table.read_sql(count_sql)))?.map_err(|e| FdwError::remote(e, context()))?;
        let total: f64 = resp
            .text_rows(&["n"])
            .map_err(|e| FdwError::remote(e, context()))?
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0);

        let cols: Vec<_> = table.columns.iter().flatten().cloned().collect();
        let select = text_select_list(cols.iter().map(|c| c.remote_name.as_str()));
        let sample_sql = if table.options.query.is_none() && total > f64::from(targrows) * 2.0 {
            // Bernoulli sampling reads each row once remotely; a little over the target, then cut.
            let pct = (f64::from(targrows) / total * 100.0 * 1.3).min(100.0);
            format!(
                "SELECT {select} FROM {from} TABLESAMPLE BERNOULLI ({pct:.6}) LIMIT {targrows}",
            )
        } else {
            format!("SELECT {select} FROM {from} ORDER BY random() LIMIT {targrows}")
        };
        let resp = block_on(client.query_readonly(&table.read_sql(sample_sql)))?.map_err(|e| FdwError::remote(e, context()))?;
        let names = text_aliases(cols.len());
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let sampled = if cols.is_empty() {
            resp.rows.iter().map(|_| Vec::new()).collect()
        } else {
            resp.text_rows(&name_refs).map_err(|e| FdwError::remote(e, context()))?
        };

        let tupdesc = (*relation).rd_att;
        let natts = (*tupdesc).natts as usize;
        let mut inputs: Vec<ColumnInput> = cols.iter().map(|c| ColumnInput::new(c.attnum, c.type_oid, c.typmod)).collect();
        let mut count = 0i32;
        for row in sampled.into_iter().take(targrows.max(0) as usize) {
            let mut values = vec![pg_sys::Datum::from(0usize); natts];
            let mut nulls = vec![true; natts];
            let mut owned: Vec<Option<CString>> = Vec::with_capacity(row.len());
            for (i, v) in row.into_iter().enumerate() {
                owned.push(match v {
                    None => None,
                    Some(s) => Some(crate::pg::text::checked_cstring(s).map_err(|bad| {
                        bad.error(cols.get(i).map_or("?", |c| c.local_name.as_str()), &table.local_name)
                    })?),
                });
            }
            for (i, input) in inputs.iter_mut().enumerate() {
                let idx = input.attnum as usize - 1;
                if let Some(c) = owned.get(i).and_then(|v| v.as_ref()) {
                    values[idx] = input.input(c.as_ptr());
                    nulls[idx] = false;
                }
            }
            *rows.add(count as usize) = pg_sys::heap_form_tuple(tupdesc, values.as_mut_ptr(), nulls.as_mut_ptr());
            count += 1;
        }
        Ok((count, total.max(f64::from(count))))
    }
}
