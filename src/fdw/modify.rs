//! Writes: INSERT and COPY FROM (streamed into one `/copyfrom` request per foreign table and
//! transaction, see xact.rs), UPDATE and DELETE (the whole statement shipped as one `/sql` request
//! when it can be — direct modify — else row by row, addressed by the rowid column and batched),
//! and TRUNCATE. Everything that cannot be honoured (RETURNING, ON CONFLICT, ...) fails at plan
//! or executor start, before anything is sent.
//!
//! Values cross as their types' own text form (output functions), exactly as reads use the input
//! functions, so every type round-trips.

use std::ffi::{c_char, CString};

use carto_client::copy_text::{encode_field, encode_null};
use carto_client::Client;
use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgList, PgLogLevel, PgMemoryContexts, PgSqlErrorCode};
use serde::{Deserialize, Serialize};

use crate::fdw::connection::{client_for, COPY_CHUNK};
use crate::fdw::deparse::{update_set_sql, Deparser, SqlTemplate};
use crate::pg::cstr::cstr_owned;
use crate::pg::sql_text::{literal_for_type, quote_ident};
use crate::fdw::options::{deflist_to_pairs, ServerOptions, TableOptions};
use crate::fdw::scan_plan::{scan_plan_from_private, RelState};
use crate::pg::executor::{explain_int, explain_text};
use crate::fdw::table::TableDef;
use crate::fdw::xact::{cleanup_stale_uploads, finish_pending_for, send_rows, StreamKey, UploadTarget};
use crate::pg::error::{FdwError, FdwResult, OrReport};
use crate::pg::runtime::block_on;
use crate::pg::typeio::{ColumnOutput, ParamOutput, TransmissionModes};

/// CARTO's trigger fills it from the_geom: never sent on INSERT.
const WEBMERCATOR: &str = "the_geom_webmercator";
/// Name of the junk column that carries the rowid of each row to update or delete.
const ROWID_JUNK: &std::ffi::CStr = c"carto_rowid";
/// Row-wise UPDATE/DELETE: rows per `/sql` request, and the largest request.
const ROWWISE_BATCH_ROWS: usize = 1000;
const ROWWISE_BATCH_BYTES: usize = 1024 * 1024;

fn not_supported(message: impl Into<String>, hint: Option<&str>) -> FdwError {
    FdwError::NotSupported { message: message.into(), hint: hint.map(str::to_string) }
}

// ---------------------------------------------------------------------------------------------
// Options without a user mapping (IsForeignRelUpdatable runs before any mapping is needed).

unsafe fn table_options(relid: pg_sys::Oid) -> (ServerOptions, TableOptions, String) {
    // SAFETY: this function's contract: called on the backend thread, inside a transaction.
    unsafe {
        let table = pg_sys::GetForeignTable(relid);
        let server = pg_sys::GetForeignServer((*table).serverid);
        let so = ServerOptions::from_pairs(&deflist_to_pairs((*server).options));
        let name = cstr_owned(pg_sys::get_rel_name(relid)).unwrap_or_default();
        let to = TableOptions::from_pairs(&deflist_to_pairs((*table).options), &name, &so);
        (so, to, name)
    }
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn is_foreign_rel_updatable(rel: pg_sys::Relation) -> i32 {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        let (_, opts, _) = table_options((*rel).rd_id);
        // A foreign table over a query is read-only; `updatable false` forbids INSERT, UPDATE and DELETE.
        if opts.query.is_some() || !opts.updatable {
            return 0;
        }
        (1 << pg_sys::CmdType::CMD_INSERT) | (1 << pg_sys::CmdType::CMD_UPDATE) | (1 << pg_sys::CmdType::CMD_DELETE)
    }
}

// ---------------------------------------------------------------------------------------------
// Planning.

/// What the executor of a row-wise modification needs (ModifyTable's fdw_private, as JSON).
#[derive(Serialize, Deserialize, Debug, Clone)]
struct ModifyPlan {
    /// pg_sys::CmdType
    op: u32,
    /// UPDATE: the attnums of the changed columns (only those are sent).
    update_attnums: Vec<i16>,
}

unsafe fn rte_of(root: *mut pg_sys::PlannerInfo, rti: pg_sys::Index) -> *mut pg_sys::RangeTblEntry {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        *(*root).simple_rte_array.add(rti as usize)
    }
}

unsafe fn check_plan_refusals(plan: *mut pg_sys::ModifyTable, relid: pg_sys::Oid) -> FdwResult<()> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let name = cstr_owned(pg_sys::get_rel_name(relid)).unwrap_or_default();
        if !(*plan).returningLists.is_null() {
            return Err(not_supported(
                format!("RETURNING is not supported on CARTO foreign table \"{name}\""),
                Some("CARTO's COPY and the batched /sql writes return no rows; read the table back after the statement instead."),
            ));
        }
        if (*plan).onConflictAction != pg_sys::OnConflictAction::ONCONFLICT_NONE {
            return Err(not_supported(
                format!("ON CONFLICT is not supported on CARTO foreign table \"{name}\""),
                Some("Rows are streamed through COPY, which has no conflict handling; use carto.exec() with an INSERT ... ON CONFLICT statement, or carto.push() in upsert mode."),
            ));
        }
        Ok(())
    }
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn plan_foreign_modify(
    root: *mut pg_sys::PlannerInfo,
    plan: *mut pg_sys::ModifyTable,
    result_relation: pg_sys::Index,
    _subplan_index: i32,
) -> *mut pg_sys::List {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        plan_modify(root, plan, result_relation).or_report()
    }
}

unsafe fn plan_modify(
    root: *mut pg_sys::PlannerInfo,
    plan: *mut pg_sys::ModifyTable,
    rti: pg_sys::Index,
) -> FdwResult<*mut pg_sys::List> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let rte = rte_of(root, rti);
        let relid = (*rte).relid;
        check_plan_refusals(plan, relid)?;
        let op = (*plan).operation;
        let mut update_attnums = Vec::new();
        if op == pg_sys::CmdType::CMD_UPDATE || op == pg_sys::CmdType::CMD_DELETE {
            let (_, opts, name) = table_options(relid);
            let has_rowid = rowid_attnum(relid, &opts.rowid_column).is_some();
            if !has_rowid {
                let verb = if op == pg_sys::CmdType::CMD_UPDATE { "update" } else { "delete from" };
                return Err(not_supported(
                    format!(
                        "cannot {verb} foreign table \"{name}\" row by row: it has no column for its rowid column \"{}\"",
                        opts.rowid_column
                    ),
                    Some("Add the remote table's key column (cartodb_id, or the table option rowid_column) to the foreign table, or write the statement so that CARTO can run it whole (WHERE and SET only with built-in immutable operators and functions)."),
                ));
            }
        }
        if op == pg_sys::CmdType::CMD_UPDATE {
            let cols = crate::pg::compat::updated_cols(root, rte);
            let mut col = -1;
            loop {
                col = pg_sys::bms_next_member(cols, col);
                if col < 0 {
                    break;
                }
                let attno = col + pg_sys::FirstLowInvalidHeapAttributeNumber;
                if attno <= 0 {
                    return Err(not_supported("updating a system column of a CARTO foreign table is not supported", None));
                }
                update_attnums.push(attno as i16);
            }
        }
        let mp = ModifyPlan { op, update_attnums };
        Ok(json_list(&mp))
    }
}

unsafe fn json_list<T: Serialize>(v: &T) -> *mut pg_sys::List {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let json = serde_json::to_string(v).unwrap_or_default();
        let c = CString::new(json).unwrap_or_default();
        let mut l = PgList::<pg_sys::Node>::new();
        l.push(pg_sys::makeString(pg_sys::pstrdup(c.as_ptr())).cast());
        l.into_pg()
    }
}

unsafe fn json_from_list<T: for<'de> Deserialize<'de>>(list: *mut pg_sys::List) -> FdwResult<T> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let l = PgList::<pg_sys::Node>::from_pg(list);
        let node = l.get_ptr(0).ok_or_else(|| FdwError::internal("modify plan missing"))?;
        let s = crate::pg::cstr::cstr_as_written((*node.cast::<pg_sys::String>()).sval as *const c_char)
            .ok_or_else(|| FdwError::internal("modify plan missing"))?;
        serde_json::from_str(&s).map_err(|e| FdwError::internal(format!("unreadable modify plan: {e}")))
    }
}

/// The local column whose remote name is the rowid column: attnum, type, typmod, collation.
unsafe fn rowid_attnum(relid: pg_sys::Oid, rowid: &str) -> Option<(i16, pg_sys::Oid, i32, pg_sys::Oid)> {
    // SAFETY: this function's contract: called on the backend thread, inside a transaction.
    unsafe {
        crate::fdw::table::columns_of(relid)
            .into_iter()
            .flatten()
            .find(|c| c.remote_name == rowid)
            .map(|c| (c.attnum, c.type_oid, c.typmod, c.collation))
    }
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn add_foreign_update_targets(
    root: *mut pg_sys::PlannerInfo,
    rtindex: pg_sys::Index,
    target_rte: *mut pg_sys::RangeTblEntry,
    _target_relation: pg_sys::Relation,
) {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        let relid = (*target_rte).relid;
        let (_, opts, _) = table_options(relid);
        // Without a rowid column only direct modification can work; plan_foreign_modify says so.
        if let Some((attnum, typid, typmod, coll)) = rowid_attnum(relid, &opts.rowid_column) {
            let var = pg_sys::makeVar(rtindex as _, attnum, typid, typmod, coll, 0);
            pg_sys::add_row_identity_var(root, var, rtindex, ROWID_JUNK.as_ptr());
        }
    }
}

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
    sql_with: String,
    sql_without: Option<String>,
    buf_with: Vec<u8>,
    rows_with: u64,
    buf_without: Vec<u8>,
    rows_without: u64,
    /// Per-row scratch memory for the output functions, reset after every row.
    tmp: pg_sys::MemoryContext,
    /// Set when the rows go as COPY binary (transport.rs).
    binary: Option<crate::fdw::transport::BinaryRowWriter>,
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

/// The user whose mapping applies to a result relation, as ExecCheckRTPerms sees it.
unsafe fn result_user(estate: *mut pg_sys::EState, rinfo: *mut pg_sys::ResultRelInfo) -> pg_sys::Oid {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let mut rti = (*rinfo).ri_RangeTableIndex as usize;
        // A partition reached by tuple routing has no range-table entry of its own: use its root's.
        if rti == 0 && !(*rinfo).ri_RootResultRelInfo.is_null() {
            rti = (*(*rinfo).ri_RootResultRelInfo).ri_RangeTableIndex as usize;
        }
        let rtable = PgList::<pg_sys::RangeTblEntry>::from_pg((*estate).es_range_table);
        match rtable.get_ptr(rti.wrapping_sub(1)) {
            Some(rte) if crate::pg::compat::check_as_user(estate, rte) != pg_sys::InvalidOid => {
                crate::pg::compat::check_as_user(estate, rte)
            }
            _ => pg_sys::GetUserId(),
        }
    }
}

unsafe fn new_insert_state(
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
    unsafe fn encode_row(&mut self, modes: &TransmissionModes, slot: *mut pg_sys::TupleTableSlot) {
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
    fn flush_full(&mut self) -> FdwResult<()> {
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

    fn flush_all(&mut self) -> FdwResult<()> {
        self.flush(false)?;
        self.flush(true)
    }
}


// ---------------------------------------------------------------------------------------------
// Row-wise UPDATE and DELETE.

struct SetCol {
    attnum: i16,
    remote: String,
    type_oid: pg_sys::Oid,
    type_name: String,
    output: ColumnOutput,
}

pub struct RowwiseState {
    label: String,
    op: u32,
    client: Option<Client>,
    from: String,
    rowid_remote: String,
    rowid_type_oid: pg_sys::Oid,
    rowid_type: String,
    rowid_output: ColumnOutput,
    junk_attno: i16,
    set: Vec<SetCol>,
    /// Rendered rows of the current batch: `(k, v1, v2, ...)` for UPDATE, `k` for DELETE.
    batch: Vec<String>,
    batch_bytes: usize,
    /// When the rowid itself changes, rows are sent only at the end of the statement, so that the
    /// scan (paged by rowid) never meets a row it already updated.
    hold_until_end: bool,
    requests: u64,
    rows_sent: u64,
    rows_affected: u64,
    explain_sql: String,
}

fn type_name_of(typid: pg_sys::Oid, typmod: i32) -> String {
    // SAFETY: catalog lookup on the backend thread.
    let name = unsafe { cstr_owned(pg_sys::format_type_with_typemod(typid, typmod)) }.unwrap_or_default();
    // Extension types may print schema-qualified locally; CARTO has them on its search_path.
    let head_end = name.find('(').unwrap_or(name.len());
    match name[..head_end].rfind('.') {
        Some(dot) => name[dot + 1..].to_string(),
        None => name,
    }
}

impl RowwiseState {
    fn is_update(&self) -> bool {
        self.op == pg_sys::CmdType::CMD_UPDATE
    }

    fn statement(&self) -> String {
        if self.is_update() {
            let sets: Vec<String> =
                self.set.iter().enumerate().map(|(i, c)| format!("{} = v.c{}", quote_ident(&c.remote), i + 1)).collect();
            let names: Vec<String> = (1..=self.set.len()).map(|i| format!("c{i}")).collect();
            let mut cols = vec!["k".to_string()];
            cols.extend(names);
            format!(
                "UPDATE {} AS r SET {} FROM (VALUES {}) AS v({}) WHERE r.{} = v.k",
                self.from,
                sets.join(", "),
                self.batch.join(", "),
                cols.join(", "),
                quote_ident(&self.rowid_remote)
            )
        } else {
            format!("DELETE FROM {} WHERE {} IN ({})", self.from, quote_ident(&self.rowid_remote), self.batch.join(", "))
        }
    }

    unsafe fn literal(
        modes: &TransmissionModes,
        output: &mut ColumnOutput,
        typid: pg_sys::Oid,
        type_name: &str,
        value: Option<pg_sys::Datum>,
    ) -> String {
        // SAFETY: this function's contract: called on the backend thread, inside a transaction.
        unsafe {
            match value {
                None => format!("NULL::{type_name}"),
                Some(d) => {
                    let text = cstr_owned(output.output(modes, d)).unwrap_or_default();
                    literal_for_type(typid, &text, type_name)
                }
            }
        }
    }

    unsafe fn add_row(&mut self, slot: *mut pg_sys::TupleTableSlot, plan_slot: *mut pg_sys::TupleTableSlot) -> FdwResult<()> {
        // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
        unsafe {
            // The rowid of the row, from the junk column of the subplan's row.
            let pn = self.junk_attno as i32;
            if ((*plan_slot).tts_nvalid as i32) < pn {
                pg_sys::slot_getsomeattrs_int(plan_slot, pn);
            }
            let k_null = *(*plan_slot).tts_isnull.add(pn as usize - 1);
            if k_null {
                return Err(FdwError::Internal {
                    message: format!(
                        "a row of foreign table \"{}\" has a NULL {}: it cannot be addressed on CARTO",
                        self.label, self.rowid_remote
                    ),
                });
            }
            let k = *(*plan_slot).tts_values.add(pn as usize - 1);
            // The row's values are printed under the transmission modes, the request sent without them.
            let modes = TransmissionModes::enter();
            let k_lit = Self::literal(&modes, &mut self.rowid_output, self.rowid_type_oid, &self.rowid_type, Some(k));
            let row = if self.is_update() {
                let natts = (*(*slot).tts_tupleDescriptor).natts;
                if ((*slot).tts_nvalid as i32) < natts {
                    pg_sys::slot_getsomeattrs_int(slot, natts);
                }
                let mut parts = vec![k_lit];
                for c in self.set.iter_mut() {
                    let idx = c.attnum as usize - 1;
                    let v = if *(*slot).tts_isnull.add(idx) { None } else { Some(*(*slot).tts_values.add(idx)) };
                    parts.push(Self::literal(&modes, &mut c.output, c.type_oid, &c.type_name, v));
                }
                format!("({})", parts.join(", "))
            } else {
                k_lit
            };
            drop(modes);
            self.batch_bytes += row.len() + 2;
            self.batch.push(row);
            if !self.hold_until_end && (self.batch.len() >= ROWWISE_BATCH_ROWS || self.batch_bytes >= ROWWISE_BATCH_BYTES) {
                self.flush()?;
            }
            Ok(())
        }
    }

    fn flush(&mut self) -> FdwResult<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let Some(client) = self.client.clone() else { return Ok(()) };
        // Rows held until the end of the statement still go in requests of at most ROWWISE_BATCH_ROWS.
        let all = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        for chunk in all.chunks(ROWWISE_BATCH_ROWS) {
            self.batch = chunk.to_vec();
            self.send_batch(&client)?;
        }
        self.batch.clear();
        Ok(())
    }

    fn send_batch(&mut self, client: &Client) -> FdwResult<()> {
        let sql = self.statement();
        let n = self.batch.len() as u64;
        let verb = if self.is_update() { "updating" } else { "deleting from" };
        let resp = block_on(client.query(&sql))?
            .map_err(|e| FdwError::remote(e, format!("{verb} foreign table \"{}\"", self.label)))?;
        self.requests += 1;
        self.rows_sent += n;
        self.rows_affected += resp.total_rows;
        if resp.total_rows < n {
            ErrorReport::new(
                PgSqlErrorCode::ERRCODE_WARNING,
                crate::pg::error::for_database(format!(
                    "{} of {n} rows of foreign table \"{}\" were no longer on CARTO",
                    n - resp.total_rows,
                    self.label
                )),
                "carto_fdw",
            )
            .report(PgLogLevel::WARNING);
        }
        Ok(())
    }
}

enum ModifyState {
    Insert(InsertState),
    Rowwise(RowwiseState),
}

unsafe fn modify_state<'a>(rinfo: *mut pg_sys::ResultRelInfo) -> Option<&'a mut ModifyState> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        ((*rinfo).ri_FdwState as *mut ModifyState).as_mut()
    }
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn begin_foreign_modify(
    mtstate: *mut pg_sys::ModifyTableState,
    rinfo: *mut pg_sys::ResultRelInfo,
    fdw_private: *mut pg_sys::List,
    _subplan_index: i32,
    eflags: i32,
) {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        begin_modify(mtstate, rinfo, fdw_private, eflags).or_report()
    }
}

unsafe fn begin_modify(
    mtstate: *mut pg_sys::ModifyTableState,
    rinfo: *mut pg_sys::ResultRelInfo,
    fdw_private: *mut pg_sys::List,
    eflags: i32,
) -> FdwResult<()> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let explain_only = eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as i32 != 0;
        let plan: ModifyPlan = json_from_list(fdw_private)?;
        let estate = (*mtstate).ps.state;
        let state = if plan.op == pg_sys::CmdType::CMD_INSERT {
            ModifyState::Insert(new_insert_state(estate, rinfo, explain_only)?)
        } else {
            ModifyState::Rowwise(new_rowwise_state(mtstate, rinfo, &plan, explain_only)?)
        };
        (*rinfo).ri_FdwState = PgMemoryContexts::CurrentMemoryContext.leak_and_drop_on_delete(state).cast();
        Ok(())
    }
}

unsafe fn new_rowwise_state(
    mtstate: *mut pg_sys::ModifyTableState,
    rinfo: *mut pg_sys::ResultRelInfo,
    plan: &ModifyPlan,
    explain_only: bool,
) -> FdwResult<RowwiseState> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let estate = (*mtstate).ps.state;
        let relid = (*(*rinfo).ri_RelationDesc).rd_id;
        let userid = result_user(estate, rinfo);
        let table = TableDef::load(relid, userid)?;
        let rowid = table.options.rowid_column.clone();
        let rcol = table
            .columns
            .iter()
            .flatten()
            .find(|c| c.remote_name == rowid)
            .cloned()
            .ok_or_else(|| FdwError::internal(format!("foreign table \"{}\" lost its rowid column", table.local_name)))?;
        let mut junk_attno = 0i16;
        if !explain_only {
            let sub = (*mtstate).ps.lefttree;
            if !sub.is_null() {
                junk_attno = pg_sys::ExecFindJunkAttributeInTlist((*(*sub).plan).targetlist, ROWID_JUNK.as_ptr());
            }
            if junk_attno <= 0 {
                return Err(FdwError::internal("the rowid junk column is missing from the plan"));
            }
        }
        let mut set = Vec::new();
        let mut hold_until_end = false;
        for &a in &plan.update_attnums {
            let Some(c) = table.column(a) else { continue };
            if c.remote_name == rowid {
                hold_until_end = true;
            }
            set.push(SetCol {
                attnum: a,
                remote: c.remote_name.clone(),
                type_oid: c.type_oid,
                type_name: type_name_of(c.type_oid, c.typmod),
                output: ColumnOutput::new(c.type_oid),
            });
        }
        if !explain_only {
            finish_pending_for(relid)?;
        }
        let client = if explain_only { None } else { Some(client_for(&table.access)?) };
        if let Some(c) = &client {
            cleanup_stale_uploads(c);
        }
        let mut st = RowwiseState {
            label: table.local_name.clone(),
            op: plan.op,
            client,
            from: table.from_clause(),
            rowid_remote: rowid,
            rowid_type_oid: rcol.type_oid,
            rowid_type: type_name_of(rcol.type_oid, rcol.typmod),
            rowid_output: ColumnOutput::new(rcol.type_oid),
            junk_attno,
            set,
            batch: Vec::new(),
            batch_bytes: 0,
            hold_until_end,
            requests: 0,
            rows_sent: 0,
            rows_affected: 0,
            explain_sql: String::new(),
        };
        // What EXPLAIN shows: the statement's shape with placeholders.
        st.batch = vec![if st.is_update() {
            let mut p = vec!["$k".to_string()];
            p.extend((1..=st.set.len()).map(|i| format!("$v{i}")));
            format!("({})", p.join(", "))
        } else {
            "$k".to_string()
        }];
        st.explain_sql = st.statement();
        st.batch.clear();
        Ok(st)
    }
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn exec_foreign_insert(
    _estate: *mut pg_sys::EState,
    rinfo: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    _plan_slot: *mut pg_sys::TupleTableSlot,
) -> *mut pg_sys::TupleTableSlot {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        if let Some(ModifyState::Insert(st)) = modify_state(rinfo) {
            let modes = TransmissionModes::enter();
            st.encode_row(&modes, slot);
            drop(modes);
            st.flush_full().or_report();
        }
        slot
    }
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn exec_foreign_batch_insert(
    _estate: *mut pg_sys::EState,
    rinfo: *mut pg_sys::ResultRelInfo,
    slots: *mut *mut pg_sys::TupleTableSlot,
    _plan_slots: *mut *mut pg_sys::TupleTableSlot,
    num_slots: *mut i32,
) -> *mut *mut pg_sys::TupleTableSlot {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        let n = (*num_slots).max(0) as usize;
        if let Some(ModifyState::Insert(st)) = modify_state(rinfo) {
            // The settings are switched once for the whole batch, not per row or value.
            let modes = TransmissionModes::enter();
            for i in 0..n {
                st.encode_row(&modes, *slots.add(i));
            }
            drop(modes);
            st.flush_full().or_report();
        }
        slots
    }
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn get_foreign_modify_batch_size(rinfo: *mut pg_sys::ResultRelInfo) -> i32 {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        // Rows are buffered into COPY chunks anyway; batching only saves a function call per row.
        // Row triggers need each row as it is inserted (as postgres_fdw does).
        let td = (*rinfo).ri_TrigDesc;
        if !(*rinfo).ri_projectReturning.is_null()
            || (!td.is_null() && ((*td).trig_insert_after_row || (*td).trig_insert_before_row))
        {
            return 1;
        }
        100
    }
}

/// ExecForeignUpdate and ExecForeignDelete alike: a row-wise statement collects the row's rowid
/// (and, for UPDATE, its changed columns) into the next batch.
///
/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn exec_foreign_update_or_delete(
    _estate: *mut pg_sys::EState,
    rinfo: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    plan_slot: *mut pg_sys::TupleTableSlot,
) -> *mut pg_sys::TupleTableSlot {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        if let Some(ModifyState::Rowwise(st)) = modify_state(rinfo) {
            st.add_row(slot, plan_slot).or_report();
        }
        slot
    }
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn end_foreign_modify(_estate: *mut pg_sys::EState, rinfo: *mut pg_sys::ResultRelInfo) {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        match modify_state(rinfo) {
            // The rest of the statement's rows go into the upload, which stays open until pre-commit.
            Some(ModifyState::Insert(st)) => st.flush_all().or_report(),
            Some(ModifyState::Rowwise(st)) => st.flush().or_report(),
            None => {}
        }
    }
}

// BeginForeignInsert / EndForeignInsert: COPY FROM and tuple routing into a foreign partition.

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn begin_foreign_insert(mtstate: *mut pg_sys::ModifyTableState, rinfo: *mut pg_sys::ResultRelInfo) {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        begin_insert(mtstate, rinfo).or_report()
    }
}

unsafe fn begin_insert(mtstate: *mut pg_sys::ModifyTableState, rinfo: *mut pg_sys::ResultRelInfo) -> FdwResult<()> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let relid = (*(*rinfo).ri_RelationDesc).rd_id;
        let name = cstr_owned(pg_sys::get_rel_name(relid)).unwrap_or_default();
        if !(*rinfo).ri_returningList.is_null() {
            return Err(not_supported(format!("RETURNING is not supported on CARTO foreign table \"{name}\""), None));
        }
        let mut estate = std::ptr::null_mut();
        if !mtstate.is_null() {
            let plan = (*mtstate).ps.plan as *mut pg_sys::ModifyTable;
            if !plan.is_null() && (*plan).onConflictAction != pg_sys::OnConflictAction::ONCONFLICT_NONE {
                return Err(not_supported(format!("ON CONFLICT is not supported on CARTO foreign table \"{name}\""), None));
            }
            estate = (*mtstate).ps.state;
        }
        let st = if estate.is_null() {
            // COPY FROM passes a ModifyTableState whose state is the EState; be defensive anyway.
            return Err(FdwError::internal("BeginForeignInsert without an executor state"));
        } else {
            new_insert_state(estate, rinfo, false)?
        };
        (*rinfo).ri_FdwState = PgMemoryContexts::CurrentMemoryContext.leak_and_drop_on_delete(ModifyState::Insert(st)).cast();
        Ok(())
    }
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn end_foreign_insert(_estate: *mut pg_sys::EState, rinfo: *mut pg_sys::ResultRelInfo) {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        if let Some(ModifyState::Insert(st)) = modify_state(rinfo) {
            st.flush_all().or_report();
        }
    }
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn explain_foreign_modify(
    _mtstate: *mut pg_sys::ModifyTableState,
    rinfo: *mut pg_sys::ResultRelInfo,
    _fdw_private: *mut pg_sys::List,
    _subplan_index: i32,
    es: *mut pg_sys::ExplainState,
) {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        match modify_state(rinfo) {
            Some(ModifyState::Insert(st)) => {
                explain_text(es, "CARTO endpoint", "COPY (/copyfrom)");
                if (*es).verbose {
                    explain_text(es, "CARTO transport", if st.binary.is_some() { "COPY binary" } else { "COPY text" });
                    explain_text(es, "Remote SQL", &st.sql_with);
                    if let Some(s) = &st.sql_without {
                        explain_text(es, "Remote SQL for a NULL rowid", s);
                    }
                }
            }
            Some(ModifyState::Rowwise(st)) => {
                explain_text(es, "CARTO endpoint", "SQL API (/sql), batched by rowid");
                if (*es).verbose {
                    explain_text(es, "Remote SQL", &st.explain_sql);
                }
                if (*es).analyze {
                    explain_int(es, "CARTO requests", st.requests as i64);
                }
            }
            None => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Direct modification: the whole UPDATE or DELETE as one remote statement.

#[derive(Serialize, Deserialize, Debug, Clone)]
struct DirectPlan {
    label: String,
    sql: SqlTemplate,
    can_set_tag: bool,
    /// The other foreign tables an UPDATE ... FROM / DELETE ... USING reads (pending inserts flushed first).
    #[serde(default)]
    members: Vec<u32>,
}

unsafe fn find_modifytable_subplan(
    plan: *mut pg_sys::ModifyTable,
    rtindex: pg_sys::Index,
    subplan_index: i32,
) -> *mut pg_sys::ForeignScan {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let mut sub = (*plan).plan.lefttree;
        if sub.is_null() {
            return std::ptr::null_mut();
        }
        if (*sub).type_ == pg_sys::NodeTag::T_Append {
            let app = sub as *mut pg_sys::Append;
            let l = PgList::<pg_sys::Plan>::from_pg((*app).appendplans);
            match l.get_ptr(subplan_index as usize) {
                Some(p) => sub = p,
                None => return std::ptr::null_mut(),
            }
        } else if (*sub).type_ == pg_sys::NodeTag::T_Result
            && !(*sub).lefttree.is_null()
            && (*(*sub).lefttree).type_ == pg_sys::NodeTag::T_Append
        {
            let app = (*sub).lefttree as *mut pg_sys::Append;
            let l = PgList::<pg_sys::Plan>::from_pg((*app).appendplans);
            match l.get_ptr(subplan_index as usize) {
                Some(p) => sub = p,
                None => return std::ptr::null_mut(),
            }
        }
        if (*sub).type_ == pg_sys::NodeTag::T_ForeignScan {
            let fs = sub as *mut pg_sys::ForeignScan;
            if pg_sys::bms_is_member(rtindex as i32, (*fs).fs_relids) {
                return fs;
            }
        }
        std::ptr::null_mut()
    }
}


/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn plan_direct_modify(
    root: *mut pg_sys::PlannerInfo,
    plan: *mut pg_sys::ModifyTable,
    result_relation: pg_sys::Index,
    subplan_index: i32,
) -> bool {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        plan_direct(root, plan, result_relation, subplan_index).or_report()
    }
}

unsafe fn plan_direct(
    root: *mut pg_sys::PlannerInfo,
    plan: *mut pg_sys::ModifyTable,
    rti: pg_sys::Index,
    subplan_index: i32,
) -> FdwResult<bool> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let op = (*plan).operation;
        let relid = (*rte_of(root, rti)).relid;
        // Refused before anything is sent, whichever way the statement would run.
        check_plan_refusals(plan, relid)?;
        if op != pg_sys::CmdType::CMD_UPDATE && op != pg_sys::CmdType::CMD_DELETE {
            return Ok(false);
        }
        let fscan = find_modifytable_subplan(plan, rti, subplan_index);
        if fscan.is_null() || !(*fscan).scan.plan.qual.is_null() {
            return Ok(false);
        }
        if (*fscan).scan.scanrelid == 0 {
            // UPDATE ... FROM / DELETE ... USING over a join computed by CARTO (pushed.rs).
            let mut params: Vec<*mut pg_sys::Expr> = PgList::<pg_sys::Expr>::from_pg((*fscan).fdw_exprs).iter_ptr().collect();
            let Some((sql, members)) = crate::fdw::pushed::direct_modify_sql(root, fscan, rti, &mut params) else {
                return Ok(false);
            };
            let label = cstr_owned(pg_sys::get_rel_name(relid)).unwrap_or_default();
            let dp = DirectPlan { label, sql, can_set_tag: (*plan).canSetTag, members };
            let mut exprs = PgList::<pg_sys::Expr>::new();
            for p in &params {
                exprs.push(*p);
            }
            (*fscan).operation = op;
            (*fscan).resultRelation = rti;
            (*fscan).fdw_exprs = exprs.into_pg();
            (*fscan).fdw_private = json_list(&dp);
            return Ok(true);
        }
        if (*fscan).scan.scanrelid != rti {
            return Ok(false);
        }
        let Ok(scan) = scan_plan_from_private((*fscan).fdw_private) else { return Ok(false) };
        if scan.limit.is_some() {
            return Ok(false);
        }
        let rel = *(*root).simple_rel_array.add(rti as usize);
        if rel.is_null() || (*rel).fdw_private.is_null() {
            return Ok(false);
        }
        let rs = &*((*rel).fdw_private as *mut RelState);
        if rs.table.options.query.is_some() {
            return Ok(false);
        }
        let mut d = Deparser::new(&rs.info);
        d.params = PgList::<pg_sys::Expr>::from_pg((*fscan).fdw_exprs).iter_ptr().collect();
        let mut sql = SqlTemplate::default();
        if op == pg_sys::CmdType::CMD_UPDATE {
            let Some(set) = update_set_sql(root, rti, &rs.table, &rs.table.from_clause(), &mut d) else { return Ok(false) };
            sql = set;
        } else {
            sql.push_str(&format!("DELETE FROM {}", rs.table.from_clause()));
        }
        if let Some(w) = &scan.where_ {
            sql.push_str(" WHERE ");
            sql.append(w);
        }
        let dp = DirectPlan { label: rs.table.local_name.clone(), sql, can_set_tag: (*plan).canSetTag, members: Vec::new() };
        let mut exprs = PgList::<pg_sys::Expr>::new();
        for p in &d.params {
            exprs.push(*p);
        }
        (*fscan).operation = op;
        (*fscan).resultRelation = rti;
        (*fscan).fdw_exprs = exprs.into_pg();
        (*fscan).fdw_private = json_list(&dp);
        Ok(true)
    }
}

pub struct DirectState {
    plan: DirectPlan,
    client: Client,
    params: Vec<ParamOutput>,
    done: bool,
    affected: u64,
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn begin_direct_modify(node: *mut pg_sys::ForeignScanState, eflags: i32) {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        if eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as i32 != 0 {
            return;
        }
        begin_direct(node).or_report()
    }
}

unsafe fn begin_direct(node: *mut pg_sys::ForeignScanState) -> FdwResult<()> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let fsplan = (*node).ss.ps.plan as *mut pg_sys::ForeignScan;
        let plan: DirectPlan = json_from_list((*fsplan).fdw_private)?;
        let rinfo = (*node).resultRelInfo;
        let estate = (*node).ss.ps.state;
        let relid = (*(*rinfo).ri_RelationDesc).rd_id;
        let userid = result_user(estate, rinfo);
        let table = TableDef::load(relid, userid)?;
        finish_pending_for(relid)?;
        for r in &plan.members {
            finish_pending_for(pg_sys::Oid::from(*r))?;
        }
        let client = client_for(&table.access)?;
        // A COPY left open on the table would make the statement wait for its lock.
        cleanup_stale_uploads(&client);
        let mut params = Vec::new();
        for e in PgList::<pg_sys::Expr>::from_pg((*fsplan).fdw_exprs).iter_ptr() {
            params.push(ParamOutput::new(e, node.cast()));
        }
        let st = DirectState { plan, client, params, done: false, affected: 0 };
        (*node).fdw_state = PgMemoryContexts::CurrentMemoryContext.leak_and_drop_on_delete(st).cast();
        Ok(())
    }
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn iterate_direct_modify(node: *mut pg_sys::ForeignScanState) -> *mut pg_sys::TupleTableSlot {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        let slot = (*node).ss.ss_ScanTupleSlot;
        if let Some(st) = ((*node).fdw_state as *mut DirectState).as_mut() {
            if !st.done {
                st.done = true;
                let econtext = (*node).ss.ps.ps_ExprContext;
                let rendered: Vec<String> = st.params.iter_mut().map(|p| p.render(econtext)).collect();
                let sql = st.plan.sql.render(Some(&rendered));
                let resp = block_on(st.client.query(&sql))
                    .or_report()
                    .map_err(|e| FdwError::remote(e, format!("modifying foreign table \"{}\"", st.plan.label)))
                    .or_report();
                st.affected = resp.total_rows;
                if st.plan.can_set_tag {
                    (*(*node).ss.ps.state).es_processed += resp.total_rows;
                }
                let instr = (*node).ss.ps.instrument;
                if !instr.is_null() {
                    (*instr).tuplecount += resp.total_rows as f64;
                }
            }
        }
        if let Some(clear) = (*(*slot).tts_ops).clear {
            clear(slot);
        }
        slot
    }
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn end_direct_modify(_node: *mut pg_sys::ForeignScanState) {}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn explain_direct_modify(node: *mut pg_sys::ForeignScanState, es: *mut pg_sys::ExplainState) {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        let fsplan = (*node).ss.ps.plan as *mut pg_sys::ForeignScan;
        let Ok(plan) = json_from_list::<DirectPlan>((*fsplan).fdw_private) else { return };
        explain_text(es, "CARTO endpoint", "SQL API (/sql), whole statement");
        if (*es).verbose {
            explain_text(es, "Remote SQL", &plan.sql.render(None));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TRUNCATE.

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn exec_foreign_truncate(rels: *mut pg_sys::List, behavior: pg_sys::DropBehavior::Type, restart_seqs: bool) {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        truncate(rels, behavior, restart_seqs).or_report()
    }
}

unsafe fn truncate(rels: *mut pg_sys::List, behavior: pg_sys::DropBehavior::Type, restart_seqs: bool) -> FdwResult<()> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let userid = pg_sys::GetUserId();
        // Group by server: one statement per server (all tables of one account truncate together).
        let mut groups: Vec<(pg_sys::Oid, Vec<TableDef>)> = Vec::new();
        for rel in PgList::<pg_sys::RelationData>::from_pg(rels).iter_ptr() {
            let relid = (*rel).rd_id;
            let table = TableDef::load(relid, userid)?;
            if table.options.query.is_some() {
                return Err(not_supported(
                    format!("cannot truncate foreign table \"{}\": it reads a query, not a table", table.local_name),
                    None,
                ));
            }
            if !table.options.truncatable {
                return Err(not_supported(
                    format!("foreign table \"{}\" does not allow truncates", table.local_name),
                    Some("The option truncatable is false on the foreign table or its server."),
                ));
            }
            let serverid = (*pg_sys::GetForeignTable(relid)).serverid;
            match groups.iter_mut().find(|(s, _)| *s == serverid) {
                Some((_, v)) => v.push(table),
                None => groups.push((serverid, vec![table])),
            }
        }
        for (_, tables) in groups {
            for t in &tables {
                finish_pending_for(t.relid)?;
            }
            let names: Vec<String> = tables.iter().map(|t| t.from_clause()).collect();
            let mut sql = format!("TRUNCATE {}", names.join(", "));
            if restart_seqs {
                sql.push_str(" RESTART IDENTITY");
            }
            if behavior == pg_sys::DropBehavior::DROP_CASCADE {
                sql.push_str(" CASCADE");
            }
            let client = client_for(&tables[0].access)?;
            cleanup_stale_uploads(&client);
            let labels: Vec<String> = tables.iter().map(|t| format!("\"{}\"", t.local_name)).collect();
            block_on(client.query(&sql))?
                .map_err(|e| FdwError::remote(e, format!("truncating foreign table {}", labels.join(", "))))?;
        }
        Ok(())
    }
}

/// The write slots of the FdwRoutine (kept here so the handler changes by one line).
pub fn assign_slots(r: &mut pg_sys::FdwRoutine) {
    r.IsForeignRelUpdatable = Some(is_foreign_rel_updatable);
    r.AddForeignUpdateTargets = Some(add_foreign_update_targets);
    r.PlanForeignModify = Some(plan_foreign_modify);
    r.BeginForeignModify = Some(begin_foreign_modify);
    r.ExecForeignInsert = Some(exec_foreign_insert);
    r.ExecForeignBatchInsert = Some(exec_foreign_batch_insert);
    r.GetForeignModifyBatchSize = Some(get_foreign_modify_batch_size);
    r.ExecForeignUpdate = Some(exec_foreign_update_or_delete);
    r.ExecForeignDelete = Some(exec_foreign_update_or_delete);
    r.EndForeignModify = Some(end_foreign_modify);
    r.BeginForeignInsert = Some(begin_foreign_insert);
    r.EndForeignInsert = Some(end_foreign_insert);
    r.ExplainForeignModify = Some(explain_foreign_modify);
    r.PlanDirectModify = Some(plan_direct_modify);
    r.BeginDirectModify = Some(begin_direct_modify);
    r.IterateDirectModify = Some(iterate_direct_modify);
    r.EndDirectModify = Some(end_direct_modify);
    r.ExplainDirectModify = Some(explain_direct_modify);
    r.ExecForeignTruncate = Some(exec_foreign_truncate);
}
