//! The Batch API's job table: jobs (a query, a list of queries, or queries with fallbacks), their statuses and
//! their JSON as CARTO shows it, each user's queue, cancel signals, and forgetting finished jobs after a TTL.
//! The HTTP handlers and the worker that runs the jobs are in `batch`.
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Notify;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Running,
    Done,
    Failed,
    Cancelled,
    Skipped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Skipped => "skipped",
        }
    }
    fn is_final(self) -> bool {
        matches!(self, Status::Done | Status::Failed | Status::Cancelled | Status::Skipped)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct QueryItem {
    pub(crate) query: String,
    pub(crate) status: Status,
    pub(crate) started_at: Option<String>,
    pub(crate) ended_at: Option<String>,
    pub(crate) failed_reason: Option<String>,
    pub(crate) onsuccess: Option<String>,
    pub(crate) onerror: Option<String>,
    pub(crate) fallback_status: Option<Status>,
    pub(crate) timeout_ms: Option<u64>,
}

impl QueryItem {
    fn new(q: String) -> QueryItem {
        QueryItem { query: q, status: Status::Pending, started_at: None, ended_at: None, failed_reason: None, onsuccess: None, onerror: None, fallback_status: None, timeout_ms: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Shape {
    Simple,
    Multiple,
    Fallback,
}

#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub(crate) id: String,
    pub(crate) user: String,
    pub(crate) database: String,
    pub(crate) role: String,
    shape: Shape,
    pub(crate) queries: Vec<QueryItem>,
    pub(crate) onsuccess: Option<String>,
    pub(crate) onerror: Option<String>,
    pub(crate) fallback_status: Option<Status>,
    pub(crate) status: Status,
    created_at: String,
    pub(crate) updated_at: String,
    failed_reason: Option<String>,
    finished: Option<Instant>,
}

pub(crate) fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Job {
    /// A new pending job of `user`, run in `database` as `role`.
    pub(crate) fn new(user: &str, database: &str, role: &str, parsed: Parsed) -> Job {
        let (shape, queries, onsuccess, onerror) = parsed;
        let now = now_iso();
        let fallback_status = if shape == Shape::Fallback && (onsuccess.is_some() || onerror.is_some()) { Some(Status::Pending) } else { None };
        Job {
            id: uuid::Uuid::new_v4().to_string(),
            user: user.to_string(),
            database: database.to_string(),
            role: role.to_string(),
            shape,
            queries,
            onsuccess,
            onerror,
            fallback_status,
            status: Status::Pending,
            created_at: now.clone(),
            updated_at: now,
            failed_reason: None,
            finished: None,
        }
    }

    pub(crate) fn serialize(&self) -> Value {
        let mut m = Map::new();
        m.insert("user".into(), json!(self.user));
        m.insert("status".into(), json!(self.status.as_str()));
        let item = |q: &QueryItem, fallback: bool| {
            let mut o = Map::new();
            o.insert("query".into(), json!(q.query));
            if fallback {
                if let Some(s) = &q.onsuccess {
                    o.insert("onsuccess".into(), json!(s));
                }
                if let Some(s) = &q.onerror {
                    o.insert("onerror".into(), json!(s));
                }
                if let Some(t) = q.timeout_ms {
                    o.insert("timeout".into(), json!(t));
                }
            }
            o.insert("status".into(), json!(q.status.as_str()));
            // Items of a plain array job carry only query and status (as CARTO's).
            if !fallback {
                return Value::Object(o);
            }
            if let Some(s) = &q.started_at {
                o.insert("started_at".into(), json!(s));
            }
            if let Some(s) = &q.ended_at {
                o.insert("ended_at".into(), json!(s));
            }
            if let Some(s) = &q.failed_reason {
                o.insert("failed_reason".into(), json!(s));
            }
            if let Some(s) = q.fallback_status {
                o.insert("fallback_status".into(), json!(s.as_str()));
            }
            Value::Object(o)
        };
        let query = match self.shape {
            Shape::Simple => json!(self.queries.first().map(|q| q.query.clone()).unwrap_or_default()),
            Shape::Multiple => Value::Array(self.queries.iter().map(|q| item(q, false)).collect()),
            Shape::Fallback => {
                let mut o = Map::new();
                o.insert("query".into(), Value::Array(self.queries.iter().map(|q| item(q, true)).collect()));
                if let Some(s) = &self.onsuccess {
                    o.insert("onsuccess".into(), json!(s));
                }
                if let Some(s) = &self.onerror {
                    o.insert("onerror".into(), json!(s));
                }
                Value::Object(o)
            }
        };
        m.insert("query".into(), query);
        m.insert("created_at".into(), json!(self.created_at));
        m.insert("updated_at".into(), json!(self.updated_at));
        // The fallback form reports failures per query only.
        if let Some(s) = self.failed_reason.as_ref().filter(|_| self.shape != Shape::Fallback) {
            m.insert("failed_reason".into(), json!(s));
        }
        if let Some(s) = self.fallback_status {
            m.insert("fallback_status".into(), json!(s.as_str()));
        }
        m.insert("job_id".into(), json!(self.id));
        Value::Object(m)
    }
}

#[derive(Default)]
pub struct Batch {
    jobs: Mutex<HashMap<String, Job>>,
    /// Ids of jobs dropped after their TTL (GET answers 404 for them).
    forgotten: Mutex<HashSet<String>>,
    queues: Mutex<HashMap<String, VecDeque<String>>>,
    running_users: Mutex<HashSet<String>>,
    /// Signalled when a job is cancelled (a stored permit, so a cancel is never missed).
    cancels: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Batch {
    pub fn new() -> Arc<Batch> {
        Arc::new(Batch::default())
    }

    pub(crate) fn with_job<R>(&self, id: &str, f: impl FnOnce(&mut Job) -> R) -> Option<R> {
        self.jobs.lock().ok()?.get_mut(id).map(f)
    }

    /// Forget finished jobs older than the TTL.
    pub(crate) fn expire(&self, ttl_secs: f64) {
        let Ok(mut jobs) = self.jobs.lock() else { return };
        let old: Vec<String> = jobs
            .values()
            .filter(|j| j.finished.is_some_and(|t| t.elapsed().as_secs_f64() >= ttl_secs))
            .map(|j| j.id.clone())
            .collect();
        for id in old {
            jobs.remove(&id);
            if let Ok(mut f) = self.forgotten.lock() {
                f.insert(id);
            }
        }
    }

    /// Whether `id` was a job forgotten after its TTL.
    pub(crate) fn is_forgotten(&self, id: &str) -> bool {
        self.forgotten.lock().map(|f| f.contains(id)).unwrap_or(false)
    }

    pub(crate) fn pending_of(&self, user: &str) -> usize {
        self.jobs.lock().map(|j| j.values().filter(|x| x.user == user && x.status == Status::Pending).count()).unwrap_or(0)
    }

    /// Store a new job and queue it behind its user's others.
    pub(crate) fn add(&self, job: Job) {
        let (id, user) = (job.id.clone(), job.user.clone());
        if let Ok(mut j) = self.jobs.lock() {
            j.insert(id.clone(), job);
        }
        if let Ok(mut c) = self.cancels.lock() {
            c.insert(id.clone(), Arc::new(Notify::new()));
        }
        if let Ok(mut q) = self.queues.lock() {
            q.entry(user).or_default().push_back(id);
        }
    }

    /// Cancel a pending or running job of `user`: its JSON, or why not (`None`: no such job of this user).
    pub(crate) fn cancel(&self, id: &str, user: &str) -> Result<Value, Option<String>> {
        let r = self.with_job(id, |j| {
            if j.user != user {
                return Err(None);
            }
            match j.status {
                Status::Pending | Status::Running => {
                    j.status = Status::Cancelled;
                    j.updated_at = now_iso();
                    j.finished = Some(Instant::now());
                    for q in j.queries.iter_mut() {
                        if !q.status.is_final() {
                            q.status = Status::Cancelled;
                        }
                    }
                    Ok(j.serialize())
                }
                s => Err(Some(format!("Cannot set status from {} to cancelled", s.as_str()))),
            }
        });
        let v = r.unwrap_or(Err(None))?;
        if let Some(n) = self.cancels.lock().ok().and_then(|c| c.get(id).cloned()) {
            n.notify_one();
        }
        Ok(v)
    }

    /// The signal a running job waits on for its cancel (a stored permit, so a cancel is never missed).
    pub(crate) fn cancel_signal(&self, id: &str) -> Arc<Notify> {
        self.cancels.lock().ok().and_then(|c| c.get(id).cloned()).unwrap_or_default()
    }

    pub(crate) fn drop_cancel_signal(&self, id: &str) {
        if let Ok(mut c) = self.cancels.lock() {
            c.remove(id);
        }
    }

    /// Mark `user`'s worker as running: false when it already was.
    pub(crate) fn claim_worker(&self, user: &str) -> bool {
        self.running_users.lock().is_ok_and(|mut r| r.insert(user.to_string()))
    }

    /// The next queued job of `user`.
    pub(crate) fn next_job(&self, user: &str) -> Option<String> {
        self.queues.lock().ok().and_then(|mut q| q.get_mut(user).and_then(|v| v.pop_front()))
    }

    /// Let `user`'s worker stop, unless a job was queued meanwhile (checked under the lock, so none is missed).
    pub(crate) fn release_worker(&self, user: &str) -> bool {
        if let (Ok(mut r), Ok(q)) = (self.running_users.lock(), self.queues.lock()) {
            if q.get(user).is_none_or(|v| v.is_empty()) {
                r.remove(user);
                return true;
            }
        }
        false
    }

    /// A job's end (unless it was cancelled meanwhile).
    pub(crate) fn finish(&self, id: &str, status: Status, reason: Option<String>) {
        self.with_job(id, |j| {
            if j.status == Status::Cancelled {
                return;
            }
            j.status = status;
            j.failed_reason = reason;
            j.updated_at = now_iso();
            j.finished = Some(Instant::now());
        });
    }
}

/// (shape, queries, job onsuccess, job onerror)
pub(crate) type Parsed = (Shape, Vec<QueryItem>, Option<String>, Option<String>);

pub(crate) fn parse_query(v: &Value) -> Option<Parsed> {
    let s = |x: Option<&Value>| x.and_then(|v| v.as_str()).map(str::to_string);
    match v {
        Value::String(q) if !q.trim().is_empty() => Some((Shape::Simple, vec![QueryItem::new(q.clone())], None, None)),
        Value::Array(a) if !a.is_empty() => {
            let mut items = Vec::new();
            for x in a {
                items.push(QueryItem::new(x.as_str().filter(|q| !q.trim().is_empty())?.to_string()));
            }
            Some((Shape::Multiple, items, None, None))
        }
        Value::Object(o) => {
            let list = o.get("query")?.as_array().filter(|a| !a.is_empty())?;
            let mut items = Vec::new();
            for x in list {
                let q = x.get("query")?.as_str().filter(|q| !q.trim().is_empty())?;
                let mut it = QueryItem::new(q.to_string());
                it.onsuccess = s(x.get("onsuccess"));
                it.onerror = s(x.get("onerror"));
                it.timeout_ms = x.get("timeout").and_then(|t| t.as_u64());
                if it.onsuccess.is_some() || it.onerror.is_some() {
                    it.fallback_status = Some(Status::Pending);
                }
                items.push(it);
            }
            Some((Shape::Fallback, items, s(o.get("onsuccess")), s(o.get("onerror"))))
        }
        _ => None,
    }
}
