//! The Batch SQL API: `carto.batch_submit`, `carto.batch_status`, `carto.batch_wait`,
//! `carto.batch_cancel`, and the table `carto.batch_jobs` that remembers every job submitted from this
//! database (CARTO has no job listing, and forgets finished jobs after 2 hours).

use std::time::Duration;

use carto_client::{BatchJob, BatchJobRequest, BatchQuery, ErrorKind};
use pgrx::prelude::*;
use pgrx::datum::Interval;
use pgrx::PgSqlErrorCode;
use serde_json::Value;

use crate::functions::query::RowJson;
use crate::functions::{bad_argument, remote, required, Remote};
use crate::pg::bookkeeping;
use crate::pg::encoding::DbText;
use crate::pg::error::{sqlstate_from_message, FdwError, FdwResult, OrReport};
use crate::pg::runtime::block_on;

/// Records a job CARTO described (upsert: the submission row, or a later status), as the caller's
/// row: written as the table's owner (crate::pg::bookkeeping), and a job another role recorded is
/// left as it is.
fn record(server: &str, job: &BatchJob, submitted: Option<(&[String], Option<&str>, Option<&str>)>) -> FdwResult<()> {
    let (queries, onsuccess, onerror) = match submitted {
        Some((q, s, e)) => (Some(q.to_vec()), s, e),
        None => (None, None, None),
    };
    let role = bookkeeping::caller();
    let role_name = bookkeeping::caller_name();
    bookkeeping::as_owner_of("batch_jobs", || {
        Spi::run_with_args(
            "INSERT INTO carto.batch_jobs AS b (job_id, server, queries, onsuccess, onerror, last_status, last_checked_at, failed_reason, last_job, submitted_by, role_id) \
             VALUES ($1, $2, $3, $4, $5, $6, pg_catalog.now(), $7, $8::pg_catalog.jsonb, $9, $10) \
             ON CONFLICT (job_id) DO UPDATE SET last_status = excluded.last_status, last_checked_at = excluded.last_checked_at, \
               failed_reason = excluded.failed_reason, last_job = excluded.last_job \
             WHERE b.role_id OPERATOR(pg_catalog.=) excluded.role_id",
            &[
                job.job_id.as_str().into(),
                // Text the caller gave (UTF-8 here) goes back in the database encoding (DbText).
                DbText(server.to_string()).into(),
                queries.map(|q| q.into_iter().map(DbText).collect::<Vec<_>>()).into(),
                onsuccess.map(|s| DbText(s.to_string())).into(),
                onerror.map(|s| DbText(s.to_string())).into(),
                job.status.as_str().into(),
                job.failed_reason.clone().map(DbText).into(),
                // CARTO's JSON (UTF-8) as text in the database encoding, made jsonb by the statement.
                DbText(serde_json::to_string(&job.raw).unwrap_or_default()).into(),
                DbText(role_name.clone()).into(),
                role.into(),
            ],
        )
        .map_err(|e| FdwError::internal(format!("recording the job in carto.batch_jobs: {e}")))
    })
}

/// A Batch SQL job id is CARTO's uuid; anything else is refused before a request is made (it
/// becomes part of the request's path).
fn check_job_id(job_id: &str) -> FdwResult<()> {
    let b = job_id.as_bytes();
    let ok = b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        });
    if ok {
        Ok(())
    } else {
        Err(FdwError::Custom {
            code: PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            message: "invalid Batch SQL job id: a job id is a uuid".into(),
            detail: None,
            hint: Some("Pass the value carto.batch_submit returned (see carto.batch_jobs).".into()),
        })
    }
}

fn job_json(job: &BatchJob) -> RowJson {
    RowJson::from_value(&job.raw)
}

/// The job as carto.batch_jobs last saw it (among the caller's own jobs), when CARTO no longer knows it.
fn last_known(job_id: &str) -> FdwResult<Option<(String, Value)>> {
    let role = bookkeeping::caller();
    let (status, job) = bookkeeping::as_owner_of("batch_jobs", || {
        Spi::get_two_with_args::<DbText, DbText>(
            "SELECT last_status, last_job::pg_catalog.text FROM carto.batch_jobs WHERE job_id OPERATOR(pg_catalog.=) $1::pg_catalog.text \
             AND pg_catalog.pg_has_role($2::pg_catalog.oid, role_id, 'USAGE'::pg_catalog.text)",
            &[job_id.into(), role.into()],
        )
        .or_else(|e| match e {
            pgrx::spi::Error::InvalidPosition => Ok((None, None)),
            e => Err(e),
        })
        .map_err(|e| FdwError::internal(format!("reading carto.batch_jobs: {e}")))
    })?;
    let job = job.and_then(|j| serde_json::from_str::<Value>(&j).ok()).unwrap_or(Value::Null);
    Ok(status.map(|s| (s.into_string(), job)))
}

/// What to answer for a job CARTO no longer knows: the recorded status (with a NOTICE), or the error.
fn forgotten(job_id: &str, e: carto_client::Error, context: &str) -> FdwResult<(String, Value)> {
    match last_known(job_id)? {
        Some((status, job)) => {
            pgrx::notice!(
                "CARTO no longer knows this job (finished jobs are kept about 2 hours): last known status \"{status}\" from carto.batch_jobs"
            );
            let mut v = match job {
                Value::Object(m) => Value::Object(m),
                _ => serde_json::json!({ "job_id": job_id }),
            };
            if let Some(m) = v.as_object_mut() {
                m.insert("status".into(), Value::String(status.clone()));
                m.insert("expired_on_carto".into(), Value::Bool(true));
            }
            Ok((status, v))
        }
        None => Err(FdwError::remote(e, context.to_string())),
    }
}

fn read(r: &Remote, server: &str, job_id: &str) -> FdwResult<Result<BatchJob, (String, Value)>> {
    let context = format!("reading Batch SQL job {job_id} on server \"{server}\"");
    match block_on(r.client.batch_read(job_id))? {
        Ok(job) => Ok(Ok(job)),
        Err(e) if e.kind() == ErrorKind::NotFound => forgotten(job_id, e, &context).map(Err),
        Err(e) => Err(FdwError::remote(e, context)),
    }
}

/// Submits a Batch SQL job: `queries` run in order, in their own transactions, on CARTO's side, with
/// CARTO's Batch statement timeout (hours, not the seconds of `/sql`). With `onsuccess` / `onerror`,
/// the job gets those job-level fallback queries (`<%= job_id %>` and `<%= error_message %>` are
/// filled in by CARTO). Returns the job id, and records the job in carto.batch_jobs. Needs the master
/// key. A job body over 16 KB is refused before anything is sent. Not STRICT (the fallbacks are
/// optional): a NULL server or queries, an empty array or a NULL query is an error. VOLATILE, PARALLEL
/// UNSAFE.
#[pg_extern(volatile, parallel_unsafe)]
fn batch_submit(
    server: Option<DbText>,
    queries: Option<Vec<Option<DbText>>>,
    onsuccess: default!(Option<DbText>, "NULL"),
    onerror: default!(Option<DbText>, "NULL"),
) -> String {
    // Text arguments are read in the database encoding and converted to UTF-8 (crate::pg::encoding).
    let (onsuccess, onerror) = (onsuccess.as_deref(), onerror.as_deref());
    (|| {
        let server = required(server.as_deref(), "server")?;
        let queries = required(queries, "queries")?;
        let queries: Vec<Option<String>> = queries.into_iter().map(|q| q.map(DbText::into_string)).collect();
        if queries.is_empty() {
            return Err(bad_argument("a Batch SQL job needs at least one query", None));
        }
        let queries: Vec<String> = queries
            .into_iter()
            .map(|q| q.filter(|q| !q.trim().is_empty()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad_argument("a query of a Batch SQL job is NULL or empty", None))?;
        let req = if onsuccess.is_none() && onerror.is_none() {
            BatchJobRequest::Multi(queries.clone())
        } else {
            BatchJobRequest::Fallback {
                queries: queries.iter().map(|q| BatchQuery::new(q.clone())).collect(),
                onsuccess: onsuccess.map(str::to_string),
                onerror: onerror.map(str::to_string),
            }
        };
        let r = remote(server)?;
        let job = block_on(r.client.batch_create(&req))?.map_err(|e| {
            FdwError::remote(e, format!("submitting a Batch SQL job on server \"{server}\""))
        })?;
        record(server, &job, Some((&queries, onsuccess, onerror)))?;
        Ok(job.job_id)
    })()
    .or_report()
}

/// A job's status as CARTO reports it (job_id, user, status, query — with each query's status,
/// started_at, ended_at and failed_reason —, created_at, updated_at, failed_reason), recorded in
/// carto.batch_jobs. A job CARTO no longer knows (finished more than ~2 hours ago) answers with its
/// last recorded status plus `"expired_on_carto": true`, and a NOTICE. STRICT, VOLATILE, PARALLEL UNSAFE.
#[pg_extern(volatile, parallel_unsafe, strict)]
fn batch_status(server: DbText, job_id: DbText) -> RowJson {
    let (server, job_id) = (server.as_str(), job_id.as_str());
    (|| {
        check_job_id(job_id)?;
        let r = remote(server)?;
        match read(&r, server, job_id)? {
            Ok(job) => {
                record(server, &job, None)?;
                Ok(job_json(&job))
            }
            Err((_, v)) => Ok(RowJson::from_value(&v)),
        }
    })()
    .or_report()
}

fn interval_to_duration(i: &Interval) -> FdwResult<Duration> {
    // A month counts as 30 days, as PostgreSQL's interval arithmetic does.
    let micros = i128::from(i.months()) * 30 * 86_400_000_000 + i128::from(i.days()) * 86_400_000_000 + i128::from(i.micros());
    if micros < 0 {
        return Err(bad_argument("timeout must not be negative", None));
    }
    Ok(Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX)))
}

/// Waits until a job is finished (done, failed, cancelled, unknown), polling CARTO with back-off
/// (0.5 s, then 1.5 times longer up to 5 s), and returns its final status (as batch_status). Ctrl-C and
/// statement_timeout interrupt the wait (the job goes on: carto.batch_cancel stops it). After
/// `timeout` (default 1 hour) it is an ERROR. With `raise_on_failure` (default false) a failed or
/// cancelled job is an ERROR carrying its failed_reason. STRICT, VOLATILE, PARALLEL UNSAFE.
#[pg_extern(volatile, parallel_unsafe, strict)]
fn batch_wait(
    server: DbText,
    job_id: DbText,
    timeout: default!(Interval, "'1 hour'"),
    raise_on_failure: default!(bool, false),
) -> RowJson {
    let (server, job_id) = (server.as_str(), job_id.as_str());
    (|| {
        let limit = interval_to_duration(&timeout)?;
        check_job_id(job_id)?;
        let r = remote(server)?;
        let start = std::time::Instant::now();
        let mut wait = Duration::from_millis(500);
        let (status, failed_reason, value) = loop {
            match read(&r, server, job_id)? {
                Ok(job) if job.status.is_final() => {
                    record(server, &job, None)?;
                    break (job.status.as_str().to_string(), job.failed_reason.clone(), job.raw.clone());
                }
                Ok(job) => {
                    let elapsed = start.elapsed();
                    if elapsed >= limit {
                        return Err(FdwError::Custom {
                            code: PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                            message: format!(
                                "Batch SQL job still {} after waiting {:.1} s",
                                job.status.as_str(),
                                elapsed.as_secs_f64()
                            ),
                            detail: None,
                            hint: Some("The job goes on running on CARTO: wait again, check it with carto.batch_status, or stop it with carto.batch_cancel.".into()),
                        });
                    }
                    let pause = wait.min(limit - elapsed);
                    // Created inside the runtime (a Sleep needs its timer).
                    block_on(async move { tokio::time::sleep(pause).await })?;
                    wait = wait.mul_f64(1.5).min(Duration::from_secs(5));
                }
                Err((status, v)) => {
                    let reason = v.get("failed_reason").and_then(Value::as_str).map(str::to_string);
                    break (status, reason, v);
                }
            }
        };
        if raise_on_failure && (status == "failed" || status == "cancelled") {
            let reason = failed_reason.unwrap_or_else(|| status.clone());
            return Err(FdwError::Custom {
                code: if status == "failed" {
                    sqlstate_from_message(&reason)
                } else {
                    PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
                },
                message: if status == "failed" {
                    format!("Batch SQL job failed: {reason}")
                } else {
                    "Batch SQL job was cancelled".to_string()
                },
                detail: Some("Its status is in carto.batch_status(server, job_id).".into()),
                hint: None,
            });
        }
        Ok(RowJson::from_value(&value))
    })()
    .or_report()
}

/// Cancels a pending or running job (CARTO refuses to cancel a finished one: an ERROR saying so) and
/// returns its status (as batch_status), recorded in carto.batch_jobs. STRICT, VOLATILE, PARALLEL UNSAFE.
#[pg_extern(volatile, parallel_unsafe, strict)]
fn batch_cancel(server: DbText, job_id: DbText) -> RowJson {
    let (server, job_id) = (server.as_str(), job_id.as_str());
    (|| {
        check_job_id(job_id)?;
        let r = remote(server)?;
        let job = block_on(r.client.batch_cancel(job_id))?.map_err(|e| {
            FdwError::remote(e, format!("cancelling Batch SQL job {job_id} on server \"{server}\""))
        })?;
        record(server, &job, None)?;
        Ok(job_json(&job))
    })()
    .or_report()
}

extension_sql!(
    r#"
-- Every Batch SQL job submitted from this database, with its last known status.
CREATE TABLE carto.batch_jobs (
  job_id          text PRIMARY KEY,
  server          text NOT NULL,
  queries         text[],
  onsuccess       text,
  onerror         text,
  submitted_at    timestamptz NOT NULL DEFAULT now(),
  submitted_by    name NOT NULL DEFAULT current_user,
  role_id         oid NOT NULL DEFAULT 0,  -- the role that submitted it: it alone (and its members) sees the row
  last_status     text,
  last_checked_at timestamptz,
  failed_reason   text,
  last_job        jsonb
);
COMMENT ON TABLE carto.batch_jobs IS 'Batch SQL jobs submitted with carto.batch_submit, and their last known status';
SELECT pg_catalog.pg_extension_config_dump('carto.batch_jobs', '');
-- Each role sees its own jobs (a job's SQL may hold secrets); only the batch functions write the
-- table (as its owner, crate::pg::bookkeeping): no role gets INSERT, UPDATE or DELETE, and with row
-- level security on and no policy for those commands, a grant of them would still allow nothing.
ALTER TABLE carto.batch_jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY batch_jobs_own_rows ON carto.batch_jobs FOR SELECT USING (pg_catalog.pg_has_role(role_id, 'USAGE'));

CREATE VIEW carto.batch_jobs_latest WITH (security_invoker = true) AS
SELECT j.job_id, j.server, j.submitted_by, j.submitted_at, j.last_status AS status,
       j.last_status IN ('done', 'failed', 'cancelled', 'canceled', 'unknown') AS finished,
       j.failed_reason, j.last_checked_at,
       ARRAY(SELECT q->>'status'
               FROM jsonb_array_elements(CASE jsonb_typeof(j.last_job->'query')
                                           WHEN 'array' THEN j.last_job->'query'
                                           WHEN 'object' THEN coalesce(j.last_job->'query'->'query', '[]')
                                           ELSE '[]' END) WITH ORDINALITY AS e(q, n)
              ORDER BY n) AS query_statuses,
       j.queries
  FROM carto.batch_jobs j
 ORDER BY j.submitted_at DESC;
COMMENT ON VIEW carto.batch_jobs_latest IS 'Batch SQL jobs, newest first, with their last known status and per-query statuses';

REVOKE ALL ON carto.batch_jobs, carto.batch_jobs_latest FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION carto.batch_submit(text, text[], text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION carto.batch_status(text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION carto.batch_wait(text, text, interval, boolean) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION carto.batch_cancel(text, text) FROM PUBLIC;
"#,
    name = "carto_batch_sql",
    requires = [batch_submit, batch_status, batch_wait, batch_cancel]
);
