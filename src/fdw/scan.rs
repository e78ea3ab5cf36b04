//! Executing a scan: Begin/Iterate/ReScan/End and EXPLAIN.
//!
//! Rows arrive as COPY text lines (`/copyto`) or as JSON objects whose values are PostgreSQL's
//! text form (`/sql`, every column cast to text); either way each value goes through the local
//! column type's input function with the column's typmod, exactly as postgres_fdw does. A COPY in
//! FORMAT binary is read by binary_scan.rs (receive functions, or binary_fast's own conversions).

use std::collections::VecDeque;
use std::ffi::{c_char, CString};

use carto_client::copy_text::Decoder;
use carto_client::{Bytes, Client, CopyOutStream, ErrorKind, RequestStats, StatsHandle};
use pgrx::pg_sys;
use pgrx::{PgList, PgMemoryContexts, PgTryBuilder};

use crate::fdw::connection::client_for;
use crate::fdw::scan_plan::{scan_plan_from_private, Page, ScanPlan, Transport};
use crate::fdw::binary_scan::BinaryRows;
use crate::fdw::table::TableDef;
use crate::pg::error::{FdwError, FdwResult, OrReport};
use crate::pg::executor::{empty_slot, explain_int, explain_text, reraise_with_column};
use crate::pg::runtime::block_on;
use crate::pg::typeio::{ColumnInput, ParamOutput};

enum Source {
    NotStarted,
    Copy { stream: CopyOutStream, chunk: Bytes, pos: usize },
    /// COPY binary: the stream went to ScanState::binary's decode task (binary_scan.rs); its counters.
    Binary { stats: StatsHandle },
    /// `next` is the page to ask for, None once the read is complete.
    Query { rows: VecDeque<Vec<Option<String>>>, next: Option<Page> },
    Done,
}

impl Source {
    /// The counters of a running COPY read.
    fn stats(&self) -> Option<RequestStats> {
        match self {
            Source::Copy { stream, .. } => Some(stream.stats()),
            Source::Binary { stats } => Some(stats.snapshot()),
            _ => None,
        }
    }
}

pub struct ScanState {
    plan: ScanPlan,
    client: Client,
    /// Input functions of the retrieved columns, parallel to plan.columns.
    inputs: Vec<ColumnInput>,
    /// Local names of the retrieved columns, for error messages.
    names: Vec<String>,
    params: Vec<ParamOutput>,
    rendered_params: Vec<String>,
    source: Source,
    decoder: Decoder,
    /// Reused per row: the decoded fields' C strings.
    ptr_buf: Vec<*const c_char>,
    stats: RequestStats,
    /// The transport in use; a rescan or a rate-limited copyto switches to Query.
    transport: Transport,
    fell_back: bool,
    scans: u32,
    /// The binary reader when the plan chose COPY binary (transport.rs).
    binary: Option<BinaryRows>,
    /// Whether the current COPY read is binary (not when client_encoding forbade it).
    binary_active: bool,
    /// A query table: its `/sql` reads run in a read-only transaction on CARTO.
    read_only: bool,
    /// Rows the `/sql` pages of this scan brought.
    query_rows_read: u64,
    /// A `/sql` read that switched to `/copyto`: the requests and rows read through `/sql` before.
    switched: Option<(u64, u64)>,
    /// The switch was refused by CARTO's COPY rate limit: not tried again in this scan.
    switch_refused: bool,
    /// The table's entry in crate::fdw::remote_catalog, dropped when CARTO refuses a COPY built from it.
    catalog_key: String,
}

impl ScanState {
    fn context(&self) -> String {
        format!("reading foreign table \"{}\"", self.plan.table_label)
    }

    fn start(&mut self) -> FdwResult<()> {
        self.scans += 1;
        match self.transport {
            Transport::Copy => {
                if !self.start_copy(None)? {
                    // COPY endpoints allow a few requests a minute: read through /sql instead.
                    self.transport = Transport::Query;
                    self.fell_back = true;
                    self.source = Source::Query { rows: VecDeque::new(), next: Some(Page::First) };
                }
            }
            Transport::Query => {
                self.source = Source::Query { rows: VecDeque::new(), next: Some(Page::First) };
            }
        }
        Ok(())
    }

    /// Starts a `/copyto` read of the scan's rows (from keyset page `rest` on, when a `/sql` read switches);
    /// false when CARTO's COPY rate limit refused it (not waited out: `/sql` reads the same rows now).
    fn start_copy(&mut self, rest: Option<&Page>) -> FdwResult<bool> {
        let binary = match (&mut self.binary, &self.plan.binary_casts) {
            (Some(_), Some(casts)) if crate::pg::binary::encodings_agree() => {
                Some(self.plan.copy_sql_binary_from(Some(&self.rendered_params), casts, rest))
            }
            _ => None,
        };
        self.binary_active = binary.is_some();
        let started = match &binary {
            Some(sql) => block_on(self.client.copy_to_binary(sql, false))?,
            None => block_on(self.client.copy_to_with(&self.plan.copy_sql_from(Some(&self.rendered_params), rest), false))?,
        };
        match started {
            Ok(stream) if binary.is_some() => {
                let Some(rows) = self.binary.as_mut() else { return Err(FdwError::internal("binary scan without its reader")) };
                self.source = Source::Binary { stats: rows.start(stream)? };
            }
            Ok(stream) => {
                self.source = Source::Copy { stream, chunk: Bytes::new(), pos: 0 };
            }
            Err(e) if e.kind() == ErrorKind::RateLimited => {
                self.stats.requests += 1 + u64::from(e.retries);
                self.stats.retries += u64::from(e.retries);
                return Ok(false);
            }
            Err(e) => {
                // The statement was built from CARTO's catalogue as this backend remembers it: look again
                // next time.
                crate::fdw::remote_catalog::forget_key(&self.catalog_key);
                return Err(FdwError::remote(e, self.context()));
            }
        }
        Ok(true)
    }

    /// A `/sql` keyset read that has read `switch_after_rows` rows, its last page full, reads the rest
    /// from `next` on in one `/copyto` stream; it goes on through `/sql` if CARTO's COPY rate limit refuses.
    fn switch_to_copy(&mut self, next: Page) -> FdwResult<bool> {
        let due = matches!(self.plan.switch_after_rows, Some(n) if self.query_rows_read >= n);
        if !due || self.switched.is_some() || self.switch_refused || self.scans > 1 || matches!(next, Page::Nulls) {
            return Ok(false);
        }
        let pages = self.stats.requests;
        if self.start_copy(Some(&next))? {
            self.transport = Transport::Copy;
            self.switched = Some((pages, self.query_rows_read));
            Ok(true)
        } else {
            // Rate-limited (the /sql read is left as it was): no second try in this scan.
            self.switch_refused = true;
            Ok(false)
        }
    }

    fn fetch_page(&mut self) -> FdwResult<()> {
        let Source::Query { rows, next } = &mut self.source else { return Ok(()) };
        let Some(page) = next.take() else { return Ok(()) };
        let mut sql = self.plan.query_sql(Some(&self.rendered_params), &page);
        if self.read_only {
            sql = crate::fdw::query_option::read_only(&sql);
        }
        let context = |e| FdwError::remote(e, format!("reading foreign table \"{}\"", self.plan.table_label));
        let n = self.plan.columns.len();
        let keyset = self.plan.pages_by_keyset();
        let mut names = crate::fdw::deparse::text_aliases(n);
        if keyset {
            names.push("k".into());
        }
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        // The page streams (carto-client's query_rows): each row goes from its JSON text straight to its
        // text values, so a page costs its values, never a JSON value tree or the whole body. No row of the
        // page reaches the executor before the page is complete, so a connection cut mid-page is retried
        // (max_retries) like any read that returned nothing yet.
        let max_retries = self.client.config().max_retries;
        let mut attempt = 0;
        let mut got = loop {
            match read_page(&self.client, &sql, &name_refs)? {
                Ok((got, stats)) => {
                    self.stats.add(&stats);
                    break got;
                }
                Err(PageError::Cut(e)) if e.kind() == ErrorKind::Transport && attempt < max_retries => {
                    attempt += 1;
                    self.stats.retries += 1;
                }
                Err(PageError::Cut(e) | PageError::Refused(e)) => return Err(context(e)),
            }
        };
        self.query_rows_read += got.len() as u64;
        if !keyset {
            rows.extend(got);
            return Ok(());
        }
        let key_of = |r: &Vec<Option<String>>| r.last().cloned().flatten();
        let full = got.len() as u64 >= self.plan.fetch_size;
        *next = match page {
            Page::Nulls => None,
            Page::Group(k) => Some(Page::After(k)),
            // A short page: everything, NULL rowids included, has arrived.
            Page::First | Page::After(_) | Page::From(_) if !full => None,
            Page::First | Page::After(_) | Page::From(_) => {
                // Hold back the trailing group of equal keys (or of NULLs): the next request
                // starts at it, or reads it whole when it fills the page.
                let last = got.last().and_then(key_of);
                let keep = got.iter().rposition(|r| key_of(r) != last);
                match (last, keep) {
                    (None, Some(i)) => {
                        got.truncate(i + 1);
                        Some(Page::Nulls)
                    }
                    (None, None) => {
                        got.clear();
                        Some(Page::Nulls)
                    }
                    (Some(k), Some(i)) => {
                        got.truncate(i + 1);
                        Some(Page::From(k))
                    }
                    (Some(k), None) => {
                        got.clear();
                        Some(Page::Group(k))
                    }
                }
            }
        };
        for mut r in got {
            r.pop();
            rows.push_back(r);
        }
        Ok(())
    }

    /// Fills `slot` with the next row; false at the end.
    unsafe fn next(&mut self, slot: *mut pg_sys::TupleTableSlot) -> FdwResult<bool> {
        // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
        unsafe {
            loop {
                match &mut self.source {
                    Source::NotStarted => self.start()?,
                    Source::Done => return Ok(false),
                    Source::Copy { stream, chunk, pos } => {
                        if *pos < chunk.len() {
                            let rest = &chunk[*pos..];
                            let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
                            let line = chunk.slice(*pos..*pos + end);
                            *pos += end + 1;
                            self.decoder.decode(&line).map_err(|e| FdwError::Conversion {
                                message: format!("malformed COPY data from CARTO for foreign table \"{}\": {e}", self.plan.table_label),
                                detail: None,
                            })?;
                            self.store_copy_row(slot)?;
                            return Ok(true);
                        }
                        match block_on(stream.next_chunk())? {
                            Ok(Some(bytes)) => {
                                *chunk = bytes;
                                *pos = 0;
                            }
                            Ok(None) => {
                                self.stats.add(&stream.stats());
                                self.source = Source::Done;
                            }
                            Err(e) => {
                                return Err(FdwError::remote(e, self.context()));
                            }
                        }
                    }
                    Source::Binary { stats } => {
                        let Some(rows) = self.binary.as_mut() else { return Err(FdwError::internal("binary scan without its reader")) };
                        if rows.next(slot, &self.names, &self.plan.table_label)? {
                            return Ok(true);
                        }
                        self.stats.add(&stats.snapshot());
                        self.source = Source::Done;
                    }
                    Source::Query { rows, next } => {
                        if let Some(row) = rows.pop_front() {
                            self.store_text_row(slot, row)?;
                            return Ok(true);
                        }
                        match next.clone() {
                            None => self.source = Source::Done,
                            Some(page) => {
                                if !self.switch_to_copy(page)? {
                                    self.fetch_page()?;
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    unsafe fn store_copy_row(&mut self, slot: *mut pg_sys::TupleTableSlot) -> FdwResult<()> {
        // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
        unsafe {
            let expected = self.inputs.len().max(1);
            if self.decoder.len() != expected {
                return Err(FdwError::Conversion {
                    message: format!(
                        "CARTO returned {} columns for foreign table \"{}\", expected {}",
                        self.decoder.len(),
                        self.plan.table_label,
                        expected
                    ),
                    detail: None,
                });
            }
            // Pointers straight into the decoder's buffer (each field NUL-terminated): no copy per value.
            let mut ptrs = std::mem::take(&mut self.ptr_buf);
            ptrs.clear();
            // Each value checked against the database encoding first (crate::pg::text); a value
            // converted from UTF-8 (a database in another encoding) lives in `converted`. The decoder
            // refuses NUL bytes itself, so a row that is all ASCII (nearly every row) needs one scan.
            let ascii_row = self.decoder.buffer().is_ascii();
            let mut converted: Vec<CString> = Vec::new();
            for i in 0..self.inputs.len() {
                let p = match self.decoder.field(i) {
                    None => std::ptr::null(),
                    Some(_) if ascii_row => self.decoder.field_ptr(i),
                    Some(bytes) => match crate::pg::text::check(bytes) {
                        Ok(None) => self.decoder.field_ptr(i),
                        Ok(Some(c)) => {
                            converted.push(c);
                            converted.last().map_or(std::ptr::null(), |c| c.as_ptr())
                        }
                        Err(bad) => {
                            self.ptr_buf = ptrs;
                            return Err(bad.error(self.names.get(i).map_or("?", String::as_str), &self.plan.table_label));
                        }
                    },
                };
                ptrs.push(p);
            }
            self.fill_slot(slot, &ptrs);
            self.ptr_buf = ptrs;
            Ok(())
        }
    }

    unsafe fn store_text_row(
        &mut self,
        slot: *mut pg_sys::TupleTableSlot,
        row: Vec<Option<String>>,
    ) -> FdwResult<()> {
        // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
        unsafe {
            let mut owned: Vec<Option<CString>> = Vec::with_capacity(row.len());
            for (i, v) in row.into_iter().enumerate() {
                owned.push(match v {
                    None => None,
                    Some(s) => Some(crate::pg::text::checked_cstring(s).map_err(|bad| {
                        bad.error(self.names.get(i).map_or("?", String::as_str), &self.plan.table_label)
                    })?),
                });
            }
            let ptrs: Vec<*const c_char> =
                owned.iter().map(|v| v.as_ref().map_or(std::ptr::null(), |c| c.as_ptr())).collect();
            self.fill_slot(slot, &ptrs);
            Ok(())
        }
    }

    /// Converts one row's text values into the slot; a value that does not convert raises an
    /// ERROR naming the column and the foreign table.
    unsafe fn fill_slot(&mut self, slot: *mut pg_sys::TupleTableSlot, values: &[*const c_char]) {
        // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
        unsafe {
            let (datums, nulls) = empty_slot(slot);
            let current = std::sync::atomic::AtomicUsize::new(0);
            let inputs = &mut self.inputs;
            let names = &self.names;
            let table = self.plan.table_label.as_str();
            PgTryBuilder::new(std::panic::AssertUnwindSafe(|| {
                for (i, input) in inputs.iter_mut().enumerate() {
                    current.store(i, std::sync::atomic::Ordering::Relaxed);
                    let v = values.get(i).copied().unwrap_or(std::ptr::null());
                    let idx = input.attnum as usize - 1;
                    if v.is_null() {
                        datums[idx] = input.input_null();
                        nulls[idx] = true;
                    } else {
                        datums[idx] = input.input(v);
                        nulls[idx] = false;
                    }
                }
            }))
            .catch_others(|e| {
                let i = current.load(std::sync::atomic::Ordering::Relaxed);
                let name = names.get(i).map(String::as_str).unwrap_or("?");
                reraise_with_column(e, name, table)
            })
            .execute();
            pg_sys::ExecStoreVirtualTuple(slot);
        }
    }

    fn stats_total(&self) -> RequestStats {
        let mut s = self.stats;
        if let Some(stream) = self.source.stats() {
            s.add(&stream);
        }
        s
    }
}

unsafe fn state_of<'a>(node: *mut pg_sys::ForeignScanState) -> Option<&'a mut ScanState> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        ((*node).fdw_state as *mut ScanState).as_mut()
    }
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn begin_foreign_scan(node: *mut pg_sys::ForeignScanState, eflags: i32) {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        if eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as i32 != 0 {
            // Nothing to prepare for a plain EXPLAIN: explain reads the plan itself.
            return;
        }
        begin(node).or_report()
    }
}

unsafe fn begin(node: *mut pg_sys::ForeignScanState) -> FdwResult<()> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let fsplan = (*node).ss.ps.plan as *mut pg_sys::ForeignScan;
        let plan = scan_plan_from_private((*fsplan).fdw_private)?;
        let rel = (*node).ss.ss_currentRelation;
        // A pushed join or aggregate (scanrelid 0) has no relation of its own: its first table gives
        // the server and user mapping (all of them share both), its rows fdw_scan_tlist's types.
        let pushed = rel.is_null();
        let relid = if pushed { pg_sys::Oid::from(plan.relid) } else { (*rel).rd_id };
        for r in &plan.member_relids {
            crate::fdw::xact::finish_pending_for(pg_sys::Oid::from(*r))?;
        }
        crate::fdw::xact::finish_pending_for(relid)?; // rows this transaction inserted are read back
        let rti = if pushed { plan.user_rti } else { (*fsplan).scan.scanrelid };
        let userid = scan_user(node, rti);
        let table = TableDef::load(relid, userid)?;
        let client = client_for(&table.access)?;
        // A pushed join or aggregate keeps every base relation's guarantees, not only its first one's:
        // each member is loaded with the user that reads it (checking a `query` table's owner rule for
        // that user, as a scan of it alone would), and the read is read-only if any member is a query.
        let mut read_only = table.options.query.is_some();
        if pushed {
            for (member, member_rti) in plan.member_relids.iter().zip(&plan.member_rtis) {
                let t = TableDef::load(pg_sys::Oid::from(*member), scan_user(node, *member_rti))?;
                read_only |= t.options.query.is_some();
            }
        }

        let mut inputs = Vec::with_capacity(plan.columns.len());
        let mut plan_names = Vec::with_capacity(plan.columns.len());
        if pushed {
            let tlist = PgList::<pg_sys::TargetEntry>::from_pg((*fsplan).fdw_scan_tlist);
            for (i, te) in tlist.iter_ptr().enumerate() {
                let expr = (*te).expr.cast::<pg_sys::Node>();
                let col = crate::fdw::table::Column {
                    attnum: (i + 1) as i16,
                    local_name: format!("c{i}"),
                    remote_name: format!("c{i}"),
                    type_oid: pushed_column_type(node, expr),
                    typmod: pg_sys::exprTypmod(expr),
                    collation: pg_sys::exprCollation(expr),
                };
                inputs.push(ColumnInput::new(col.attnum, col.type_oid, col.typmod));
                plan_names.push(col.local_name);
            }
        } else {
            for (attnum, _) in &plan.columns {
                let col = table
                    .column(*attnum)
                    .ok_or_else(|| FdwError::internal(format!("column {attnum} of \"{}\" vanished", table.local_name)))?;
                inputs.push(ColumnInput::new(col.attnum, col.type_oid, col.typmod));
                plan_names.push(col.local_name.clone());
            }
        }

        let exprs = PgList::<pg_sys::Expr>::from_pg((*fsplan).fdw_exprs);
        let mut params = Vec::with_capacity(exprs.len());
        for e in exprs.iter_ptr() {
            params.push(ParamOutput::new(e, node.cast()));
        }

        let binary = match &plan.binary_casts {
            Some(_) => {
                let cols: Vec<&crate::fdw::table::Column> = plan.columns.iter().filter_map(|(a, _)| table.column(*a)).collect();
                Some(BinaryRows::new(&cols, &plan.binary_read_as))
            }
            None => None,
        };
        let transport = plan.transport;
        let state = ScanState {
            plan,
            client,
            names: plan_names,
            inputs,
            params,
            rendered_params: Vec::new(),
            source: Source::NotStarted,
            decoder: Decoder::new(),
            ptr_buf: Vec::new(),
            stats: RequestStats::default(),
            transport,
            fell_back: false,
            scans: 0,
            binary,
            binary_active: false,
            read_only,
            query_rows_read: 0,
            switched: None,
            switch_refused: false,
            catalog_key: crate::fdw::remote_catalog::key(&table),
        };
        (*node).fdw_state = PgMemoryContexts::CurrentMemoryContext.leak_and_drop_on_delete(state).cast();
        Ok(())
    }
}

/// The type whose input function reads a pushed statement's column: the expression's, except for
/// a whole row typed `record` (an UPDATE's old target row), read as its table's row type.
unsafe fn pushed_column_type(node: *mut pg_sys::ForeignScanState, expr: *mut pg_sys::Node) -> pg_sys::Oid {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let typ = pg_sys::exprType(expr);
        if typ != pg_sys::RECORDOID || (*expr).type_ != pg_sys::NodeTag::T_Var {
            return typ;
        }
        let var: *mut pg_sys::Var = expr.cast();
        if (*var).varattno != 0 {
            return typ;
        }
        let rtable = PgList::<pg_sys::RangeTblEntry>::from_pg((*(*node).ss.ps.state).es_range_table);
        match rtable.get_ptr(((*var).varno as usize).wrapping_sub(1)) {
            Some(rte) if (*rte).relid != pg_sys::InvalidOid => {
                let rowtype = pg_sys::get_rel_type_id((*rte).relid);
                if rowtype == pg_sys::InvalidOid { typ } else { rowtype }
            }
            _ => typ,
        }
    }
}

/// The user whose mapping applies: the view owner's for a scan inside a view (checkAsUser),
/// else the current user, as postgres_fdw does.
unsafe fn scan_user(node: *mut pg_sys::ForeignScanState, rti: u32) -> pg_sys::Oid {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let estate = (*node).ss.ps.state;
        let rti = rti as usize;
        let rtable = PgList::<pg_sys::RangeTblEntry>::from_pg((*estate).es_range_table);
        match rtable.get_ptr(rti.wrapping_sub(1)) {
            Some(rte) if crate::pg::compat::check_as_user(estate, rte) != pg_sys::InvalidOid => {
                crate::pg::compat::check_as_user(estate, rte)
            }
            _ => pg_sys::GetUserId(),
        }
    }
}

unsafe fn render_params(state: &mut ScanState, node: *mut pg_sys::ForeignScanState) {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let econtext = (*node).ss.ps.ps_ExprContext;
        state.rendered_params = state.params.iter_mut().map(|p| p.render(econtext)).collect();
    }
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn iterate_foreign_scan(
    node: *mut pg_sys::ForeignScanState,
) -> *mut pg_sys::TupleTableSlot {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        let slot = (*node).ss.ss_ScanTupleSlot;
        let Some(state) = state_of(node) else {
            return slot;
        };
        if matches!(state.source, Source::NotStarted) && state.rendered_params.len() != state.params.len() {
            render_params(state, node);
        }
        match state.next(slot) {
            Ok(true) => slot,
            Ok(false) => {
                if let Some(clear) = (*(*slot).tts_ops).clear {
                    clear(slot);
                }
                slot
            }
            Err(e) => e.report(),
        }
    }
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn rescan_foreign_scan(node: *mut pg_sys::ForeignScanState) {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        let Some(state) = state_of(node) else { return };
        let prev = std::mem::replace(&mut state.source, Source::NotStarted);
        if let Some(stream) = prev.stats() {
            state.stats.add(&stream);
        }
        drop(prev);
        if let Some(rows) = state.binary.as_mut() {
            rows.stop();
        }
        // A second COPY request a statement would soon hit CARTO's rate limit: rescans read via /sql.
        if state.scans > 0 {
            state.transport = Transport::Query;
        }
        render_params(state, node);
    }
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn end_foreign_scan(node: *mut pg_sys::ForeignScanState) {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        if let Some(state) = state_of(node) {
            // Dropping the stream closes its connection at once: CARTO cancels the query.
            let prev = std::mem::replace(&mut state.source, Source::Done);
            if let Some(stream) = prev.stats() {
                state.stats.add(&stream);
            }
            if let Some(rows) = state.binary.as_mut() {
                rows.stop();
            }
        }
    }
}

/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn explain_foreign_scan(
    node: *mut pg_sys::ForeignScanState,
    es: *mut pg_sys::ExplainState,
) {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        let fsplan = (*node).ss.ps.plan as *mut pg_sys::ForeignScan;
        let Ok(plan) = scan_plan_from_private((*fsplan).fdw_private) else { return };
        let state = state_of(node);
        if let Some(relations) = &plan.relations {
            explain_text(es, "Relations", relations);
        }
        let transport = state.as_ref().map(|s| s.transport).unwrap_or(plan.transport);
        let label = match transport {
            Transport::Copy => "COPY (/copyto)",
            Transport::Query => "SQL API (/sql)",
        };
        explain_text(es, "CARTO endpoint", label);
        if (*es).verbose {
            // Binary as planned, unless execution found (or, not run yet, would find) client_encoding unlike the
            // database's, or a database encoding other than UTF8 / SQL_ASCII (transport.rs, pg/binary.rs).
            let binary = plan.binary_casts.is_some()
                && match state.as_ref() {
                    Some(s) if s.scans > 0 => s.binary_active,
                    _ => crate::pg::binary::encodings_agree(),
                };
            if transport == Transport::Copy {
                explain_text(es, "CARTO transport", if binary { "COPY binary" } else { "COPY text" });
            }
            let sql = if transport == Transport::Copy && !binary { plan.copy_sql(None) } else { plan.explain_sql() };
            explain_text(es, "Remote SQL", &sql);
        }
        if (*es).analyze {
            if let Some(s) = state {
                let st = s.stats_total();
                explain_int(es, "CARTO requests", st.requests as i64);
                explain_int(es, "CARTO bytes received", st.bytes_received as i64);
                explain_int(es, "CARTO retries", st.retries as i64);
                if s.fell_back {
                    explain_text(es, "CARTO fallback", "copyto was rate-limited; read through /sql");
                }
                if let Some((requests, rows)) = s.switched {
                    let how = format!("{rows} rows in {requests} /sql requests, the rest in one /copyto stream");
                    explain_text(es, "CARTO switch", &how);
                }
            }
        }
    }
}

/// A row of a `/sql` read: its columns' text values, None for NULL.
type TextRow = Vec<Option<String>>;

/// Why a page was not read: the request failed before its first row (the client already retried what
/// can be), or the answer failed once rows were arriving (a cut connection can be read again).
enum PageError {
    Refused(carto_client::Error),
    Cut(carto_client::Error),
}

/// One page of a `/sql` read: its rows as text values (`names` in order; none when no column is read),
/// and the request's counters. The outer Err is a local cancel; the inner one CARTO's or the connection's.
fn read_page(
    client: &Client,
    sql: &str,
    names: &[&str],
) -> FdwResult<Result<(Vec<TextRow>, RequestStats), PageError>> {
    let mut stream = match block_on(client.query_rows(sql, true))? {
        Ok(stream) => stream,
        Err(e) => return Ok(Err(PageError::Refused(e))),
    };
    let mut got: Vec<TextRow> = Vec::new();
    loop {
        let row = match stream.next_ready() {
            Some(row) => row,
            None => match block_on(stream.next_row())? {
                Ok(Some(row)) => row,
                Ok(None) => break,
                Err(e) => return Ok(Err(PageError::Cut(e))),
            },
        };
        if names.is_empty() {
            got.push(Vec::new());
        } else {
            match row.text_row(names) {
                Ok(values) => got.push(values),
                Err(e) => return Ok(Err(PageError::Refused(e))),
            }
        }
    }
    let stats = stream.summary().map(|s| s.stats).unwrap_or_default();
    Ok(Ok((got, stats)))
}
