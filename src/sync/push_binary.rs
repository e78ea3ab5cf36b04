//! carto.push in COPY binary: each source value through its type's send function (called in the SPI
//! query, so values never become text), uploaded as `COPY ... FROM STDIN (FORMAT binary)`.
//!
//! Only where the COPY target's column types are known to be the source's own: a staging table or a target
//! that push created itself from the source's types (`remote_type` kept the type, i.e. not mapped to text),
//! every type able to go binary (pg/binary.rs), no `lnglat` column built on the way, and client_encoding equal
//! to the database encoding. Otherwise push streams COPY text as before.

use carto_client::copy_binary::Encoder;
use carto_client::Client;
use pgrx::Spi;

use crate::pg::sql_text::quote_ident;
use crate::pg::binary::{binary_type, encodings_agree};
use crate::pg::error::{FdwError, FdwResult};
use crate::fdw::xact::Upload;
use crate::sync::SourceColumn;

/// The send function of each column (`int4send`, `geometry_send`, `array_send`...), when the columns can go
/// binary into a table made of `remote_types` (the types push declares remotely, parallel to `cols`).
pub fn send_functions(cols: &[&SourceColumn], remote_types: &[String]) -> FdwResult<Option<Vec<String>>> {
    if !encodings_agree() || cols.is_empty() {
        return Ok(None);
    }
    let mut sends = Vec::with_capacity(cols.len());
    for (c, remote) in cols.iter().zip(remote_types) {
        // SAFETY: carto.push runs on the backend thread in a transaction, binary_type's contract.
        if remote != &c.type_name || unsafe { binary_type(c.type_oid) }.is_err() {
            return Ok(None);
        }
        let f = Spi::get_one::<String>(&format!("SELECT typsend::regprocedure::text FROM pg_type WHERE oid = {}", u32::from(c.type_oid)))
            .map_err(|e| FdwError::internal(format!("looking up a send function: {e}")))?;
        // "int4send(integer)" -> the function, called by its OID-stable regprocedure name.
        match f {
            Some(sig) if sig != "-" => sends.push(sig.split('(').next().unwrap_or_default().to_string()),
            _ => return Ok(None),
        }
    }
    Ok(Some(sends))
}

/// Streams the rows of `from` (a FROM clause with its filter) as binary tuples into `copy_sql` (a
/// `COPY ... FROM STDIN (FORMAT binary)`), rolling over to a new request before CARTO's size limit. Returns the
/// rows CARTO confirmed and the number of requests.
pub fn stream_rows(client: &Client, cols: &[&SourceColumn], sends: &[String], from: &str, copy_sql: &str) -> FdwResult<(i64, u32)> {
    let select = cols
        .iter()
        .zip(sends)
        .map(|(c, f)| format!("{f}({})", quote_ident(&c.name)))
        .collect::<Vec<_>>()
        .join(", ");
    let select = format!("SELECT {select} FROM {from}");
    // Each request's COPY is tagged like the text push's, and an ERROR (cancel, timeout, a bad row) hands
    // the open upload to the transaction's abort, which ends it with a binary poison tuple (fdw/xact.rs).
    let mut upload = Upload::new(client, copy_sql, true, cols.len());
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut pending_rows: u64 = 0;
    let n = cols.len();
    Spi::connect(|c| -> FdwResult<()> {
        let mut cursor = c.try_open_cursor(&select, &[]).map_err(|e| FdwError::internal(format!("reading the source: {e}")))?;
        loop {
            let table = cursor.fetch(2000).map_err(|e| FdwError::internal(format!("reading the source: {e}")))?;
            if table.is_empty() {
                break;
            }
            for row in table {
                Encoder::begin_tuple(&mut buf, n);
                for i in 1..=n {
                    match row.get::<&[u8]>(i).map_err(|e| FdwError::internal(format!("reading the source: {e}")))? {
                        Some(v) => Encoder::field(&mut buf, v),
                        None => Encoder::null(&mut buf),
                    }
                }
                pending_rows += 1;
            }
            if buf.len() >= 1 << 20 {
                upload.send(std::mem::replace(&mut buf, Vec::with_capacity(1 << 20)), pending_rows, "pushing rows")?;
                pending_rows = 0;
            }
        }
        Ok(())
    })?;
    let (total, requests) = upload.finish(buf, pending_rows, "pushing rows")?;
    Ok((total as i64, requests as u32))
}
