//! INSERT and COPY FROM: the rows of a foreign table streamed into its open `/copyfrom` request (xact.rs).

use carto_client::copy_text::{encode_field, encode_null};
use carto_client::Client;
use pgrx::pg_sys;
use crate::fdw::connection::{client_for, COPY_CHUNK};
use crate::pg::sql_text::quote_ident;
use crate::fdw::table::TableDef;
use crate::fdw::xact::{send_rows, StreamKey, UploadTarget};
use crate::pg::error::FdwResult;
use crate::pg::typeio::{ColumnOutput, TransmissionModes};

use super::shared::{not_supported, result_user, WEBMERCATOR};

// ---------------------------------------------------------------------------------------------
// INSERT and COPY FROM.

struct SendCol {
    attnum: i16,
    output: ColumnOutput,
}

pub struct InsertState {
    label: String,
    relid: pg_sys::Oid,
    userid: pg_sys::Oid,
    client: Option<Client>,
    cols: Vec<SendCol>,
    /// Index into `cols` of the rowid column, when the foreign table has it.
    rowid_pos: Option<usize>,
    pub(super) sql_with: String,
    pub(super) sql_without: Option<String>,
    buf_with: Vec<u8>,
    rows_with: u64,
    buf_without: Vec<u8>,
    rows_without: u64,
    /// Per-row scratch memory for the output functions, reset after every row.
    tmp: pg_sys::MemoryContext,
    /// Set when the rows go as COPY binary (transport.rs).
    pub(super) binary: Option<crate::fdw::transport::BinaryRowWriter>,
}

impl Drop for InsertState {
    fn drop(&mut self) {
        if !self.tmp.is_null() {
            // SAFETY: created under TopMemoryContext by us and deleted only here.
            unsafe { pg_sys::MemoryContextDelete(self.tmp) };
            self.tmp = std::ptr::null_mut();
        }
    }
}

fn copy_sql(table: &TableDef, cols: &[String]) -> String {
    let list: Vec<String> = cols.iter().map(|c| quote_ident(c)).collect();
    format!("COPY {} ({}) FROM STDIN", table.from_clause(), list.join(", "))
}

pub(super) unsafe fn new_insert_state(
    estate: *mut pg_sys::EState,
    rinfo: *mut pg_sys::ResultRelInfo,
    explain_only: bool,
) -> FdwResult<InsertState> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let relid = (*(*rinfo).ri_RelationDesc).rd_id;
        let userid = result_user(estate, rinfo);
        let table = TableDef::load(relid, userid)?;
        if table.options.query.is_some() {
            return Err(not_supported(
                format!("cannot insert into foreign table \"{}\": it reads a query, not a table", table.local_name),
                None,
            ));
        }
        let rowid = table.options.rowid_column.clone();
        let mut cols = Vec::new();
        let mut names = Vec::new();
        let mut rowid_pos = None;
        for c in table.columns.iter().flatten() {
            if c.remote_name == WEBMERCATOR {
                continue;
            }
            if c.remote_name == rowid {
                rowid_pos = Some(cols.len());
            }
            names.push(c.remote_name.clone());
            cols.push(SendCol { attnum: c.attnum, output: ColumnOutput::new(c.type_oid) });
        }
        // COPY binary when the types allow it (transport.rs; decided for a plain EXPLAIN too, so it shows it).
        let bcols: Vec<&crate::fdw::table::Column> = cols.iter().filter_map(|c| table.column(c.attnum)).collect();
        let binary =
            crate::fdw::transport::write_binary(&table, &bcols)?.then(|| crate::fdw::transport::BinaryRowWriter::new(&bcols));
        let suffix = if binary.is_some() { crate::fdw::transport::BINARY_COPY_SUFFIX } else { "" };
        let sql_with = copy_sql(&table, &names) + suffix;
        let sql_without = rowid_pos.map(|p| {
            let mut n = names.clone();
            n.remove(p);
            copy_sql(&table, &n) + suffix
        });
        if names.is_empty() {
            return Err(not_supported(format!("foreign table \"{}\" has no column to insert", table.local_name), None));
        }
        let client = if explain_only { None } else { Some(client_for(&table.access)?) };
        let tmp = pg_sys::AllocSetContextCreateInternal(
            pg_sys::TopMemoryContext,
            c"carto_fdw insert".as_ptr(),
            0,
            8 * 1024,
            8 * 1024 * 1024,
        );
        Ok(InsertState {
            label: table.local_name.clone(),
            relid,
            userid,
            client,
            cols,
            rowid_pos,
            sql_with,
            sql_without,
            buf_with: Vec::with_capacity(COPY_CHUNK + 4096),
            rows_with: 0,
            buf_without: Vec::new(),
            rows_without: 0,
            tmp,
            binary,
        })
    }
}

impl InsertState {
    /// Appends one row, as a COPY text line printed under the transmission modes or, when the upload is
    /// binary, as a COPY binary tuple through the send functions. The caller
    /// hands full chunks to the upload with [`InsertState::flush_full`] once the modes are gone.
    pub(super) unsafe fn encode_row(&mut self, modes: &TransmissionModes, slot: *mut pg_sys::TupleTableSlot) {
        // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
        unsafe {
            let natts = (*(*slot).tts_tupleDescriptor).natts;
            if ((*slot).tts_nvalid as i32) < natts {
                pg_sys::slot_getsomeattrs_int(slot, natts);
            }
            let values = std::slice::from_raw_parts((*slot).tts_values, natts as usize);
            let nulls = std::slice::from_raw_parts((*slot).tts_isnull, natts as usize);
            // A NULL rowid means "let CARTO assign it": such rows go to a COPY without the column.
            let without = match self.rowid_pos {
                Some(p) => nulls[self.cols[p].attnum as usize - 1],
                None => false,
            };
            let skip = if without { self.rowid_pos } else { None };
            let buf = if without { &mut self.buf_without } else { &mut self.buf_with };
            let old = pg_sys::CurrentMemoryContext;
            pg_sys::CurrentMemoryContext = self.tmp;
            let mut first = true;
            // COPY binary: the whole tuple through the send functions; else the text line below.
            let text = self.binary.is_none();
            if let Some(w) = self.binary.as_mut() {
                w.encode(values, nulls, skip, buf);
            }
            for (i, c) in self.cols.iter_mut().enumerate().filter(|_| text) {
                if Some(i) == skip {
                    continue;
                }
                if !first {
                    buf.push(b'\t');
                }
                first = false;
                let idx = c.attnum as usize - 1;
                if nulls[idx] {
                    encode_null(buf);
                } else {
                    let p = c.output.output(modes, values[idx]);
                    // CARTO's COPY reads UTF-8: the output text converted from the database encoding.
                    let text = crate::pg::encoding::server_to_utf8(std::ffi::CStr::from_ptr(p).to_bytes());
                    encode_field(text.as_bytes(), buf);
                }
            }
            if text {
                buf.push(b'\n');
            }
            pg_sys::CurrentMemoryContext = old;
            pg_sys::MemoryContextReset(self.tmp);
            if without {
                self.rows_without += 1;
            } else {
                self.rows_with += 1;
            }
        }
    }

    /// Hands the chunks that reached [`COPY_CHUNK`] to the upload.
    pub(super) fn flush_full(&mut self) -> FdwResult<()> {
        if self.buf_with.len() >= COPY_CHUNK {
            self.flush(false)?;
        }
        if self.buf_without.len() >= COPY_CHUNK {
            self.flush(true)?;
        }
        Ok(())
    }

    fn flush(&mut self, without: bool) -> FdwResult<()> {
        let Some(client) = self.client.clone() else { return Ok(()) };
        let (buf, rows, sql) = if without {
            (&mut self.buf_without, &mut self.rows_without, self.sql_without.as_deref().unwrap_or(""))
        } else {
            (&mut self.buf_with, &mut self.rows_with, self.sql_with.as_str())
        };
        if *rows == 0 {
            return Ok(());
        }
        let data = std::mem::replace(buf, Vec::with_capacity(COPY_CHUNK + 4096));
        let n = std::mem::take(rows);
        let key = StreamKey { relid: self.relid, userid: self.userid, with_rowid: !without, binary: self.binary.is_some() };
        let sql = sql.to_string();
        let columns = if without { self.cols.len() - 1 } else { self.cols.len() };
        send_rows(&UploadTarget { key, label: &self.label, sql: &sql, columns, client: &client }, data, n)
    }

    pub(super) fn flush_all(&mut self) -> FdwResult<()> {
        self.flush(false)?;
        self.flush(true)
    }
}
