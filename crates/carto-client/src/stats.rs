//! Per-operation request statistics (EXPLAIN ANALYZE shows them).

use std::sync::atomic::{AtomicU64, Ordering};

/// What one operation cost on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// HTTP requests sent, retries included.
    pub requests: u64,
    /// Response body bytes received (after gzip decoding).
    pub bytes_received: u64,
    /// Request body bytes sent (after gzip encoding for COPY FROM).
    pub bytes_sent: u64,
    /// Retries made.
    pub retries: u64,
}

impl RequestStats {
    pub fn add(&mut self, o: &RequestStats) {
        self.requests += o.requests;
        self.bytes_received += o.bytes_received;
        self.bytes_sent += o.bytes_sent;
        self.retries += o.retries;
    }
}

/// A stream's counters, readable after the stream itself moved to another task.
#[derive(Debug, Clone)]
pub struct StatsHandle(pub(crate) std::sync::Arc<AtomicStats>);

impl StatsHandle {
    pub fn snapshot(&self) -> RequestStats {
        self.0.snapshot()
    }
}

/// Shared, lock-free counters for streams whose network side runs on another task.
#[derive(Debug, Default)]
pub(crate) struct AtomicStats {
    pub requests: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub retries: AtomicU64,
}

impl AtomicStats {
    pub fn snapshot(&self) -> RequestStats {
        RequestStats {
            requests: self.requests.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }

    pub fn add_requests(&self, n: u64) {
        self.requests.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_received(&self, n: u64) {
        self.bytes_received.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_sent(&self, n: u64) {
        self.bytes_sent.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_retries(&self, n: u64) {
        self.retries.fetch_add(n, Ordering::Relaxed);
    }
}
