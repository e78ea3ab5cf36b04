//! COPY out of CARTO: `POST /api/v2/sql/copyto`, streamed.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt as _, StreamExt as _};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::client::{Client, Retry};
use crate::error::{parse_error_object, Endpoint, Error, ErrorKind, Result};
use crate::stats::{AtomicStats, RequestStats, StatsHandle};

/// Lines are handed to the caller as soon as the channel has room, and in chunks of at most about this size.
const CHUNK_TARGET: usize = 64 * 1024;
/// CARTO's appended error starts like this.
const ERROR_PREFIX: &[u8] = b"{\"error\":";

enum Msg {
    Chunk(Bytes),
    End,
    Err(Error),
}

/// A running COPY TO: raw COPY bytes in chunks of whole lines. Dropping it closes the connection at once,
/// and CARTO cancels the query.
pub struct CopyOutStream {
    rx: mpsc::Receiver<Msg>,
    task: AbortHandle,
    stats: Arc<AtomicStats>,
    done: bool,
}

impl std::fmt::Debug for CopyOutStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyOutStream").field("stats", &self.stats()).field("done", &self.done).finish()
    }
}

impl Drop for CopyOutStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CopyOutStream {
    /// The next chunk of whole lines (each ending with `\n`; for [`Client::copy_to_binary`], of bytes cut
    /// anywhere), or `None` at the clean end of the stream.
    /// An error CARTO appended to the data, a connection cut before the end, or an idle read longer than
    /// `request_timeout` is an Err, never data. Cancel-safe.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        match self.rx.recv().await {
            Some(Msg::Chunk(b)) => Ok(Some(b)),
            Some(Msg::End) => {
                self.done = true;
                Ok(None)
            }
            Some(Msg::Err(e)) => {
                self.done = true;
                Err(e)
            }
            None => {
                self.done = true;
                Err(Error::new(ErrorKind::Transport, Endpoint::CopyTo, "the COPY TO network task ended unexpectedly"))
            }
        }
    }

    /// Requests, bytes received (after gzip decoding) and retries so far.
    pub fn stats(&self) -> RequestStats {
        self.stats.snapshot()
    }

    /// A handle on the same counters, for a caller that hands the stream to a task of its own.
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(self.stats.clone())
    }
}

impl Client {
    /// Start `COPY ... TO STDOUT` through `/copyto` (POST, form body). Returns once CARTO answered 200 and the
    /// first bytes (or the end) of the body arrived; errors before the stream (4xx) are returned here. Retried
    /// (429 with `Retry-After`, transport, 502/503/504, a body cut before its first byte) only up to that
    /// point, so never after a chunk was handed out. The stream's network side runs on a task spawned on the
    /// current tokio runtime.
    pub async fn copy_to(&self, copy_sql: &str) -> Result<CopyOutStream> {
        self.copy_to_with(copy_sql, true).await
    }

    /// [`Client::copy_to`]; with `wait_on_rate_limit` false a 429 is returned at once (ErrorKind::RateLimited,
    /// with `retry_after`) instead of being waited for, for callers that fall back to paged `/sql` reads.
    pub async fn copy_to_with(&self, copy_sql: &str, wait_on_rate_limit: bool) -> Result<CopyOutStream> {
        self.copy_to_framed(copy_sql, wait_on_rate_limit, Framing::Lines).await
    }

    /// [`Client::copy_to_with`] for `COPY ... TO STDOUT (FORMAT binary)`: the chunks are the body's bytes as
    /// they come, cut anywhere, to be decoded with [`crate::copy_binary::Decoder`] — which also tells CARTO's
    /// appended error from data (a line-based check cannot: binary data holds newlines anywhere).
    pub async fn copy_to_binary(&self, copy_sql: &str, wait_on_rate_limit: bool) -> Result<CopyOutStream> {
        self.copy_to_framed(copy_sql, wait_on_rate_limit, Framing::Raw).await
    }

    async fn copy_to_framed(&self, copy_sql: &str, wait_on_rate_limit: bool, framing: Framing) -> Result<CopyOutStream> {
        let policy = if wait_on_rate_limit { Retry::Read } else { Retry::ReadNoRateLimit };
        let url = self.inner.cfg.endpoint_url(&["copyto"]);
        let mut stats = RequestStats::default();
        let form = [("q", copy_sql)];
        let timeout = self.inner.cfg.request_timeout;
        // One try = the head and the first chunk of the body: a failure before any byte was handed out is
        // retried like any read.
        let (body, first) = self
            .retry_loop(policy, &mut stats, || {
                let rb = self.request(reqwest::Method::POST, url.clone()).form(&form);
                async move {
                    let mut st = RequestStats::default();
                    let r = match self.head_once(Endpoint::CopyTo, rb, &mut st).await {
                        Err(e) => Err(e),
                        Ok(resp) => {
                            let mut body: BodyStream = Box::pin(resp.bytes_stream());
                            match tokio::time::timeout(timeout, body.next()).await {
                                Err(_) => Err(Error::new(
                                    ErrorKind::Timeout,
                                    Endpoint::CopyTo,
                                    format!("no data within request_timeout ({} s)", timeout.as_secs_f64()),
                                )
                                .with_status(200)),
                                Ok(Some(Err(e))) => {
                                    let mut err = Error::transport(Endpoint::CopyTo, &e);
                                    err.message = format!("COPY TO stream cut before its first byte: {}", err.message);
                                    Err(err)
                                }
                                Ok(Some(Ok(b))) => {
                                    st.bytes_received += b.len() as u64;
                                    Ok((body, Some(b)))
                                }
                                Ok(None) => Ok((body, None)),
                            }
                        }
                    };
                    (r, st)
                }
            })
            .await?;
        stats.bytes_sent += copy_sql.len() as u64;
        let shared = Arc::new(AtomicStats::default());
        shared.add_requests(stats.requests);
        shared.add_received(stats.bytes_received);
        shared.add_sent(stats.bytes_sent);
        shared.add_retries(stats.retries);
        let (tx, rx) = mpsc::channel(self.inner.cfg.channel_capacity);
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::config("copy_to must run inside a tokio runtime"))?;
        let client = self.clone();
        let st = shared.clone();
        let task = handle.spawn(async move {
            let cfg = &client.inner.cfg;
            if let Err(e) = pump(body, first, &tx, &st, cfg.request_timeout, cfg.max_row_bytes, framing).await {
                let _ = tx.send(Msg::Err(client.redact(e))).await;
            }
        });
        Ok(CopyOutStream { rx, task: task.abort_handle(), stats: shared, done: false })
    }
}

/// How the stream's bytes are cut into chunks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Framing {
    /// COPY text or csv: whole lines, CARTO's appended error told apart at the end.
    Lines,
    /// COPY binary: the bytes as they come; the caller's decoder finds CARTO's appended error.
    Raw,
}

/// Where to cut `pending` so that only whole lines go out, holding back a last line that looks like CARTO's
/// appended error until more data shows it was a row.
fn ready_cut(pending: &[u8]) -> usize {
    let Some(last_nl) = memchr::memrchr(b'\n', pending) else { return 0 };
    let cut = last_nl + 1;
    let line_start = memchr::memrchr(b'\n', &pending[..last_nl]).map_or(0, |i| i + 1);
    if pending[line_start..].starts_with(ERROR_PREFIX) {
        line_start
    } else {
        cut
    }
}

type BodyStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<Bytes>> + Send>>;

async fn pump(
    mut body: BodyStream,
    first: Option<Bytes>,
    tx: &mpsc::Sender<Msg>,
    stats: &AtomicStats,
    idle: std::time::Duration,
    max_line: usize,
    framing: Framing,
) -> Result<()> {
    let mut pending = BytesMut::with_capacity(CHUNK_TARGET * 2);
    let finish = |pending: BytesMut| async move {
        match framing {
            Framing::Lines => finish(pending, tx).await,
            Framing::Raw => finish_raw(pending, tx).await,
        }
    };
    // A line is at most max_row_bytes, checked before the buffer grows (raw: the buffer is handed out at
    // CHUNK_TARGET anyway); a large buffer grows fallibly. `partial`: the bytes after pending's last newline.
    let ceiling = max_line.saturating_add(CHUNK_TARGET * 4);
    let mut partial = 0usize;
    let grow = |pending: &mut BytesMut, data: &[u8], partial: &mut usize| -> Result<()> {
        if framing == Framing::Lines {
            if *partial + data.len() > max_line {
                let (mut len, mut last) = (*partial, 0);
                for nl in memchr::memchr_iter(b'\n', data).chain(std::iter::once(data.len())) {
                    if len + (nl - last) > max_line {
                        return Err(Error::new(
                            ErrorKind::Protocol,
                            Endpoint::CopyTo,
                            format!("a COPY line longer than max_row_bytes ({max_line} bytes)"),
                        )
                        .with_status(200));
                    }
                    len = 0;
                    last = nl + 1;
                }
            }
            *partial = match memchr::memrchr(b'\n', data) {
                Some(p) => data.len() - p - 1,
                None => *partial + data.len(),
            };
        }
        crate::buf::extend_bytes_mut(pending, data, ceiling.saturating_add(data.len()), Endpoint::CopyTo, "a COPY line")
    };
    match first {
        Some(b) => grow(&mut pending, &b, &mut partial)?,
        None => return finish(pending).await,
    }
    // One timer for the whole stream, pushed back when data arrives (not a new one per chunk).
    let idle_timer = tokio::time::sleep(idle);
    tokio::pin!(idle_timer);
    loop {
        let cut = match framing {
            Framing::Lines => ready_cut(&pending),
            Framing::Raw => pending.len(),
        };
        if cut >= CHUNK_TARGET {
            if tx.send(Msg::Chunk(pending.split_to(cut).freeze())).await.is_err() {
                return Ok(()); // the caller is gone
            }
            continue;
        }
        tokio::select! {
            permit = tx.reserve(), if cut > 0 => {
                match permit {
                    Ok(p) => p.send(Msg::Chunk(pending.split_to(cut).freeze())),
                    Err(_) => return Ok(()),
                }
            }
            next = body.next() => match next {
                Some(Ok(chunk)) => {
                    stats.add_received(chunk.len() as u64);
                    grow(&mut pending, &chunk, &mut partial)?;
                    // CARTO writes a row per HTTP chunk: take what hyper already holds before handing lines
                    // out, so the caller gets chunks of many rows, not a message (and a wake-up) per row.
                    while pending.len() < CHUNK_TARGET {
                        match body.next().now_or_never() {
                            Some(Some(Ok(more))) => {
                                stats.add_received(more.len() as u64);
                                grow(&mut pending, &more, &mut partial)?;
                            }
                            Some(Some(Err(e))) => return Err(cut_error(&e)),
                            Some(None) => return finish(pending).await,
                            None => break,
                        }
                    }
                    idle_timer.as_mut().reset(Instant::now() + idle);
                }
                Some(Err(e)) => return Err(cut_error(&e)),
                None => return finish(pending).await,
            },
            _ = &mut idle_timer => {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    Endpoint::CopyTo,
                    format!("COPY TO stream idle for request_timeout ({} s)", idle.as_secs_f64()),
                ).with_status(200));
            }
        }
    }
}

/// The body broke off before its end.
fn cut_error(e: &reqwest::Error) -> Error {
    let mut err = Error::transport(Endpoint::CopyTo, e);
    err.kind = if e.is_timeout() { ErrorKind::Timeout } else { ErrorKind::Transport };
    err.message = format!("COPY TO stream cut before its end: {}", err.message);
    err.status = Some(200);
    err
}

/// The body ended (raw framing): hand out the rest; the decoder judges it.
async fn finish_raw(pending: BytesMut, tx: &mpsc::Sender<Msg>) -> Result<()> {
    if !pending.is_empty() {
        let _ = tx.send(Msg::Chunk(pending.freeze())).await;
    }
    let _ = tx.send(Msg::End).await;
    Ok(())
}

/// The body ended: what is left is whole lines, CARTO's appended error, or a cut line.
async fn finish(mut pending: BytesMut, tx: &mpsc::Sender<Msg>) -> Result<()> {
    if pending.is_empty() {
        let _ = tx.send(Msg::End).await;
        return Ok(());
    }
    // CARTO appends its error JSON with no newline, while every COPY text row ends with one: only an
    // unterminated tail can be the error. (A last row that is itself `{"error":...}` JSON, possible in a
    // one-column text or json table, ends with '\n' and stays data.)
    let body_end = pending.len();
    let line_start = memchr::memrchr(b'\n', &pending[..body_end]).map_or(0, |i| i + 1);
    let last = &pending[line_start..body_end];
    if !last.is_empty() && last.starts_with(b"{") {
        if let Ok(serde_json::Value::Object(o)) = serde_json::from_slice::<serde_json::Value>(last) {
            if let Some(p) = parse_error_object(&o) {
                let mut e = Error::from_body_error(Endpoint::CopyTo, p);
                e.hint.get_or_insert_with(|| "CARTO reported this error after the COPY stream had begun".into());
                return Err(e);
            }
        }
    }
    if !pending.ends_with(b"\n") {
        return Err(Error::new(
            ErrorKind::Protocol,
            Endpoint::CopyTo,
            format!("COPY TO stream ended in the middle of a line ({} bytes without a newline)", pending.len() - line_start),
        )
        .with_status(200));
    }
    let _ = tx.send(Msg::Chunk(pending.split().freeze())).await;
    let _ = tx.send(Msg::End).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts() {
        assert_eq!(ready_cut(b"abc"), 0);
        assert_eq!(ready_cut(b"a\nb\nc"), 4);
        assert_eq!(ready_cut(b"a\n{\"error\":[\"x\"]}\n"), 2);
        assert_eq!(ready_cut(b"a\n{\"error\":[\"x\"]}\nb\n"), 20);
        assert_eq!(ready_cut(b"{\"error\":[\"x\"]}\n"), 0);
    }

    #[tokio::test]
    async fn finishes() {
        let (tx, mut rx) = mpsc::channel(4);
        let e = finish(BytesMut::from(&b"1\ta\n{\"error\":[\"boom\"],\"detail\":\"d\"}"[..]), &tx).await.unwrap_err();
        assert_eq!(e.message, "boom");
        assert_eq!(e.detail.as_deref(), Some("d"));
        // A last ROW that is error-shaped JSON ends with '\n': data, not CARTO's error.
        finish(BytesMut::from(&b"{\"error\":[\"boom\"]}\n"[..]), &tx).await.unwrap();
        assert!(matches!(rx.recv().await, Some(Msg::Chunk(b)) if &b[..] == b"{\"error\":[\"boom\"]}\n"));
        assert!(matches!(rx.recv().await, Some(Msg::End)));
        let e = finish(BytesMut::from(&b"1\ta\n2\tb"[..]), &tx).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Protocol);
        finish(BytesMut::from(&b"{\"error\":x\n"[..]), &tx).await.unwrap();
        assert!(matches!(rx.recv().await, Some(Msg::Chunk(b)) if &b[..] == b"{\"error\":x\n"));
        assert!(matches!(rx.recv().await, Some(Msg::End)));
    }
}
