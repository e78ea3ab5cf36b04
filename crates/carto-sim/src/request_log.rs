//! A log of requests that tests can read (and clear) through the admin API.
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub id: u64,
    pub method: String,
    pub path: String,
    pub group: Option<String>,
    pub user: Option<String>,
    pub key_kind: Option<String>,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_ms: f64,
    pub aborted: bool,
    /// An upload whose client left unnoticed: its COPY was left open (see upload_race).
    pub left_open: bool,
    pub error: Option<String>,
    pub started_at: String,
}

/// The live record of one request, finished when its response body ends or is dropped.
pub struct Record {
    pub id: u64,
    pub method: String,
    pub path: String,
    pub started: Instant,
    pub started_at: String,
    pub group: Mutex<Option<String>>,
    pub user: Mutex<Option<String>>,
    pub key_kind: Mutex<Option<String>>,
    pub status: Mutex<u16>,
    pub error: Mutex<Option<String>>,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub aborted: AtomicBool,
    pub left_open: AtomicBool,
    done: AtomicBool,
}

impl Record {
    pub fn set<T>(m: &Mutex<T>, v: T) {
        if let Ok(mut g) = m.lock() {
            *g = v;
        }
    }
    pub fn add_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }
    /// The client left unnoticed and the COPY stays open: no answer is written, and that is no abort.
    pub fn leave_open(&self, why: &str) {
        self.left_open.store(true, Ordering::Relaxed);
        if let Ok(mut e) = self.error.lock() {
            *e = Some(why.to_string());
        }
    }
    pub fn abort(&self, why: &str) {
        if self.left_open.load(Ordering::Relaxed) {
            return;
        }
        self.aborted.store(true, Ordering::Relaxed);
        if let Ok(mut e) = self.error.lock() {
            if e.is_none() {
                *e = Some(why.to_string());
            }
        }
    }
}

#[derive(Default)]
pub struct RequestLog {
    entries: Mutex<VecDeque<Entry>>,
    next: AtomicU64,
    /// Also print each entry on stderr.
    pub echo: AtomicBool,
}

impl RequestLog {
    pub fn start(&self, method: &str, path: &str) -> Record {
        Record {
            id: self.next.fetch_add(1, Ordering::Relaxed) + 1,
            method: method.to_string(),
            path: path.to_string(),
            started: Instant::now(),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            group: Mutex::new(None),
            user: Mutex::new(None),
            key_kind: Mutex::new(None),
            status: Mutex::new(0),
            error: Mutex::new(None),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            aborted: AtomicBool::new(false),
            left_open: AtomicBool::new(false),
            done: AtomicBool::new(false),
        }
    }

    /// Store the record (once).
    pub fn finish(&self, r: &Record) {
        if r.done.swap(true, Ordering::SeqCst) {
            return;
        }
        // Held while the record is read, so that an `amend` racing with this sees the stored entry.
        let Ok(mut entries) = self.entries.lock() else { return };
        let get = |m: &Mutex<Option<String>>| m.lock().ok().and_then(|g| g.clone());
        let e = Entry {
            id: r.id,
            method: r.method.clone(),
            path: r.path.clone(),
            group: get(&r.group),
            user: get(&r.user),
            key_kind: get(&r.key_kind),
            status: r.status.lock().map(|s| *s).unwrap_or(0),
            bytes_in: r.bytes_in.load(Ordering::Relaxed),
            bytes_out: r.bytes_out.load(Ordering::Relaxed),
            duration_ms: r.started.elapsed().as_secs_f64() * 1000.0,
            aborted: r.aborted.load(Ordering::Relaxed),
            left_open: r.left_open.load(Ordering::Relaxed),
            error: get(&r.error),
            started_at: r.started_at.clone(),
        };
        if self.echo.load(Ordering::Relaxed) {
            eprintln!(
                "carto-sim: {} {} {} user={} key={} in={}B out={}B {:.1}ms{}",
                e.method,
                e.path,
                e.status,
                e.user.as_deref().unwrap_or("-"),
                e.key_kind.as_deref().unwrap_or("-"),
                e.bytes_in,
                e.bytes_out,
                e.duration_ms,
                if e.left_open {
                    " left open".to_string()
                } else if e.aborted {
                    format!(" aborted ({})", e.error.as_deref().unwrap_or(""))
                } else {
                    String::new()
                }
            );
        }
        if entries.len() >= MAX_ENTRIES {
            entries.pop_front();
        }
        entries.push_back(e);
    }

    /// Change the error of a request, logged or not yet (a left-open upload's COPY ends long after its
    /// request was logged).
    pub fn set_error(&self, r: &Record, error: String) {
        Record::set(&r.error, Some(error.clone()));
        if let Ok(mut v) = self.entries.lock() {
            if let Some(e) = v.iter_mut().rev().find(|e| e.id == r.id) {
                e.error = Some(error);
            }
        }
    }

    pub fn entries(&self) -> Vec<Entry> {
        self.entries.lock().map(|v| v.iter().cloned().collect()).unwrap_or_default()
    }

    pub fn clear(&self) {
        if let Ok(mut v) = self.entries.lock() {
            v.clear();
        }
    }
}
