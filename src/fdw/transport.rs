//! The format of COPY streams: binary (typsend / typreceive) where the types allow it, COPY text otherwise.
//!
//! The choice (option `copy_format`, docs/options.md and docs/reads.md "COPY formats"):
//! * `text`: always COPY text.
//! * `auto` (default): binary for every column that can go binary ([`binary_type`]) and has CARTO's very
//!   type (name, without typmod: the typmod is applied by the receive function as by the input function).
//!   On a read, any other column travels as text inside the binary stream (cast to text on CARTO, then the
//!   local type's input function with the typmod, naming the column in its errors: the text transports'
//!   semantics), so a hand-declared `integer` over CARTO's `bigint` costs that column, not the table. An
//!   upload cannot cast on CARTO's side: one such column sends the whole upload as COPY text. CARTO's column
//!   types come from crate::fdw::remote_catalog (kept across transactions for reads; read in the upload's
//!   own transaction for writes). A `query` table or a lookup that fails: text.
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

use pgrx::pg_sys;

use crate::fdw::connection::client_for;
use crate::fdw::options::CopyFormat;
use crate::fdw::remote_catalog::{remote_table, Freshness};
use crate::fdw::table::{Column, TableDef};
use crate::pg::binary::binary_type;
use crate::pg::error::{FdwError, FdwResult};

/// What a binary COPY does with a column whose local type is not CARTO's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// A read: the column travels as text inside the binary stream (cast to text on CARTO, then the local
    /// type's input function with the typmod: the text transports' exact semantics and errors).
    AsText,
    /// An upload: no cast can be applied on CARTO's side, so the whole upload goes as COPY text.
    WholeText,
}

/// How a binary COPY of `columns` of `table` carries each column, parallel to them: the remote cast and how the
/// value is read ([`ReadAs`]); None for COPY text. On a read ([`Mismatch::AsText`]), a column whose local type
/// is not CARTO's is cast by CARTO where that is exact and infallible, read as numeric for a local float8 over
/// CARTO's numeric, else cast to `text`.
///
/// # Safety
/// Backend thread, in a transaction.
unsafe fn binary_columns(
    table: &TableDef,
    columns: &[&Column],
    format: CopyFormat,
    mismatch: Mismatch,
) -> FdwResult<Option<Vec<(String, ReadAs)>>> {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        if format == CopyFormat::Text || columns.is_empty() {
            return Ok(None);
        }
        // Each column's own binary form: (its cast, its format_type name), None when it has none.
        let mut own = Vec::with_capacity(columns.len());
        for col in columns {
            match binary_type(col.type_oid) {
                Ok(t) => own.push(Some((t.cast, t.name))),
                Err(why) if format == CopyFormat::Binary => {
                    return Err(FdwError::NotSupported {
                        message: format!(
                            "column \"{}\" of foreign table \"{}\" cannot use copy_format 'binary': {why}",
                            col.local_name, table.local_name
                        ),
                        hint: Some("Use copy_format 'auto' (binary where possible, else text) or 'text'.".into()),
                    });
                }
                Err(_) if mismatch == Mismatch::AsText => own.push(None),
                Err(_) => return Ok(None),
            }
        }
        // copy_format 'binary': every column cast to its local type, whatever CARTO's.
        let remote = if format == CopyFormat::Auto {
            let client = client_for(&table.access)?;
            let freshness = match mismatch {
                Mismatch::AsText => Freshness::Recent,
                Mismatch::WholeText => Freshness::ThisTransaction,
            };
            let Some(types) = remote_table(table, &client, freshness)?.types else { return Ok(None) };
            Some(types)
        } else {
            None
        };
        let mut out = Vec::with_capacity(columns.len());
        for (col, own) in columns.iter().zip(own) {
            let column = match (&remote, own) {
                // copy_format 'binary': CARTO casts to the local type.
                (None, Some((cast, _))) => (cast, ReadAs::Own),
                (None, None) => (TEXT_CAST.to_string(), ReadAs::Text),
                (Some(remote), own) => {
                    // Not a column CARTO knows (the read will fail there): the text path says so as ever.
                    let Some(t) = remote.get(&col.remote_name) else { return Ok(None) };
                    match own {
                        Some((cast, name)) if name == *t => (cast, ReadAs::Own),
                        _ if mismatch == Mismatch::WholeText => return Ok(None),
                        // A cast on CARTO's side that gives the text path's very values and can never fail.
                        Some((cast, name)) if exact_widening(t, &name) => (cast, ReadAs::Own),
                        // CARTO's numeric into a local float8 (the type itself: a domain has checks of its own).
                        _ if t == NUMERIC_CAST && col.type_oid == pg_sys::FLOAT8OID => {
                            (NUMERIC_CAST.to_string(), ReadAs::NumericToFloat8)
                        }
                        // A local text column cast to text reads the same through its own receive function.
                        Some((cast, _)) if cast == TEXT_CAST => (cast, ReadAs::Own),
                        _ => (TEXT_CAST.to_string(), ReadAs::Text),
                    }
                }
            };
            out.push(column);
        }
        if out.iter().all(|(cast, _)| cast == TEXT_CAST) && out.iter().any(|(_, how)| *how == ReadAs::Text) {
            // Nothing would travel in binary but text: COPY text is the same bytes, and simpler.
            return Ok(None);
        }
        Ok(Some(out))
    }
}

/// Whether CARTO's cast of a `remote` column to the `local` type (both `format_type` names) gives exactly what
/// the text path gives (CARTO prints the value, the local input function reads it) and can never fail: integers
/// into wider integers or numeric (a numeric typmod is applied by the local receive function, as by its input
/// function), varchar and text into each other (the same bytes; a varchar typmod is applied locally). Not
/// real into double precision (the text path reads the shortest decimal), nor char(n) into text (the cast
/// drops the padding), nor any narrowing (CARTO would raise the error, not the local type).
fn exact_widening(remote: &str, local: &str) -> bool {
    matches!(
        (remote, local),
        ("smallint", "integer" | "bigint" | "numeric")
            | ("integer", "bigint" | "numeric")
            | ("bigint", "numeric")
            | ("character varying", "text")
            | ("text", "character varying")
    )
}

/// The remote cast of a column read as text inside a binary COPY.
pub const TEXT_CAST: &str = "text";

/// How a column of a binary read becomes its local value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ReadAs {
    /// The local type's receive function (or binary_fast's conversion of it).
    Own,
    /// Cast to text on CARTO, then the local type's input function with the typmod (the text path).
    Text,
    /// CARTO's numeric into a local float8 (not a domain): numeric_float8, float8in of numeric_out's text,
    /// exactly what the text path gives, without printing the value on CARTO's side.
    NumericToFloat8,
}

/// A read's COPY binary plan: the remote casts, and how each column is read.
pub struct ReadCasts {
    pub casts: Vec<String>,
    /// Parallel to the casts.
    pub read_as: Vec<ReadAs>,
}

/// The remote cast of a numeric read into a local float8 ([`ReadAs::NumericToFloat8`]).
const NUMERIC_CAST: &str = "numeric";

/// The plan-time choice of a scan's COPY format: None for COPY text.
///
/// # Safety
/// Backend thread, in a transaction.
pub unsafe fn read_casts(table: &TableDef, columns: &[(i16, String)]) -> FdwResult<Option<ReadCasts>> {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        let cols: Vec<&Column> = columns.iter().filter_map(|(a, _)| table.column(*a)).collect();
        if cols.len() != columns.len() {
            return Ok(None);
        }
        let planned = binary_columns(table, &cols, table.options.copy_format, Mismatch::AsText)?;
        Ok(planned.map(|cols| {
            let (casts, read_as) = cols.into_iter().unzip();
            ReadCasts { casts, read_as }
        }))
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
        Ok(binary_columns(table, columns, table.options.copy_format, Mismatch::WholeText)?.is_some())
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

#[cfg(test)]
mod tests {
    use super::exact_widening;

    #[test]
    fn only_exact_and_infallible_casts_keep_a_mismatched_column_binary() {
        assert!(exact_widening("integer", "bigint"));
        assert!(exact_widening("smallint", "numeric"));
        assert!(exact_widening("character varying", "text"));
        assert!(exact_widening("text", "character varying"));
        // Narrowing fails on CARTO's side; real -> double precision and char -> text change the value.
        assert!(!exact_widening("bigint", "integer"));
        assert!(!exact_widening("numeric", "double precision"));
        assert!(!exact_widening("real", "double precision"));
        assert!(!exact_widening("character", "text"));
        assert!(!exact_widening("timestamp with time zone", "text"));
    }
}
