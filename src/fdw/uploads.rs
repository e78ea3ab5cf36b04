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
//! backend, then at most once per `carto_fdw.upload_cleanup_interval` (a minute) per account and backend, after an abort that could not be
//! confirmed, after a commit-time finish cut by statement_timeout or a cancel, and on demand through
//! `carto.cleanup_uploads(server)`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Instant;

use carto_client::Client;
use pgrx::{pg_sys, Spi};

use crate::pg::sql_text::quote_literal;
use crate::pg::error::{FdwError, FdwResult};

thread_local! {
    static COUNTER: Cell<u64> = const { Cell::new(0) };
    /// Account (client base URL) → when this backend last cleaned it up.
    static LAST_CLEANUP: RefCell<HashMap<String, Instant>> = RefCell::new(HashMap::new());
}

/// The tag of one upload: `S:P:B:N` — the local cluster's system identifier, the backend's pid, its
/// start time (Unix seconds) and a counter. The one definition of the tag: it is printed into the
/// COPY statement ([`UploadTag::comment`]), read back from CARTO's activity by the SQL pattern
/// [`UploadTag::ACTIVITY_PATTERN`] matches, and compared as the same printed text, so the two sides
/// cannot drift apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploadTag {
    pub system: u64,
    pub pid: i32,
    pub backend_start: i64,
    pub n: u64,
}

impl UploadTag {
    /// The comment's fixed text, before the tag.
    const PREFIX: &'static str = "/* carto_fdw upload ";

    /// A regular expression (PostgreSQL's, in `substring(query from ...)`) whose first group is the
    /// printed tag inside the comment [`UploadTag::comment`] writes.
    pub const ACTIVITY_PATTERN: &'static str = r"/\* carto_fdw upload ([0-9]+:[0-9]+:[0-9]+:[0-9]+) \*/";

    /// A new tag of this backend.
    pub fn next() -> UploadTag {
        let n = COUNTER.with(|c| {
            c.set(c.get() + 1);
            c.get()
        });
        // SAFETY: plain reads of process globals on the backend thread.
        let (system, pid, backend_start) = unsafe { (pg_sys::GetSystemIdentifier(), pg_sys::MyProcPid, pg_sys::MyStartTime) };
        UploadTag { system, pid, backend_start, n }
    }

    /// The comment that carries the tag after the COPY statement.
    pub fn comment(&self) -> String {
        format!("{}{self} */", Self::PREFIX)
    }

    /// The tag in a statement's text (CARTO's `pg_stat_activity.query`), if it has one.
    pub fn find_in(sql: &str) -> Option<UploadTag> {
        let start = sql.find(Self::PREFIX)? + Self::PREFIX.len();
        let rest = &sql[start..];
        rest[..rest.find(' ')?].parse().ok()
    }
}

impl std::fmt::Display for UploadTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}:{}", self.system, self.pid, self.backend_start, self.n)
    }
}

impl std::str::FromStr for UploadTag {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let mut parts = s.split(':');
        let mut next = || parts.next().ok_or(());
        let tag = UploadTag {
            system: next()?.parse().map_err(|_| ())?,
            pid: next()?.parse().map_err(|_| ())?,
            backend_start: next()?.parse().map_err(|_| ())?,
            n: next()?.parse().map_err(|_| ())?,
        };
        match parts.next() {
            None => Ok(tag),
            Some(_) => Err(()),
        }
    }
}

/// The COPY statement with a new unique tag; returns it and the tag.
pub fn tag_copy(sql: &str) -> (String, UploadTag) {
    let tag = UploadTag::next();
    (format!("{sql} {}", tag.comment()), tag)
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
            Some(t) if t.elapsed() < crate::fdw::settings::upload_cleanup_interval() => false,
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
/// "P:B" of every other local backend, `own_open` the tags of this backend's open uploads (never
/// touched), `before` the Unix second of the reading of `live` (tags of backends started then or
/// later are left alone: they may have started after the reading).
pub fn cleanup_sql(system: u64, live: &[String], own_open: &[UploadTag], before: i64) -> String {
    let list = |v: Vec<String>| {
        if v.is_empty() {
            // Never NULL: `x NOT IN (NULL)` is never true.
            "''".to_string()
        } else {
            v.iter().map(|s| quote_literal(s)).collect::<Vec<_>>().join(", ")
        }
    };
    // The tag read back is the printed S:P:B:N (UploadTag's Display), compared with the same print
    // of the open ones; its parts 2 and 3 are the backend's pid and start.
    format!(
        "SELECT count(CASE WHEN wait_event = 'ClientRead' THEN pg_terminate_backend(pid) ELSE pg_cancel_backend(pid) END)::text AS n FROM (\
         SELECT pid, wait_event, substring(query from '{pattern}') AS tag \
         FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND state <> 'idle' \
         AND query LIKE 'COPY %/* carto_fdw upload {system}:%') a \
         WHERE tag IS NOT NULL AND split_part(tag, ':', 1) = '{system}' AND split_part(tag, ':', 3)::bigint < {before} \
         AND split_part(tag, ':', 2) || ':' || split_part(tag, ':', 3) NOT IN ({}) \
         AND tag NOT IN ({})",
        list(live.to_vec()),
        list(own_open.iter().map(UploadTag::to_string).collect()),
        pattern = UploadTag::ACTIVITY_PATTERN,
    )
}

/// Cancels on CARTO the stale uploads of this cluster reachable with `client` (see the module's
/// comment). `own_open` are the tags of this backend's uploads still open. Returns how many were
/// cancelled.
/// `deadline` bounds the remote request (None: the client's own timeouts; cancel works either way).
pub fn cleanup(client: &Client, own_open: &[UploadTag], deadline: Option<Instant>) -> FdwResult<i64> {
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
    use super::UploadTag;

    fn tag(pid: i32, n: u64) -> UploadTag {
        UploadTag { system: 42, pid, backend_start: 900, n }
    }

    #[test]
    fn a_tag_reads_back_from_the_statement_it_was_written_into() {
        let t = tag(7, 3);
        let sql = format!("COPY \"t\" (\"a\") FROM STDIN {}", t.comment());
        assert_eq!(sql, "COPY \"t\" (\"a\") FROM STDIN /* carto_fdw upload 42:7:900:3 */");
        assert_eq!(UploadTag::find_in(&sql), Some(t));
        assert_eq!(t.to_string().parse::<UploadTag>(), Ok(t));
        assert_eq!("42:7:900".parse::<UploadTag>(), Err(()));
        assert_eq!("42:7:900:3:1".parse::<UploadTag>(), Err(()));
        assert_eq!(UploadTag::find_in("COPY t FROM STDIN"), None);
    }

    #[test]
    fn cleanup_sql_names_only_this_cluster_and_spares_live_backends_and_own_uploads() {
        let own = tag(7, 3);
        let sql = super::cleanup_sql(42, &["10:100".into()], &[own], 1000);
        assert!(sql.contains("'COPY %/* carto_fdw upload 42:%'"), "{sql}");
        assert!(sql.contains("NOT IN ('10:100')"), "{sql}");
        // The open upload is spared by the very text its COPY carries.
        assert!(sql.contains(&format!("tag NOT IN ('{own}')")), "{sql}");
        assert!(sql.contains("< 1000"), "{sql}");
        let none = super::cleanup_sql(42, &[], &[], 1000);
        assert!(!none.contains("IN (NULL)"), "{none}");
        assert!(none.contains("NOT IN ('')"), "{none}");
    }

    #[test]
    fn the_activity_pattern_captures_the_printed_tag() {
        // PostgreSQL's regex in SQL text: the backslashes escape the comment's `*`.
        let t = tag(7, 3);
        let comment = t.comment();
        let p = UploadTag::ACTIVITY_PATTERN.replace(r"\*", "*");
        let (before, after) = p.split_once("([0-9]+:[0-9]+:[0-9]+:[0-9]+)").unwrap();
        assert_eq!(format!("{before}{t}{after}"), comment);
    }
}
