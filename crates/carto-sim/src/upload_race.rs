//! CARTO's upload race (carto-sql-api.md section 11, item 1).
//!
//! CARTO's `/copyfrom` handler first gets a database connection and starts `COPY ... FROM STDIN`, and only then
//! attaches its listeners for the request's data, end and close. A client that goes away inside that window is
//! never noticed: what it sent before leaving is still fed to the COPY, and then the COPY waits for more data
//! (`active`, `ClientRead`), holding its table lock, until the COPY statement timeout. A row that PostgreSQL
//! rejects still ends it.
//!
//! The sim starts listening at `max(COPY started, request head + copyfrom_upload_race_window_ms)`: a body that
//! breaks before that moment is never noticed (`copy_from` hands the COPY to [`keep_open`]), one that breaks
//! later is rolled back as before. Open COPYs are listed by [`OpenCopies`](crate::open_copies::OpenCopies) (`/_sim/open_copies`), which also
//! lets tests end them.
use crate::open_copies::{EndRequest, OpenCopy};
use crate::pool::Pooled;
use crate::state::AppState;
use bytes::Bytes;
use futures_util::{SinkExt, Stream, StreamExt};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// What a left-open COPY needs besides its connection and data.
pub struct KeepOpen {
    pub state: Arc<AppState>,
    pub record: Arc<crate::request_log::Record>,
    pub user: String,
    pub database: String,
    pub role: String,
    pub query: String,
    pub pid: i32,
    /// Bytes of the user's DB quota left, when limited.
    pub remaining_quota: Option<i64>,
    pub decompressed: i64,
    pub statement_timeout: Duration,
}

/// How a left-open COPY ended, for the request log.
enum End {
    Rejected(String),
    Committed(u64),
    Timeout,
    ByAdmin(EndRequest),
    InputError(String),
    Quota,
    BackendGone,
}

/// Keep a COPY whose client left unnoticed: feed it whatever data is still in flight (the stream then waits
/// forever), until PostgreSQL rejects a row, the COPY statement timeout passes, or the admin API ends it.
pub fn keep_open<S>(k: KeepOpen, conn: Pooled, sink: Pin<Box<tokio_postgres::CopyInSink<Bytes>>>, data: Pin<Box<S>>)
where
    S: Stream<Item = std::io::Result<Bytes>> + Send + ?Sized + 'static,
{
    let state = k.state.clone();
    let info = OpenCopy {
        id: 0,
        request_id: k.record.id,
        user: k.user.clone(),
        query: k.query.clone(),
        pid: k.pid,
        opened_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    };
    let (id, end_rx) = state.open_copies.add(info);
    tokio::spawn(async move {
        let end = run(&k, conn, sink, data, end_rx).await;
        state.open_copies.remove(id);
        let why = match &end {
            End::Rejected(m) => format!("ended by PostgreSQL: {m}"),
            End::Committed(n) => format!("committed {n} rows"),
            End::Timeout => "rolled back at the COPY statement timeout".to_string(),
            End::ByAdmin(_) => "rolled back through /_sim/open_copies".to_string(),
            End::InputError(m) => format!("ended by an input error: {m}"),
            End::Quota => "ended: DB Quota exceeded".to_string(),
            End::BackendGone => "ended: the database backend is gone".to_string(),
        };
        state.log.set_error(&k.record, format!("left open; {why}"));
        if let End::ByAdmin(reply) = end {
            let _ = reply.send(());
        }
    });
}

async fn run<S>(
    k: &KeepOpen,
    conn: Pooled,
    mut sink: Pin<Box<tokio_postgres::CopyInSink<Bytes>>>,
    mut data: Pin<Box<S>>,
    mut end_rx: oneshot::Receiver<EndRequest>,
) -> End
where
    S: Stream<Item = std::io::Result<Bytes>> + Send + ?Sized,
{
    let timeout = tokio::time::sleep(k.statement_timeout);
    tokio::pin!(timeout);
    let mut decompressed = k.decompressed;
    // How often PostgreSQL is asked whether it rejected the data: soon at first, then every second.
    let mut check_every = Duration::from_millis(20);
    let mut next_check = tokio::time::Instant::now() + check_every;
    let end = loop {
        tokio::select! {
            item = data.next() => match item {
                Some(Ok(b)) => {
                    decompressed += b.len() as i64;
                    if k.remaining_quota.is_some_and(|r| decompressed > r) {
                        break End::Quota;
                    }
                    if sink.send(b).await.is_err() {
                        break rejected(&mut sink).await;
                    }
                }
                Some(Err(e)) => break End::InputError(e.to_string()),
                None => {
                    // The end of the body had arrived: the COPY completes like any other.
                    break match sink.as_mut().finish().await {
                        Ok(n) => End::Committed(n),
                        Err(e) => End::Rejected(pg_message(&e)),
                    };
                }
            },
            r = &mut end_rx => match r {
                Ok(reply) => break End::ByAdmin(reply),
                // The registry dropped its sender: nobody can end it any more; keep waiting for the rest.
                Err(_) => end_rx = never(),
            },
            _ = &mut timeout => break End::Timeout,
            _ = tokio::time::sleep_until(next_check) => {
                match transaction_open(k).await {
                    Some(true) => {}
                    // The COPY's transaction ended: PostgreSQL rejected the data (its error is read by finishing).
                    Some(false) => break rejected(&mut sink).await,
                    None => break End::BackendGone,
                }
                check_every = (check_every * 2).min(Duration::from_secs(1));
                next_check = tokio::time::Instant::now() + check_every;
            }
        }
    };
    if !matches!(end, End::Committed(_) | End::Rejected(_)) {
        // CopyFail: PostgreSQL rolls the COPY back; wait for it before the connection is closed.
        drop(sink);
        let _ = tokio::time::timeout(Duration::from_secs(10), conn.client.simple_query("")).await;
    }
    // Never reused (as every connection whose COPY did not end cleanly).
    drop(conn);
    end
}

fn never() -> oneshot::Receiver<EndRequest> {
    let (tx, rx) = oneshot::channel();
    std::mem::forget(tx);
    rx
}

/// After PostgreSQL rejected the data: finishing the sink returns its error.
async fn rejected(sink: &mut Pin<Box<tokio_postgres::CopyInSink<Bytes>>>) -> End {
    match tokio::time::timeout(Duration::from_secs(10), sink.as_mut().finish()).await {
        Ok(Ok(n)) => End::Committed(n),
        Ok(Err(e)) => End::Rejected(pg_message(&e)),
        Err(_) => End::BackendGone,
    }
}

fn pg_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string())
}

/// Whether the COPY's backend still has its transaction open (None: the backend is gone). When PostgreSQL
/// cannot be asked right now, the answer is yes: the next check asks again.
async fn transaction_open(k: &KeepOpen) -> Option<bool> {
    let Ok(c) = k.state.pool.get(&k.database, &k.role).await else { return Some(true) };
    let sql = format!("SELECT xact_start IS NOT NULL FROM pg_stat_activity WHERE pid = {}", k.pid);
    let Ok(msgs) = c.client.simple_query(&sql).await else { return Some(true) };
    c.release();
    let row = msgs.into_iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    })?;
    Some(row.get(0) == Some("t"))
}
