//! `GET|POST /api/v2/sql/copyto`: `COPY ... TO STDOUT` streamed as PostgreSQL writes it.
//! An error before the first bytes is a 4xx JSON answer; after that, CARTO writes the error JSON
//! (`JSON.stringify(...)`, no newline before or after) at the end of the 200 body and ends it.
//! A client that goes away gets its backend query cancelled.
use crate::errors::ApiError;
use crate::state::Ctx;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::NoTls;

pub async fn handle(ctx: Ctx) -> Response {
    let q = ctx.params.get("q").map(|s| s.trim().to_string()).unwrap_or_default();
    if q.is_empty() {
        return ApiError::bad_request("SQL is missing").into_response();
    }
    if !crate::copy_from::starts_with_copy(&q) {
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
        Err(e) => return crate::sql_api::connect_error(&e).into_response(),
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
    let started = tokio::select! {
        r = conn.client.copy_out(q.as_str()) => r,
        _ = &mut client_gone => return ApiError::new(StatusCode::BAD_REQUEST, "client closed the connection").into_response(),
    };
    let stream = match started {
        Ok(s) => s,
        Err(e) => {
            guard.disarm();
            // A failed COPY start can leave protocol messages behind: never reuse that connection.
            drop(conn);
            return ApiError::from_pg(&e).into_response();
        }
    };
    // Rows PostgreSQL already sent are taken together (and written together below): a channel message and an
    // HTTP chunk per row would cost the sim more CPU than the rows themselves.
    let mut stream = Box::pin(stream.ready_chunks(READY_ROWS));
    // Always hold back at least the trailing `holdback` bytes, in whole CopyData messages (= whole rows for
    // text/csv): a row goes out only when the rows behind it make up `holdback` bytes. An error after
    // streaming began drops them all (CARTO loses 6-18 KB of rows there), so the data before the error
    // is a strict prefix of the result. Memory stays at `holdback` plus the largest row.
    let holdback = limits.copyto_holdback_bytes;
    let mut held: std::collections::VecDeque<Bytes> = std::collections::VecDeque::new();
    let mut held_len = 0usize;
    // Until a row can be sent nothing is, so an early error is a 4xx JSON answer.
    // The decision is taken row by row, as if they came one at a time: what is left of the batch when the first
    // row becomes sendable is carried over to the streaming task.
    let mut ended = false;
    let mut carry = Vec::new();
    while !sendable(&held, held_len, holdback) {
        let next = tokio::select! {
            n = stream.next() => n,
            // The guard cancels the backend query as this handler returns.
            _ = &mut client_gone => return ApiError::new(StatusCode::BAD_REQUEST, "client closed the connection").into_response(),
        };
        let Some(batch) = next else {
            ended = true;
            break;
        };
        let mut items = batch.into_iter();
        while let Some(item) = items.next() {
            match item {
                Ok(b) => {
                    held_len += b.len();
                    held.push_back(b);
                    if sendable(&held, held_len, holdback) {
                        carry.extend(items.by_ref());
                        break;
                    }
                }
                Err(e) => {
                    guard.disarm();
                    drop(stream);
                    drop(conn);
                    return ApiError::from_pg(&e).into_response();
                }
            }
        }
    }

    guard.disarm();
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let record = ctx.record.clone();
    tokio::spawn(async move {
        let mut failed = false;
        if !ended {
            let mut next_batch = Some(carry).filter(|c| !c.is_empty());
            'rows: loop {
                // Send the rows that have at least `holdback` bytes behind them.
                if send_sendable(&mut held, &mut held_len, holdback, &tx).await.is_err() {
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
                        Ok(b) => {
                            held_len += b.len();
                            held.push_back(b);
                        }
                        Err(e) => {
                            // What had `holdback` bytes behind it before the error goes out, as it would have
                            // had the rows come one at a time; the held rows (at least `holdback` bytes) are
                            // lost; the error JSON ends the body (no newline around it).
                            let _ = send_sendable(&mut held, &mut held_len, holdback, &tx).await;
                            held.clear();
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
        while !held.is_empty() {
            let mut out = BytesMut::new();
            while out.len() < SEND_TARGET {
                let Some(b) = held.pop_front() else { break };
                out.extend_from_slice(&b);
            }
            if tx.send(out.freeze()).await.is_err() {
                record.abort("client closed the connection");
                return;
            }
        }
        drop(stream);
        // A connection that saw an error mid-COPY is not reused.
        if !failed {
            conn.release();
        }
    });

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
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename={}", crate::sql_api::urlencode(&filename))) {
        h.insert("content-disposition", v);
    }
    if gzip {
        h.insert("content-encoding", HeaderValue::from_static("gzip"));
    }
    r
}

/// Send, in writes of about SEND_TARGET bytes, the held rows that have at least `holdback` bytes behind them.
/// Err when the client went away.
async fn send_sendable(
    held: &mut std::collections::VecDeque<Bytes>,
    held_len: &mut usize,
    holdback: usize,
    tx: &mpsc::Sender<Bytes>,
) -> Result<(), ()> {
    while sendable(held, *held_len, holdback) {
        let mut out = BytesMut::new();
        while out.len() < SEND_TARGET && sendable(held, *held_len, holdback) {
            let Some(b) = held.pop_front() else { break };
            *held_len -= b.len();
            out.extend_from_slice(&b);
        }
        tx.send(out.freeze()).await.map_err(|_| ())?;
    }
    Ok(())
}

/// At most this many rows are taken from PostgreSQL at once (those it already sent).
const READY_ROWS: usize = 1024;
/// Rows go out in writes of about this size (CopyData messages concatenated: whole rows for text and csv).
const SEND_TARGET: usize = 64 * 1024;

/// Whether the first held message can go out: the messages behind it make up at least `holdback` bytes.
fn sendable(held: &std::collections::VecDeque<Bytes>, held_len: usize, holdback: usize) -> bool {
    held.front().is_some_and(|f| held_len.saturating_sub(f.len()) >= holdback)
}

/// Cancels a backend query when dropped armed: a handler future dropped before it could answer.
struct CancelOnDrop {
    token: Option<tokio_postgres::CancelToken>,
    record: Option<std::sync::Arc<crate::request_log::Record>>,
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
