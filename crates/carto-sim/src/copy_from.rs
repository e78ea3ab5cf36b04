//! `POST /api/v2/sql/copyfrom`: the request body (optionally gzip) streamed straight into
//! `COPY ... FROM STDIN`. Nothing is buffered beyond one chunk; any failure (bad data, client gone,
//! byte limit, slow or idle input) abandons the COPY (CopyFail), so the table is unchanged.
use crate::config::Limits;
use crate::errors::ApiError;
use crate::pool::Pooled;
use crate::state::Ctx;
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use futures_util::{SinkExt, Stream, StreamExt};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_postgres::CopyInSink;

/// Why reading the request body stopped early.
#[derive(Debug)]
enum InputError {
    TooLarge,
    TooSlow,
    Idle,
    Cut,
    RequestTimeout,
    Client(String),
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}
impl std::error::Error for InputError {}

fn input_err(e: InputError) -> std::io::Error {
    std::io::Error::other(e)
}

type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, axum::Error>> + Send>>;

/// At most this much of what had arrived when the server starts listening is taken at once (what is in the
/// socket's buffers; more is read as it comes).
const ARRIVED_CAP: u64 = 256 * 1024;
/// hyper hands over what is in the socket from its connection task, not at once: what comes within this
/// gap counts as already there.
const DELIVERY_GAP: Duration = Duration::from_millis(2);

/// What the client had sent when the server starts listening: the data that had arrived (at most `cap`
/// bytes), and whether the body had already ended (`Some(true)`) or broken (`Some(false)`).
async fn arrived(body: &mut axum::body::BodyDataStream, cap: u64) -> (Vec<Bytes>, Option<bool>) {
    let (mut chunks, mut size) = (Vec::new(), 0u64);
    while size < cap {
        match tokio::time::timeout(DELIVERY_GAP, body.next()).await.ok() {
            Some(Some(Ok(b))) => {
                size += b.len() as u64;
                chunks.push(b);
            }
            Some(Some(Err(_))) => return (chunks, Some(false)),
            Some(None) => return (chunks, Some(true)),
            None => break,
        }
    }
    (chunks, None)
}

struct Guard {
    body: BodyStream,
    record: std::sync::Arc<crate::request_log::Record>,
    received: u64,
    max: u64,
    min_per_interval: u64,
    interval: Duration,
    idle: Duration,
    window_start: Instant,
    window_bytes: u64,
    cut_after: Option<u64>,
    /// Node's request timeout (None = off).
    deadline: Option<Instant>,
    /// The upload race: until this moment a client that leaves is not noticed (None = race off).
    listen_at: Option<Instant>,
    /// The client was gone before the server listened (the body's error follows what had arrived).
    gone_before_listening: bool,
    /// Told when the client left before `listen_at`; the stream then waits forever.
    unnoticed: Arc<Notify>,
    done: bool,
}

/// The raw body as a stream, with CARTO's guards applied on the bytes received.
fn guarded(g: Guard) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
    futures_util::stream::unfold(g, |mut g| async move {
        if g.done {
            return None;
        }
        loop {
            let now = Instant::now();
            if g.deadline.is_some_and(|d| now >= d) {
                g.done = true;
                return Some((Err(input_err(InputError::RequestTimeout)), g));
            }
            // Slow-input guard: every interval, at least `min_per_interval` bytes must have arrived.
            let check_at = g.window_start + g.interval;
            if g.min_per_interval > 0 && now >= check_at {
                if g.window_bytes < g.min_per_interval {
                    g.done = true;
                    return Some((Err(input_err(InputError::TooSlow)), g));
                }
                g.window_start = now;
                g.window_bytes = 0;
                continue;
            }
            let mut wait = g.idle;
            if g.min_per_interval > 0 {
                wait = wait.min(check_at.saturating_duration_since(now));
            }
            if let Some(d) = g.deadline {
                wait = wait.min(d.saturating_duration_since(now));
            }
            match tokio::time::timeout(wait, g.body.next()).await {
                Err(_) => {
                    let now = Instant::now();
                    if (g.min_per_interval > 0 && now >= g.window_start + g.interval) || g.deadline.is_some_and(|d| now >= d) {
                        continue;
                    }
                    g.done = true;
                    return Some((Err(input_err(InputError::Idle)), g));
                }
                Ok(None) => return None,
                Ok(Some(Err(e))) => {
                    if g.gone_before_listening || g.listen_at.is_some_and(|l| Instant::now() <= l) {
                        // CARTO's server was not listening yet: the data that came is fed to the COPY, and
                        // then it waits for more, forever (see upload_race).
                        g.unnoticed.notify_one();
                        std::future::pending::<()>().await;
                    }
                    g.done = true;
                    return Some((Err(input_err(InputError::Client(e.to_string()))), g));
                }
                Ok(Some(Ok(mut b))) => {
                    if let Some(n) = g.cut_after {
                        if g.received + b.len() as u64 >= n {
                            let keep = n.saturating_sub(g.received) as usize;
                            g.received += keep as u64;
                            g.record.add_in(keep as u64);
                            g.done = true;
                            let _ = b.split_off(keep);
                            return Some((Err(input_err(InputError::Cut)), g));
                        }
                    }
                    g.received += b.len() as u64;
                    g.window_bytes += b.len() as u64;
                    g.record.add_in(b.len() as u64);
                    if g.received > g.max {
                        g.done = true;
                        return Some((Err(input_err(InputError::TooLarge)), g));
                    }
                    if b.is_empty() {
                        continue;
                    }
                    return Some((Ok(b), g));
                }
            }
        }
    })
}

pub async fn handle(ctx: Ctx, body: Body) -> Response {
    // On a task of its own: hyper drops a request's future when it reads the client's EOF after a complete
    // body, and then the COPY would be rolled back; CARTO finishes it (the whole body had arrived).
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = tx.send(run(ctx, body).await);
    });
    rx.await.unwrap_or_else(|_| cut_response())
}

async fn run(ctx: Ctx, body: Body) -> Response {
    let q = ctx.query.get("q").map(|s| s.trim().to_string()).unwrap_or_default();
    if q.is_empty() {
        return ApiError::bad_request("SQL is missing").into_response();
    }
    if !crate::sql_split::starts_with_copy(&q) {
        return ApiError::bad_request("SQL must start with COPY").into_response();
    }
    let limits = ctx.state.limits();
    let start = Instant::now();
    let mut copy = match start_copy(&ctx, &q, &limits).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let (mut data, unnoticed) = upload(&ctx, body, &limits, start).await;

    let mut failure: Option<Response> = None;
    let mut gunzip_failed = false;
    let mut decompressed: i64 = 0;
    loop {
        let item = tokio::select! {
            item = data.next() => item,
            _ = unnoticed.notified() => {
                leave_open(&ctx, &q, copy, data, decompressed);
                return cut_response();
            }
        };
        let Some(item) = item else { break };
        match item {
            Ok(b) => {
                decompressed += b.len() as i64;
                if copy.remaining_quota.is_some_and(|r| decompressed > r) {
                    failure = Some(ApiError::bad_request("DB Quota exceeded").into_response());
                    break;
                }
                if let Err(e) = copy.sink.send(b).await {
                    failure = Some(ApiError::from_pg(&e).into_response());
                    break;
                }
            }
            Err(e) => {
                gunzip_failed = e.get_ref().and_then(|x| x.downcast_ref::<InputError>()).is_none();
                failure = Some(input_failure(&ctx, e));
                break;
            }
        }
    }
    if let (Some(_), Some(peer)) = (&failure, ctx.peer) {
        if gunzip_failed && limits.copyfrom_bad_gzip_bug {
            // CARTO's bug: the connection is left hanging and the COPY stays open, holding its lock.
            if let Ok(mut p) = ctx.state.poisoned.lock() {
                p.insert(peer);
            }
            let hold = std::time::Duration::from_millis(limits.copy_statement_timeout_ms);
            tokio::spawn(async move {
                tokio::time::sleep(hold).await;
                drop(copy);
            });
            return failure.unwrap_or_else(cut_response);
        }
    }
    if let Some(resp) = failure {
        // Dropping the unfinished sink sends CopyFail: PostgreSQL rolls the COPY back. The connection
        // is closed rather than reused.
        drop(copy);
        return resp;
    }
    let rows = match copy.sink.as_mut().finish().await {
        Ok(n) => n,
        Err(e) => {
            drop(copy);
            return ApiError::from_pg(&e).into_response();
        }
    };
    copy.conn.release();
    if rows == 0 {
        return ApiError::bad_request("No rows copied").into_response();
    }
    let time = crate::json_values::js_number(start.elapsed().as_millis() as f64 / 1000.0);
    crate::errors::json_response(StatusCode::OK, format!("{{\"time\":{time},\"total_rows\":{rows}}}"))
}

/// The client left before the server listened: the COPY stays open (upload_race), the request gets no answer.
/// A started `COPY ... FROM STDIN`. Dropped unfinished, it is rolled back and its connection closed.
struct StartedCopy {
    /// Boxed so that dropping it really drops the sink (which then sends CopyFail). Declared before `conn`:
    /// it is dropped first.
    sink: Pin<Box<CopyInSink<Bytes>>>,
    conn: Pooled,
    /// The backend's pid: it names the COPY if the upload race leaves it open.
    pid: i32,
    /// DB quota left (None = unlimited).
    remaining_quota: Option<i64>,
}

/// Connect, check the DB quota (as CARTO does before the load) and start the COPY.
async fn start_copy(ctx: &Ctx, q: &str, limits: &Limits) -> Result<StartedCopy, Response> {
    let conn = match ctx.state.pool.get(&ctx.account.database, &ctx.auth.role).await {
        Ok(c) => c,
        Err(e) => return Err(ApiError::connect(&e).into_response()),
    };
    let pid = match conn.client.simple_query(&format!("SET statement_timeout = {}; SELECT pg_backend_pid()", limits.copy_statement_timeout_ms)).await {
        Ok(msgs) => msgs
            .into_iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).and_then(|v| v.parse::<i32>().ok()),
                _ => None,
            })
            .unwrap_or(0),
        Err(e) => return Err(ApiError::from_pg(&e).into_response()),
    };
    // DB quota, as CARTO checks it before and during the load (quota 0 = unlimited).
    let remaining_quota = remaining_quota(&conn.client, &ctx.account.schema).await;
    if remaining_quota.is_some_and(|r| r <= 0) {
        conn.release();
        return Err(ApiError::bad_request("DB Quota exceeded").into_response());
    }
    match conn.client.copy_in::<_, Bytes>(q).await {
        Ok(sink) => Ok(StartedCopy { conn, pid, remaining_quota, sink: Box::pin(sink) }),
        Err(e) => {
            // A failed COPY start can leave protocol messages behind: never reuse that connection.
            drop(conn);
            Err(ApiError::from_pg(&e).into_response())
        }
    }
}

/// The upload's data as the COPY is to get it: what had arrived before the server listened (the upload race),
/// then the rest of the body, under the limits of `Guard`, gunzipped when sent so. The `Notify` fires when
/// the client left before the server listened (unnoticed, as on CARTO).
async fn upload(ctx: &Ctx, body: Body, limits: &Limits, start: Instant) -> (Data, Arc<Notify>) {
    let gzip = ctx
        .headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    let race = limits.copyfrom_upload_race;
    // CARTO listens for the client only from now on, and the sim at least the race window after the head.
    let window = Duration::from_secs_f64((limits.copyfrom_upload_race_window_ms.max(0.0) / 1000.0).min(3.2e8));
    let listen_at = race.then(|| (start + window).max(Instant::now()));
    let unnoticed = Arc::new(Notify::new());
    let mut body = body.into_data_stream();
    // What the client did before the COPY started is never noticed (it had all arrived before CARTO listens).
    // Never more than a fault or the byte limit lets through: those cut the upload where they always did.
    let cap = ARRIVED_CAP.min(ctx.faults.cut_upload_after.unwrap_or(u64::MAX)).min(limits.copyfrom_max_bytes.saturating_add(1));
    let (early, early_end) = if race { arrived(&mut body, cap).await } else { (Vec::new(), None) };
    let early = futures_util::stream::iter(early.into_iter().map(Ok));
    let body: BodyStream = match early_end {
        None => Box::pin(early.chain(body)),
        Some(true) => Box::pin(early),
        Some(false) => Box::pin(early.chain(futures_util::stream::once(async { Err(axum::Error::new("connection closed before the body's end")) }))),
    };

    let raw = guarded(Guard {
        body,
        record: ctx.record.clone(),
        received: 0,
        max: limits.copyfrom_max_bytes,
        min_per_interval: limits.copyfrom_min_bytes_per_interval,
        interval: crate::config::secs(limits.copyfrom_check_interval_secs, 0.01),
        idle: crate::config::secs(limits.idle_timeout_secs, 0.01),
        window_start: Instant::now(),
        window_bytes: 0,
        cut_after: ctx.faults.cut_upload_after,
        deadline: (limits.copyfrom_request_timeout_secs > 0.0).then(|| start + crate::config::secs(limits.copyfrom_request_timeout_secs, 0.0)),
        listen_at,
        gone_before_listening: early_end == Some(false),
        unnoticed: unnoticed.clone(),
        done: false,
    });
    let data: Data = if gzip {
        let reader = tokio_util::io::StreamReader::new(raw);
        let dec = async_compression::tokio::bufread::GzipDecoder::new(tokio::io::BufReader::new(reader));
        Box::pin(tokio_util::io::ReaderStream::with_capacity(dec, 64 * 1024))
    } else {
        Box::pin(raw)
    };
    (data, unnoticed)
}

/// The upload's data, decompressed.
type Data = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

fn leave_open(ctx: &Ctx, q: &str, copy: StartedCopy, data: Data, decompressed: i64) {
    let StartedCopy { sink, conn, pid, remaining_quota } = copy;
    ctx.record.leave_open("left open: the client left before the server listened (upload race)");
    let limits = ctx.state.limits();
    let k = crate::upload_race::KeepOpen {
        state: ctx.state.clone(),
        record: ctx.record.clone(),
        user: ctx.account.name.clone(),
        database: ctx.account.database.clone(),
        role: ctx.auth.role.clone(),
        query: q.to_string(),
        pid,
        remaining_quota,
        decompressed,
        statement_timeout: Duration::from_millis(limits.copy_statement_timeout_ms),
    };
    crate::upload_race::keep_open(k, conn, sink, data);
}

/// Bytes left in the user's DB quota; None when unlimited or unknown (no CDB quota functions).
async fn remaining_quota(client: &tokio_postgres::Client, schema: &str) -> Option<i64> {
    let sql = format!(
        "SELECT {}._CDB_UserQuotaInBytes(), cartodb.CDB_UserDataSize({})",
        crate::accounts::quote_ident(schema),
        crate::accounts::quote_literal(schema)
    );
    let msgs = client.simple_query(&sql).await.ok()?;
    let row = msgs.into_iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    })?;
    let quota: i64 = row.get(0)?.parse().ok()?;
    let used: i64 = row.get(1)?.parse().ok()?;
    if quota <= 0 {
        return None;
    }
    Some(quota - used)
}

/// The answer for a body that stopped early, by cause.
fn input_failure(ctx: &Ctx, e: std::io::Error) -> Response {
    let kind = e.get_ref().and_then(|x| x.downcast_ref::<InputError>());
    match kind {
        Some(InputError::TooLarge) => {
            let pretty = ctx.state.limits().copyfrom_pretty();
            ApiError::bad_request(format!("COPY FROM maximum POST size of {pretty} exceeded")).into_response()
        }
        Some(InputError::TooSlow) => {
            ctx.record.abort("input data too slow");
            ApiError::bad_request("Connection closed by server: input data too slow").into_response()
        }
        Some(InputError::Idle) => {
            // Node's socket timeout destroys the socket without an answer.
            ctx.record.abort("idle socket timeout");
            cut_response()
        }
        Some(InputError::RequestTimeout) => {
            // Node destroys the socket: no answer, the COPY is rolled back.
            ctx.record.abort("request timeout");
            cut_response()
        }
        Some(InputError::Cut) => {
            ctx.record.abort("upload cut by fault injection");
            cut_response()
        }
        Some(InputError::Client(m)) => {
            ctx.record.abort(&format!("client closed the connection: {m}"));
            ApiError::bad_request("Connection closed by client").into_response()
        }
        None => {
            // Anything else comes from the gzip decoder.
            let msg = match e.kind() {
                std::io::ErrorKind::UnexpectedEof => "unexpected end of file".to_string(),
                _ if e.to_string().to_ascii_lowercase().contains("header") => "incorrect header check".to_string(),
                _ => e.to_string(),
            };
            ApiError::bad_request(format!("Error while gunzipping: {msg}")).into_response()
        }
    }
}

/// A response whose body fails at once: hyper closes the connection without a complete answer.
pub fn cut_response() -> Response {
    let s = futures_util::stream::once(async { Err::<Bytes, std::io::Error>(std::io::Error::other("connection cut")) });
    let mut r = Response::new(Body::from_stream(s));
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r
}
