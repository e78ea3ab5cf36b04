//! The Batch SQL API: `/api/v2/sql/job` (master key only).

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use crate::client::{Client, Retry};
use crate::error::{parse_error_body, Endpoint, Error, ErrorKind, Result};
use crate::stats::RequestStats;

/// CARTO refuses Batch bodies over this many bytes.
pub const MAX_BATCH_BODY: usize = 16384;
/// The largest Batch answer read (a job's JSON: its queries, at most 16 KB, statuses and error messages).
pub const MAX_BATCH_ANSWER: u64 = 16 << 20;

/// One query of a job with fallbacks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchQuery {
    pub query: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onsuccess: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onerror: Option<String>,
    /// Milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

impl BatchQuery {
    pub fn new(query: impl Into<String>) -> Self {
        BatchQuery { query: query.into(), onsuccess: None, onerror: None, timeout: None }
    }
}

/// What to run: one statement, a list run in order, or the fallback form.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchJobRequest {
    Single(String),
    Multi(Vec<String>),
    Fallback { queries: Vec<BatchQuery>, onsuccess: Option<String>, onerror: Option<String> },
}

impl BatchJobRequest {
    /// The JSON body CARTO expects: `{"query": ...}`.
    pub fn to_body(&self) -> Value {
        let q = match self {
            BatchJobRequest::Single(s) => Value::String(s.clone()),
            BatchJobRequest::Multi(v) => Value::Array(v.iter().cloned().map(Value::String).collect()),
            BatchJobRequest::Fallback { queries, onsuccess, onerror } => {
                let mut m = serde_json::Map::new();
                m.insert("query".into(), serde_json::to_value(queries).unwrap_or(Value::Null));
                if let Some(s) = onsuccess {
                    m.insert("onsuccess".into(), Value::String(s.clone()));
                }
                if let Some(s) = onerror {
                    m.insert("onerror".into(), Value::String(s.clone()));
                }
                Value::Object(m)
            }
        };
        let mut body = serde_json::Map::new();
        body.insert("query".into(), q);
        Value::Object(body)
    }
}

/// A job's status. `canceled` is read as [`JobStatus::Cancelled`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStatus {
    Pending,
    Running,
    Done,
    Failed,
    Cancelled,
    Skipped,
    Unknown,
    /// Anything else CARTO might send.
    Other(String),
}

impl JobStatus {
    pub fn parse(s: &str) -> Self {
        match s {
            "pending" => JobStatus::Pending,
            "running" => JobStatus::Running,
            "done" => JobStatus::Done,
            "failed" => JobStatus::Failed,
            "cancelled" | "canceled" => JobStatus::Cancelled,
            "skipped" => JobStatus::Skipped,
            "unknown" => JobStatus::Unknown,
            o => JobStatus::Other(o.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Skipped => "skipped",
            JobStatus::Unknown => "unknown",
            JobStatus::Other(s) => s,
        }
    }

    /// done, failed, cancelled, unknown.
    pub fn is_final(&self) -> bool {
        matches!(self, JobStatus::Done | JobStatus::Failed | JobStatus::Cancelled | JobStatus::Unknown)
    }
}

/// A Batch job as CARTO describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchJob {
    pub job_id: String,
    pub user: Option<String>,
    pub status: JobStatus,
    /// As CARTO returns it (for arrays, each entry has its own status).
    pub query: Value,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub failed_reason: Option<String>,
    /// The whole JSON.
    pub raw: Value,
}

impl BatchJob {
    pub(crate) fn parse(endpoint: Endpoint, body: &[u8]) -> Result<BatchJob> {
        let v: Value = serde_json::from_slice(body).map_err(|e| {
            Error::new(ErrorKind::Protocol, endpoint, format!("malformed job JSON: {e}"))
        })?;
        if let Some(p) = parse_error_body(body) {
            return Err(Error::from_body_error(endpoint, p));
        }
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let job_id = s("job_id").ok_or_else(|| Error::new(ErrorKind::Protocol, endpoint, "job JSON without job_id"))?;
        Ok(BatchJob {
            job_id,
            user: s("user"),
            status: JobStatus::parse(&s("status").unwrap_or_default()),
            query: v.get("query").cloned().unwrap_or(Value::Null),
            created_at: s("created_at"),
            updated_at: s("updated_at"),
            // The fallback form has no top-level failed_reason: the failed query's own says why.
            failed_reason: s("failed_reason").or_else(|| fallback_failed_reason(&v)),
            raw: v,
        })
    }
}

/// The failed_reason of the first failed query of a job in the fallback form (`{"query":{"query":[..]}}`).
fn fallback_failed_reason(v: &Value) -> Option<String> {
    v.get("query")?.get("query")?.as_array()?.iter().find_map(|q| {
        (q.get("status").and_then(Value::as_str) == Some("failed")).then(|| q.get("failed_reason").and_then(Value::as_str).map(str::to_string)).flatten()
    })
}

impl Client {
    fn batch_limit(&self) -> u64 {
        MAX_BATCH_ANSWER.min(self.inner.cfg.max_response_bytes)
    }

    /// Create a job. The body is checked against CARTO's 16 KB limit before it is sent. Retried only for a 429
    /// with `Retry-After`.
    pub async fn batch_create(&self, job: &BatchJobRequest) -> Result<BatchJob> {
        let body = serde_json::to_vec(&job.to_body())
            .map_err(|e| Error::new(ErrorKind::Config, Endpoint::BatchCreate, format!("cannot encode job: {e}")))?;
        if body.len() > MAX_BATCH_BODY {
            return Err(Error::new(
                ErrorKind::PayloadTooLarge,
                Endpoint::BatchCreate,
                format!("Batch job body is {} bytes; CARTO accepts at most {MAX_BATCH_BODY}", body.len()),
            )
            .with_hint("split the job, or load data with COPY"));
        }
        let url = self.inner.cfg.endpoint_url(&["job"]);
        let mut stats = RequestStats::default();
        let (_, resp) = self
            .send_buffered(Endpoint::BatchCreate, Retry::RateLimitOnly, &mut stats, self.batch_limit(), || {
                self.request(reqwest::Method::POST, url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
            })
            .await?;
        BatchJob::parse(Endpoint::BatchCreate, &resp).map_err(|e| self.redact(e))
    }

    /// Read a job's status.
    pub async fn batch_read(&self, job_id: &str) -> Result<BatchJob> {
        let url = self.inner.cfg.endpoint_url(&["job", job_id]);
        let mut stats = RequestStats::default();
        let (_, resp) = self
            .send_buffered(Endpoint::BatchRead, Retry::Read, &mut stats, self.batch_limit(), || {
                self.request(reqwest::Method::GET, url.clone())
            })
            .await?;
        BatchJob::parse(Endpoint::BatchRead, &resp).map_err(|e| self.redact(e))
    }

    /// Cancel a pending or running job.
    pub async fn batch_cancel(&self, job_id: &str) -> Result<BatchJob> {
        let url = self.inner.cfg.endpoint_url(&["job", job_id]);
        let mut stats = RequestStats::default();
        let (_, resp) = self
            .send_buffered(Endpoint::BatchCancel, Retry::RateLimitOnly, &mut stats, self.batch_limit(), || {
                self.request(reqwest::Method::DELETE, url.clone())
            })
            .await?;
        BatchJob::parse(Endpoint::BatchCancel, &resp).map_err(|e| self.redact(e))
    }

    /// Poll a job until its status is final (done, failed, cancelled, unknown), waiting 0.5 s, then 1.5 times
    /// longer each time up to 5 s. With a timeout, ends with ErrorKind::Timeout when the job is still not final.
    /// Cancel-safe: drop the future to stop polling (the job keeps running; see [`Client::batch_cancel`]).
    pub async fn batch_wait(&self, job_id: &str, timeout: Option<Duration>) -> Result<BatchJob> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut wait = Duration::from_millis(500);
        loop {
            let job = self.batch_read(job_id).await?;
            if job.status.is_final() {
                return Ok(job);
            }
            let mut next = Instant::now() + wait;
            if let Some(d) = deadline {
                if Instant::now() >= d {
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        Endpoint::BatchRead,
                        format!("job {} still {} after {:?}", job.job_id, job.status.as_str(), timeout.unwrap_or_default()),
                    ));
                }
                next = next.min(d);
            }
            tokio::time::sleep_until(next).await;
            wait = (wait.mul_f64(1.5)).min(Duration::from_secs(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        assert_eq!(BatchJobRequest::Single("select 1".into()).to_body().to_string(), r#"{"query":"select 1"}"#);
        assert_eq!(
            BatchJobRequest::Multi(vec!["a".into(), "b".into()]).to_body().to_string(),
            r#"{"query":["a","b"]}"#
        );
        let f = BatchJobRequest::Fallback {
            queries: vec![BatchQuery { onerror: Some("x <%= error_message %>".into()), ..BatchQuery::new("q1") }],
            onsuccess: Some("s".into()),
            onerror: None,
        };
        assert_eq!(
            f.to_body().to_string(),
            r#"{"query":{"query":[{"query":"q1","onerror":"x <%= error_message %>"}],"onsuccess":"s"}}"#
        );
        assert_eq!(JobStatus::parse("canceled"), JobStatus::Cancelled);
        assert!(JobStatus::parse("unknown").is_final());
        assert!(!JobStatus::parse("running").is_final());
        let j = BatchJob::parse(
            Endpoint::BatchRead,
            br#"{"job_id":"j1","user":"demo","status":"failed","query":"x","failed_reason":"boom"}"#,
        )
        .unwrap();
        assert_eq!(j.status, JobStatus::Failed);
        assert_eq!(j.failed_reason.as_deref(), Some("boom"));
    }

    #[test]
    fn the_fallback_form_takes_its_failed_reason_from_the_failed_query() {
        // CARTO's fallback form has no top-level failed_reason (carto-sql-api.md 11.8).
        let j = BatchJob::parse(
            Endpoint::BatchRead,
            br#"{"job_id":"j1","status":"failed","query":{"query":[{"query":"a","status":"done"},{"query":"b","status":"failed","failed_reason":"division by zero","fallback_status":"done"}],"onerror":"x"}}"#,
        )
        .unwrap();
        assert_eq!(j.failed_reason.as_deref(), Some("division by zero"));
        let j = BatchJob::parse(Endpoint::BatchRead, br#"{"job_id":"j1","status":"done","query":{"query":[{"query":"a","status":"done"}]}}"#).unwrap();
        assert_eq!(j.failed_reason, None);
    }
}
