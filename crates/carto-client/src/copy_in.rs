//! COPY into CARTO: one streamed, gzip-compressed, chunked `POST /api/v2/sql/copyfrom` request.
//!
//! The caller's data goes through a bounded channel to a pump task (spawned on the current runtime at the first
//! data) that compresses it and feeds the request body through a second bounded channel. The pump also
//! * sends an empty gzip block (a sync flush plus an empty stored block) every `keepalive_interval` while the
//!   caller sends nothing, so CARTO's slow-input guard and idle timeout do not cut the upload;
//! * keeps a small replay buffer (the compressed bytes of the current request while they are at most 1 MiB): if
//!   CARTO refuses the request with a 429 and `Retry-After` and everything sent so far is still in the buffer,
//!   it waits (at most `max_retry_wait`) and replays it on a new request;
//! * ends the body with an error, never with a clean end, when it is dropped or aborted, so the connection
//!   breaks and CARTO rolls the COPY back. Copy requests carry `Connection: close`: their connection is never
//!   reused, whether they failed or not.
//!
//! Breaking the connection is not a reliable abort on CARTO's server: a client that leaves in the first
//! milliseconds of an upload is never noticed, and the COPY stays open holding its table lock (section 11 of
//! the protocol notes). [`CopyIn::abort_gracefully`] ends an upload deterministically instead: a line the COPY
//! must reject, a properly finished gzip stream and the body's end, so CARTO's COPY fails by itself; then a
//! bounded wait for CARTO's answer, and the connection is closed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crate::gzip::Gzip;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::{error_from_response, read_body, retry_info, Client};
use crate::error::{parse_error_body, Endpoint, Error, ErrorKind, Result};
use crate::stats::{AtomicStats, RequestStats};

/// The gzip level for the next stretch of an upload, decided at each sync flush from where the pump waited
/// lately (a moving average over the stretches between sync flushes):
/// - mostly for the request body to take more (CARTO or the network is slower than the rows come): the
///   configured level, since every byte saved is time saved and the compressor is not what the upload waits
///   for;
/// - mostly for rows: level 1, zlib-rs's quick mode, since then the compressor is on the upload's path and
///   sharper compression only costs time (and CPU the rows' producer may need);
/// - neither clearly (within a factor of 2): unchanged, so the level does not flap.
///
/// Levels 0 and 1 are kept as they are: adapting only ever lowers a configured level to 1. The body channel's
/// fill level alone is no signal: HTTP and socket buffers in front of a slow link take megabytes before it
/// fills, and its state at one instant says little; the waiting adds up over the whole stretch.
fn adapt(configured: u32, current: u32, waited_for_body: Duration, waited_for_rows: Duration) -> u32 {
    if configured <= 1 || waited_for_body > waited_for_rows * 2 {
        configured
    } else if waited_for_rows > waited_for_body * 2 {
        1
    } else {
        current
    }
}

/// The compressed bytes of a request kept for a replay after a 429.
const REPLAY_MAX: usize = 1024 * 1024;
/// An empty, non-final deflate stored block: valid anywhere the stream is byte-aligned (after a sync flush).
const EMPTY_STORED_BLOCK: [u8; 5] = [0x00, 0x00, 0x00, 0xff, 0xff];

/// What a finished COPY FROM did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CopyInSummary {
    pub total_rows: u64,
    pub requests: u64,
    pub bytes_sent: u64,
}

enum In {
    Data(Bytes),
    Finish(u64),
    /// End the upload with this line (one CARTO must reject), so the COPY fails and rolls back.
    Poison(Bytes),
}

/// How [`CopyIn::abort_gracefully`] ended an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbortOutcome {
    /// Nothing had been sent: there was no request.
    NothingSent,
    /// The upload had already failed (CARTO rejected it or the connection broke): nothing to end.
    AlreadyEnded,
    /// CARTO answered with the COPY's error (its message): the COPY is over and rolled back.
    Rejected(String),
    /// No answer within the wait (or the connection broke): the poisoned body may still be on its way;
    /// the connection was closed. When the poison line was sent, CARTO's COPY fails when it reads it.
    Unconfirmed(String),
}

enum BodyMsg {
    Data(Bytes),
    End,
}

struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Running {
    tx: mpsc::Sender<In>,
    task: AbortOnDrop<Result<u64>>,
}

/// An upload in progress. Lazy: nothing is sent before the first [`CopyIn::send`]. Dropping it (or
/// [`CopyIn::abort`]) breaks the connection and CARTO rolls everything back; only [`CopyIn::finish`] commits.
pub struct CopyIn {
    client: Client,
    sql: String,
    run: Option<Running>,
    rows: u64,
    stats: Arc<AtomicStats>,
    /// Compressed bytes produced for the request (exact after the pump's sync flush near the threshold).
    compressed: Arc<AtomicU64>,
    /// Raw bytes the caller handed over, and those the pump has compressed: the difference is in the channel.
    raw_sent: u64,
    raw_done: Arc<AtomicU64>,
    failed: Option<Error>,
    /// `COPY ... FROM STDIN (FORMAT binary)`: each request gets the binary header and trailer (copy_binary.rs).
    binary: bool,
}

impl std::fmt::Debug for CopyIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyIn")
            .field("started", &self.run.is_some())
            .field("rows", &self.rows)
            .field("stats", &self.stats.snapshot())
            .finish()
    }
}

impl Client {
    /// Prepare `COPY table (cols) FROM STDIN` through `/copyfrom`. Nothing is sent until the first data.
    pub fn copy_from(&self, copy_sql: &str) -> CopyIn {
        CopyIn {
            client: self.clone(),
            sql: copy_sql.to_string(),
            run: None,
            rows: 0,
            stats: Arc::new(AtomicStats::default()),
            compressed: Arc::new(AtomicU64::new(0)),
            raw_sent: 0,
            raw_done: Arc::new(AtomicU64::new(0)),
            failed: None,
            binary: false,
        }
    }

    /// [`Client::copy_from`] for `COPY ... FROM STDIN (FORMAT binary)`: [`CopyIn::send`] then takes whole
    /// tuples of the binary format ([`crate::copy_binary::Encoder`]); the header goes out before the first
    /// and the trailer at [`CopyIn::finish`], once per request (so per [`CopyIn`] of a roll-over).
    pub fn copy_from_binary(&self, copy_sql: &str) -> CopyIn {
        let mut c = self.copy_from(copy_sql);
        c.binary = true;
        c
    }
}

impl CopyIn {
    /// Send whole COPY text lines holding `rows` rows. Waits while the pipe is full (never buffers more).
    /// Fails with the upload's error once it failed (e.g. CARTO rejected a row early). Cancel-safe: if the
    /// future is dropped, the data was either sent whole or not at all.
    pub async fn send(&mut self, data: Bytes, rows: u64) -> Result<()> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if data.is_empty() {
            return Ok(());
        }
        if !self.binary && data.last() != Some(&b'\n') {
            return Err(Error::new(
                ErrorKind::Config,
                Endpoint::CopyFrom,
                "CopyIn::send takes whole COPY text lines (the data must end with a newline)",
            ));
        }
        if self.run.is_none() {
            let handle = tokio::runtime::Handle::try_current()
                .map_err(|_| Error::config("CopyIn::send must run inside a tokio runtime"))?;
            let (tx, rx) = mpsc::channel(self.client.inner.cfg.channel_capacity);
            let p = Pump {
                client: self.client.clone(),
                sql: self.sql.clone(),
                stats: self.stats.clone(),
                compressed: self.compressed.clone(),
                raw_done: self.raw_done.clone(),
            };
            let task = handle.spawn(p.run(rx));
            self.run = Some(Running { tx, task: AbortOnDrop(task) });
        }
        // A binary request starts with the header, in the same message as the first tuples.
        let data = if self.binary && self.raw_sent == 0 {
            let mut d = Vec::with_capacity(crate::copy_binary::HEADER.len() + data.len());
            d.extend_from_slice(crate::copy_binary::HEADER);
            d.extend_from_slice(&data);
            Bytes::from(d)
        } else {
            data
        };
        let Some(run) = self.run.as_mut() else {
            return Err(Error::new(ErrorKind::Protocol, Endpoint::CopyFrom, "upload not running"));
        };
        let len = data.len() as u64;
        if run.tx.send(In::Data(data)).await.is_ok() {
            self.rows += rows;
            self.raw_sent += len;
            return Ok(());
        }
        // The pump ended: it failed.
        let e = match (&mut run.task.0).await {
            Ok(Err(e)) => e,
            Ok(Ok(_)) => Error::new(ErrorKind::Protocol, Endpoint::CopyFrom, "CARTO ended the upload early"),
            Err(j) => Error::new(ErrorKind::Transport, Endpoint::CopyFrom, format!("upload task failed: {j}")),
        };
        self.run = None;
        self.failed = Some(e.clone());
        Err(e)
    }

    /// True once the request holds about `copyfrom_max_bytes` compressed bytes: finish it and continue on a new
    /// [`CopyIn`] (CARTO refuses requests over 2 GB). The pump counts what the compressor may still hold at its
    /// raw size (it sync-flushes every 1/16 of the threshold, at most 1 MiB, and when the count reaches the
    /// threshold, which makes it exact), and chunks still in the channel count at the compression ratio seen so
    /// far plus 25 %. A request can end above the threshold by one chunk, the gzip trailer, and what a sudden
    /// drop of the compression ratio adds to the chunks in the channel: leave that margin under CARTO's limit.
    pub fn needs_rollover(&self) -> bool {
        let raw_done = self.raw_done.load(Ordering::Relaxed);
        let compressed = self.compressed.load(Ordering::Relaxed);
        let in_channel = self.raw_sent.saturating_sub(raw_done);
        let ratio = if raw_done == 0 { 1.0 } else { (compressed as f64 / raw_done as f64 * 1.25).min(1.0) };
        compressed + (in_channel as f64 * ratio) as u64 >= self.client.inner.cfg.copyfrom_max_bytes
    }

    /// Rows sent so far.
    pub fn rows_sent(&self) -> u64 {
        self.rows
    }

    pub fn stats(&self) -> RequestStats {
        self.stats.snapshot()
    }

    /// End the upload and wait for CARTO's answer. Fails if CARTO's `total_rows` differs from the rows sent.
    /// With no data sent, sends nothing and returns zero rows. Cancel-safe: dropping the future before CARTO
    /// received the end of the body aborts the upload (CARTO rolls back).
    pub async fn finish(mut self) -> Result<CopyInSummary> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let Some(mut run) = self.run.take() else {
            return Ok(CopyInSummary::default());
        };
        let rows = self.rows;
        if self.binary {
            let _ = run.tx.send(In::Data(Bytes::from_static(crate::copy_binary::TRAILER))).await;
        }
        let _ = run.tx.send(In::Finish(rows)).await;
        let r = match (&mut run.task.0).await {
            Ok(r) => r,
            Err(j) => Err(Error::new(ErrorKind::Transport, Endpoint::CopyFrom, format!("upload task failed: {j}"))),
        };
        let st = self.stats.snapshot();
        let total = r?;
        Ok(CopyInSummary { total_rows: total, requests: st.requests, bytes_sent: st.bytes_sent })
    }

    /// Break the upload: CARTO rolls it back. Same as dropping it.
    pub fn abort(self) {
        drop(self)
    }

    /// The poison for this upload's format and a COPY column list of `columns` columns:
    /// [`crate::copy_text::poison_line`] for COPY text, [`crate::copy_binary::poison_tuple`] for binary.
    pub fn poison(&self, columns: usize) -> Bytes {
        match self.binary {
            true => Bytes::from(crate::copy_binary::poison_tuple(columns)),
            false => Bytes::from(crate::copy_text::poison_line(columns)),
        }
    }

    /// True for an upload opened with [`Client::copy_from_binary`].
    pub fn is_binary(&self) -> bool {
        self.binary
    }

    /// End the upload so that CARTO's COPY fails by itself: `poison` (whole lines CARTO must reject, e.g.
    /// [`crate::copy_text::poison_line`], or for a binary upload a tuple with the wrong field count,
    /// [`crate::copy_binary::poison_tuple`]: see [`CopyIn::poison`]; never the binary trailer) after the rows sent, a finished gzip stream and the body's end;
    /// then wait at most `wait` for CARTO's answer, and close the connection (never reused). Unlike
    /// dropping, this does not rely on CARTO noticing a closed connection. Everything is bounded by `wait`,
    /// so it may be called where the caller cannot be interrupted.
    pub async fn abort_gracefully(mut self, poison: Bytes, wait: Duration) -> AbortOutcome {
        let deadline = Instant::now() + wait;
        if self.failed.is_some() {
            return AbortOutcome::AlreadyEnded;
        }
        let Some(mut run) = self.run.take() else {
            return AbortOutcome::NothingSent;
        };
        if self.binary && !crate::copy_binary::is_poison_tuple(&poison) {
            // No tuple header (or the trailer, which would end the COPY successfully): break the connection.
            return AbortOutcome::Unconfirmed("the poison is not a binary COPY tuple".into());
        }
        if !self.binary && poison.last() != Some(&b'\n') {
            // Not a whole line: it could merge with nothing and prove nothing; break the connection instead.
            return AbortOutcome::Unconfirmed("the poison is not a whole line".into());
        }
        match tokio::time::timeout_at(deadline, run.tx.send(In::Poison(poison))).await {
            Ok(Ok(())) => {}
            // The pump already ended: the upload failed (or the answer is there) — see what it said.
            Ok(Err(_)) => {}
            Err(_) => return AbortOutcome::Unconfirmed("the upload did not take the poison line in time".into()),
        }
        // `run` (and its task) is dropped on every return below: the connection is closed.
        match tokio::time::timeout_at(deadline, &mut run.task.0).await {
            // A success answer (CARTO took the poisoned body whole) comes back as a row-count mismatch.
            Ok(Ok(Err(e))) if e.kind == ErrorKind::RowCountMismatch => AbortOutcome::Unconfirmed(e.message),
            Ok(Ok(Err(e))) if e.status.is_some() => AbortOutcome::Rejected(e.message),
            Ok(Ok(Err(e))) => AbortOutcome::Unconfirmed(e.message),
            Ok(Ok(Ok(n))) => AbortOutcome::Unconfirmed(format!("CARTO reported {n} rows copied")),
            Ok(Err(j)) => AbortOutcome::Unconfirmed(format!("upload task failed: {j}")),
            Err(_) => AbortOutcome::Unconfirmed(format!("no answer from CARTO within {} ms", wait.as_millis())),
        }
    }
}

impl Drop for CopyIn {
    fn drop(&mut self) {
        // Aborting the pump drops the body sender without an End: the body stream fails, hyper breaks the
        // connection, CARTO rolls back.
        if let Some(run) = self.run.take() {
            run.task.0.abort();
        }
    }
}

/// How a request ended, when it did not fail.
enum Answered {
    /// CARTO copied this many rows (the rows sent).
    Done(u64),
    /// CARTO refused the request before taking anything (a 429 with Retry-After): replay it after this wait.
    Replay(Duration),
}

fn gz_err(e: std::io::Error) -> Error {
    Error::new(ErrorKind::Protocol, Endpoint::CopyFrom, format!("gzip: {e}"))
}

/// The compressing side of an upload: the gzip stream, the bytes it produced, and where the pump waited (which
/// sets the level: see `adapt`). Each method returns the compressed bytes ready to go and publishes the count
/// `CopyIn::needs_rollover` reads.
struct Compression {
    enc: Gzip,
    configured_level: u32,
    /// Compressed bytes produced for the request (what needs_rollover() compares), and raw bytes written
    /// since the last sync flush (what the compressor may still hold).
    produced: u64,
    raw_since_flush: u64,
    /// A sync flush every so often bounds what the compressor holds (and so the over-estimate) at a small
    /// fraction of the threshold; deflate keeps its dictionary across sync flushes, so the ratio barely moves.
    flush_every: u64,
    max_bytes: u64,
    /// Where the pump waited since the last sync flush: for the body to take a chunk, or for rows (`adapt`).
    waited_for_body: Duration,
    waited_for_rows: Duration,
    avg_body: Duration,
    avg_rows: Duration,
}

impl Compression {
    fn new(configured_level: u32, max_bytes: u64) -> Self {
        Compression {
            // The configured level while the network is the bottleneck, level 1 while it is not (see `adapt`).
            enc: Gzip::new(configured_level),
            configured_level,
            produced: 0,
            raw_since_flush: 0,
            flush_every: (max_bytes / 16).clamp(4096, 1 << 20),
            max_bytes,
            waited_for_body: Duration::ZERO,
            waited_for_rows: Duration::ZERO,
            avg_body: Duration::ZERO,
            avg_rows: Duration::ZERO,
        }
    }

    /// Rows (whole COPY lines or tuples).
    fn rows(&mut self, b: &[u8], compressed: &AtomicU64) -> Result<Vec<u8>> {
        self.enc.write(b).map_err(gz_err)?;
        self.raw_since_flush += b.len() as u64;
        // Near the roll-over threshold, a sync flush makes the count exact: everything
        // written so far is then in the compressed output.
        if self.raw_since_flush >= self.flush_every || self.produced + self.raw_since_flush >= self.max_bytes {
            self.enc.sync_flush().map_err(gz_err)?;
            self.raw_since_flush = 0;
            // Averaged over the last few stretches: a slow link's waits come in bursts,
            // when the buffers in front of it fill.
            self.avg_body = self.avg_body.mul_f64(0.75) + self.waited_for_body.mul_f64(0.25);
            self.avg_rows = self.avg_rows.mul_f64(0.75) + self.waited_for_rows.mul_f64(0.25);
            (self.waited_for_body, self.waited_for_rows) = (Duration::ZERO, Duration::ZERO);
            self.enc.set_level(adapt(self.configured_level, self.enc.level(), self.avg_body, self.avg_rows));
        }
        let out = self.enc.take();
        self.produced += out.len() as u64;
        // An upper bound (exact right after a flush); published before raw_done moves, so
        // needs_rollover() never misses these bytes.
        compressed.store(self.produced + self.raw_since_flush, Ordering::Relaxed);
        Ok(out)
    }

    /// The end of the gzip stream, after `last` (the poison line) when given.
    fn finish(&mut self, last: Option<&[u8]>, compressed: &AtomicU64) -> Result<Vec<u8>> {
        if let Some(line) = last {
            self.enc.write(line).map_err(gz_err)?;
        }
        self.enc.finish().map_err(gz_err)?;
        let out = self.enc.take();
        self.produced += out.len() as u64;
        compressed.store(self.produced, Ordering::Relaxed);
        Ok(out)
    }

    /// A keep-alive while no rows come: a sync flush and an empty stored block.
    fn keepalive(&mut self, compressed: &AtomicU64) -> Result<Vec<u8>> {
        self.enc.sync_flush().map_err(gz_err)?;
        self.raw_since_flush = 0;
        let mut out = self.enc.take();
        out.extend_from_slice(&EMPTY_STORED_BLOCK);
        self.produced += out.len() as u64;
        compressed.store(self.produced, Ordering::Relaxed);
        Ok(out)
    }
}

/// The body's side of a request: the compressed chunks waiting for the body, the replay buffer (the chunks
/// sent, while they are at most REPLAY_MAX), whether the end went out, and the clocks of keep-alives, stalls
/// and the answer.
struct Outgoing {
    queue: VecDeque<Bytes>,
    replay: Vec<Bytes>,
    replay_bytes: usize,
    replayable: bool,
    end_sent: bool,
    body_closed: bool,
    answer_deadline: Option<Instant>,
    last_activity: Instant,
    /// Last time the body accepted a chunk: a body that accepts nothing for request_timeout is a stall.
    last_progress: Instant,
}

impl Outgoing {
    fn new() -> Self {
        Outgoing {
            queue: VecDeque::new(),
            replay: Vec::new(),
            replay_bytes: 0,
            replayable: true,
            end_sent: false,
            body_closed: false,
            answer_deadline: None,
            last_activity: Instant::now(),
            last_progress: Instant::now(),
        }
    }

    /// What the body takes next: the next chunk (kept for a replay while the request is small), or the end.
    fn next_msg(&mut self, stats: &AtomicStats, request_timeout: Duration) -> BodyMsg {
        let msg = match self.queue.pop_front() {
            Some(c) => {
                let n = c.len();
                if self.replayable {
                    self.replay_bytes += n;
                    if self.replay_bytes > REPLAY_MAX {
                        self.never_replay();
                    } else {
                        self.replay.push(c.clone());
                    }
                }
                stats.add_sent(n as u64);
                BodyMsg::Data(c)
            }
            None => {
                self.end_sent = true;
                self.answer_deadline = Some(Instant::now() + request_timeout);
                BodyMsg::End
            }
        };
        self.last_activity = Instant::now();
        self.last_progress = self.last_activity;
        msg
    }

    /// The body takes nothing more: only the answer is left to wait for.
    fn body_gone(&mut self, request_timeout: Duration) {
        self.body_closed = true;
        self.answer_deadline = Some(Instant::now() + request_timeout);
    }

    fn never_replay(&mut self) {
        self.replayable = false;
        self.replay = Vec::new();
    }

    /// For a replay on a new request: what the refused request carried goes first again.
    fn rewind(&mut self) {
        let mut q: VecDeque<Bytes> = self.replay.drain(..).collect();
        q.extend(self.queue.drain(..));
        self.queue = q;
        self.replay_bytes = 0;
        self.end_sent = false;
        self.body_closed = false;
        self.answer_deadline = None;
        self.last_activity = Instant::now();
        self.last_progress = self.last_activity;
    }
}

struct Pump {
    client: Client,
    sql: String,
    stats: Arc<AtomicStats>,
    compressed: Arc<AtomicU64>,
    raw_done: Arc<AtomicU64>,
}

/// The request body: data until End; a closed channel without End is an error, so the request never ends
/// cleanly by accident.
fn body_stream(rx: mpsc::Receiver<BodyMsg>) -> reqwest::Body {
    let s = futures_util::stream::unfold(Some(rx), |state| async move {
        let mut rx = state?;
        match rx.recv().await {
            Some(BodyMsg::Data(b)) => Some((Ok::<Bytes, std::io::Error>(b), Some(rx))),
            Some(BodyMsg::End) => None,
            None => Some((Err(std::io::Error::other("upload aborted")), None)),
        }
    });
    reqwest::Body::wrap_stream(s)
}

impl Pump {
    fn start_request(&self, body: reqwest::Body) -> AbortOnDrop<reqwest::Result<reqwest::Response>> {
        let mut url = self.client.inner.cfg.endpoint_url(&["copyfrom"]);
        url.query_pairs_mut().append_pair("q", &self.sql);
        let rb = self
            .client
            .request(reqwest::Method::POST, url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_ENCODING, "gzip")
            .header(reqwest::header::CONNECTION, "close")
            .body(body);
        self.stats.add_requests(1);
        AbortOnDrop(tokio::spawn(rb.send()))
    }

    async fn run(self, rx: mpsc::Receiver<In>) -> Result<u64> {
        let r = self.run_inner(rx).await;
        r.map_err(|e| self.client.redact(e))
    }

    async fn run_inner(&self, mut rx: mpsc::Receiver<In>) -> Result<u64> {
        let cfg = &self.client.inner.cfg;
        let mut gz = Compression::new(cfg.compression_level, cfg.copyfrom_max_bytes);
        let mut out = Outgoing::new();
        let mut retries = 0u32;
        let mut rows_expected: Option<u64> = None; // set by Finish
        let (mut body_tx, body_rx) = mpsc::channel::<BodyMsg>(cfg.channel_capacity);
        let mut resp_task = self.start_request(body_stream(body_rx));

        loop {
            let want_send = !out.body_closed && (!out.queue.is_empty() || (rows_expected.is_some() && !out.end_sent));
            let want_input = out.queue.is_empty() && rows_expected.is_none();
            let waiting_since = Instant::now();
            let keepalive_at = out.last_activity + cfg.keepalive_interval;
            let far = Instant::now() + Duration::from_secs(86400 * 365);
            let stall_at = out.last_progress + cfg.request_timeout;
            let answer = tokio::select! {
                biased;
                r = &mut resp_task.0 => Some(r),
                permit = body_tx.reserve(), if want_send => {
                    match permit {
                        // hyper stopped reading the body: CARTO answered early or the connection broke.
                        Err(_) => out.body_gone(cfg.request_timeout),
                        Ok(p) => p.send(out.next_msg(&self.stats, cfg.request_timeout)),
                    }
                    None
                }
                msg = rx.recv(), if want_input => {
                    match msg {
                        Some(In::Data(b)) => {
                            // Nothing was waiting to be sent: the stall clock starts now.
                            out.last_progress = Instant::now();
                            let chunk = gz.rows(&b, &self.compressed)?;
                            if !chunk.is_empty() {
                                out.queue.push_back(Bytes::from(chunk));
                            }
                            self.raw_done.fetch_add(b.len() as u64, Ordering::Relaxed);
                        }
                        Some(In::Poison(line)) => {
                            // The rows sent so far, then a line the COPY rejects, then a proper end: CARTO's
                            // COPY fails by itself. Never replayed, whatever CARTO answers.
                            out.queue.push_back(Bytes::from(gz.finish(Some(&line), &self.compressed)?));
                            out.never_replay();
                            rows_expected = Some(u64::MAX);
                        }
                        Some(In::Finish(rows)) => {
                            let chunk = gz.finish(None, &self.compressed)?;
                            if !chunk.is_empty() {
                                out.queue.push_back(Bytes::from(chunk));
                            }
                            rows_expected = Some(rows);
                        }
                        None => {
                            // The caller went away without finishing: abort (dropping body_tx fails the body).
                            return Err(Error::new(ErrorKind::Transport, Endpoint::CopyFrom, "upload abandoned"));
                        }
                    }
                    None
                }
                _ = tokio::time::sleep_until(keepalive_at), if want_input && !out.body_closed => {
                    out.queue.push_back(Bytes::from(gz.keepalive(&self.compressed)?));
                    out.last_activity = Instant::now();
                    None
                }
                _ = tokio::time::sleep_until(stall_at), if want_send => {
                    return Err(Error::new(ErrorKind::Timeout, Endpoint::CopyFrom,
                        format!("upload stalled: CARTO read nothing for request_timeout ({} s)", cfg.request_timeout.as_secs_f64())));
                }
                _ = tokio::time::sleep_until(out.answer_deadline.unwrap_or(far)), if out.answer_deadline.is_some() => {
                    return Err(Error::new(ErrorKind::Timeout, Endpoint::CopyFrom,
                        format!("no answer from CARTO within request_timeout ({} s) after the upload", cfg.request_timeout.as_secs_f64())));
                }
            };
            if want_input {
                gz.waited_for_rows += waiting_since.elapsed();
            } else if want_send && rows_expected.is_none() {
                gz.waited_for_body += waiting_since.elapsed();
            }
            let Some(r) = answer else { continue };
            match self.answered(r, &out, rows_expected, retries).await? {
                Answered::Done(rows) => return Ok(rows),
                Answered::Replay(wait) => {
                    // CARTO refused the request before accepting anything: replay it on a new request.
                    tokio::time::sleep(wait).await;
                    retries += 1;
                    self.stats.add_retries(1);
                    out.rewind();
                    let (tx, brx) = mpsc::channel::<BodyMsg>(cfg.channel_capacity);
                    body_tx = tx;
                    resp_task = self.start_request(body_stream(brx));
                }
            }
        }
    }

    /// CARTO's answer to the request, or how it failed: the upload's end (CARTO's row count checked), a 429 with
    /// Retry-After that came before CARTO took anything and may be replayed after a wait, or the error.
    async fn answered(
        &self,
        r: std::result::Result<reqwest::Result<reqwest::Response>, tokio::task::JoinError>,
        out: &Outgoing,
        rows_expected: Option<u64>,
        retries: u32,
    ) -> Result<Answered> {
        let resp = match r {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => {
                let mut err = Error::transport(Endpoint::CopyFrom, &e);
                err.message = if out.end_sent {
                    format!("connection lost while waiting for CARTO's answer to the upload: {}", err.message)
                } else {
                    format!("upload cut before its end (CARTO rolls it back): {}", err.message)
                };
                return Err(err);
            }
            Err(j) => return Err(Error::new(ErrorKind::Transport, Endpoint::CopyFrom, format!("request task failed: {j}"))),
        };
        let cfg = &self.client.inner.cfg;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            let mut st = RequestStats::default();
            let deadline = Instant::now() + cfg.request_timeout;
            let body = read_body(Endpoint::CopyFrom, resp, 1 << 20, false, deadline, &mut st).await?;
            self.stats.add_received(st.bytes_received);
            // A server may end the COPY as soon as the gzip trailer arrives, before the chunked
            // body's terminator: that is a complete upload too (everything, trailer included, was
            // handed to the body: Finish seen and nothing left queued).
            let all_data_sent = out.end_sent || (rows_expected.is_some() && out.queue.is_empty());
            if !all_data_sent {
                return Err(Error::new(ErrorKind::Protocol, Endpoint::CopyFrom,
                    format!("CARTO answered {status} before the upload ended")).with_status(status));
            }
            return self.check_answer(status, &body, rows_expected.unwrap_or(0)).map(Answered::Done);
        }
        let (retry_after, _) = retry_info(resp.headers());
        let mut st = RequestStats::default();
        let mut err = error_from_response(Endpoint::CopyFrom, resp, &mut st).await;
        self.stats.add_received(st.bytes_received);
        err.retries = retries;
        let can_replay = status == 429 && out.replayable && retry_after.is_some();
        let wait = if can_replay { self.client.backoff(&err, retries, crate::client::Retry::RateLimitOnly) } else { None };
        match wait {
            Some(wait) => Ok(Answered::Replay(wait)),
            None => Err(err),
        }
    }

    fn check_answer(&self, status: u16, body: &[u8], rows_sent: u64) -> Result<u64> {
        if let Some(p) = parse_error_body(body) {
            return Err(Error::from_body_error(Endpoint::CopyFrom, p).with_status(status));
        }
        let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
            Error::new(ErrorKind::Protocol, Endpoint::CopyFrom, format!("malformed answer to the upload: {e}"))
                .with_status(status)
        })?;
        let Some(total) = v.get("total_rows").and_then(serde_json::Value::as_u64) else {
            return Err(Error::new(ErrorKind::Protocol, Endpoint::CopyFrom, "CARTO's answer has no total_rows")
                .with_status(status));
        };
        if total != rows_sent {
            return Err(Error::new(
                ErrorKind::RowCountMismatch,
                Endpoint::CopyFrom,
                format!("CARTO copied {total} rows but {rows_sent} were sent"),
            )
            .with_status(status)
            .with_hint("the rows were committed on CARTO's side; check the remote table"));
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    /// The keep-alive block after a sync flush leaves a valid gzip stream, at every level.
    #[test]
    fn keepalive_blocks_are_valid_gzip() {
        for level in [0u32, 1, 6, 9] {
            let mut enc = Gzip::new(level);
            let mut wire = Vec::new();
            enc.write(b"1\ta\n").unwrap();
            wire.extend(enc.take());
            for _ in 0..3 {
                enc.sync_flush().unwrap();
                wire.extend(enc.take());
                wire.extend_from_slice(&EMPTY_STORED_BLOCK);
            }
            enc.write(b"2\tb\n").unwrap();
            wire.extend(enc.take());
            enc.finish().unwrap();
            wire.extend(enc.take());
            let mut s = String::new();
            flate2::read::GzDecoder::new(&wire[..]).read_to_string(&mut s).unwrap();
            assert_eq!(s, "1\ta\n2\tb\n", "level {level}");
        }
    }

    #[test]
    fn level_follows_where_the_pump_waits() {
        let ms = Duration::from_millis;
        // Waiting for the body: the network is the bottleneck, compress as configured.
        assert_eq!(adapt(6, 1, ms(50), ms(10)), 6);
        // Waiting for rows: the compressor is on the path, go fast.
        assert_eq!(adapt(6, 6, ms(5), ms(40)), 1);
        // Neither clearly: keep the current level.
        assert_eq!(adapt(6, 1, ms(30), ms(20)), 1);
        assert_eq!(adapt(6, 6, ms(20), ms(30)), 6);
        assert_eq!(adapt(2, 2, ms(0), ms(0)), 2);
        // 0 and 1 are never changed.
        assert_eq!(adapt(0, 0, ms(0), ms(90)), 0);
        assert_eq!(adapt(1, 1, ms(90), ms(0)), 1);
    }
}
