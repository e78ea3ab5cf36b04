//! Errors of the CARTO client.
//!
//! Every error carries the endpoint it came from, the HTTP status when there was one, CARTO's message, detail,
//! hint and context, the `Retry-After` and rate-limit headers of a 429, and the number of retries already made.
//! No error ever contains the API key: the key never goes into a URL, and [`crate::Client`] scrubs every error
//! it returns of the key (and of its Basic-auth encoding) before handing it out.

use std::fmt;
use std::time::Duration;

/// Which CARTO endpoint an error (or a statistic) belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `/api/v2/sql`
    Sql,
    /// `/api/v2/sql/copyfrom`
    CopyFrom,
    /// `/api/v2/sql/copyto`
    CopyTo,
    /// `POST /api/v2/sql/job`
    BatchCreate,
    /// `GET /api/v2/sql/job/{id}`
    BatchRead,
    /// `DELETE /api/v2/sql/job/{id}`
    BatchCancel,
    /// No endpoint: configuration or local codec errors.
    None,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Sql => "/api/v2/sql",
            Endpoint::CopyFrom => "/api/v2/sql/copyfrom",
            Endpoint::CopyTo => "/api/v2/sql/copyto",
            Endpoint::BatchCreate => "POST /api/v2/sql/job",
            Endpoint::BatchRead => "GET /api/v2/sql/job",
            Endpoint::BatchCancel => "DELETE /api/v2/sql/job",
            Endpoint::None => "carto-client",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What went wrong, in the terms a caller acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// 401: unknown or missing API key.
    Unauthorized,
    /// 403: the key may not do this (a regular key without the grant, the Batch API with a non-master key,
    /// or a Basic-auth user that is not the URL's user).
    Forbidden,
    /// 404 "Sorry, we can't find CARTO user ...".
    UserNotFound,
    /// 429 with `Retry-After`: CARTO's rate limit. `retry_after` and `rate_limit` are set.
    RateLimited,
    /// 429 without `Retry-After`: the statement ran into CARTO's statement timeout. Never retried.
    RemoteTimeout,
    /// "DB Quota exceeded" and other account limits.
    Quota,
    /// A body over CARTO's limits (16 KB Batch jobs, 2 GB COPY), also when checked before sending.
    PayloadTooLarge,
    /// 400 and other errors CARTO reports for the SQL: syntax, missing table, constraint violations,
    /// and an error appended to a 200 body or a COPY stream.
    BadRequest,
    /// A Batch job that does not exist (CARTO answers 400 "Job with id .. not found", or 404 once expired).
    NotFound,
    /// Connection refused or reset, TLS failure, a connection cut mid-stream, 502/503/504 from a proxy.
    Transport,
    /// A local timeout: connect, request, idle read, or `batch_wait`'s own timeout.
    Timeout,
    /// A body that is not what CARTO sends: malformed JSON, HTML from a proxy, a COPY stream cut mid-line.
    Protocol,
    /// CARTO's `total_rows` after a COPY FROM differs from the rows sent.
    RowCountMismatch,
    /// Bad configuration or bad arguments (URL, CA file, a COPY statement that is not a COPY).
    Config,
    /// A buffer that an answer needed could not be allocated (a large row, a COPY tuple or line spanning
    /// chunks): the allocation failed and was refused instead of aborting the process. The extension maps it
    /// to SQLSTATE 53200 (out of memory).
    OutOfMemory,
}

/// CARTO's rate-limit headers (`Carto-Rate-Limit-Limit`, `-Remaining`, `-Reset` in seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimit {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    pub reset: Option<u64>,
}

/// An error of the CARTO client. See the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pub kind: ErrorKind,
    pub endpoint: Endpoint,
    pub status: Option<u16>,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    pub context: Option<String>,
    pub retry_after: Option<Duration>,
    pub rate_limit: Option<RateLimit>,
    pub retries: u32,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, endpoint: Endpoint, message: impl Into<String>) -> Self {
        Error {
            kind,
            endpoint,
            status: None,
            message: message.into(),
            detail: None,
            hint: None,
            context: None,
            retry_after: None,
            rate_limit: None,
            retries: 0,
        }
    }

    pub fn config(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Config, Endpoint::None, message)
    }

    /// A failed allocation of `bytes` bytes for `what` (see [`ErrorKind::OutOfMemory`]).
    pub(crate) fn out_of_memory(endpoint: Endpoint, what: &str, bytes: usize) -> Self {
        Error::new(ErrorKind::OutOfMemory, endpoint, format!("out of memory: cannot allocate {bytes} bytes for {what}"))
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub(crate) fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    #[allow(dead_code)]
    pub(crate) fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// True for the errors a read may retry: a rate limit with `Retry-After`, and transport failures
    /// (connection refused or reset, 502/503/504). Never for SQL errors or CARTO's statement timeout.
    pub fn is_retryable_read(&self) -> bool {
        matches!(self.kind, ErrorKind::RateLimited | ErrorKind::Transport)
    }

    /// True for errors where CARTO provably did nothing: only a 429 with `Retry-After` (a rate-limit refusal).
    pub fn is_retryable_write(&self) -> bool {
        self.kind == ErrorKind::RateLimited && self.retry_after.is_some()
    }

    /// Replace every occurrence of each secret by `***` in every text field.
    pub(crate) fn redact(mut self, secrets: &[String]) -> Self {
        fn scrub(s: &mut String, secrets: &[String]) {
            for sec in secrets {
                if !sec.is_empty() && s.contains(sec.as_str()) {
                    *s = s.replace(sec.as_str(), "***");
                }
            }
        }
        scrub(&mut self.message, secrets);
        for o in [&mut self.detail, &mut self.hint, &mut self.context].into_iter().flatten() {
            scrub(o, secrets);
        }
        self
    }

    /// Build an error from an HTTP status, the response headers' retry information and a body.
    /// The body is CARTO's JSON error (`{"error":[..],"detail":..,"hint":..,"context":..}`) or anything else
    /// (HTML from a proxy, empty).
    pub(crate) fn from_response(
        endpoint: Endpoint,
        status: u16,
        retry_after: Option<Duration>,
        rate_limit: Option<RateLimit>,
        body: &[u8],
    ) -> Self {
        let parsed = parse_error_body(body);
        let is_json = parsed.is_some();
        let (message, detail, hint, context) = match parsed {
            Some(p) => (p.message, p.detail, p.hint, p.context),
            None => (body_excerpt(body), None, None, None),
        };
        let lower = message.to_ascii_lowercase();
        let kind = match status {
            401 => ErrorKind::Unauthorized,
            403 => ErrorKind::Forbidden,
            404 if lower.contains("can't find carto user") || lower.contains("cannot find carto user") => {
                ErrorKind::UserNotFound
            }
            404 if matches!(endpoint, Endpoint::BatchRead | Endpoint::BatchCancel) => ErrorKind::NotFound,
            404 if is_json => ErrorKind::UserNotFound,
            404 => ErrorKind::Protocol,
            413 => ErrorKind::PayloadTooLarge,
            429 if retry_after.is_some() => ErrorKind::RateLimited,
            429 => ErrorKind::RemoteTimeout,
            502..=504 => ErrorKind::Transport,
            _ if !is_json => ErrorKind::Protocol,
            _ if lower.contains("quota") => ErrorKind::Quota,
            _ if lower.contains("payload is too large") || lower.contains("maximum post size") => {
                ErrorKind::PayloadTooLarge
            }
            _ if lower.starts_with("job with id") && lower.contains("not found") => ErrorKind::NotFound,
            _ => ErrorKind::BadRequest,
        };
        let mut e = Error::new(kind, endpoint, message);
        e.status = Some(status);
        e.detail = detail;
        e.hint = hint;
        e.context = context;
        e.retry_after = retry_after;
        e.rate_limit = rate_limit;
        if !is_json && e.kind == ErrorKind::Protocol {
            e.hint = Some(format!(
                "HTTP {status} without CARTO's JSON error body: a proxy in front of CARTO, or not a CARTO SQL API URL"
            ));
        }
        if e.kind == ErrorKind::RemoteTimeout && e.hint.is_none() {
            e.hint = Some("statement timeout on CARTO's side: make the query cheaper or use the Batch API".into());
        }
        e
    }

    /// An error that CARTO reported inside a 200 body (JSON `error` member, or appended to a COPY stream).
    pub(crate) fn from_body_error(endpoint: Endpoint, p: ParsedError) -> Self {
        let lower = p.message.to_ascii_lowercase();
        let kind = if lower.contains("quota") {
            ErrorKind::Quota
        } else if lower.contains("permission denied") {
            ErrorKind::Forbidden
        } else if lower.contains("statement timeout") || lower.contains("sql query timeout error") {
            // PostgreSQL's "canceling statement due to statement timeout", or CARTO's own words for it
            // ("You are over platform's limits: SQL query timeout error. ...").
            ErrorKind::RemoteTimeout
        } else {
            ErrorKind::BadRequest
        };
        let mut e = Error::new(kind, endpoint, p.message);
        e.status = Some(200);
        e.detail = p.detail;
        e.hint = p.hint;
        e.context = p.context;
        e
    }

    pub(crate) fn transport(endpoint: Endpoint, err: &reqwest::Error) -> Self {
        let kind = if err.is_timeout() { ErrorKind::Timeout } else { ErrorKind::Transport };
        let mut msg = String::new();
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = cur {
            let s = e.to_string();
            if !msg.contains(&s) {
                if !msg.is_empty() {
                    msg.push_str(": ");
                }
                msg.push_str(&s);
            }
            cur = e.source();
        }
        let mut e = Error::new(kind, endpoint, msg);
        e.status = err.status().map(|s| s.as_u16());
        e
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CARTO {}", self.endpoint)?;
        if let Some(s) = self.status {
            write!(f, " (HTTP {s})")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(d) = &self.detail {
            write!(f, "; detail: {d}")?;
        }
        if let Some(h) = &self.hint {
            write!(f, "; hint: {h}")?;
        }
        if let Some(c) = &self.context {
            write!(f, "; context: {c}")?;
        }
        if let Some(r) = self.retry_after {
            write!(f, "; retry after {} s", r.as_secs())?;
        }
        if self.retries > 0 {
            write!(f, "; after {} retries", self.retries)?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// CARTO's error body, parsed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParsedError {
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    pub context: Option<String>,
}

fn opt_str(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Extract CARTO's error from a JSON object: `error` is an array of messages (or a string).
pub(crate) fn parse_error_object(obj: &serde_json::Map<String, serde_json::Value>) -> Option<ParsedError> {
    let err = obj.get("error")?;
    let message = match err {
        serde_json::Value::Array(a) => a
            .iter()
            .map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                o => o.to_string(),
            })
            .collect::<Vec<_>>()
            .join("; "),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => return None,
        o => o.to_string(),
    };
    Some(ParsedError {
        message: if message.is_empty() { "unknown error".into() } else { message },
        detail: opt_str(obj.get("detail")),
        hint: opt_str(obj.get("hint")),
        context: opt_str(obj.get("context")),
    })
}

pub(crate) fn parse_error_body(body: &[u8]) -> Option<ParsedError> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    parse_error_object(v.as_object()?)
}

/// A short, printable excerpt of a non-JSON body (HTML from a proxy): tags stripped, whitespace folded.
pub(crate) fn body_excerpt(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(4096)]);
    let mut out = String::new();
    let mut in_tag = false;
    let mut last_space = true;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                if !last_space {
                    out.push(' ');
                    last_space = true;
                }
            }
            _ if in_tag => {}
            c if c.is_whitespace() || c.is_control() => {
                if !last_space {
                    out.push(' ');
                    last_space = true;
                }
            }
            c => {
                out.push(c);
                last_space = false;
            }
        }
        if out.len() > 200 {
            out.push('…');
            break;
        }
    }
    let out = out.trim().to_string();
    if out.is_empty() {
        "empty response body".into()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_statuses() {
        let body = br#"{"error":["Unauthorized"]}"#;
        assert_eq!(Error::from_response(Endpoint::Sql, 401, None, None, body).kind, ErrorKind::Unauthorized);
        assert_eq!(Error::from_response(Endpoint::Sql, 403, None, None, body).kind, ErrorKind::Forbidden);
        let nf = br#"{"error":["Sorry, we can't find CARTO user 'x'. Please check that you have entered the correct domain."]}"#;
        assert_eq!(Error::from_response(Endpoint::Sql, 404, None, None, nf).kind, ErrorKind::UserNotFound);
        assert_eq!(Error::from_response(Endpoint::BatchRead, 404, None, None, body).kind, ErrorKind::NotFound);
        let rl = br#"{"error":["You are over platform's limits. Please contact us to know more details"],"context":"limit","detail":"rate-limit"}"#;
        let e = Error::from_response(Endpoint::CopyTo, 429, Some(Duration::from_secs(7)), None, rl);
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert_eq!(e.context.as_deref(), Some("limit"));
        assert_eq!(e.detail.as_deref(), Some("rate-limit"));
        let e = Error::from_response(Endpoint::Sql, 429, None, None, rl);
        assert_eq!(e.kind, ErrorKind::RemoteTimeout);
        let e = Error::from_response(
            Endpoint::Sql,
            400,
            None,
            None,
            br#"{"error":["duplicate key value violates unique constraint \"t_pkey\""],"detail":"Key (cartodb_id)=(1) already exists.","hint":"h"}"#,
        );
        assert_eq!(e.kind, ErrorKind::BadRequest);
        assert_eq!(e.detail.as_deref(), Some("Key (cartodb_id)=(1) already exists."));
        assert_eq!(e.hint.as_deref(), Some("h"));
        let e = Error::from_response(Endpoint::BatchRead, 400, None, None, br#"{"error":["Job with id abc not found"]}"#);
        assert_eq!(e.kind, ErrorKind::NotFound);
        let e = Error::from_response(Endpoint::BatchCreate, 400, None, None, br#"{"error":["Your payload is too large: 20000 bytes. Max size allowed is 16384 bytes (16kb). Are you trying to import data?"]}"#);
        assert_eq!(e.kind, ErrorKind::PayloadTooLarge);
        let e = Error::from_response(Endpoint::CopyFrom, 400, None, None, br#"{"error":["DB Quota exceeded"]}"#);
        assert_eq!(e.kind, ErrorKind::Quota);
        let e = Error::from_response(Endpoint::Sql, 502, None, None, b"<html><body><h1>502 Bad Gateway</h1></body></html>");
        assert_eq!(e.kind, ErrorKind::Transport);
        assert_eq!(e.message, "502 Bad Gateway");
        let e = Error::from_response(Endpoint::Sql, 200, None, None, b"<html>oops</html>");
        assert_eq!(e.kind, ErrorKind::Protocol);
        let e = Error::from_response(Endpoint::Sql, 500, None, None, b"");
        assert_eq!(e.kind, ErrorKind::Protocol);
        assert_eq!(e.message, "empty response body");
    }

    #[test]
    fn redacts() {
        let e = Error::new(ErrorKind::BadRequest, Endpoint::Sql, "key s3cr3t here").with_detail("also s3cr3t");
        let e = e.redact(&["s3cr3t".into()]);
        assert_eq!(e.message, "key *** here");
        assert_eq!(e.detail.as_deref(), Some("also ***"));
        assert!(!e.to_string().contains("s3cr3t"));
    }
}
