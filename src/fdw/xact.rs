//! Pending COPY uploads of this backend's transaction, and the transaction callbacks that end them.
//!
//! An INSERT or COPY into a foreign table streams its rows into ONE `/copyfrom` request per foreign
//! table (and user, and column list) and transaction. The request stays open after the statement:
//! it is finished at the local transaction's pre-commit, so CARTO commits the rows only when the
//! local transaction commits. Any abort ends it deterministically: a poison line CARTO's COPY must
//! reject (for COPY binary, a tuple with one field too many), a finished gzip stream and the body's end, a bounded wait for CARTO's answer, then the
//! connection is closed (CopyIn::abort_gracefully) — closing alone is not a reliable abort on
//! CARTO. What cannot be ended that way (a killed backend, a broken connection, a commit-time
//! finish that timed out after the body's end) is found later by its tag and cancelled
//! (uploads.rs). A later statement that reads, updates, deletes or truncates the same foreign
//! table first finishes the pending upload (`finish_pending_for`), so it sees the rows.
//!
//! Rows already sent cannot be withdrawn from an open COPY: when a subtransaction that sent rows
//! is rolled back, the upload is aborted at once and the transaction is doomed (COMMIT fails).
//!
//! The upload itself — requests tagged, rolled over before CARTO's size limit, handed to the abort when an
//! ERROR drops one unfinished — is [`Upload`], which carto.push (sync/) uses too.
//!
//! Everything here runs on the backend thread. No RefCell borrow is ever held across `block_on`
//! (which may raise an ERROR): an upload's open request is taken out of the list while it is waited
//! on ([`Request`]): if an ERROR unwinds through it, it hands itself to the orphans the abort ends.
//!
//! The commit-time finish is bounded by statement_timeout itself: PostgreSQL disables its statement
//! timer before committing, so the deadline is derived from statement_timeout and the statement's
//! start (cancel and terminate still work, as everywhere).

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use carto_client::{AbortOutcome, Bytes, Client, CopyIn};
use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

use crate::pg::error::{FdwError, FdwResult, OrReport};
use crate::fdw::uploads;
use crate::pg::runtime::{block_on, block_on_bounded, block_on_interruptible, HeldInterrupts, Waited};

/// The longest an abort waits for CARTO to confirm that a poisoned upload is over (all uploads of
/// the transaction are ended concurrently). Interrupts are held where this runs.
const ABORT_WAIT: Duration = Duration::from_millis(1500);
/// After a commit-time finish timed out: the longest spent cancelling the upload through /sql.
const CANCEL_WAIT: Duration = Duration::from_secs(2);

/// What one upload is for: a foreign table, the user whose mapping is used, and whether the rowid
/// column is in the COPY column list (rows with a NULL rowid go to a COPY without it).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct StreamKey {
    pub relid: pg_sys::Oid,
    pub userid: pg_sys::Oid,
    pub with_rowid: bool,
    /// COPY binary (its `sql` ends with transport::BINARY_COPY_SUFFIX): never mixed with text in one upload.
    pub binary: bool,
}

struct Pending {
    key: StreamKey,
    label: String,
    upload: Upload,
    /// Subtransactions (SubTransactionId) that sent rows; rewritten to the parent on sub-commit.
    subids: Vec<pg_sys::SubTransactionId>,
}

#[derive(Default)]
struct State {
    pending: Vec<Pending>,
    /// Set when a subtransaction that sent rows was rolled back: the message COMMIT fails with.
    doomed: Option<String>,
    /// Uploads an ERROR unwound while they were out of `pending`: ended at the next (sub)abort.
    orphans: Vec<(CopyIn, usize)>,
}

/// One open request of an upload: a tagged COPY on its way to CARTO. Dropped with the COPY still in it (an
/// ERROR unwinding while it is waited on), it hands it to the orphans, so the abort ends it with its poison row.
struct Request {
    copy: Option<CopyIn>,
    columns: usize,
    tag: uploads::UploadTag,
}

impl Request {
    /// The COPY, no longer handed to the abort when dropped.
    fn into_copy(mut self) -> Option<CopyIn> {
        self.copy.take()
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if let Some(c) = self.copy.take() {
            let columns = self.columns;
            let kept = STATE.with(|s| match s.try_borrow_mut() {
                Ok(mut s) => {
                    s.orphans.push((c, columns));
                    None
                }
                Err(_) => Some(c),
            });
            // Unreachable in practice (no borrow is held across a wait); dropping breaks the connection.
            drop(kept);
        }
    }
}

/// One upload into CARTO: a `COPY ... FROM STDIN` (text, or binary) sent as one `/copyfrom` request after
/// another. Each request's COPY is tagged (uploads.rs finds what killed backends left open by the tag); a
/// request that nears CARTO's size limit is finished — CARTO commits it as its own transaction — and the next
/// rows open a new one; a request dropped unfinished is handed to the transaction's abort ([`Request`]). INSERT
/// keeps one per foreign table in this file's state until the commit; carto.push one per run.
pub struct Upload {
    client: Client,
    sql: String,
    binary: bool,
    /// Columns of the COPY column list (the poison row has one more).
    columns: usize,
    /// The open request; None before the first rows, after a roll-over or a finish, and while it is taken out
    /// to be waited on.
    open: Option<Request>,
    /// Requests finished so far (roll-overs and finishes), and the rows CARTO confirmed in them.
    finished_requests: u64,
    rows_total: u64,
}

/// What sending rows into a request left.
enum Sent {
    /// The request, still open (boxed: a CopyIn is large).
    Open(Box<Request>),
    /// The request neared CARTO's size limit and was finished: the rows CARTO committed with it.
    RolledOver(u64),
}

impl Upload {
    /// An upload of `sql` (a `COPY ... FROM STDIN` with `columns` columns; `binary` for `FORMAT binary`).
    /// Nothing is sent before the first rows.
    pub fn new(client: &Client, sql: &str, binary: bool, columns: usize) -> Upload {
        Upload { client: client.clone(), sql: sql.to_string(), binary, columns, open: None, finished_requests: 0, rows_total: 0 }
    }

    fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// The tag of the open request.
    fn tag(&self) -> Option<uploads::UploadTag> {
        self.open.as_ref().map(|r| r.tag)
    }

    /// The open request, taken out to be waited on; a new one (its COPY tagged) when none is open.
    fn request(&mut self) -> Request {
        if let Some(r) = self.open.take() {
            return r;
        }
        // The transaction's end ends what an ERROR leaves open.
        ensure_callbacks();
        // Binary COPYs carry the same tag: the cleanup finds every upload by it.
        let (tagged, tag) = uploads::tag_copy(&self.sql);
        let copy = match self.binary {
            true => self.client.copy_from_binary(&tagged),
            false => self.client.copy_from(&tagged),
        };
        Request { copy: Some(copy), columns: self.columns, tag }
    }

    /// Counts a finished request and the rows CARTO confirmed in it: the number of requests finished so far.
    fn finished(&mut self, rows: u64) -> u64 {
        self.finished_requests += 1;
        self.rows_total += rows;
        self.finished_requests
    }

    /// Sends whole rows, `rows` of them in `data`, rolling over to a new request before CARTO's size limit.
    /// `what` names the work in messages ("pushing rows").
    pub fn send(&mut self, data: Vec<u8>, rows: u64, what: &str) -> FdwResult<()> {
        let req = self.request();
        match send_rolling(req, data, rows, &|| what.to_string(), &|| what.to_string())? {
            Sent::Open(r) => self.open = Some(*r),
            Sent::RolledOver(n) => {
                self.finished(n);
            }
        }
        Ok(())
    }

    /// Sends the last rows (if any, never rolling over) and finishes the request: the rows CARTO confirmed in
    /// all requests, and how many requests there were.
    pub fn finish(mut self, data: Vec<u8>, rows: u64, what: &str) -> FdwResult<(u64, u64)> {
        let mut req = self.request();
        if rows > 0 {
            req.send(data, rows)?.map_err(|e| FdwError::remote(e, what))?;
        }
        let Some(copy) = req.into_copy() else { return Err(FdwError::internal("upload lost")) };
        let summary = block_on(copy.finish())?.map_err(|e| FdwError::remote(e, what))?;
        self.finished(summary.total_rows);
        Ok((self.rows_total, self.finished_requests))
    }
}

impl Request {
    /// Sends whole rows: the outer error is the wait's (an interrupt), the inner one CARTO's or the connection's
    /// (the upload is then gone).
    fn send(&mut self, data: Vec<u8>, rows: u64) -> FdwResult<Result<(), carto_client::Error>> {
        match self.copy.as_mut() {
            Some(c) => block_on(c.send(Bytes::from(data), rows)),
            None => Err(FdwError::internal("upload lost")),
        }
    }
}

/// Sends whole rows into `req`, then finishes the request if it nears CARTO's size limit. A failure drops
/// `req`: the abort ends it. `sending` and `rolling_over` name the work in messages.
fn send_rolling(
    mut req: Request,
    data: Vec<u8>,
    rows: u64,
    sending: &dyn Fn() -> String,
    rolling_over: &dyn Fn() -> String,
) -> FdwResult<Sent> {
    if let Err(e) = req.send(data, rows)? {
        // The upload failed (CARTO rejected a row, or the connection broke): it is gone.
        return Err(FdwError::remote(e, sending()));
    }
    let rollover = req.copy.as_ref().is_some_and(|c| c.needs_rollover());
    if !rollover {
        return Ok(Sent::Open(Box::new(req)));
    }
    let Some(copy) = req.into_copy() else { return Err(FdwError::internal("upload lost")) };
    let summary = block_on(copy.finish())?.map_err(|e| FdwError::remote(e, rolling_over()))?;
    Ok(Sent::RolledOver(summary.total_rows))
}

/// Ends uploads that must not commit, all at once: each gets its poison line and the end of its
/// body, then CARTO's answer is awaited at most ABORT_WAIT; connections are closed. Never raises.
fn end_uploads(list: Vec<(CopyIn, usize)>) {
    if list.is_empty() {
        return;
    }
    let outcomes = block_on_bounded(async move {
        let mut set = tokio::task::JoinSet::new();
        for (copy, columns) in list {
            // A text line or a binary tuple, as the upload's format (the binary trailer would commit).
            let poison = copy.poison(columns);
            set.spawn(copy.abort_gracefully(poison, ABORT_WAIT));
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            out.push(r.ok());
        }
        out
    });
    let unconfirmed = match outcomes {
        Some(v) => v.iter().any(|o| matches!(o, Some(AbortOutcome::Unconfirmed(_)) | None)),
        None => true,
    };
    if unconfirmed {
        // The next upload of this backend looks for what may have stayed open.
        uploads::cleanup_needed();
    }
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
}

fn ensure_callbacks() {
    if REGISTERED.with(|r| r.replace(true)) {
        return;
    }
    // SAFETY: registered once per backend, for the backend's lifetime.
    unsafe {
        pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(subxact_callback), std::ptr::null_mut());
    }
}

fn notice(message: String) {
    ErrorReport::new(PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION, crate::pg::error::for_database(message), "carto_fdw")
        .report(PgLogLevel::NOTICE);
}

/// Where rows go: the upload of `key`, opened with `sql` (a COPY FROM STDIN with `columns` columns) through
/// `client`; `label` names the foreign table in messages.
#[derive(Clone, Copy)]
pub struct UploadTarget<'a> {
    pub key: StreamKey,
    pub label: &'a str,
    pub sql: &'a str,
    pub columns: usize,
    pub client: &'a Client,
}

/// Sends whole rows, `rows` of them in `data` (COPY text lines, or COPY binary tuples when the key says
/// binary), into the upload of `target.key`, opening it (one request) on the first data and rolling over to a
/// new request before CARTO's byte limit.
pub fn send_rows(target: &UploadTarget, data: Vec<u8>, rows: u64) -> FdwResult<()> {
    if data.is_empty() {
        return Ok(());
    }
    let UploadTarget { key, label, sql, columns, client } = *target;
    ensure_callbacks();
    // SAFETY: backend thread, in a transaction.
    let subid = unsafe { pg_sys::GetCurrentSubTransactionId() };
    let open = STATE.with(|s| s.borrow().pending.iter().any(|p| p.key == key && p.upload.is_open()));
    if !open {
        // A new request to this account: first end what earlier, killed uploads left.
        cleanup_stale_uploads(client);
    }
    let req = STATE.with(|s| {
        let mut s = s.borrow_mut();
        let idx = match s.pending.iter().position(|p| p.key == key) {
            Some(i) => i,
            None => {
                s.pending.push(Pending {
                    key,
                    label: label.to_string(),
                    upload: Upload::new(client, sql, key.binary, columns),
                    subids: Vec::new(),
                });
                s.pending.len() - 1
            }
        };
        let p = &mut s.pending[idx];
        if !p.subids.contains(&subid) {
            p.subids.push(subid);
        }
        p.upload.request()
    });
    // If this raises (cancel, statement_timeout), the request is handed to the orphans.
    let sent = send_rolling(
        req,
        data,
        rows,
        &|| format!("inserting into foreign table \"{label}\""),
        &|| format!("finishing a COPY request into foreign table \"{label}\" at its size limit"),
    )?;
    match sent {
        Sent::RolledOver(total_rows) => {
            let done = STATE.with(|s| {
                let mut s = s.borrow_mut();
                s.pending.iter_mut().find(|p| p.key == key).map(|p| p.upload.finished(total_rows))
            });
            notice(format!(
                "foreign table \"{label}\": COPY request {} reached the size limit and was committed on CARTO with {} rows as its own transaction; continuing in request {}",
                done.unwrap_or(1),
                total_rows,
                done.unwrap_or(1) + 1
            ));
        }
        Sent::Open(req) => {
            STATE.with(|s| {
                let mut s = s.borrow_mut();
                if let Some(p) = s.pending.iter_mut().find(|p| p.key == key) {
                    p.upload.open = Some(*req);
                }
            });
        }
    }
    Ok(())
}

/// Before a write to an account (a new upload, an UPDATE, DELETE or TRUNCATE): ends the uploads this
/// cluster left running there (see uploads.rs), when the cleanup is due. Best effort: its failure
/// does not fail the write (a cancel or timeout while it waits still does).
pub fn cleanup_stale_uploads(client: &Client) {
    if uploads::cleanup_due(client) {
        if let Err(e) = uploads::cleanup(client, &open_tags(), None) {
            let (_, m, _, _) = e.parts();
            pgrx::debug1!("carto_fdw: cleanup of stale uploads failed: {m}");
        }
    }
}

/// The tags of this backend's uploads still open.
pub fn open_tags() -> Vec<uploads::UploadTag> {
    STATE.with(|s| s.borrow().pending.iter().filter_map(|p| p.upload.tag()).collect())
}

/// Takes out the open upload of the first pending entry matching `pred`, with its label and client.
fn take_open(pred: &dyn Fn(&Pending) -> bool) -> Option<(StreamKey, String, CopyIn, Client)> {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.pending
            .iter_mut()
            .filter(|p| pred(p))
            .find_map(|p| {
                let copy = p.upload.open.take().and_then(Request::into_copy)?;
                Some((p.key, p.label.clone(), copy, p.upload.client.clone()))
            })
    })
}

/// When the current statement must end by statement_timeout (None: no timeout).
fn statement_deadline() -> Option<Instant> {
    // SAFETY: plain reads of GUC variables and timestamps on the backend thread.
    let (ms, start, now) = unsafe {
        (pg_sys::StatementTimeout, pg_sys::GetCurrentStatementStartTimestamp(), pg_sys::GetCurrentTimestamp())
    };
    if ms <= 0 {
        return None;
    }
    let left_us = (i64::from(ms) * 1000 - (now - start).max(0)).max(0);
    Some(Instant::now() + Duration::from_micros(left_us as u64))
}

/// Finishes one upload; CARTO commits its rows. Returns the finished entry's totals.
fn finish_one(key: StreamKey, label: &str, copy: CopyIn, client: &Client, at_commit: bool) -> FdwResult<(u64, u64)> {
    let what = if at_commit {
        format!("committing the rows inserted into foreign table \"{label}\"")
    } else {
        format!("finishing the pending insert into foreign table \"{label}\" before using it again")
    };
    // At commit PostgreSQL's statement timer is off: statement_timeout is applied here. A cancel or
    // terminate while CARTO has not answered is raised only after the COPY was ended on CARTO.
    let deadline = if at_commit { statement_deadline() } else { None };
    let mut finishing = Box::pin(copy.finish());
    let summary = match block_on_interruptible(finishing.as_mut(), deadline)? {
        Waited::Done(summary) => summary,
        stopped => {
            // CARTO has not answered. The body's end may have reached it: end the COPY through /sql if it
            // is still running there, then give the finish a last, bounded chance to say what CARTO did —
            // a COPY that committed before it could be ended is a commit, and is reported as one.
            let held = HeldInterrupts::hold();
            if uploads::cleanup(client, &open_tags(), Some(Instant::now() + CANCEL_WAIT)).is_err() {
                uploads::cleanup_needed();
            }
            let last = block_on_bounded(async { tokio::time::timeout(ABORT_WAIT, finishing.as_mut()).await });
            drop(finishing);
            drop(held);
            match last {
                Some(Ok(Ok(summary))) => Ok(summary),
                other => {
                    if !matches!(other, Some(Ok(Err(_)))) {
                        // No word from CARTO: look again for what may still run there.
                        uploads::cleanup_needed();
                    }
                    if matches!(stopped, Waited::Interrupted) {
                        pgrx::check_for_interrupts!();
                    }
                    return Err(FdwError::Custom {
                        code: pgrx::PgSqlErrorCode::ERRCODE_QUERY_CANCELED,
                        message: "canceling statement due to statement timeout".into(),
                        detail: Some(format!(
                            "CARTO did not confirm the rows inserted into foreign table \"{label}\" within statement_timeout; the upload was aborted"
                        )),
                        hint: None,
                    });
                }
            }
        }
    };
    let summary = summary.map_err(|e| FdwError::remote(e, what))?;
    Ok(STATE.with(|s| {
        let mut s = s.borrow_mut();
        match s.pending.iter_mut().find(|p| p.key == key) {
            Some(p) => (p.upload.finished(summary.total_rows), p.upload.rows_total),
            None => (1, summary.total_rows),
        }
    }))
}

/// Finishes the pending uploads into foreign table `relid` (any user, any column list), so that a
/// statement reading, updating, deleting or truncating it sees the rows. Called at the start of
/// every scan and modification of a foreign table.
pub fn finish_pending_for(relid: pg_sys::Oid) -> FdwResult<()> {
    while let Some((key, label, copy, client)) = take_open(&|p| p.key.relid == relid) {
        finish_one(key, &label, copy, &client, false)?;
    }
    Ok(())
}

/// True when an upload of this transaction is still open.
pub fn has_open_uploads() -> bool {
    STATE.with(|s| s.borrow().pending.iter().any(|p| p.upload.is_open()))
}

fn pre_commit() -> FdwResult<()> {
    if let Some(msg) = STATE.with(|s| s.borrow().doomed.clone()) {
        return Err(FdwError::NotSupported {
            message: msg,
            hint: Some("Rows streamed to CARTO cannot be withdrawn by ROLLBACK TO SAVEPOINT or an exception block, so the whole transaction is rolled back and CARTO rolls the open upload back (rows it already committed — after a read of the table or a roll-over — stay).".into()),
        });
    }
    while let Some((key, label, copy, client)) = take_open(&|_| true) {
        let (requests, rows) = finish_one(key, &label, copy, &client, true)?;
        if requests > 1 {
            notice(format!(
                "foreign table \"{label}\": {rows} rows were sent in {requests} COPY requests, each its own transaction on CARTO"
            ));
        }
    }
    Ok(())
}

/// Ends every upload still open (poisoned, see [`end_uploads`]) and forgets the transaction's state.
fn clear() {
    let old = STATE.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let mut open: Vec<(CopyIn, usize)> = old.orphans;
    for mut p in old.pending {
        if let Some(c) = p.upload.open.take().and_then(Request::into_copy) {
            open.push((c, p.upload.columns));
        }
    }
    end_uploads(open);
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn xact_callback(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_PRE_COMMIT | XACT_EVENT_PARALLEL_PRE_COMMIT => pre_commit().or_report(),
        XACT_EVENT_PRE_PREPARE => {
            if has_open_uploads() || STATE.with(|s| s.borrow().doomed.is_some()) {
                FdwError::NotSupported {
                    message: "cannot PREPARE a transaction that has inserted into CARTO foreign tables".into(),
                    hint: Some("The rows are streamed in a COPY request that CARTO commits only at COMMIT; CARTO has no two-phase commit. Use COMMIT.".into()),
                }
                .report();
            }
            clear();
        }
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => clear(),
        _ => clear(),
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn subxact_callback(
    event: pg_sys::SubXactEvent::Type,
    my_subid: pg_sys::SubTransactionId,
    parent_subid: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::SubXactEvent::*;
    match event {
        SUBXACT_EVENT_COMMIT_SUB => STATE.with(|s| {
            for p in s.borrow_mut().pending.iter_mut() {
                for id in p.subids.iter_mut() {
                    if *id == my_subid {
                        *id = parent_subid;
                    }
                }
                p.subids.dedup();
            }
        }),
        SUBXACT_EVENT_ABORT_SUB => {
            let dropped: Vec<(CopyIn, usize)> = STATE.with(|s| {
                let mut s = s.borrow_mut();
                let mut out = std::mem::take(&mut s.orphans);
                let mut first_label = None;
                for p in s.pending.iter_mut().filter(|p| p.subids.contains(&my_subid)) {
                    first_label.get_or_insert_with(|| p.label.clone());
                    if let Some(c) = p.upload.open.take().and_then(Request::into_copy) {
                        out.push((c, p.upload.columns));
                    }
                }
                if let Some(label) = first_label {
                    s.doomed.get_or_insert_with(|| format!(
                        "rows inserted into foreign table \"{label}\" in a subtransaction that was rolled back cannot be withdrawn from CARTO: the transaction cannot commit"
                    ));
                }
                out
            });
            // Ended at once (poisoned): CARTO rolls the open upload back; COMMIT will fail.
            end_uploads(dropped);
        }
        _ => {}
    }
}
