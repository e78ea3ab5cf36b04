//! The format of COPY streams: binary (typsend / typreceive) where the types allow it, COPY text otherwise.
//!
//! The choice (option `copy_format`, docs/options.md and docs/reads.md "COPY formats"):
//! * `text`: always COPY text.
//! * `auto` (default): binary when every column involved can go binary ([`binary_type`]) and CARTO's column
//!   has the very same type (name, without typmod: the typmod is applied by the receive function as by the
//!   input function). CARTO's column types are read from its catalogue through `/sql` once per table and
//!   transaction ([`remote_types`]). A `query` table, a lookup that fails, or any other type: text.
//! * `binary`: binary whatever CARTO's column types (a read casts each column to the local type remotely);
//!   an ERROR for a column whose type cannot go binary at all.
//!
//! Binary is never used while client_encoding differs from the database encoding (text-like receive
//! functions would convert the bytes), nor in a database whose encoding is not UTF8 (or SQL_ASCII): CARTO's
//! text is UTF-8, which only the text transports convert (crate::pg::text). Such a scan or upload goes as
//! text. Where binary is used, text-like receive functions check the bytes against the encoding (invalid
//! UTF-8 and NUL refused), and the error names the column as on the text transports.
//!
//! A pushed join or aggregate (pushed.rs, scanrelid 0) always reads as text: its columns are expressions,
//! not table columns whose CARTO types were looked up.

use std::cell::RefCell;
use std::collections::HashMap;

use carto_client::Client;
use pgrx::pg_sys;

use crate::fdw::connection::client_for;
use crate::pg::sql_text::{quote_literal, strip_schema};
use crate::fdw::options::CopyFormat;
use crate::fdw::table::{Column, TableDef};
use crate::pg::binary::binary_type;
use crate::pg::error::{FdwError, FdwResult};
use crate::pg::runtime::block_on;

/// CARTO's column types of one table: remote column name → type name (no typmod).
type RemoteTypes = HashMap<String, String>;

thread_local! {
    /// CARTO's column types per foreign table (relid), with the local transaction that read them.
    static REMOTE_TYPES: RefCell<HashMap<u32, (u32, Option<RemoteTypes>)>> = RefCell::new(HashMap::new());
}

fn local_xact() -> u32 {
    crate::pg::compat::local_xact_id()
}

/// CARTO's column types of a foreign table (remote column name → `format_type(atttypid, NULL)`), read once
/// per table and local transaction; None for a `query` table or when the catalogue could not be read.
pub fn remote_types(table: &TableDef, client: &Client) -> FdwResult<Option<RemoteTypes>> {
    if table.options.query.is_some() {
        return Ok(None);
    }
    let key = u32::from(table.relid);
    let xact = local_xact();
    if let Some(hit) = REMOTE_TYPES.with(|c| c.borrow().get(&key).filter(|(x, _)| *x == xact).map(|(_, t)| t.clone())) {
        return Ok(hit);
    }
    let sql = format!(
        "SELECT a.attname::text AS n, format_type(a.atttypid, NULL) AS t FROM pg_catalog.pg_attribute a \
         WHERE a.attrelid = to_regclass({}) AND a.attnum > 0 AND NOT a.attisdropped",
        quote_literal(&table.from_clause())
    );
    // A failure only costs the binary format: the scan or upload goes as text.
    let types = match block_on(client.query_readonly(&sql))? {
        Ok(resp) => resp.text_rows(&["n", "t"]).ok().map(|rows| {
            rows.into_iter()
                .filter_map(|r| match (r.first().cloned().flatten(), r.get(1).cloned().flatten()) {
                    (Some(n), Some(t)) => Some((n, strip_schema(&t))),
                    _ => None,
                })
                .collect::<HashMap<_, _>>()
        }),
        Err(_) => None,
    };
    REMOTE_TYPES.with(|c| c.borrow_mut().insert(key, (xact, types.clone())));
    Ok(types)
}

/// The remote casts of a binary COPY of `columns` (attnum, remote name) of `table`, or None for COPY text.
/// `what` names the operation for errors ("read", "write").
///
/// # Safety
/// Backend thread, in a transaction.
pub unsafe fn binary_casts(table: &TableDef, columns: &[&Column], format: CopyFormat) -> FdwResult<Option<Vec<String>>> {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        if format == CopyFormat::Text || columns.is_empty() {
            return Ok(None);
        }
        let mut casts = Vec::with_capacity(columns.len());
        let mut names = Vec::with_capacity(columns.len());
        for col in columns {
            match binary_type(col.type_oid) {
                Ok(t) => {
                    casts.push(t.cast);
                    names.push(t.name);
                }
                Err(why) if format == CopyFormat::Binary => {
                    return Err(FdwError::NotSupported {
                        message: format!(
                            "column \"{}\" of foreign table \"{}\" cannot use copy_format 'binary': {why}",
                            col.local_name, table.local_name
                        ),
                        hint: Some("Use copy_format 'auto' (binary where possible, else text) or 'text'.".into()),
                    });
                }
                Err(_) => return Ok(None),
            }
        }
        if format == CopyFormat::Auto {
            let client = client_for(&table.access)?;
            let Some(remote) = remote_types(table, &client)? else { return Ok(None) };
            for (col, name) in columns.iter().zip(&names) {
                if remote.get(&col.remote_name) != Some(name) {
                    return Ok(None);
                }
            }
        }
        Ok(Some(casts))
    }
}

/// The plan-time choice of a scan's COPY format: the remote casts of its columns when binary.
///
/// # Safety
/// Backend thread, in a transaction.
pub unsafe fn read_casts(table: &TableDef, columns: &[(i16, String)]) -> FdwResult<Option<Vec<String>>> {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        let cols: Vec<&Column> = columns.iter().filter_map(|(a, _)| table.column(*a)).collect();
        if cols.len() != columns.len() {
            return Ok(None);
        }
        binary_casts(table, &cols, table.options.copy_format)
    }
}

/// `COPY ... FROM STDIN` becomes this for a binary upload; xact.rs opens such uploads with copy_from_binary.
pub const BINARY_COPY_SUFFIX: &str = " (FORMAT binary)";

/// Whether an INSERT / COPY into `table` uploads in binary: [`binary_casts`] for its columns, and
/// client_encoding equal to the database encoding.
///
/// # Safety
/// Backend thread, in a transaction.
pub unsafe fn write_binary(table: &TableDef, columns: &[&Column]) -> FdwResult<bool> {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        if !crate::pg::binary::encodings_agree() {
            return Ok(false);
        }
        Ok(binary_casts(table, columns, table.options.copy_format)?.is_some())
    }
}

/// Rows as binary COPY tuples, each value through its column's send function.
pub struct BinaryRowWriter {
    /// (attnum, send function), in the upload's column order.
    sends: Vec<(i16, crate::pg::binary::ColumnSend)>,
}

impl BinaryRowWriter {
    /// # Safety
    /// Backend thread, in a transaction; every column's type has a send function.
    pub unsafe fn new(columns: &[&Column]) -> Self {
        // SAFETY: the caller upholds this function's contract (# Safety above).
        unsafe {
            BinaryRowWriter { sends: columns.iter().map(|c| (c.attnum, crate::pg::binary::ColumnSend::new(c.type_oid))).collect() }
        }
    }

    /// Appends one tuple of the slot's `values`/`nulls` (indexed by attnum - 1), leaving out column `skip`
    /// (an index into the columns). The send functions allocate in the current memory context.
    ///
    /// # Safety
    /// Backend thread; `values`/`nulls` the slot's deformed columns.
    pub unsafe fn encode(&mut self, values: &[pg_sys::Datum], nulls: &[bool], skip: Option<usize>, out: &mut Vec<u8>) {
        // SAFETY: the caller upholds this function's contract (# Safety above).
        unsafe {
            let n = self.sends.len() - usize::from(skip.is_some());
            carto_client::copy_binary::Encoder::begin_tuple(out, n);
            for (i, (attnum, send)) in self.sends.iter_mut().enumerate() {
                if Some(i) == skip {
                    continue;
                }
                let idx = *attnum as usize - 1;
                if nulls[idx] {
                    carto_client::copy_binary::Encoder::null(out);
                } else {
                    send.send_field(values[idx], out);
                }
            }
        }
    }
}
