//! CARTO's error bodies and how errors map to HTTP statuses (carto-sql-api.md section 7).
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};

pub const TIMEOUT_MESSAGE: &str = "You are over platform's limits: SQL query timeout error. Refactor your query before running again or contact CARTO support for more details.";
pub const RATE_LIMIT_MESSAGE: &str = "You are over platform's limits. Please contact us to know more details";

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// The JSON body: `{"error":[msg], "detail"?, "hint"?}`, or CARTO's limit errors with `"context":"limit"`.
    pub body: Map<String, Value>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        let mut body = Map::new();
        body.insert("error".into(), json!([message.into()]));
        ApiError { status, body, retry_after: None }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        Self::from_message(message.into())
    }
    /// A generic error: 400 unless the message says "permission denied" (CARTO checks the text).
    pub fn from_message(message: String) -> ApiError {
        if is_timeout_message(&message) {
            return Self::timeout();
        }
        let status = if message.contains("permission denied") { StatusCode::FORBIDDEN } else { StatusCode::BAD_REQUEST };
        Self::new(status, message)
    }
    pub fn timeout() -> ApiError {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, TIMEOUT_MESSAGE);
        e.body.insert("context".into(), json!("limit"));
        e.body.insert("detail".into(), json!("datasource"));
        e
    }
    pub fn rate_limited(retry_after: u64) -> ApiError {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, RATE_LIMIT_MESSAGE);
        e.body.insert("context".into(), json!("limit"));
        e.body.insert("detail".into(), json!("rate-limit"));
        e.retry_after = Some(retry_after);
        e
    }
    pub fn unauthorized() -> ApiError {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized")
    }
    pub fn unknown_user(user: &str) -> ApiError {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("Sorry, we can't find CARTO user '{user}'. Please check that you have entered the correct domain."),
        )
    }
    pub fn from_pg(e: &tokio_postgres::Error) -> ApiError {
        match e.as_db_error() {
            Some(db) => {
                let mut err = Self::from_message(db.message().to_string());
                // Never PostgreSQL's context (`COPY t, line 2`, PL/pgSQL frames): CARTO drops it; `context` is
                // only ever CARTO's own ("limit").
                if err.status != StatusCode::TOO_MANY_REQUESTS {
                    if let Some(d) = db.detail() {
                        err.body.insert("detail".into(), json!(d));
                    }
                    if let Some(h) = db.hint() {
                        err.body.insert("hint".into(), json!(h));
                    }
                }
                err
            }
            None => {
                let msg = e.to_string();
                let mut err = Self::from_message(msg);
                if e.is_closed() {
                    err.status = StatusCode::INTERNAL_SERVER_ERROR;
                }
                err
            }
        }
    }
    /// A connection that could not be made: a role that cannot connect (e.g. without CONNECT) is a
    /// permission problem, PostgreSQL's error; anything else is ours (500).
    pub fn connect(e: &tokio_postgres::Error) -> ApiError {
        if e.as_db_error().is_none() {
            return Self::new(StatusCode::INTERNAL_SERVER_ERROR, "cannot connect to the database");
        }
        Self::from_pg(e)
    }
    pub fn message(&self) -> String {
        self.body
            .get("error")
            .and_then(|v| v.get(0))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    }
    pub fn json_text(&self) -> String {
        Value::Object(self.body.clone()).to_string()
    }
    pub fn into_response(self) -> Response {
        let text = self.json_text();
        let mut r = json_response(self.status, text);
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                r.headers_mut().insert("retry-after", v);
            }
        }
        r
    }
}

/// CARTO treats these messages as query timeouts (429), including a cancelled statement.
pub fn is_timeout_message(m: &str) -> bool {
    m.contains("statement timeout")
        || m.contains("RuntimeError: Execution of function interrupted by signal")
        || m.contains("canceling statement due to user request")
}

/// A complete JSON answer with CARTO's content type and a Content-Length.
pub fn json_response(status: StatusCode, text: String) -> Response {
    let len = text.len();
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/json; charset=utf-8"));
    r.headers_mut().insert("content-length", HeaderValue::from(len));
    r
}
