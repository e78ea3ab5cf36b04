//! `GET|POST /api/v2/sql/copyto`: `COPY ... TO STDOUT` streamed as PostgreSQL writes it.
//! An error before the first bytes is a 4xx JSON answer; after that, CARTO writes the error JSON
//! (`JSON.stringify(...)`, no newline before or after) at the end of the 200 body and ends it.
//! A client that goes away gets its backend query cancelled.
use crate::errors::ApiError;
use crate::pool::Pooled;
use crate::request_log::Record;
use crate::state::Ctx;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_postgres::NoTls;

pub async fn handle(ctx: Ctx) -> Response {
    let q = ctx.params.get("q").map(|s| s.trim().to_string()).unwrap_or_default();
    if q.is_empty() {
        return ApiError::bad_request("SQL is missing").into_response();
    }
    if !crate::sql_split::starts_with_copy(&q) {
        return ApiError::bad_request("SQL must start with COPY").into_response();
    }
    let filename = ctx.params.get("filename").filter(|s| !s.is_empty()).cloned().unwrap_or_else(|| "carto-sql-copyto.dmp".into());
    let limits = ctx.state.limits();
    let accepts_gzip = ctx
        .headers
        .get("accept-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("gzip"));
    let gzip = limits.copyto_gzip && accepts_gzip;

    let conn = match ctx.state.pool.get(&ctx.account.database, &ctx.auth.role).await {
        Ok(c) => c,
        Err(e) => return ApiError::connect(&e).into_response(),
    };
    if let Err(e) = conn.client.batch_execute(&format!("SET statement_timeout = {}", limits.copy_statement_timeout_ms)).await {
        return ApiError::from_pg(&e).into_response();
    }
    // Until the response starts, the client leaving is noticed through the socket watcher, and the
    // guard cancels the backend query as the handler returns (or is dropped).
    let mut guard = CancelOnDrop { token: Some(conn.cancel.clone()), record: Some(ctx.record.clone()) };
    let gone = ctx.peer_gone.clone();
    let client_gone = async move {
        match gone {
            Some(g) => g.wait().await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::pin!(client_gone);
    let mut held = Held::new(limits.copyto_holdback_bytes);
    let opened = tokio::select! {
        r = copy_out(&conn.client, &q, &mut held) => r,
        // The guard cancels the backend query as this handler returns.
        _ = &mut client_gone => return ApiError::new(StatusCode::BAD_REQUEST, "client closed the connection").into_response(),
    };
    let (stream, first) = match opened {
        Ok(o) => o,
        Err(e) => {
            guard.disarm();
            // A COPY that failed before its first row can leave protocol messages behind: never reuse that
            // connection.
            drop(conn);
            return ApiError::from_pg(&e).into_response();
        }
    };
    guard.disarm();
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    tokio::spawn(stream_rest(conn, stream, held, first, tx, ctx.record.clone()));
    response(rx, gzip, &filename)
}

/// PostgreSQL's COPY data, in batches of the messages it already sent.
type Rows = std::pin::Pin<Box<futures_util::stream::ReadyChunks<tokio_postgres::CopyOutStream>>>;

/// Start the COPY and read its first rows (`first_rows`).
async fn copy_out(client: &tokio_postgres::Client, q: &str, held: &mut Held) -> Result<(Rows, First), tokio_postgres::Error> {
    let stream = client.copy_out(q).await?;
    // Rows PostgreSQL already sent are taken together (and written together): a channel message and an
    // HTTP chunk per row would cost the sim more CPU than the rows themselves.
    let mut stream: Rows = Box::pin(stream.ready_chunks(READY_ROWS));
    let first = first_rows(&mut stream, held).await?;
    Ok((stream, first))
}

/// What `first_rows` read: whether the COPY ended, and the rest of the batch in which the first row became
/// sendable.
struct First {
    ended: bool,
    carry: Vec<Result<Bytes, tokio_postgres::Error>>,
}

/// Read until a row can be sent (nothing is sent before, so an error until then is a 4xx JSON answer) or the
/// COPY ends. The decision is taken row by row, as if they came one at a time: what is left of the batch when
/// the first row becomes sendable is carried over to `stream_rest`.
async fn first_rows(stream: &mut Rows, held: &mut Held) -> Result<First, tokio_postgres::Error> {
    while !held.sendable() {
        let Some(batch) = stream.next().await else {
            return Ok(First { ended: true, carry: Vec::new() });
        };
        let mut items = batch.into_iter();
        while let Some(item) = items.next() {
            held.push(item?);
            if held.sendable() {
                return Ok(First { ended: false, carry: items.collect() });
            }
        }
    }
    Ok(First { ended: false, carry: Vec::new() })
}

/// The rest of the COPY, sent through `tx` with the hold-back; an error ends the body with its JSON. The
/// connection goes back to the pool after a clean end; a client that goes away gets its query cancelled.
async fn stream_rest(conn: Pooled, mut stream: Rows, mut held: Held, first: First, tx: mpsc::Sender<Bytes>, record: Arc<Record>) {
    let mut failed = false;
    if !first.ended {
        let mut next_batch = Some(first.carry).filter(|c| !c.is_empty());
        'rows: loop {
            // Send the rows that have at least `holdback` bytes behind them.
            if held.send_sendable(&tx).await.is_err() {
                // The client went away: cancel the backend query, as CARTO does.
                let _ = conn.cancel.cancel_query(NoTls).await;
                record.abort("client closed the connection");
                return;
            }
            let batch = match next_batch.take() {
                Some(b) => b,
                None => {
                    // Wait for PostgreSQL, but notice a client that went away meanwhile.
                    let next = tokio::select! {
                        n = stream.next() => n,
                        _ = tx.closed() => {
                            let _ = conn.cancel.cancel_query(NoTls).await;
                            record.abort("client closed the connection");
                            return;
                        }
                    };
                    let Some(b) = next else { break };
                    b
                }
            };
            for item in batch {
                match item {
                    Ok(b) => held.push(b),
                    Err(e) => {
                        // What had `holdback` bytes behind it before the error goes out, as it would have
                        // had the rows come one at a time; the held rows (at least `holdback` bytes) are
                        // lost; the error JSON ends the body (no newline around it).
                        let _ = held.send_sendable(&tx).await;
                        held.drop_all();
                        let text = ApiError::from_pg(&e).json_text();
                        record.abort(&format!("error after streaming started: {e}"));
                        let _ = tx.send(Bytes::from(text)).await;
                        failed = true;
                        break 'rows;
                    }
                }
            }
        }
    }
    if held.send_all(&tx).await.is_err() {
        record.abort("client closed the connection");
        return;
    }
    drop(stream);
    // A connection that saw an error mid-COPY is not reused.
    if !failed {
        conn.release();
    }
}

/// The 200 answer: the COPY data from `rx`, gzip'd when asked (CARTO's nginx), as an attachment.
fn response(rx: mpsc::Receiver<Bytes>, gzip: bool, filename: &str) -> Response {
    let raw = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<Bytes, std::io::Error>(b), rx)) });
    let body = if gzip {
        let reader = tokio_util::io::StreamReader::new(raw);
        let enc = async_compression::tokio::bufread::GzipEncoder::new(reader);
        Body::from_stream(tokio_util::io::ReaderStream::new(enc))
    } else {
        Body::from_stream(raw)
    };
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/octet-stream"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename={}", crate::sql_api::urlencode(filename))) {
        h.insert("content-disposition", v);
    }
    if gzip {
        h.insert("content-encoding", HeaderValue::from_static("gzip"));
    }
    r
}

/// At most this many rows are taken from PostgreSQL at once (those it already sent).
const READY_ROWS: usize = 1024;
/// Rows go out in writes of about this size (CopyData messages concatenated: whole rows for text and csv).
const SEND_TARGET: usize = 64 * 1024;

/// The rows held back. Always at least the trailing `holdback` bytes are, in whole CopyData messages (= whole
/// rows for text/csv): a row goes out only when the rows behind it make up `holdback` bytes. An error after
/// streaming began drops them all (CARTO loses 6-18 KB of rows there), so the data before the error is a strict
/// prefix of the result. Memory stays at `holdback` plus the largest row.
struct Held {
    rows: VecDeque<Bytes>,
    len: usize,
    holdback: usize,
}

impl Held {
    fn new(holdback: usize) -> Held {
        Held { rows: VecDeque::new(), len: 0, holdback }
    }

    fn push(&mut self, b: Bytes) {
        self.len += b.len();
        self.rows.push_back(b);
    }

    /// Whether the first held message can go out: the messages behind it make up at least `holdback` bytes.
    fn sendable(&self) -> bool {
        self.rows.front().is_some_and(|f| self.len.saturating_sub(f.len()) >= self.holdback)
    }

    /// Send, in writes of about SEND_TARGET bytes, the held rows that have at least `holdback` bytes behind
    /// them. Err when the client went away.
    async fn send_sendable(&mut self, tx: &mpsc::Sender<Bytes>) -> Result<(), ()> {
        while self.sendable() {
            let mut out = BytesMut::new();
            while out.len() < SEND_TARGET && self.sendable() {
                let Some(b) = self.rows.pop_front() else { break };
                self.len -= b.len();
                out.extend_from_slice(&b);
            }
            tx.send(out.freeze()).await.map_err(|_| ())?;
        }
        Ok(())
    }

    fn drop_all(&mut self) {
        self.rows.clear();
        self.len = 0;
    }

    /// Send all that is held (the COPY has ended). Err when the client went away.
    async fn send_all(&mut self, tx: &mpsc::Sender<Bytes>) -> Result<(), ()> {
        while !self.rows.is_empty() {
            let mut out = BytesMut::new();
            while out.len() < SEND_TARGET {
                let Some(b) = self.rows.pop_front() else { break };
                self.len -= b.len();
                out.extend_from_slice(&b);
            }
            tx.send(out.freeze()).await.map_err(|_| ())?;
        }
        Ok(())
    }
}

/// Cancels a backend query when dropped armed: a handler future dropped before it could answer.
struct CancelOnDrop {
    token: Option<tokio_postgres::CancelToken>,
    record: Option<Arc<Record>>,
}

impl CancelOnDrop {
    fn disarm(&mut self) {
        self.token = None;
        self.record = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            if let Some(r) = self.record.take() {
                r.abort("client closed the connection");
            }
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = token.cancel_query(NoTls).await;
                });
            }
        }
    }
}
