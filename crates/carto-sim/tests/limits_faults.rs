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

/// An injected 429 is one of CARTO's two kinds: with `retry_after` the rate-limit refusal (its JSON,
/// Retry-After and the Carto-Rate-Limit-* headers), without it the statement-timeout kind (no Retry-After).
#[tokio::test]
async fn injected_429_rate_limit_or_timeout_kind() {
    let sim = TestSim::start_default();
    let c = client();
    let faults = format!("{}/_sim/faults", sim.url());
    let r = c.post(&faults).json(&json!({"group": "query", "status": 429, "retry_after": 7})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(q_url(&sim, DEMO_MASTER_KEY)).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(h(&r, "retry-after").as_deref(), Some("7"));
    assert_eq!(h(&r, "carto-rate-limit-limit").as_deref(), Some("1"), "unlimited plan: no group limit");
    assert_eq!(h(&r, "carto-rate-limit-remaining").as_deref(), Some("0"));
    assert_eq!(h(&r, "carto-rate-limit-reset").as_deref(), Some("7"));
    assert_eq!(h(&r, "content-type").as_deref(), Some("application/json; charset=utf-8"));
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"error":["You are over platform's limits. Please contact us to know more details"],"context":"limit","detail":"rate-limit"}"#
    );
    // The group's real limit is reported when the plan has one
    sim.admin().set_plan("demo", carto_sim::config::Plan::Free);
    let url = format!("{}/api/v2/sql/copyto?api_key={DEMO_MASTER_KEY}&q=COPY+cities+(name)+TO+STDOUT", sim.base_url("demo"));
    c.post(&faults).json(&json!({"group": "copy_to", "status": 429, "retry_after": 60})).send().await.unwrap();
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(h(&r, "retry-after").as_deref(), Some("60"));
    assert_eq!(h(&r, "carto-rate-limit-limit").as_deref(), Some("1"));
    sim.admin().set_plan("demo", carto_sim::config::Plan::Enterprise);
    c.post(&faults).json(&json!({"group": "query", "status": 429, "retry_after": 1})).send().await.unwrap();
    let r = c.get(q_url(&sim, DEMO_MASTER_KEY)).send().await.unwrap();
    assert_eq!(h(&r, "carto-rate-limit-limit").as_deref(), Some("15"));
    sim.admin().set_plan("demo", carto_sim::config::Plan::Unlimited);
    // Without retry_after: the statement-timeout kind
    sim.admin().fail_next("query", 429, 1);
    let r = c.get(q_url(&sim, DEMO_MASTER_KEY)).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(h(&r, "retry-after").is_none());
    assert!(h(&r, "carto-rate-limit-limit").is_none());
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"error":["You are over platform's limits: SQL query timeout error. Refactor your query before running again or contact CARTO support for more details."],"context":"limit","detail":"datasource"}"#
    );
    // A custom body wins; retry_after still sets the header (on any status)
    c.post(&faults).json(&json!({"group": "query", "status": 503, "retry_after": 3, "json": {"error": ["busy"]}})).send().await.unwrap();
    let r = c.get(q_url(&sim, DEMO_MASTER_KEY)).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(h(&r, "retry-after").as_deref(), Some("3"));
    assert!(h(&r, "carto-rate-limit-limit").is_none());
    assert_eq!(r.text().await.unwrap(), r#"{"error":["busy"]}"#);
    // retry_after needs a status; bad values are refused
    let r = c.post(&faults).json(&json!({"group": "query", "retry_after": 3})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = c.post(&faults).json(&json!({"group": "query", "status": 429, "retry_after": -1})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(c.get(q_url(&sim, DEMO_MASTER_KEY)).send().await.unwrap().status(), 200);
}

/// Node's idle socket timeout also closes a keep-alive connection that waits too long for its next request.
#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sim = TestSim::start_default();
    sim.admin().set_limits(|l| l.idle_timeout_secs = 0.5);
    let addr = sim.url().trim_start_matches("http://").to_string();
    let request = format!("GET /user/demo/api/v2/sql?q=select+1+as+x&api_key={DEMO_MASTER_KEY} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    // Read one whole answer (Content-Length or chunked); None when the server closed the connection.
    async fn answer(s: &mut tokio::net::TcpStream) -> Option<String> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let head = head.to_ascii_lowercase();
                let len = head.lines().find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap()));
                let chunked = head.contains("transfer-encoding: chunked");
                if len.is_some_and(|n| body.len() >= n) || (chunked && body.ends_with("0\r\n\r\n")) {
                    return Some(text);
                }
            }
            let n = s.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // Requests within the timeout reuse the connection
    for _ in 0..3 {
        s.write_all(request.as_bytes()).await.unwrap();
        let a = answer(&mut s).await.expect("an answer");
        assert!(a.starts_with("HTTP/1.1 200"), "{a}");
        assert!(a.contains(r#"{"rows":[{"x":1}"#) && a.contains(r#""total_rows":1}"#), "{a}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Idle longer than the timeout: the server closes it (EOF), without an answer
    let t = Instant::now();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await.expect("closed by the server").unwrap_or(0);
    assert_eq!(n, 0, "{}", String::from_utf8_lossy(&rest));
    assert!(t.elapsed() >= Duration::from_millis(200), "not before the timeout: {:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // A connection that never sends a request is closed too
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await.expect("closed by the server").unwrap_or(0);
    assert_eq!(n, 0);
    // A fresh connection still works
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    assert!(answer(&mut s).await.is_some());
}

/// One raw chunked upload of `total` bytes of COPY text to /copyfrom; every write must succeed. Returns the answer.
async fn raw_upload(sim: &TestSim, key: &str, total: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let url = reqwest::Url::parse(&sim.base_url("demo")).unwrap();
    let mut s = tokio::net::TcpStream::connect((url.host_str().unwrap(), url.port().unwrap())).await.unwrap();
    let head = format!(
        "POST {}/api/v2/sql/copyfrom?q=COPY+t_linger+FROM+STDIN&api_key={key} HTTP/1.1\r\nHost: {}\r\n\
         Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        url.path().trim_end_matches('/'),
        url.host_str().unwrap()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let chunk = "0123456789abcdef\n".repeat(1024);
    let mut sent = 0;
    while sent < total {
        let r = s.write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes()).await;
        assert!(r.is_ok(), "write after {sent} bytes failed: {r:?} (the server reset the upload instead of draining it)");
        sent += chunk.len();
    }
    s.write_all(b"0\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// An upload that CARTO answers before its end (the byte limit passed, a wrong key) is drained, as nginx's
/// lingering close does in front of CARTO: the client's writes never fail and it reads the answer.
#[tokio::test]
async fn an_upload_answered_early_is_drained_so_the_client_reads_the_answer() {
    let sim = TestSim::start_default();
    sim.psql("demo", "create table t_linger(a text)").unwrap();
    sim.admin().set_limits(|l| l.copyfrom_max_bytes = 64 * 1024);
    let a = raw_upload(&sim, DEMO_MASTER_KEY, 32 << 20).await;
    assert!(a.starts_with("HTTP/1.1 400"), "{a}");
    assert!(a.contains("COPY FROM maximum POST size of"), "{a}");
    let a = raw_upload(&sim, "wrong", 32 << 20).await;
    assert!(a.starts_with("HTTP/1.1 401"), "{a}");
    assert_eq!(sim.psql_value("demo", "select count(*) from t_linger").as_deref(), Some("0"));
}

#[tokio::test]
async fn a_fault_answers_raw_bytes_for_hostile_answers() {
    let sim = TestSim::start_default();
    let c = client();
    let faults = format!("{}/_sim/faults", sim.url());
    // Bytes that are not UTF-8, as a /copyto stream: what carto_fdw must refuse (tests/e2e 50_security).
    let r = c.post(&faults).json(&json!({"group": "copy_to", "status": 200, "body_hex": "ff fe 61 62 63 0a"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let url = format!("{}/api/v2/sql/copyto?api_key={DEMO_MASTER_KEY}&q=COPY+cities+(name)+TO+STDOUT", sim.base_url("demo"));
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(h(&r, "content-type").as_deref(), Some("application/octet-stream"));
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"\xff\xfeabc\n");
    // Not hex, or without a status: refused.
    for spec in [json!({"group": "copy_to", "status": 200, "body_hex": "zz"}), json!({"group": "copy_to", "body_hex": "00"})] {
        assert_eq!(c.post(&faults).json(&spec).send().await.unwrap().status(), 400);
    }
}
