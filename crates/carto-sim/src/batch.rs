//! The Batch SQL API's handlers (create, read, cancel) and its worker: one per user, running the user's jobs in
//! order as the user's owner role. The jobs themselves are kept in `jobs`.
use crate::errors::{json_response, ApiError};
use crate::jobs::{now_iso, parse_query, Batch, Job, QueryItem, Status};
use crate::state::{AppState, Ctx};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio_postgres::{Client, CancelToken, NoTls};

fn not_found(id: &str) -> Response {
    ApiError::bad_request(format!("Job with id {id} not found")).into_response()
}

fn invalid_sql() -> Response {
    ApiError::bad_request("You must indicate a valid SQL").into_response()
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
    let Some(parsed) = qv.as_ref().and_then(parse_query) else {
        return invalid_sql();
    };
    let batch = state.batch.clone();
    batch.expire(limits.batch_ttl_secs);
    let user = ctx.account.name.clone();
    if batch.pending_of(&user) >= limits.batch_max_queued {
        return ApiError::bad_request(format!("Failed to create job. Max number of jobs ({}) queued reached", limits.batch_max_queued)).into_response();
    }
    let job = Job::new(&user, &ctx.account.database, &ctx.account.owner_role, parsed);
    let body = job.serialize().to_string();
    batch.add(job);
    kick(state.clone(), user);
    json_response(StatusCode::CREATED, body)
}

pub async fn get(ctx: Ctx) -> Response {
    let id = ctx.job_id.clone().unwrap_or_default();
    let batch = &ctx.state.batch;
    batch.expire(ctx.state.limits().batch_ttl_secs);
    match batch.with_job(&id, |j| (j.user.clone(), j.serialize())) {
        Some((u, v)) if u == ctx.account.name => json_response(StatusCode::OK, v.to_string()),
        _ if batch.is_forgotten(&id) => ApiError::new(StatusCode::NOT_FOUND, format!("Job with id {id} not found")).into_response(),
        _ => not_found(&id),
    }
}

pub async fn cancel(ctx: Ctx) -> Response {
    let id = ctx.job_id.clone().unwrap_or_default();
    let batch = &ctx.state.batch;
    batch.expire(ctx.state.limits().batch_ttl_secs);
    match batch.cancel(&id, &ctx.account.name) {
        Ok(v) => json_response(StatusCode::OK, v.to_string()),
        Err(None) => not_found(&id),
        Err(Some(msg)) => ApiError::bad_request(msg).into_response(),
    }
}

/// Start the user's worker unless it is already running.
fn kick(state: Arc<AppState>, user: String) {
    if !state.batch.claim_worker(&user) {
        return;
    }
    tokio::spawn(async move {
        loop {
            match state.batch.next_job(&user) {
                Some(id) => run_job(&state, &id).await,
                None if state.batch.release_worker(&user) => return,
                None => {}
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
    let default_timeout = state.limits().batch_statement_timeout_ms;
    let conn = match crate::pool::connect(&state.pg_base, &job.database, &job.role, &crate::accounts::role_password(&state.config.secret, &job.role)).await {
        Ok(c) => c,
        Err(e) => {
            batch.finish(id, Status::Failed, Some(e.to_string()));
            return;
        }
    };
    let notify = batch.cancel_signal(id);
    let mut failed: Option<String> = None;
    for (i, q) in job.queries.iter().enumerate() {
        if cancelled(&batch, id) {
            break;
        }
        if failed.is_some() {
            batch.with_job(id, |j| j.queries[i].status = Status::Skipped);
            continue;
        }
        match run_item(&batch, &conn, &notify, id, i, q, default_timeout).await {
            ControlFlow::Break(()) => break,
            ControlFlow::Continue(err) => failed = err,
        }
    }
    batch.drop_cancel_signal(id);
    if cancelled(&batch, id) {
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
        None => batch.finish(id, Status::Done, None),
        Some(e) => batch.finish(id, Status::Failed, Some(e)),
    }
}

fn cancelled(batch: &Batch, id: &str) -> bool {
    batch.with_job(id, |j| j.status == Status::Cancelled).unwrap_or(true)
}

/// Run query `i` of job `id` and its fallback: its error, or Break when the job was cancelled meanwhile.
async fn run_item(
    batch: &Batch,
    conn: &crate::pool::PgConn,
    notify: &Notify,
    id: &str,
    i: usize,
    q: &QueryItem,
    default_timeout: u64,
) -> ControlFlow<(), Option<String>> {
    batch.with_job(id, |j| {
        j.queries[i].status = Status::Running;
        j.queries[i].started_at = Some(now_iso());
        j.updated_at = now_iso();
    });
    let timeout = q.timeout_ms.unwrap_or(default_timeout);
    let res = match conn.client.batch_execute(&format!("SET statement_timeout = {timeout}")).await {
        Ok(()) => cancellable(&conn.client, &conn.cancel, notify, &q.query).await,
        Err(e) => Err(e),
    };
    let err = res.err().map(|e| pg_message(&e));
    if cancelled(batch, id) {
        return ControlFlow::Break(());
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
    ControlFlow::Continue(err)
}
