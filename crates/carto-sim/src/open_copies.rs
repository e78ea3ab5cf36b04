//! The COPYs that CARTO's upload race left open (see `upload_race`): listed by `/_sim/open_copies`, which also
//! lets tests end them.
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::oneshot;

/// One COPY left open by the race, as `/_sim/open_copies` lists it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct OpenCopy {
    pub id: u64,
    /// The request log id of the upload.
    pub request_id: u64,
    pub user: String,
    pub query: String,
    /// The PostgreSQL backend running the COPY.
    pub pid: i32,
    pub opened_at: String,
}

/// A request to end an open COPY; the keeper answers once the COPY is rolled back.
pub(crate) type EndRequest = oneshot::Sender<()>;

struct Slot {
    info: OpenCopy,
    end: Option<oneshot::Sender<EndRequest>>,
}

/// The COPYs currently left open.
#[derive(Default)]
pub struct OpenCopies {
    next: AtomicU64,
    slots: Mutex<BTreeMap<u64, Slot>>,
}

impl OpenCopies {
    pub fn list(&self) -> Vec<OpenCopy> {
        self.slots.lock().map(|m| m.values().map(|s| s.info.clone()).collect()).unwrap_or_default()
    }

    pub(crate) fn add(&self, mut info: OpenCopy) -> (u64, oneshot::Receiver<EndRequest>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        info.id = id;
        let (tx, rx) = oneshot::channel();
        if let Ok(mut m) = self.slots.lock() {
            m.insert(id, Slot { info, end: Some(tx) });
        }
        (id, rx)
    }

    pub(crate) fn remove(&self, id: u64) {
        if let Ok(mut m) = self.slots.lock() {
            m.remove(&id);
        }
    }

    /// Roll back the given open COPYs (all when `id` is None); resolves once they are rolled back (at most
    /// `wait`), with how many were asked to end.
    pub async fn end(&self, id: Option<u64>, wait: Duration) -> usize {
        let mut done = Vec::new();
        if let Ok(mut m) = self.slots.lock() {
            for (k, s) in m.iter_mut() {
                if id.is_some_and(|i| i != *k) {
                    continue;
                }
                if let Some(end) = s.end.take() {
                    let (tx, rx) = oneshot::channel();
                    if end.send(tx).is_ok() {
                        done.push(rx);
                    }
                }
            }
        }
        let n = done.len();
        let _ = tokio::time::timeout(wait, futures_util::future::join_all(done)).await;
        n
    }
}
