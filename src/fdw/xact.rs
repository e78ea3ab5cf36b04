//! Pending COPY uploads of this backend's transaction, and the transaction callbacks that end them.
//!
//! An INSERT or COPY into a foreign table streams its rows into ONE `/copyfrom` request per foreign
//! table (and user, and column list) and transaction. The request stays open after the statement:
//! it is finished at the local transaction's pre-commit, so CARTO commits the rows only when the
//! local transaction commits. Any abort drops it; a dropped upload breaks its connection and CARTO
//! rolls it back. A later statement that reads, updates, deletes or truncates the same foreign
//! table first finishes the pending upload (`finish_pending_for`), so it sees the rows.
//!
//! Rows already sent cannot be withdrawn from an open COPY: when a subtransaction that sent rows
//! is rolled back, the upload is aborted at once and the transaction is doomed (COMMIT fails).
//!
//! Everything here runs on the backend thread. No RefCell borrow is ever held across `block_on`
//! (which may raise an ERROR): uploads are taken out of the list while they are waited on, so an
//! ERROR drops (aborts) them.

use std::cell::{Cell, RefCell};

use carto_client::{Bytes, Client, CopyIn};
use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

use crate::pg::error::{FdwError, FdwResult, OrReport};
use crate::pg::runtime::block_on;

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
    sql: String,
    client: Client,
    /// The open request; None before the first row, after a roll-over or a mid-transaction finish,
    /// and while it is taken out to be waited on.
    copy: Option<CopyIn>,
    /// Requests finished before commit (roll-overs and mid-transaction finishes).
    finished_requests: u64,
    rows_total: u64,
    /// Subtransactions (SubTransactionId) that sent rows; rewritten to the parent on sub-commit.
    subids: Vec<pg_sys::SubTransactionId>,
}

#[derive(Default)]
struct State {
    pending: Vec<Pending>,
    /// Set when a subtransaction that sent rows was rolled back: the message COMMIT fails with.
    doomed: Option<String>,
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
    ErrorReport::new(PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION, message, "carto_fdw")
        .report(PgLogLevel::NOTICE);
}

/// Sends whole COPY text lines holding `rows` rows into the upload for `key`, opening it (one
/// request) on the first data and rolling over to a new request before CARTO's byte limit.
pub fn send_rows(
    key: StreamKey,
    label: &str,
    sql: &str,
    client: &Client,
    data: Vec<u8>,
    rows: u64,
) -> FdwResult<()> {
    if data.is_empty() {
        return Ok(());
    }
    ensure_callbacks();
    // SAFETY: backend thread, in a transaction.
    let subid = unsafe { pg_sys::GetCurrentSubTransactionId() };
    let mut copy = STATE.with(|s| {
        let mut s = s.borrow_mut();
        let idx = match s.pending.iter().position(|p| p.key == key) {
            Some(i) => i,
            None => {
                s.pending.push(Pending {
                    key,
                    label: label.to_string(),
                    sql: sql.to_string(),
                    client: client.clone(),
                    copy: None,
                    finished_requests: 0,
                    rows_total: 0,
                    subids: Vec::new(),
                });
                s.pending.len() - 1
            }
        };
        let p = &mut s.pending[idx];
        if !p.subids.contains(&subid) {
            p.subids.push(subid);
        }
        p.copy.take().unwrap_or_else(|| match p.key.binary {
            true => p.client.copy_from_binary(&p.sql),
            false => p.client.copy_from(&p.sql),
        })
    });
    // If this raises (cancel, statement_timeout), `copy` is dropped by the unwinding: aborted.
    let sent = block_on(copy.send(Bytes::from(data), rows))?;
    if let Err(e) = sent {
        // The upload failed (CARTO rejected a row, or the connection broke): it is gone.
        return Err(FdwError::remote(e, format!("inserting into foreign table \"{label}\"")));
    }
    let rollover = copy.needs_rollover();
    if rollover {
        let summary = block_on(copy.finish())?.map_err(|e| {
            FdwError::remote(e, format!("finishing a COPY request into foreign table \"{label}\" at its size limit"))
        })?;
        let done = STATE.with(|s| {
            let mut s = s.borrow_mut();
            s.pending.iter_mut().find(|p| p.key == key).map(|p| {
                p.finished_requests += 1;
                p.rows_total += summary.total_rows;
                p.finished_requests
            })
        });
        notice(format!(
            "foreign table \"{label}\": COPY request {} reached the size limit and was committed on CARTO with {} rows as its own transaction; continuing in request {}",
            done.unwrap_or(1),
            summary.total_rows,
            done.unwrap_or(1) + 1
        ));
    } else {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            if let Some(p) = s.pending.iter_mut().find(|p| p.key == key) {
                p.copy = Some(copy);
            }
        });
    }
    Ok(())
}

/// Takes out the open upload of the first pending entry matching `pred`, with its label.
fn take_open(pred: &dyn Fn(&Pending) -> bool) -> Option<(StreamKey, String, CopyIn)> {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.pending
            .iter_mut()
            .filter(|p| pred(p))
            .find_map(|p| p.copy.take().map(|c| (p.key, p.label.clone(), c)))
    })
}

/// Finishes one upload; CARTO commits its rows. Returns the finished entry's totals.
fn finish_one(key: StreamKey, label: &str, copy: CopyIn, at_commit: bool) -> FdwResult<(u64, u64)> {
    let what = if at_commit {
        format!("committing the rows inserted into foreign table \"{label}\"")
    } else {
        format!("finishing the pending insert into foreign table \"{label}\" before using it again")
    };
    let summary = block_on(copy.finish())?.map_err(|e| FdwError::remote(e, what))?;
    Ok(STATE.with(|s| {
        let mut s = s.borrow_mut();
        match s.pending.iter_mut().find(|p| p.key == key) {
            Some(p) => {
                p.finished_requests += 1;
                p.rows_total += summary.total_rows;
                (p.finished_requests, p.rows_total)
            }
            None => (1, summary.total_rows),
        }
    }))
}

/// Finishes the pending uploads into foreign table `relid` (any user, any column list), so that a
/// statement reading, updating, deleting or truncating it sees the rows. Called at the start of
/// every scan and modification of a foreign table.
pub fn finish_pending_for(relid: pg_sys::Oid) -> FdwResult<()> {
    while let Some((key, label, copy)) = take_open(&|p| p.key.relid == relid) {
        finish_one(key, &label, copy, false)?;
    }
    Ok(())
}

/// True when an upload of this transaction is still open.
pub fn has_open_uploads() -> bool {
    STATE.with(|s| s.borrow().pending.iter().any(|p| p.copy.is_some()))
}

fn pre_commit() -> FdwResult<()> {
    if let Some(msg) = STATE.with(|s| s.borrow().doomed.clone()) {
        return Err(FdwError::NotSupported {
            message: msg,
            hint: Some("Rows streamed to CARTO cannot be withdrawn by ROLLBACK TO SAVEPOINT or an exception block, so the whole transaction is rolled back and CARTO rolls the open upload back (rows it already committed — after a read of the table or a roll-over — stay).".into()),
        });
    }
    while let Some((key, label, copy)) = take_open(&|_| true) {
        let (requests, rows) = finish_one(key, &label, copy, true)?;
        if requests > 1 {
            notice(format!(
                "foreign table \"{label}\": {rows} rows were sent in {requests} COPY requests, each its own transaction on CARTO"
            ));
        }
    }
    Ok(())
}

fn clear() {
    // Dropping the uploads breaks their connections: CARTO rolls back what they carried.
    let old = STATE.with(|s| std::mem::take(&mut *s.borrow_mut()));
    drop(old);
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
            let dropped: Vec<CopyIn> = STATE.with(|s| {
                let mut s = s.borrow_mut();
                let mut out = Vec::new();
                let mut first_label = None;
                for p in s.pending.iter_mut().filter(|p| p.subids.contains(&my_subid)) {
                    first_label.get_or_insert_with(|| p.label.clone());
                    out.extend(p.copy.take());
                }
                if let Some(label) = first_label {
                    s.doomed.get_or_insert_with(|| format!(
                        "rows inserted into foreign table \"{label}\" in a subtransaction that was rolled back cannot be withdrawn from CARTO: the transaction cannot commit"
                    ));
                }
                out
            });
            // Aborted at once: CARTO rolls the open upload back; COMMIT will fail.
            drop(dropped);
        }
        _ => {}
    }
}
