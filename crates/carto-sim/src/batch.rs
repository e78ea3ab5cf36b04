//! The Batch SQL API: jobs (a query, a list of queries, or queries with fallbacks), a worker per user
//! running them in order as the user's owner role, cancel, and forgetting finished jobs after a TTL.
use crate::errors::{json_response, ApiError};
use crate::server::{AppState, Ctx};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Notify;
use tokio_postgres::{Client, CancelToken, NoTls};

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
struct QueryItem {
    query: String,
    status: Status,
    started_at: Option<String>,
    ended_at: Option<String>,
    failed_reason: Option<String>,
    onsuccess: Option<String>,
    onerror: Option<String>,
    fallback_status: Option<Status>,
    timeout_ms: Option<u64>,
}

impl QueryItem {
    fn new(q: String) -> QueryItem {
        QueryItem { query: q, status: Status::Pending, started_at: None, ended_at: None, failed_reason: None, onsuccess: None, onerror: None, fallback_status: None, timeout_ms: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    Simple,
    Multiple,
    Fallback,
}

#[derive(Debug, Clone)]
struct Job {
    id: String,
    user: String,
    database: String,
    role: String,
    shape: Shape,
    queries: Vec<QueryItem>,
    onsuccess: Option<String>,
    onerror: Option<String>,
    fallback_status: Option<Status>,
    status: Status,
    created_at: String,
    updated_at: String,
    failed_reason: Option<String>,
    finished: Option<Instant>,
}

fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Job {
    fn serialize(&self) -> Value {
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

    fn with_job<R>(&self, id: &str, f: impl FnOnce(&mut Job) -> R) -> Option<R> {
        self.jobs.lock().ok()?.get_mut(id).map(f)
    }

    /// Forget finished jobs older than the TTL.
    fn expire(&self, ttl_secs: f64) {
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
}

fn not_found(id: &str) -> Response {
    ApiError::bad_request(format!("Job with id {id} not found")).into_response()
}

fn invalid_sql() -> Response {
    ApiError::bad_request("You must indicate a valid SQL").into_response()
}

/// (shape, queries, job onsuccess, job onerror)
type Parsed = (Shape, Vec<QueryItem>, Option<String>, Option<String>);

fn parse_query(v: &Value) -> Option<Parsed> {
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

/// CARTO's payload limit of job creation, on `JSON.stringify(req.body)`; checked before the rate limit.
pub fn check_payload(
    json_body: Option<&Value>,
    params: &HashMap<String, String>,
    query: &HashMap<String, String>,
    max: usize,
) -> Result<(), ApiError> {
    let payload = match json_body {
        Some(v) => v.to_string(),
        None => {
            let body: Map<String, Value> = params.iter().filter(|(k, _)| !query.contains_key(*k)).map(|(k, v)| (k.clone(), json!(v))).collect();
            Value::Object(body).to_string()
        }
    };
    if payload.len() > max {
        return Err(ApiError::bad_request(format!(
            "Your payload is too large: {} bytes. Max size allowed is {} bytes ({}kb). Are you trying to import data?. Please, check out import api http://docs.cartodb.com/cartodb-platform/import-api/",
            payload.len(),
            max,
            (max as f64 / 1024.0).round()
        )));
    }
    Ok(())
}

pub async fn create(ctx: Ctx) -> Response {
    let state = &ctx.state;
    let limits = state.limits();
    let qv = match &ctx.json_body {
        Some(v) => v.get("query").cloned(),
        None => ctx.params.get("query").map(|s| json!(s)),
    };
    let Some((shape, queries, onsuccess, onerror)) = qv.as_ref().and_then(parse_query) else {
        return invalid_sql();
    };
    let batch = state.batch.clone();
    batch.expire(limits.batch_ttl_secs);
    let user = ctx.account.name.clone();
    let pending = batch.jobs.lock().map(|j| j.values().filter(|x| x.user == user && x.status == Status::Pending).count()).unwrap_or(0);
    if pending >= limits.batch_max_queued {
        return ApiError::bad_request(format!("Failed to create job. Max number of jobs ({}) queued reached", limits.batch_max_queued)).into_response();
    }
    let now = now_iso();
    let fallback_status = if shape == Shape::Fallback && (onsuccess.is_some() || onerror.is_some()) { Some(Status::Pending) } else { None };
    let job = Job {
        id: uuid::Uuid::new_v4().to_string(),
        user: user.clone(),
        database: ctx.account.database.clone(),
        role: ctx.account.owner_role.clone(),
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
    };
    let body = job.serialize().to_string();
    let id = job.id.clone();
    if let Ok(mut j) = batch.jobs.lock() {
        j.insert(id.clone(), job);
    }
    if let Ok(mut c) = batch.cancels.lock() {
        c.insert(id.clone(), Arc::new(Notify::new()));
    }
    if let Ok(mut q) = batch.queues.lock() {
        q.entry(user.clone()).or_default().push_back(id);
    }
    kick(state.clone(), user);
    json_response(StatusCode::CREATED, body)
}

pub async fn get(ctx: Ctx) -> Response {
    let id = ctx.job_id.clone().unwrap_or_default();
    let batch = &ctx.state.batch;
    batch.expire(ctx.state.limits().batch_ttl_secs);
    match batch.with_job(&id, |j| (j.user.clone(), j.serialize())) {
        Some((u, v)) if u == ctx.account.name => json_response(StatusCode::OK, v.to_string()),
        _ => {
            if batch.forgotten.lock().map(|f| f.contains(&id)).unwrap_or(false) {
                ApiError::new(StatusCode::NOT_FOUND, format!("Job with id {id} not found")).into_response()
            } else {
                not_found(&id)
            }
        }
    }
}

pub async fn cancel(ctx: Ctx) -> Response {
    let id = ctx.job_id.clone().unwrap_or_default();
    let batch = &ctx.state.batch;
    batch.expire(ctx.state.limits().batch_ttl_secs);
    let r = batch.with_job(&id, |j| {
        if j.user != ctx.account.name {
            return Err(None);
        }
        match j.status {
            Status::Pending | Status::Running => {
                let was_running = j.status == Status::Running;
                j.status = Status::Cancelled;
                j.updated_at = now_iso();
                j.finished = Some(Instant::now());
                for q in j.queries.iter_mut() {
                    if !q.status.is_final() {
                        q.status = Status::Cancelled;
                    }
                }
                Ok((was_running, j.serialize()))
            }
            s => Err(Some(format!("Cannot set status from {} to cancelled", s.as_str()))),
        }
    });
    match r {
        None | Some(Err(None)) => not_found(&id),
        Some(Err(Some(msg))) => ApiError::bad_request(msg).into_response(),
        Some(Ok((_was_running, v))) => {
            if let Some(n) = batch.cancels.lock().ok().and_then(|c| c.get(&id).cloned()) {
                n.notify_one();
            }
            json_response(StatusCode::OK, v.to_string())
        }
    }
}

/// Start the user's worker unless it is already running.
fn kick(state: Arc<AppState>, user: String) {
    {
        let Ok(mut r) = state.batch.running_users.lock() else { return };
        if !r.insert(user.clone()) {
            return;
        }
    }
    tokio::spawn(async move {
        loop {
            let next = state.batch.queues.lock().ok().and_then(|mut q| q.get_mut(&user).and_then(|v| v.pop_front()));
            match next {
                Some(id) => run_job(&state, &id).await,
                None => {
                    // Re-check under the lock so a job queued right now is not missed.
                    if let (Ok(mut r), Ok(q)) = (state.batch.running_users.lock(), state.batch.queues.lock()) {
                        if q.get(&user).is_none_or(|v| v.is_empty()) {
                            r.remove(&user);
                            return;
                        }
                    }
                }
            }
        }
    });
}

/// Run `sql`, cancelling the backend query when the job is cancelled meanwhile.
async fn cancellable(client: &Client, token: &CancelToken, notify: &Notify, sql: &str) -> Result<(), tokio_postgres::Error> {
    let run = client.batch_execute(sql);
    futures_util::pin_mut!(run);
    tokio::select! {
        r = &mut run => r,
        _ = notify.notified() => {
            let _ = token.cancel_query(NoTls).await;
            run.await
        }
    }
}

/// Kept for symmetry with `serve`: the worker starts on demand, nothing runs at startup.
pub fn start_worker(_state: Arc<AppState>) {}

fn pg_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string())
}

fn template(s: &str, job_id: &str, error: Option<&str>) -> String {
    s.replace("<%= job_id %>", job_id).replace("<%= error_message %>", error.unwrap_or(""))
}

async fn run_job(state: &Arc<AppState>, id: &str) {
    let batch = state.batch.clone();
    let Some(job) = batch.with_job(id, |j| {
        if j.status != Status::Pending {
            return None;
        }
        j.status = Status::Running;
        j.updated_at = now_iso();
        Some(j.clone())
    }) else {
        return;
    };
    let Some(job) = job else { return };
    let limits = state.limits();
    let conn = match crate::pool::connect(&state.pg_base, &job.database, &job.role, &crate::accounts::role_password(&state.config.secret, &job.role)).await {
        Ok(c) => c,
        Err(e) => {
            finish(&batch, id, Status::Failed, Some(e.to_string()));
            return;
        }
    };
    let notify = batch.cancels.lock().ok().and_then(|c| c.get(id).cloned()).unwrap_or_default();
    let cancelled = |b: &Batch| b.with_job(id, |j| j.status == Status::Cancelled).unwrap_or(true);
    let mut failed: Option<String> = None;
    for i in 0..job.queries.len() {
        if cancelled(&batch) {
            break;
        }
        let q = job.queries[i].clone();
        if failed.is_some() {
            batch.with_job(id, |j| j.queries[i].status = Status::Skipped);
            continue;
        }
        batch.with_job(id, |j| {
            j.queries[i].status = Status::Running;
            j.queries[i].started_at = Some(now_iso());
            j.updated_at = now_iso();
        });
        let timeout = q.timeout_ms.unwrap_or(limits.batch_statement_timeout_ms);
        let res = match conn.client.batch_execute(&format!("SET statement_timeout = {timeout}")).await {
            Ok(()) => cancellable(&conn.client, &conn.cancel, &notify, &q.query).await,
            Err(e) => Err(e),
        };
        let err = res.err().map(|e| pg_message(&e));
        if cancelled(&batch) {
            break;
        }
        // Per-query fallbacks.
        let mut fb_status = None;
        let mut fb_err = None;
        let fb = match &err {
            None => q.onsuccess.as_ref().map(|s| template(s, id, None)),
            Some(e) => q.onerror.as_ref().map(|s| template(s, id, Some(e))),
        };
        if let Some(sql) = fb {
            // `<%= error_message %>` is pasted as is (unquoted), so such a fallback usually fails: CARTO then
            // reports the fallback's error as the query's failed_reason.
            fb_err = conn.client.batch_execute(&sql).await.err().map(|e| pg_message(&e));
            fb_status = Some(if fb_err.is_none() { Status::Done } else { Status::Failed });
        } else if q.fallback_status.is_some() {
            fb_status = Some(Status::Skipped);
        }
        batch.with_job(id, |j| {
            let it = &mut j.queries[i];
            it.ended_at = Some(now_iso());
            it.status = if err.is_some() { Status::Failed } else { Status::Done };
            it.failed_reason = fb_err.clone().or_else(|| err.clone());
            if fb_status.is_some() {
                it.fallback_status = fb_status;
            }
            j.updated_at = now_iso();
        });
        if let Some(e) = err {
            failed = Some(e);
        }
    }
    if let Ok(mut c) = batch.cancels.lock() {
        c.remove(id);
    }
    if cancelled(&batch) {
        return;
    }
    // Job-level fallbacks.
    let job_fb = match &failed {
        None => job.onsuccess.as_ref().map(|s| template(s, id, None)),
        Some(e) => job.onerror.as_ref().map(|s| template(s, id, Some(e))),
    };
    let mut job_fb_status = None;
    if let Some(sql) = job_fb {
        job_fb_status = Some(if conn.client.batch_execute(&sql).await.is_ok() { Status::Done } else { Status::Failed });
    } else if job.fallback_status.is_some() {
        job_fb_status = Some(Status::Skipped);
    }
    batch.with_job(id, |j| {
        if job_fb_status.is_some() {
            j.fallback_status = job_fb_status;
        }
    });
    match failed {
        None => finish(&batch, id, Status::Done, None),
        Some(e) => finish(&batch, id, Status::Failed, Some(e)),
    }
}

fn finish(batch: &Batch, id: &str, status: Status, reason: Option<String>) {
    batch.with_job(id, |j| {
        if j.status == Status::Cancelled {
            return;
        }
        j.status = status;
        j.failed_reason = reason;
        j.updated_at = now_iso();
        j.finished = Some(Instant::now());
    });
}
