//! The Batch SQL API: create, read, cancel, statuses, fallbacks, limits, TTL.
mod common;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn job_url(sim: &TestSim) -> String {
    format!("{}/api/v2/sql/job", sim.base_url("demo"))
}

async fn create(sim: &TestSim, body: Value) -> (u16, Value) {
    let r = client().post(format!("{}?api_key={}", job_url(sim), DEMO_MASTER_KEY)).json(&body).send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap())
}

async fn get_job(sim: &TestSim, id: &str) -> (u16, Value) {
    let r = client().get(format!("{}/{id}?api_key={}", job_url(sim), DEMO_MASTER_KEY)).send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap())
}

async fn delete_job(sim: &TestSim, id: &str) -> (u16, Value) {
    let r = client().delete(format!("{}/{id}?api_key={}", job_url(sim), DEMO_MASTER_KEY)).send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap())
}

async fn wait_status(sim: &TestSim, id: &str, want: &[&str]) -> Value {
    for _ in 0..200 {
        let (_, v) = get_job(sim, id).await;
        if want.contains(&v["status"].as_str().unwrap_or_default()) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("job {id} never reached {want:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_simple_multiple_and_fallback() {
    let sim = TestSim::start_default();
    // Simple
    let (s, v) = create(&sim, json!({"query": "create table j(a int)"})).await;
    assert_eq!(s, 201, "{v}");
    let id = v["job_id"].as_str().unwrap().to_string();
    assert_eq!(v["user"], "demo");
    assert_eq!(v["query"], "create table j(a int)");
    assert!(["pending", "running", "done"].contains(&v["status"].as_str().unwrap()));
    assert!(v["created_at"].is_string() && v["updated_at"].is_string());
    let v = wait_status(&sim, &id, &["done"]).await;
    assert!(v.get("failed_reason").is_none());
    assert_eq!(sim.psql_value("demo", "select to_regclass('j')::text").as_deref(), Some("j"));
    // Multiple: a failure fails the job and skips the rest
    let (s, v) = create(&sim, json!({"query": ["insert into j values (1)", "select 1/0", "insert into j values (2)"]})).await;
    assert_eq!(s, 201);
    let id = v["job_id"].as_str().unwrap().to_string();
    let v = wait_status(&sim, &id, &["failed"]).await;
    assert_eq!(v["failed_reason"], "division by zero");
    // The items of a plain array carry only query and status (carto-sql-api.md 11.8).
    assert_eq!(
        v["query"],
        json!([
            {"query": "insert into j values (1)", "status": "done"},
            {"query": "select 1/0", "status": "failed"},
            {"query": "insert into j values (2)", "status": "skipped"}
        ])
    );
    assert_eq!(sim.psql_value("demo", "select string_agg(a::text, ',') from j").as_deref(), Some("1"));
    // Fallback with templates
    sim.psql("demo", "create table flog(msg text, job text)").unwrap();
    let (s, v) = create(
        &sim,
        json!({"query": {"query": [
            {"query": "insert into j values (3)", "onsuccess": "insert into flog values ('ok', '<%= job_id %>')"},
            {"query": "select 1/0", "onerror": "insert into flog values ('<%= error_message %>', '<%= job_id %>')"}
        ], "onerror": "insert into flog values ('job failed', '<%= job_id %>')"}}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let id = v["job_id"].as_str().unwrap().to_string();
    let v = wait_status(&sim, &id, &["failed"]).await;
    assert_eq!(v["query"]["query"][0]["status"], "done");
    assert_eq!(v["query"]["query"][0]["fallback_status"], "done");
    assert_eq!(v["query"]["query"][1]["status"], "failed");
    assert_eq!(v["query"]["query"][1]["fallback_status"], "done");
    assert_eq!(v["fallback_status"], "done");
    let rows = sim.psql("demo", "select msg, job from flog order by msg").unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0][0].as_deref(), Some("division by zero"));
    assert!(rows.iter().all(|r| r[1].as_deref() == Some(id.as_str())));
    // Form body
    let r = client().post(job_url(&sim)).form(&[("query", "insert into j values (9)"), ("api_key", DEMO_MASTER_KEY)]).send().await.unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_errors_and_auth() {
    let sim = TestSim::start_default();
    // Cancel a running job: the backend query stops
    let (_, v) = create(&sim, json!({"query": "select pg_sleep(30)"})).await;
    let id = v["job_id"].as_str().unwrap().to_string();
    wait_status(&sim, &id, &["running"]).await;
    // A second job waits behind it
    let (_, v2) = create(&sim, json!({"query": "create table never(a int)"})).await;
    let id2 = v2["job_id"].as_str().unwrap().to_string();
    assert_eq!(get_job(&sim, &id2).await.1["status"], "pending");
    let (s, v) = delete_job(&sim, &id2).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("cancelled")));
    let (s, v) = delete_job(&sim, &id).await;
    assert_eq!(s, 200);
    assert_eq!(v["status"], "cancelled");
    for _ in 0..100 {
        let n = sim.psql_admin_async("demo", "select count(*) from pg_stat_activity where datname = current_database() and query = 'select pg_sleep(30)'").await.unwrap();
        if n[0][0].as_deref() == Some("0") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let n = sim.psql_admin_async("demo", "select count(*) from pg_stat_activity where datname = current_database() and query = 'select pg_sleep(30)'").await.unwrap();
    assert_eq!(n[0][0].as_deref(), Some("0"));
    let (s, v) = delete_job(&sim, &id).await;
    assert_eq!((s, err_msg(&v).as_str()), (400, "Cannot set status from cancelled to cancelled"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get_job(&sim, &id2).await.1["status"], "cancelled");
    assert_eq!(sim.psql_value("demo", "select to_regclass('never')::text"), None);
    // Done jobs cannot be cancelled
    let (_, v) = create(&sim, json!({"query": "select 1"})).await;
    let id = v["job_id"].as_str().unwrap().to_string();
    wait_status(&sim, &id, &["done"]).await;
    let (s, v) = delete_job(&sim, &id).await;
    assert_eq!((s, v), (400, json!({"error": ["Cannot set status from done to cancelled"]})));
    // Unknown id
    let (s, v) = get_job(&sim, "00000000-0000-0000-0000-000000000000").await;
    assert_eq!((s, v), (400, json!({"error": ["Job with id 00000000-0000-0000-0000-000000000000 not found"]})));
    // Missing query
    let (s, v) = create(&sim, json!({"nothing": 1})).await;
    assert_eq!((s, v), (400, json!({"error": ["You must indicate a valid SQL"]})));
    // Payload limit
    let big = "x".repeat(17000);
    let (s, v) = create(&sim, json!({"query": big})).await;
    assert_eq!(s, 400);
    assert_eq!(
        err_msg(&v),
        "Your payload is too large: 17012 bytes. Max size allowed is 16384 bytes (16kb). Are you trying to import data?. Please, check out import api http://docs.cartodb.com/cartodb-platform/import-api/"
    );
    // Master key only
    let r = client().post(format!("{}?api_key={}", job_url(&sim), DEMO_REGULAR_KEY)).json(&json!({"query": "select 1"})).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.text().await.unwrap(), r#"{"error":["permission denied"]}"#);
    let r = client().post(job_url(&sim)).json(&json!({"query": "select 1"})).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = client().get(format!("{}/{id}?api_key=bad", job_url(&sim))).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // Basic auth works
    let r = client().get(format!("{}/{id}", job_url(&sim))).basic_auth("demo", Some(DEMO_MASTER_KEY)).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_limit_timeout_and_ttl() {
    let sim = TestSim::start_default();
    sim.admin().set_limits(|l| {
        l.batch_max_queued = 2;
        l.batch_statement_timeout_ms = 300;
        l.batch_ttl_secs = 0.5;
    });
    // Job timeout
    let (_, v) = create(&sim, json!({"query": "select pg_sleep(5)"})).await;
    let id = v["job_id"].as_str().unwrap().to_string();
    let v = wait_status(&sim, &id, &["failed"]).await;
    assert_eq!(v["failed_reason"], "canceling statement due to statement timeout");
    // TTL: finished jobs are forgotten → 404
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (s, v) = get_job(&sim, &id).await;
    assert_eq!(s, 404, "{v}");
    // Queue limit: one running + two pending, the next is refused
    sim.admin().set_limits(|l| l.batch_statement_timeout_ms = 60_000);
    let (_, v) = create(&sim, json!({"query": "select pg_sleep(1)"})).await;
    let first = v["job_id"].as_str().unwrap().to_string();
    wait_status(&sim, &first, &["running"]).await;
    assert_eq!(create(&sim, json!({"query": "select 1"})).await.0, 201);
    assert_eq!(create(&sim, json!({"query": "select 2"})).await.0, 201);
    let (s, v) = create(&sim, json!({"query": "select 3"})).await;
    assert_eq!(s, 400);
    assert_eq!(err_msg(&v), "Failed to create job. Max number of jobs (2) queued reached");
    delete_job(&sim, &first).await;
}
