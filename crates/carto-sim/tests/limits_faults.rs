//! Rate limits, fault injection, the request log and the admin HTTP API.
mod common;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn q_url(sim: &TestSim, key: &str) -> String {
    format!("{}?q=select+1&api_key={key}", sim.sql_url("demo"))
}

fn h(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers().get(name).map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn rate_limits_by_plan() {
    let sim = TestSim::start_default();
    let c = client();
    // unlimited: no rate-limit headers
    let r = c.get(q_url(&sim, DEMO_MASTER_KEY)).send().await.unwrap();
    assert!(h(&r, "carto-rate-limit-limit").is_none());
    sim.admin().set_plan("demo", carto_sim::config::Plan::Free);
    for i in 0..6 {
        let r = c.get(q_url(&sim, DEMO_MASTER_KEY)).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(h(&r, "carto-rate-limit-limit").as_deref(), Some("6"));
        assert_eq!(h(&r, "carto-rate-limit-remaining"), Some((5 - i).to_string()));
        assert!(h(&r, "carto-rate-limit-reset").is_some());
        assert!(h(&r, "retry-after").is_none());
    }
    // Counted before the credentials are checked
    let r = c.get(q_url(&sim, "wrong")).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(h(&r, "retry-after").as_deref(), Some("1"));
    assert_eq!(h(&r, "carto-rate-limit-remaining").as_deref(), Some("0"));
    assert_eq!(h(&r, "carto-user").as_deref(), Some("demo"));
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"error":["You are over platform's limits. Please contact us to know more details"],"context":"limit","detail":"rate-limit"}"#
    );
    // Other groups are independent; COPY is 1 per minute on free
    let url = format!("{}/api/v2/sql/copyto?api_key={DEMO_MASTER_KEY}&q=COPY+cities+(name)+TO+STDOUT", sim.base_url("demo"));
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(h(&r, "carto-rate-limit-limit").as_deref(), Some("1"));
    let _ = r.bytes().await;
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(h(&r, "retry-after").as_deref(), Some("60"));
    // After a second the /sql bucket has room again
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = c.get(q_url(&sim, DEMO_MASTER_KEY)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Enterprise: 15 per second; override by the admin API
    sim.admin().set_plan("demo", carto_sim::config::Plan::Enterprise);
    sim.admin().reset_rate_limits();
    let r = c.get(q_url(&sim, DEMO_MASTER_KEY)).send().await.unwrap();
    assert_eq!(h(&r, "carto-rate-limit-limit").as_deref(), Some("15"));
    let admin = format!("{}/_sim/users/demo", sim.url());
    let r = c.post(&admin).json(&json!({"rate_limits": {"query": {"count": 1, "period_secs": 10}}})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    sim.admin().reset_rate_limits();
    assert_eq!(c.get(q_url(&sim, DEMO_MASTER_KEY)).send().await.unwrap().status(), 200);
    let r = c.get(q_url(&sim, DEMO_MASTER_KEY)).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(h(&r, "retry-after").as_deref(), Some("10"));
    let r = c.post(&admin).json(&json!({"plan": "unlimited", "reset_rate_limits": true})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(c.get(q_url(&sim, DEMO_MASTER_KEY)).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn faults_through_the_admin_api() {
    let sim = TestSim::start_default();
    let c = client();
    let faults = format!("{}/_sim/faults", sim.url());
    // A status for the next 2 requests of a group
    let r = c.post(&faults).json(&json!({"group": "query", "status": 503, "count": 2})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let listed: Value = c.get(&faults).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed[0]["remaining"], 2);
    for _ in 0..2 {
        let r = c.get(q_url(&sim, DEMO_MASTER_KEY)).send().await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.text().await.unwrap(), r#"{"error":["Injected fault"]}"#);
    }
    assert_eq!(c.get(q_url(&sim, DEMO_MASTER_KEY)).send().await.unwrap().status(), 200);
    // Custom JSON body; other groups unaffected
    c.post(&faults).json(&json!({"group": "copy_to", "status": 500, "json": {"error": ["boom"]}})).send().await.unwrap();
    assert_eq!(c.get(q_url(&sim, DEMO_MASTER_KEY)).send().await.unwrap().status(), 200);
    let url = format!("{}/api/v2/sql/copyto?api_key={DEMO_MASTER_KEY}&q=COPY+cities+(name)+TO+STDOUT", sim.base_url("demo"));
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(r.text().await.unwrap(), r#"{"error":["boom"]}"#);
    // HTML 502 like a proxy
    c.post(&faults).json(&json!({"group": "any", "html_502": true})).send().await.unwrap();
    let r = c.get(q_url(&sim, DEMO_MASTER_KEY)).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(h(&r, "content-type").as_deref(), Some("text/html"));
    assert!(r.text().await.unwrap().contains("<title>502 Bad Gateway</title>"));
    // Cut the response after 5 bytes
    c.post(&faults).json(&json!({"group": "copy_to", "cut_response_after": 5})).send().await.unwrap();
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.is_err(), "the body is cut");
    c.post(&faults).json(&json!({"group": "query", "cut_response_after": 5})).send().await.unwrap();
    // (hyper may not even have flushed the head: either way the client sees a broken answer)
    match c.get(q_url(&sim, DEMO_MASTER_KEY)).send().await {
        Ok(r) => assert!(r.bytes().await.is_err(), "a Content-Length body cut short"),
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    // Latency
    c.post(&faults).json(&json!({"group": "query", "latency_ms": 300})).send().await.unwrap();
    let t = Instant::now();
    assert_eq!(c.get(q_url(&sim, DEMO_MASTER_KEY)).send().await.unwrap().status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    // Only one user
    c.post(&faults).json(&json!({"group": "query", "user": "alice", "status": 418})).send().await.unwrap();
    assert_eq!(c.get(q_url(&sim, DEMO_MASTER_KEY)).send().await.unwrap().status(), 200);
    let r = c.get(format!("{}?q=select+1&api_key={}", sim.sql_url("alice"), sim.master_key("alice"))).send().await.unwrap();
    assert_eq!(r.status(), 418);
    // Bad specs are refused; clear
    let r = c.post(&faults).json(&json!({"group": "nope", "status": 500})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    c.post(&faults).json(&json!({"status": 500, "count": 5})).send().await.unwrap();
    assert_eq!(c.delete(&faults).send().await.unwrap().status(), 200);
    assert_eq!(c.get(q_url(&sim, DEMO_MASTER_KEY)).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn request_log_and_limits_through_the_admin_api() {
    let sim = TestSim::start_default();
    let c = client();
    let log = format!("{}/_sim/log", sim.url());
    assert_eq!(c.delete(&log).send().await.unwrap().status(), 200);
    let r = c.post(sim.sql_url("demo")).form(&[("q", "select name from cities"), ("api_key", DEMO_REGULAR_KEY)]).send().await.unwrap();
    let body = r.bytes().await.unwrap();
    let _ = c.get(format!("{}?q=select+1&api_key=nope", sim.sql_url("demo"))).send().await.unwrap().bytes().await;
    let _ = c.get(format!("{}?q=select+1", sim.sql_url("demo"))).send().await.unwrap().bytes().await;
    sim.admin().wait_log(Duration::from_secs(2), |e| e.status == 200 && e.key_kind.as_deref() == Some("default_public"));
    let entries: Value = c.get(&log).send().await.unwrap().json().await.unwrap();
    let e = entries.as_array().unwrap();
    assert_eq!(e.len(), 3, "{entries}");
    assert_eq!(e[0]["method"], "POST");
    assert_eq!(e[0]["group"], "query");
    assert_eq!(e[0]["user"], "demo");
    assert_eq!(e[0]["key_kind"], "regular");
    assert_eq!(e[0]["status"], 200);
    assert_eq!(e[0]["bytes_out"], body.len());
    assert!(e[0]["bytes_in"].as_u64().unwrap() > 10);
    assert_eq!(e[0]["aborted"], false);
    assert!(e[0]["duration_ms"].is_number());
    assert_eq!(e[1]["status"], 401);
    assert_eq!(e[2]["key_kind"], "default_public");
    assert!(!entries.to_string().contains(DEMO_REGULAR_KEY), "keys are never logged");
    // Limits at run time
    let limits = format!("{}/_sim/limits", sim.url());
    let r = c.post(&limits).json(&json!({"copyfrom_max_bytes": 10})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = c.get(&limits).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["copyfrom_max_bytes"], 10);
    sim.psql("demo", "create table t(a text)").unwrap();
    let r = c
        .post(format!("{}/api/v2/sql/copyfrom?api_key={DEMO_MASTER_KEY}&q=COPY+t+FROM+STDIN", sim.base_url("demo")))
        .body("aaaaaaaaaaaaaaaaaaaa\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.text().await.unwrap(), r#"{"error":["COPY FROM maximum POST size of 10 bytes exceeded"]}"#);
    let r = c.post(&limits).json(&json!({"no_such_limit": 1})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // Statement timeout per user through the API
    let r = c.post(format!("{}/_sim/users/demo", sim.url())).json(&json!({"statement_timeout_ms": 100})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (s, _) = sql(&sim, "demo", "select pg_sleep(1)").await;
    assert_eq!(s, 429);
    // Grants re-applied on demand: a new table named in a grant
    let r = c.post(format!("{}/_sim/grants", sim.url())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(c.get(format!("{}/_sim/health", sim.url())).send().await.unwrap().status(), 200);
    assert_eq!(c.get(format!("{}/_sim/nothing", sim.url())).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn admin_token() {
    let mut cfg = testkit::default_config();
    cfg.admin.token = Some("sekret".into());
    let sim = TestSim::start(cfg);
    let c = client();
    let log = format!("{}/_sim/log", sim.url());
    assert_eq!(c.get(&log).send().await.unwrap().status(), 401);
    assert_eq!(c.get(&log).bearer_auth("sekret").send().await.unwrap().status(), 200);
}
