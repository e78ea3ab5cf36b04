//! Uploads left open on CARTO, and how they are found and ended.
//!
//! Every `/copyfrom` statement this backend sends carries a tag after the COPY (CARTO requires `q`
//! to start with COPY): `COPY "t" (...) FROM STDIN /* carto_fdw upload S:P:B:N */` — S the local
//! cluster's system identifier, P the backend's pid, B its start time (Unix seconds), N a counter.
//! An upload that must not commit is normally ended by a poison line (xact.rs, CopyIn's
//! `abort_gracefully`); when that cannot be done (the backend was killed, the connection broke, a
//! commit-time finish timed out after the body's end), the COPY may stay open on CARTO. A cleanup
//! then ends, through `/sql`, every COPY still running on CARTO whose tag names this local cluster
//! and either a local backend that no longer exists, or this backend and an upload it no longer has
//! open (a CARTO role may signal its own sessions). A COPY waiting for client data (`ClientRead`,
//! the stuck upload of CARTO's race) ignores a query cancel — PostgreSQL handles only a terminate
//! there — so its session is terminated (`pg_terminate_backend`); any other (e.g. waiting for a
//! lock) is cancelled (`pg_cancel_backend`). Never another live session's upload: live backends are
//! read from the local pg_stat_activity, and tags of backends started in the second of that reading
//! or later are left alone.
//!
//! The cleanup runs before the first write (upload, UPDATE, DELETE, TRUNCATE) to an account of each
//! backend, then at most once a minute per account and backend, after an abort that could not be
//! confirmed, after a commit-time finish cut by statement_timeout or a cancel, and on demand through
//! `carto.cleanup_uploads(server)`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use carto_client::Client;
use pgrx::{pg_sys, Spi};

use crate::fdw::deparse::quote_literal;
use crate::pg::error::{FdwError, FdwResult};

/// At most one automatic cleanup per account and backend in this interval.
const CLEANUP_EVERY: Duration = Duration::from_secs(60);

thread_local! {
    static COUNTER: Cell<u64> = const { Cell::new(0) };
    /// Account (client base URL) → when this backend last cleaned it up.
    static LAST_CLEANUP: RefCell<HashMap<String, Instant>> = RefCell::new(HashMap::new());
}

/// "S:P:B" of this backend.
fn backend_tag() -> String {
    // SAFETY: plain reads of process globals on the backend thread.
    let (sysid, pid, start) = unsafe { (pg_sys::GetSystemIdentifier(), pg_sys::MyProcPid, pg_sys::MyStartTime) };
    format!("{sysid}:{pid}:{start}")
}

/// The COPY statement with a new unique tag; returns it and the tag's "P:B:N" part.
pub fn tag_copy(sql: &str) -> (String, String) {
    let n = COUNTER.with(|c| {
        c.set(c.get() + 1);
        c.get()
    });
    let tag = format!("{}:{n}", backend_tag());
    (format!("{sql} /* carto_fdw upload {tag} */"), tag)
}

/// True when the automatic cleanup of `client`'s account is due (and marks it done).
pub fn cleanup_due(client: &Client) -> bool {
    // Per account and key (CARTO shows a COPY's text only to its own role); the key only hashed.
    let key = {
        use std::hash::{Hash, Hasher};
        let cfg = client.config();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        cfg.api_key.as_ref().map(|k| k.expose().to_string()).hash(&mut h);
        format!("{} {:x}", cfg.base_url, h.finish())
    };
    LAST_CLEANUP.with(|m| {
        let mut m = m.borrow_mut();
        match m.get(&key) {
            Some(t) if t.elapsed() < CLEANUP_EVERY => false,
            _ => {
                m.insert(key, Instant::now());
                true
            }
        }
    })
}

/// Forces the next automatic cleanup of every account (after an abort that could not be confirmed).
pub fn cleanup_needed() {
    LAST_CLEANUP.with(|m| m.borrow_mut().clear());
}

/// The `/sql` statement that cancels the stale uploads of this cluster on CARTO. `live` are the
/// "P:B" of every other local backend, `own_open` the full tags of this backend's open uploads,
/// `before` the Unix second of the reading of `live` (tags of backends started then or later are
/// left alone: they may have started after the reading).
pub fn cleanup_sql(sysid: u64, live: &[String], own_open: &[String], before: i64) -> String {
    let list = |v: &[String]| {
        if v.is_empty() {
            // Never NULL: `x NOT IN (NULL)` is never true.
            "''".to_string()
        } else {
            v.iter().map(|s| quote_literal(s)).collect::<Vec<_>>().join(", ")
        }
    };
    format!(
        "SELECT count(CASE WHEN wait_event = 'ClientRead' THEN pg_terminate_backend(pid) ELSE pg_cancel_backend(pid) END)::text AS n FROM (\
         SELECT pid, wait_event, substring(query from '/\\* carto_fdw upload {sysid}:([0-9]+:[0-9]+:[0-9]+) \\*/') AS tag \
         FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND state <> 'idle' \
         AND query LIKE 'COPY %/* carto_fdw upload {sysid}:%') a \
         WHERE tag IS NOT NULL AND split_part(tag, ':', 2)::bigint < {before} \
         AND split_part(tag, ':', 1) || ':' || split_part(tag, ':', 2) NOT IN ({}) \
         AND tag NOT IN ({})",
        list(live),
        list(own_open)
    )
}

/// Cancels on CARTO the stale uploads of this cluster reachable with `client` (see the module's
/// comment). `own_open` are the tags of this backend's uploads still open. Returns how many were
/// cancelled.
/// `deadline` bounds the remote request (None: the client's own timeouts; cancel works either way).
pub fn cleanup(client: &Client, own_open: &[String], deadline: Option<Instant>) -> FdwResult<i64> {
    // SAFETY: backend thread.
    let (sysid, me) = unsafe { (pg_sys::GetSystemIdentifier(), pg_sys::MyProcPid) };
    let mut live: Vec<String> = Vec::new();
    // Read before the backends: a backend started in this second or later may be missing from the
    // list, and its tags are left alone.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    // At pre-commit (a commit-time finish that timed out) no snapshot is active: SPI needs one.
    // SAFETY: backend thread, in a transaction; popped below on the normal path, and by the abort
    // (AtAbort_Snapshot) when an ERROR unwinds.
    let pushed = unsafe {
        // pg_stat_activity is otherwise read once per transaction: the list must be of now.
        pg_sys::pgstat_clear_snapshot();
        if pg_sys::ActiveSnapshotSet() {
            false
        } else {
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
            true
        }
    };
    let listed = Spi::connect(|c| -> FdwResult<()> {
        let t = c
            .select(
                "SELECT pid::text || ':' || extract(epoch FROM date_trunc('second', backend_start))::bigint::text \
                 FROM pg_stat_activity WHERE backend_start IS NOT NULL AND pid <> $1",
                None,
                &[me.into()],
            )
            .map_err(|e| FdwError::internal(format!("listing local backends: {e}")))?;
        for row in t {
            if let Ok(Some(s)) = row.get::<String>(1) {
                live.push(s);
            }
        }
        Ok(())
    });
    if pushed {
        // SAFETY: pops the snapshot pushed above.
        unsafe { pg_sys::PopActiveSnapshot() };
    }
    listed?;
    let sql = cleanup_sql(sysid, &live, own_open, now);
    let resp = crate::pg::runtime::block_on_until(client.query(&sql), deadline)?
        .ok_or_else(|| FdwError::internal("no answer from CARTO in time while cancelling stale uploads"))?
        .map_err(|e| FdwError::remote(e, "cancelling stale uploads of this cluster on CARTO"))?;
    let n = resp
        .rows
        .first()
        .and_then(|r| r.get("n"))
        .and_then(|v| v.as_str().and_then(|s| s.parse().ok()).or_else(|| v.as_i64()))
        .unwrap_or(0);
    Ok(n)
}

#[cfg(test)]
mod unit {
    #[test]
    fn cleanup_sql_names_only_this_cluster_and_spares_live_backends() {
        let sql = super::cleanup_sql(42, &["10:100".into()], &["7:70:3".into()], 1000);
        assert!(sql.contains("'COPY %/* carto_fdw upload 42:%'"), "{sql}");
        assert!(sql.contains("NOT IN ('10:100')"), "{sql}");
        assert!(sql.contains("tag NOT IN ('7:70:3')"), "{sql}");
        assert!(sql.contains("< 1000"), "{sql}");
        let none = super::cleanup_sql(42, &[], &[], 1000);
        assert!(!none.contains("IN (NULL)"), "{none}");
        assert!(none.contains("NOT IN ('')"), "{none}");
    }
}

/// `carto.cleanup_uploads(server)`: cancels on CARTO the uploads of this cluster that were left
/// running (by killed backends, or by this one); returns how many were cancelled.
#[pgrx::pg_extern(volatile, parallel_unsafe, strict)]
fn cleanup_uploads(server: &str) -> i64 {
    use crate::pg::error::OrReport;
    let r = crate::functions::remote(server).or_report();
    cleanup(&r.client, &crate::fdw::xact::open_tags(), None).or_report()
}

pgrx::extension_sql!(
    r#"
REVOKE EXECUTE ON FUNCTION carto.cleanup_uploads(text) FROM PUBLIC;
COMMENT ON FUNCTION carto.cleanup_uploads(text) IS 'Cancel on CARTO the uploads (COPY) this cluster left running; returns how many';
"#,
    name = "carto_cleanup_uploads_grants",
    requires = [cleanup_uploads]
);
