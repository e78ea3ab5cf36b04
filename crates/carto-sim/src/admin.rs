//! The admin API under `/_sim/` (off unless `[admin] enabled = true`): fault injection, run-time
//! plans and limits, the request log, rate-limit reset and grant re-application. Never part of CARTO.
use crate::errors::{json_response, ApiError};
use crate::faults::FaultSpec;
use crate::rate_limit::{Group, RateSpec};
use crate::state::AppState;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// How long ending open COPYs may take before the admin API answers anyway.
const END_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

fn ok(v: Value) -> Response {
    json_response(StatusCode::OK, v.to_string())
}

fn err(status: StatusCode, msg: impl Into<String>) -> Response {
    ApiError::new(status, msg).into_response()
}

pub async fn handle(state: Arc<AppState>, req: Request) -> Response {
    if !state.config.admin.enabled {
        return err(StatusCode::NOT_FOUND, "admin API disabled");
    }
    if let Some(t) = &state.config.admin.token {
        let given = req.headers().get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
        if !crate::accounts::ct_eq(given.trim(), t) {
            return err(StatusCode::UNAUTHORIZED, "admin token required");
        }
    }
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_string();
    let bytes = match axum::body::to_bytes(req.into_body(), 1024 * 1024).await {
        Ok(b) => b,
        Err(e) => return err(StatusCode::BAD_REQUEST, format!("body: {e}")),
    };
    let body: Value = if bytes.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => return err(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")),
        }
    };
    let segs: Vec<&str> = path.trim_start_matches("/_sim").split('/').filter(|s| !s.is_empty()).collect();
    match (method, segs.as_slice()) {
        (Method::GET, ["health"]) => ok(json!({"ok": true})),
        (Method::GET, ["log"]) => ok(json!(state.log.entries())),
        (Method::DELETE, ["log"]) => {
            state.log.clear();
            ok(json!({"ok": true}))
        }
        (Method::GET, ["faults"]) => ok(json!(state.faults.list())),
        (Method::DELETE, ["faults"]) => {
            state.faults.clear();
            ok(json!({"ok": true}))
        }
        (Method::POST, ["faults"]) => match serde_json::from_value::<FaultSpec>(body) {
            Ok(spec) => match state.faults.add(spec) {
                Ok(id) => ok(json!({"id": id})),
                Err(e) => err(StatusCode::BAD_REQUEST, e),
            },
            Err(e) => err(StatusCode::BAD_REQUEST, format!("invalid fault: {e}")),
        },
        (Method::GET, ["limits"]) => ok(json!(state.limits())),
        (Method::POST | Method::PATCH | Method::PUT, ["limits"]) => {
            // Merge the given fields into the current limits.
            let mut cur = serde_json::to_value(state.limits()).unwrap_or(json!({}));
            if let (Some(c), Some(b)) = (cur.as_object_mut(), body.as_object()) {
                for (k, v) in b {
                    c.insert(k.clone(), v.clone());
                }
            }
            match serde_json::from_value::<crate::config::Limits>(cur) {
                Ok(l) => {
                    state.pool.max_idle.store(l.pool_max_idle, std::sync::atomic::Ordering::Relaxed);
                    if let Ok(mut w) = state.limits.write() {
                        *w = l.clone();
                    }
                    ok(json!(l))
                }
                Err(e) => err(StatusCode::BAD_REQUEST, format!("invalid limits: {e}")),
            }
        }
        (Method::GET, ["users", user]) => match state.user_runtime(user) {
            Some(r) => ok(json!(r)),
            None => err(StatusCode::NOT_FOUND, format!("no user {user}")),
        },
        (Method::POST | Method::PATCH | Method::PUT, ["users", user]) => update_user(&state, user, &body),
        (Method::POST, ["rate_limits", "reset"]) => {
            state.rate.reset();
            ok(json!({"ok": true}))
        }
        (Method::POST, ["grants"]) => match crate::setup::reapply_grants(&state.config).await {
            Ok(w) => ok(json!({"ok": true, "warnings": w})),
            Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        (Method::GET, ["open_copies"]) => {
            let l = state.open_copies.list();
            ok(json!({"count": l.len(), "open_copies": l}))
        }
        (Method::DELETE, ["open_copies"]) => {
            let n = state.open_copies.end(None, END_WAIT).await;
            ok(json!({"ended": n}))
        }
        (Method::DELETE, ["open_copies", id]) => match id.parse::<u64>() {
            Ok(id) => match state.open_copies.end(Some(id), END_WAIT).await {
                0 => err(StatusCode::NOT_FOUND, format!("no open COPY {id}")),
                n => ok(json!({"ended": n})),
            },
            Err(_) => err(StatusCode::BAD_REQUEST, format!("bad id {id}")),
        },
        (Method::POST, ["pool", "clear"]) => {
            state.pool.clear();
            ok(json!({"ok": true}))
        }
        _ => err(StatusCode::NOT_FOUND, format!("no admin route {path}")),
    }
}

/// `{"plan": "free", "statement_timeout_ms": 100, "rate_limits": {"query": {"count":1,"period_secs":1}, "copy_to": null}}`
fn update_user(state: &AppState, user: &str, body: &Value) -> Response {
    let Ok(mut users) = state.users.write() else {
        return err(StatusCode::INTERNAL_SERVER_ERROR, "lock");
    };
    let Some(r) = users.get_mut(user) else {
        return err(StatusCode::NOT_FOUND, format!("no user {user}"));
    };
    if let Some(p) = body.get("plan") {
        match serde_json::from_value(p.clone()) {
            Ok(p) => r.plan = p,
            Err(e) => return err(StatusCode::BAD_REQUEST, format!("plan: {e}")),
        }
    }
    if let Some(t) = body.get("statement_timeout_ms") {
        r.statement_timeout_ms = t.as_u64();
    }
    if let Some(rl) = body.get("rate_limits") {
        let Some(m) = rl.as_object() else {
            return err(StatusCode::BAD_REQUEST, "rate_limits must be an object");
        };
        let mut parsed: HashMap<String, Option<RateSpec>> = HashMap::new();
        for (g, v) in m {
            let Some(group) = Group::parse(g) else {
                return err(StatusCode::BAD_REQUEST, format!("unknown group {g}"));
            };
            if v.is_null() {
                parsed.insert(group.name().into(), None);
            } else {
                match serde_json::from_value::<RateSpec>(v.clone()) {
                    Ok(s) => {
                        parsed.insert(group.name().into(), Some(s));
                    }
                    Err(e) => return err(StatusCode::BAD_REQUEST, format!("rate_limits.{g}: {e}")),
                }
            }
        }
        r.rate_limits.extend(parsed);
    }
    if body.get("reset_rate_limits").and_then(|v| v.as_bool()) == Some(true) {
        r.rate_limits.clear();
    }
    ok(json!(r))
}
