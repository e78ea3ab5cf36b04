//! The bookkeeping of a sync run: the lock that keeps two runs of one sync apart, the
//! record in `carto.sync_runs`, and the subtransaction that lets a failed run be recorded.

use pgrx::pg_sys;
use pgrx::{PgTryBuilder, Spi};

use crate::pg::bookkeeping;
use crate::pg::encoding::DbText;
use crate::pg::error::{mask_secrets, FdwError, FdwResult};

/// What a run ended as.
pub struct RunOutcome {
    pub rows: i64,
    pub watermark_to: Option<String>,
}

/// A run's identity and parameters, as recorded.
pub struct RunInfo<'a> {
    pub name: &'a str,
    pub direction: &'a str,
    pub mode: &'a str,
    pub server: &'a str,
    pub source: &'a str,
    pub target: &'a str,
    pub watermark_from: Option<&'a str>,
}

/// Takes the sync's lock for the rest of the transaction. Returns false when another run holds it
/// and `wait` is false.
///
/// The lock is a row lock on the (role, sync) row of carto.sync_locks, taken as the table's owner:
/// syncs of different roles never share a lock, and no other role can take it (an advisory lock
/// could be taken by anyone who guessed or saw its key in pg_locks, making scheduled runs skip).
pub fn lock(name: &str, wait: bool) -> FdwResult<bool> {
    let role = bookkeeping::caller();
    bookkeeping::as_owner_of("sync_locks", || {
        Spi::run_with_args(
            "INSERT INTO carto.sync_locks (role_id, name) VALUES ($1::pg_catalog.oid, $2::pg_catalog.text) ON CONFLICT DO NOTHING",
            &[role.into(), t(name)],
        )
        .map_err(|e| FdwError::internal(format!("sync lock: {e}")))?;
        let sql = format!(
            "SELECT true FROM carto.sync_locks WHERE role_id OPERATOR(pg_catalog.=) $1::pg_catalog.oid \
             AND name OPERATOR(pg_catalog.=) $2::pg_catalog.text FOR UPDATE{}",
            if wait { "" } else { " SKIP LOCKED" }
        );
        let got: Option<bool> = Spi::get_one_with_args(&sql, &[role.into(), t(name)])
            .or_else(|e| match e {
                pgrx::spi::Error::InvalidPosition => Ok(None),
                e => Err(e),
            })
            .map_err(|e| FdwError::internal(format!("sync lock: {e}")))?;
        Ok(got == Some(true))
    })
}

/// Takes the sync's lock; when another run holds it (and `wait` is false), records a skipped run,
/// says so, and returns false.
pub fn lock_or_skip(info: &RunInfo, started: &str, wait: bool) -> FdwResult<bool> {
    if lock(info.name, wait)? {
        return Ok(true);
    }
    let none = RunOutcome { rows: 0, watermark_to: None };
    record(info, started, "skipped", Some(&none), Some("another run of this sync was in progress"))?;
    pgrx::notice!("{}", crate::pg::error::for_database(format!("carto_fdw: sync \"{}\" skipped: another run is in progress", info.name)));
    Ok(false)
}

/// The watermark reached by the last successful run of the caller's sync, if any.
pub fn last_watermark(name: &str) -> FdwResult<Option<String>> {
    let role = bookkeeping::caller();
    bookkeeping::as_owner_of("sync_runs", || {
        Spi::get_one_with_args::<DbText>(
            // A scalar subquery: always one row (get_one errors on none).
            "SELECT (SELECT watermark_to FROM carto.sync_runs WHERE role_id OPERATOR(pg_catalog.=) $2::pg_catalog.oid \
             AND name OPERATOR(pg_catalog.=) $1::pg_catalog.text AND status OPERATOR(pg_catalog.=) 'succeeded'::pg_catalog.text \
             AND watermark_to IS NOT NULL ORDER BY run_id DESC LIMIT 1)",
            &[t(name), role.into()],
        )
        .map(|w| w.map(DbText::into_string))
        .map_err(|e| FdwError::internal(format!("reading carto.sync_runs: {e}")))
    })
}

/// Records a run as the caller's row (written as the table's owner: crate::pg::bookkeeping).
pub fn record(
    info: &RunInfo,
    started: &str,
    status: &str,
    outcome: Option<&RunOutcome>,
    error: Option<&str>,
) -> FdwResult<()> {
    let rows = outcome.map(|o| o.rows);
    let wm_to = outcome.and_then(|o| o.watermark_to.clone());
    let role = bookkeeping::caller();
    let role_name = bookkeeping::caller_name();
    bookkeeping::as_owner_of("sync_runs", || {
        Spi::run_with_args(
            "INSERT INTO carto.sync_runs (name, direction, mode, server, source, target, started_at, finished_at, rows, status, error, watermark_from, watermark_to, run_by, role_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7::pg_catalog.timestamptz, pg_catalog.clock_timestamp(), $8, $9, $10, $11, $12, $13, $14)",
            &[
                t(info.name),
                info.direction.into(),
                info.mode.into(),
                t(info.server),
                t(info.source),
                t(info.target),
                started.into(),
                rows.into(),
                status.into(),
                error.map(|e| DbText(crate::pg::error::for_database(mask_secrets(e)))).into(),
                info.watermark_from.map(|w| DbText(w.to_string())).into(),
                wm_to.map(DbText).into(),
                DbText(role_name.clone()).into(),
                role.into(),
            ],
        )
        .map_err(|e| FdwError::internal(format!("recording the run in carto.sync_runs: {e}")))
    })
}

/// A text parameter: the extension's UTF-8, stored in the database encoding (crate::pg::encoding).
fn t(s: &str) -> pgrx::datum::DatumWithOid<'static> {
    DbText(s.to_string()).into()
}

pub fn now_text() -> String {
    // Read back as timestamptz later: ISO, so the round trip holds under any DateStyle.
    crate::pg::typeio::with_transmission_modes(|| Spi::get_one::<String>("SELECT clock_timestamp()::text"))
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Runs `work` in a subtransaction. On an ERROR the subtransaction is rolled back (undoing every
/// local change of the work; remote requests in flight were dropped with it) and the error is
/// returned as text, so the caller can record it and carry on in the outer transaction.
///
/// A local cancel (Ctrl-C, statement_timeout) is not a failure of the run: after the rollback it
/// is raised again, so the statement stops as the user asked.
pub fn in_subtransaction<T>(work: impl FnOnce() -> FdwResult<T>) -> Result<T, String> {
    // SAFETY: carto.push / carto.pull run on the backend thread in a transaction: the subtransaction is begun here
    // and always ended below (released or rolled back), the memory context and resource owner restored.
    unsafe {
        let old_cxt = pg_sys::CurrentMemoryContext;
        let old_owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::CurrentMemoryContext = old_cxt;

        // A Mutex because the catch closure must be unwind-safe.
        let cancel: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
        let cancel_ref = &cancel;
        let result = PgTryBuilder::new(std::panic::AssertUnwindSafe(|| match work() {
            Ok(v) => Ok(v),
            Err(e) => {
                let (_, message, detail, hint) = e.parts();
                Err(join_error(&message, detail.as_deref(), hint.as_deref()))
            }
        }))
        .catch_others(|caught: pgrx::pg_sys::panic::CaughtError| {
            let report = match &caught {
                pgrx::pg_sys::panic::CaughtError::PostgresError(r)
                | pgrx::pg_sys::panic::CaughtError::ErrorReport(r) => r,
                pgrx::pg_sys::panic::CaughtError::RustPanic { ereport, .. } => ereport,
            };
            if report.sql_error_code() == pgrx::PgSqlErrorCode::ERRCODE_QUERY_CANCELED {
                if let Ok(mut c) = cancel_ref.lock() {
                    *c = Some(report.message().to_string());
                }
            }
            Err(join_error(report.message(), report.detail(), report.hint()))
        })
        .execute();

        pg_sys::CurrentMemoryContext = old_cxt;
        match &result {
            Ok(_) => pg_sys::ReleaseCurrentSubTransaction(),
            Err(_) => {
                pg_sys::FlushErrorState();
                pg_sys::RollbackAndReleaseCurrentSubTransaction();
            }
        }
        pg_sys::CurrentMemoryContext = old_cxt;
        pg_sys::CurrentResourceOwner = old_owner;
        if let Some(message) = cancel.into_inner().ok().flatten() {
            pgrx::pg_sys::panic::ErrorReport::new(pgrx::PgSqlErrorCode::ERRCODE_QUERY_CANCELED, crate::pg::error::for_database(message), "carto_fdw")
                .report(pgrx::PgLogLevel::ERROR);
        }
        result
    }
}

fn join_error(message: &str, detail: Option<&str>, hint: Option<&str>) -> String {
    let mut s = mask_secrets(message);
    if let Some(d) = detail {
        s.push_str("\nDETAIL: ");
        s.push_str(&mask_secrets(d));
    }
    if let Some(h) = hint {
        s.push_str("\nHINT: ");
        s.push_str(&mask_secrets(h));
    }
    s
}

/// The end of a failed run: recorded, then said loudly as a WARNING (the function does not
/// raise, or the record would be rolled back with it).
pub fn report_failure(info: &RunInfo, started: &str, error: &str) -> FdwResult<()> {
    record(info, started, "failed", None, Some(error))?;
    pgrx::warning!("{}", crate::pg::error::for_database(format!("carto_fdw: sync \"{}\" failed: {}", info.name, error)));
    Ok(())
}
