//! carto-client against carto-sim's in-process testkit.
//!
//! Needs a PostgreSQL with PostGIS named by CARTO_SIM_ADMIN_URL, e.g.
//!   scripts/pg-cluster start /tmp/clientpg 55700
//!   export CARTO_SIM_ADMIN_URL='host=127.0.0.1 port=55700 user=postgres dbname=postgres'

use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use carto_client::copy_text::{self, Decoder};
use carto_client::{
    BatchJobRequest, BatchQuery, Client, ClientConfig, Error, ErrorKind, JobStatus,
};
use carto_sim::rate_limit::{Group, RateSpec};
use carto_sim::testkit::{self, fault_spec, TestSim};
use carto_sim::faults::FaultSpec;

mod common;
use common::{open_copies, wait_query_gone};

const ALL_KEYS: &[&str] = &[
    testkit::DEMO_MASTER_KEY,
    testkit::DEMO_REGULAR_KEY,
    testkit::ALICE_MASTER_KEY,
    testkit::BOB_MASTER_KEY,
    "wrong-key-0123456789",
];

/// Every error a test sees goes through here: its Display and Debug must not contain any key, in clear or in
/// its Basic-auth encoding.
fn checked(e: Error) -> Error {
    let text = format!("{e}\n{e:?}");
    for k in ALL_KEYS {
        assert!(!text.contains(k), "key leaked in error: {text}");
        for user in ["demo", "alice", "bob", "nobody"] {
            let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{k}"));
            assert!(!text.contains(&b), "encoded key leaked in error: {text}");
        }
    }
    e
}

fn err<T: std::fmt::Debug>(r: carto_client::Result<T>) -> Error {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => checked(e),
    }
}

fn ok<T>(r: carto_client::Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("unexpected error: {}", checked(e)),
    }
}

fn cfg(sim: &TestSim, user: &str, key: Option<&str>) -> ClientConfig {
    let mut c = ClientConfig::for_base_url(&sim.base_url(user)).unwrap();
    if let Some(k) = key {
        c = c.with_api_key(k);
    }
    c.max_retry_wait = Duration::from_secs(5);
    c
}

fn demo(sim: &TestSim) -> Client {
    Client::new(cfg(sim, "demo", Some(testkit::DEMO_MASTER_KEY))).unwrap()
}

fn with(sim: &TestSim, f: impl FnOnce(&mut ClientConfig)) -> Client {
    let mut c = cfg(sim, "demo", Some(testkit::DEMO_MASTER_KEY));
    f(&mut c);
    Client::new(c).unwrap()
}

fn count(sim: &TestSim, table: &str) -> i64 {
    sim.psql_value("demo", &format!("select count(*) from {table}")).unwrap().parse().unwrap()
}

async fn read_all(mut s: carto_client::CopyOutStream) -> carto_client::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(c) = s.next_chunk().await? {
        assert!(c.ends_with(b"\n"), "chunk not made of whole lines");
        out.extend_from_slice(&c);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------------------
// /sql

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_basics_and_text_rows() {
    let sim = TestSim::start_default();
    let c = demo(&sim);
    let r = ok(c.query("select cartodb_id::text as id, name::text, null::text as n from cities order by cartodb_id").await);
    assert_eq!(r.fields.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(), ["id", "name", "n"]);
    assert_eq!(r.total_rows, 3);
    assert_eq!(r.stats.requests, 1);
    assert!(r.stats.bytes_received > 0);
    let rows = ok(r.text_rows(&["id", "name", "n"]));
    assert_eq!(rows[0], vec![Some("1".to_string()), Some("Madrid".to_string()), None]);
    // Writes give total_rows = affected rows.
    let r = ok(c.query("update cities set name = name where cartodb_id < 3").await);
    assert_eq!(r.total_rows, 2);
    assert!(r.rows.is_empty());
    // Public access: no key.
    let public = Client::new(cfg(&sim, "demo", None)).unwrap();
    let r = ok(public.query_readonly("select 1 as one").await);
    assert_eq!(r.rows[0]["one"], serde_json::json!(1));
    // Cloud-style config by user name is well formed (not reachable here).
    let cloud = ClientConfig::for_username("demo").unwrap();
    assert_eq!(cloud.base_url.as_str(), "https://demo.carto.com/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_error_statuses() {
    let sim = TestSim::start_default();
    let c = demo(&sim);
    // 400 with detail.
    let e = err(c.query("insert into cities (cartodb_id, name) values (1, 'dup')").await);
    assert_eq!(e.kind, ErrorKind::BadRequest);
    assert_eq!(e.status, Some(400));
    assert!(e.message.contains("duplicate key"), "{e}");
    assert!(e.detail.as_deref().unwrap_or("").contains("already exists"), "{e:?}");
    // 400 with hint.
    let e = err(c.query("select nme from cities").await);
    assert_eq!(e.kind, ErrorKind::BadRequest);
    assert!(e.hint.as_deref().unwrap_or("").contains("name"), "{e:?}");
    // 401: unknown key.
    let bad = Client::new(cfg(&sim, "demo", Some("wrong-key-0123456789"))).unwrap();
    let e = err(bad.query("select 1").await);
    assert_eq!(e.kind, ErrorKind::Unauthorized);
    assert_eq!(e.status, Some(401));
    // 403: a regular key without the grant.
    let reg = Client::new(cfg(&sim, "demo", Some(testkit::DEMO_REGULAR_KEY))).unwrap();
    ok(reg.query("select count(*) from cities").await);
    let e = err(reg.query("insert into cities (name) values ('x')").await);
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert_eq!(e.status, Some(403));
    // Batch API with a regular key: 403.
    let e = err(reg.batch_create(&BatchJobRequest::Single("select 1".into())).await);
    assert_eq!(e.kind, ErrorKind::Forbidden);
    // 404: unknown user.
    let nobody = Client::new(cfg(&sim, "nobody", Some(testkit::DEMO_MASTER_KEY))).unwrap();
    let e = err(nobody.query("select 1").await);
    assert_eq!(e.kind, ErrorKind::UserNotFound);
    assert_eq!(e.status, Some(404));
    // Error inside a 200 body, after streaming began.
    let e = err(c.query("select 1/(n-3) as x from generate_series(1,5) n").await);
    assert_eq!(e.kind, ErrorKind::BadRequest);
    assert!(e.message.contains("division by zero"), "{e}");
    // Malformed: HTML from a proxy (502) is Transport and not retried for a write.
    sim.admin().fault(FaultSpec { group: Some("query".into()), html_502: true, ..fault_spec() });
    let e = err(c.query("select 1").await);
    assert_eq!(e.kind, ErrorKind::Transport);
    assert_eq!(e.status, Some(502));
    assert_eq!(e.retries, 0);
    // A 200 that is not JSON is a Protocol error.
    sim.admin().fault(FaultSpec {
        group: Some("query".into()),
        status: Some(200),
        body: Some("<html>hello</html>".into()),
        ..fault_spec()
    });
    let e = err(c.query_readonly("select 1").await);
    assert_eq!(e.kind, ErrorKind::Protocol);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_retries() {
    let sim = TestSim::start_default();
    let c = demo(&sim);
    // Read-only: a 502 HTML page and a 503 are retried.
    sim.admin().fault(FaultSpec { group: Some("query".into()), html_502: true, ..fault_spec() });
    let r = ok(c.query_readonly("select 1 as one").await);
    assert_eq!(r.stats.retries, 1);
    assert_eq!(r.stats.requests, 2);
    sim.admin().fail_next("query", 503, 2);
    let r = ok(c.query_readonly("select 1 as one").await);
    assert_eq!(r.stats.retries, 2);
    assert_eq!(r.stats.requests, 3);
    // More failures than max_retries: the error tells how many retries were made.
    sim.admin().fail_next("query", 503, 10);
    let c1 = with(&sim, |c| c.max_retries = 2);
    let e = err(c1.query_readonly("select 1").await);
    assert_eq!(e.kind, ErrorKind::Transport);
    assert_eq!(e.retries, 2);
    assert!(e.to_string().contains("after 2 retries"), "{e}");
    sim.admin().clear_faults();
    // A cut response is retried for reads.
    sim.admin().fault(FaultSpec { group: Some("query".into()), cut_response_after: Some(10), ..fault_spec() });
    let r = ok(c.query_readonly("select repeat('x', 1000) as x").await);
    assert_eq!(r.stats.retries, 1);
    // ... and not for writes.
    sim.admin().fault(FaultSpec { group: Some("query".into()), cut_response_after: Some(10), ..fault_spec() });
    let e = err(c.query("select repeat('x', 1000) as x").await);
    assert_eq!(e.kind, ErrorKind::Transport);
    // 429 with Retry-After (rate limit): waited for and retried, also for writes.
    sim.admin().set_rate_limit("demo", Group::Query, Some(RateSpec { count: 1, period_secs: 1.0, burst: Some(1) }));
    ok(c.query("select 1").await);
    let t = Instant::now();
    let r = ok(c.query("update cities set name = name where cartodb_id = 1").await);
    assert!(r.stats.retries >= 1, "{:?}", r.stats);
    assert!(t.elapsed() >= Duration::from_millis(500));
    // A Retry-After longer than max_retry_wait is not waited for.
    sim.admin().set_rate_limit("demo", Group::Query, Some(RateSpec { count: 1, period_secs: 30.0, burst: Some(1) }));
    sim.admin().reset_rate_limits();
    ok(c.query("select 1").await);
    let t = Instant::now();
    let e = err(c.query_readonly("select 1").await);
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert!(e.retry_after.is_some());
    assert!(e.rate_limit.is_some(), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
    sim.admin().set_rate_limit("demo", Group::Query, None);
    // 429 without Retry-After: CARTO's statement timeout, never retried.
    sim.admin().set_statement_timeout("demo", Some(200));
    let e = err(c.query_readonly("select pg_sleep(2)").await);
    assert_eq!(e.kind, ErrorKind::RemoteTimeout);
    assert_eq!(e.status, Some(429));
    assert_eq!(e.retries, 0);
    assert!(e.retry_after.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_transport() {
    let sim = TestSim::start_default();
    // A slow server: request_timeout.
    let c = with(&sim, |c| {
        c.request_timeout = Duration::from_millis(500);
        c.max_retries = 0;
    });
    sim.admin().fault(FaultSpec { group: Some("query".into()), latency_ms: Some(3000), ..fault_spec() });
    let t = Instant::now();
    let e = err(c.query_readonly("select 1").await);
    assert_eq!(e.kind, ErrorKind::Timeout);
    assert!(t.elapsed() < Duration::from_secs(2));
    // Connection refused: Transport, retried for reads.
    let mut cf = ClientConfig::for_base_url("http://127.0.0.1:9/user/demo").unwrap().with_api_key("wrong-key-0123456789");
    cf.max_retries = 1;
    cf.max_retry_wait = Duration::from_millis(100);
    let dead = Client::new(cf).unwrap();
    let e = err(dead.query_readonly("select 1").await);
    assert_eq!(e.kind, ErrorKind::Transport);
    assert_eq!(e.retries, 1);
    let e = err(dead.copy_to("COPY cities TO STDOUT").await);
    assert_eq!(e.kind, ErrorKind::Transport);
    // Dropping a query future cancels it promptly.
    let c = demo(&sim);
    let t = Instant::now();
    let r = tokio::time::timeout(Duration::from_millis(300), c.query("select pg_sleep(5)")).await;
    assert!(r.is_err());
    assert!(t.elapsed() < Duration::from_secs(1));
    // TLS configuration errors.
    let mut cf = cfg(&sim, "demo", None);
    cf.ca_file = Some("/nonexistent/ca.pem".into());
    assert_eq!(checked(Client::new(cf).unwrap_err()).kind, ErrorKind::Config);
    let dir = std::env::temp_dir().join(format!("cc-ca-{}", std::process::id()));
    std::fs::write(&dir, "not a pem").unwrap();
    let mut cf = cfg(&sim, "demo", None);
    cf.ca_file = Some(dir.clone());
    assert_eq!(checked(Client::new(cf).unwrap_err()).kind, ErrorKind::Config);
    let _ = std::fs::remove_file(dir);
    let mut cf = cfg(&sim, "demo", None);
    cf.insecure = true;
    ok(Client::new(cf).unwrap().query("select 1").await);
}

// ---------------------------------------------------------------------------------------------------------
// /copyto

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_to_plain_and_gzip() {
    let sim = TestSim::start_default();
    let c = demo(&sim);
    let sql = "COPY (select n, 'v' || n, case when n % 7 = 0 then null else E'a\\tb' end from generate_series(1, 20000) n) TO STDOUT";
    let mut expected = Vec::new();
    for n in 1..=20000 {
        let third = if n % 7 == 0 { "\\N".to_string() } else { "a\\tb".to_string() };
        expected.extend_from_slice(format!("{n}\tv{n}\t{third}\n").as_bytes());
    }
    for gzip in [false, true] {
        sim.admin().set_limits(|l| l.copyto_gzip = gzip);
        let s = ok(c.copy_to(sql).await);
        let data = ok(read_all(s).await);
        assert_eq!(data.len(), expected.len(), "gzip {gzip}");
        assert!(data == expected, "gzip {gzip}");
        let mut d = Decoder::new();
        let first = copy_text::lines(&data).next().unwrap();
        d.decode(first).unwrap();
        assert_eq!(d.field(2), Some(&b"a\tb"[..]));
    }
    // Stats.
    let mut s = ok(c.copy_to("COPY cities (name) TO STDOUT").await);
    let mut n = 0;
    while let Some(ch) = ok(s.next_chunk().await) {
        n += copy_text::lines(&ch).count();
    }
    assert_eq!(n, 3);
    assert_eq!(s.stats().requests, 1);
    assert!(s.stats().bytes_received > 0);
    assert!(ok(s.next_chunk().await).is_none());
    // Errors before the stream: 400.
    let e = err(c.copy_to("COPY nosuchtable TO STDOUT").await);
    assert_eq!(e.kind, ErrorKind::BadRequest);
    assert_eq!(e.status, Some(400));
    let e = err(c.copy_to("select 1").await);
    assert_eq!(e.kind, ErrorKind::BadRequest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_to_error_appended_and_cuts() {
    let sim = TestSim::start_default();
    let c = demo(&sim);
    // An error after data: an Err, never rows; the data before it is a prefix.
    for gzip in [false, true] {
        sim.admin().set_limits(|l| l.copyto_gzip = gzip);
        let mut s = ok(c.copy_to("COPY (select n, 1/(n-30000) from generate_series(1, 40000) n) TO STDOUT").await);
        let mut got = 0usize;
        let e = loop {
            match s.next_chunk().await {
                Ok(Some(ch)) => {
                    for l in copy_text::lines(&ch) {
                        assert!(!l.starts_with(b"{"), "error taken as data");
                        got += 1;
                    }
                }
                Ok(None) => panic!("stream ended cleanly"),
                Err(e) => break checked(e),
            }
        };
        assert_eq!(e.kind, ErrorKind::BadRequest, "{e}");
        assert!(e.message.contains("division by zero"), "{e}");
        assert!(got < 30000);
    }
    // A connection cut mid-stream: an Err, never a short result.
    for gzip in [false, true] {
        sim.admin().set_limits(|l| l.copyto_gzip = gzip);
        sim.admin().fault(FaultSpec { group: Some("copy_to".into()), cut_response_after: Some(5000), ..fault_spec() });
        let s = ok(c.copy_to("COPY (select n from generate_series(1, 100000) n) TO STDOUT").await);
        let e = err(read_all(s).await);
        assert!(matches!(e.kind, ErrorKind::Transport | ErrorKind::Protocol), "{e}");
    }
    // An idle stream: the idle-read timeout.
    let c2 = with(&sim, |c| c.request_timeout = Duration::from_millis(800));
    let s = ok(c2
        .copy_to("COPY (select n, repeat('x', 100), pg_sleep(case when n = 2000 then 3 else 0 end) from generate_series(1, 2001) n) TO STDOUT")
        .await);
    let t = Instant::now();
    let e = err(read_all(s).await);
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    assert!(t.elapsed() < Duration::from_millis(2500));
    // A cut before the first byte is retried (nothing was handed out yet).
    sim.admin().set_limits(|l| l.copyto_gzip = false);
    sim.admin().fault(FaultSpec { group: Some("copy_to".into()), cut_response_after: Some(0), ..fault_spec() });
    let s = ok(c.copy_to("COPY cities (name) TO STDOUT").await);
    assert_eq!(s.stats().retries, 1);
    assert_eq!(ok(read_all(s).await).iter().filter(|&&b| b == b'\n').count(), 3);
    // A 429 on copyto: waited for by copy_to, returned at once by copy_to_with(.., false).
    sim.admin().set_rate_limit("demo", Group::CopyTo, Some(RateSpec { count: 1, period_secs: 1.0, burst: Some(1) }));
    ok(read_all(ok(c.copy_to("COPY cities (name) TO STDOUT").await)).await);
    let t = Instant::now();
    let e = err(c.copy_to_with("COPY cities (name) TO STDOUT", false).await);
    assert_eq!(e.kind, ErrorKind::RateLimited, "{e}");
    assert!(e.retry_after.is_some());
    assert!(t.elapsed() < Duration::from_millis(500));
    let s = ok(c.copy_to("COPY cities (name) TO STDOUT").await);
    assert!(s.stats().retries >= 1, "{:?}", s.stats());
    ok(read_all(s).await);
    sim.admin().set_rate_limit("demo", Group::CopyTo, None);
    // 502 and a 429 with Retry-After before the stream are retried.
    sim.admin().fault(FaultSpec { group: Some("copy_to".into()), html_502: true, ..fault_spec() });
    let s = ok(c.copy_to("COPY cities (name) TO STDOUT").await);
    assert_eq!(s.stats().retries, 1);
    assert_eq!(ok(read_all(s).await).iter().filter(|&&b| b == b'\n').count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_to_drop_cancels_remote_query() {
    let sim = TestSim::start_default();
    let c = demo(&sim);
    let mut s = ok(c
        .copy_to("COPY (select n, repeat('x', 100) from generate_series(1, 100000000) n) TO STDOUT")
        .await);
    let first = ok(s.next_chunk().await).unwrap();
    assert!(!first.is_empty());
    let t = Instant::now();
    drop(s);
    let e = sim.admin().wait_log(Duration::from_secs(10), |e| e.path.ends_with("/copyto") && e.aborted);
    assert!(e.is_some(), "the sim did not see the connection close: {:?}", sim.admin().log());
    assert!(t.elapsed() < Duration::from_secs(5));
    // The backend query is gone.
    wait_query_gone(&sim, "COPY (select n, repeat").await;
}

// ---------------------------------------------------------------------------------------------------------
// /copyfrom

fn make_rows(from: u64, to: u64) -> Bytes {
    let mut out = Vec::new();
    for n in from..to {
        let text = format!("row {n}\twith\ttabs\\ and \n newlines é");
        let t = if n % 5 == 0 { None } else { Some(text.as_bytes()) };
        copy_text::encode_row([Some(n.to_string().as_bytes()), t], &mut out);
    }
    Bytes::from(out)
}

fn create_t(sim: &TestSim, name: &str) {
    sim.psql("demo", &format!("create table {name} (id bigint primary key, t text)")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_from_basics() {
    let sim = TestSim::start_default();
    for level in [0u32, 1, 9] {
        let table = format!("t{level}");
        create_t(&sim, &table);
        let c = with(&sim, |c| c.compression_level = level);
        let mut up = c.copy_from(&format!("COPY {table} (id, t) FROM STDIN"));
        for i in 0..10u64 {
            ok(up.send(make_rows(i * 1000, (i + 1) * 1000), 1000).await);
        }
        assert!(!up.needs_rollover());
        let s = ok(up.finish().await);
        assert_eq!(s.total_rows, 10000);
        assert_eq!(s.requests, 1);
        assert!(s.bytes_sent > 0);
        assert_eq!(count(&sim, &table), 10000);
        // Exact text round trip, NULL distinct from text.
        let v = sim.psql("demo", &format!("select t from {table} where id in (5, 7) order by id")).unwrap();
        assert_eq!(v[0][0], None);
        assert_eq!(v[1][0].as_deref(), Some("row 7\twith\ttabs\\ and \n newlines é"));
    }
    // The key travelled as Basic auth only: the sim saw the master key, and no URL holds it.
    let log = sim.admin().log();
    assert!(log.iter().any(|e| e.path.ends_with("/copyfrom") && e.key_kind.as_deref() == Some("master")), "{log:?}");
    for e in &log {
        assert!(!e.path.contains(testkit::DEMO_MASTER_KEY), "{e:?}");
    }
    // Only whole lines are accepted.
    let mut up = demo(&sim).copy_from("COPY t1 (id, t) FROM STDIN");
    assert_eq!(err(up.send(Bytes::from_static(b"1	x"), 1).await).kind, ErrorKind::Config);
    drop(up);
    // Nothing sent: no request at all.
    let c = demo(&sim);
    sim.admin().clear_log();
    let s = ok(c.copy_from("COPY t1 FROM STDIN").finish().await);
    assert_eq!(s.total_rows, 0);
    assert_eq!(s.requests, 0);
    assert!(sim.admin().log().iter().all(|e| !e.path.ends_with("/copyfrom")));
    // Bad data: CARTO's 400, and the table is unchanged.
    let mut up = c.copy_from("COPY t1 (id, t) FROM STDIN");
    let r = up.send(Bytes::from_static(b"100001\tok\nnot-a-number\tx\n"), 2).await;
    let e = match r {
        Err(e) => checked(e),
        Ok(()) => err(up.finish().await),
    };
    assert_eq!(e.kind, ErrorKind::BadRequest, "{e}");
    assert!(e.message.contains("invalid input syntax"), "{e}");
    assert_eq!(count(&sim, "t1"), 10000);
    // The COPY statement itself is wrong.
    let mut up = c.copy_from("COPY nosuch FROM STDIN");
    let r = up.send(make_rows(0, 10), 10).await;
    let e = match r {
        Err(e) => checked(e),
        Ok(()) => err(up.finish().await),
    };
    assert_eq!(e.kind, ErrorKind::BadRequest, "{e}");
    // A later upload on the same client works (the failed connection was not reused).
    let mut up = c.copy_from("COPY t1 (id, t) FROM STDIN");
    ok(up.send(make_rows(20000, 20010), 10).await);
    assert_eq!(ok(up.finish().await).total_rows, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_from_abort_and_drop_roll_back() {
    let sim = TestSim::start_default();
    create_t(&sim, "ta");
    let c = demo(&sim);
    for how in ["abort", "drop"] {
        let mut up = c.copy_from("COPY ta (id, t) FROM STDIN");
        ok(up.send(make_rows(0, 5000), 5000).await);
        ok(up.send(make_rows(5000, 6000), 1000).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
        if how == "abort" {
            up.abort()
        } else {
            drop(up)
        }
        let e = sim.admin().wait_log(Duration::from_secs(10), |e| e.path.ends_with("/copyfrom") && e.aborted);
        assert!(e.is_some(), "{how}: the sim did not see the upload break: {:?}", sim.admin().log());
        sim.admin().clear_log();
        assert_eq!(count(&sim, "ta"), 0, "{how}");
    }
    // The table is not locked by a half-open COPY: a new upload goes through.
    let mut up = c.copy_from("COPY ta (id, t) FROM STDIN");
    ok(up.send(make_rows(0, 10), 10).await);
    assert_eq!(ok(up.finish().await).total_rows, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_from_abort_gracefully_ends_the_copy() {
    use carto_client::AbortOutcome;
    let sim = TestSim::start_default();
    create_t(&sim, "tg");
    let c = demo(&sim);
    let poison = || Bytes::from(copy_text::poison_line(2));
    assert_eq!(poison(), Bytes::from_static(b"\\N\t\\N\t\\N\n"));
    // Right after the first rows (inside the server's race window), and after a while.
    for (i, pause_ms) in [0u64, 0, 50, 300].into_iter().enumerate() {
        let mut up = c.copy_from("COPY tg (id, t) FROM STDIN");
        ok(up.send(make_rows(0, 2000), 2000).await);
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        let t0 = Instant::now();
        let out = up.abort_gracefully(poison(), Duration::from_secs(2)).await;
        assert!(t0.elapsed() < Duration::from_millis(2500), "case {i}: the wait is bounded");
        match &out {
            AbortOutcome::Rejected(m) => assert!(m.contains("extra data after last expected column"), "case {i}: {m}"),
            other => panic!("case {i}: expected CARTO's rejection, got {other:?}"),
        }
        assert_eq!(count(&sim, "tg"), 0, "case {i}");
        assert_eq!(open_copies(&sim, "tg"), 0, "case {i}");
    }
    // Nothing sent: no request.
    sim.admin().clear_log();
    let up = c.copy_from("COPY tg (id, t) FROM STDIN");
    assert_eq!(up.abort_gracefully(poison(), Duration::from_secs(1)).await, AbortOutcome::NothingSent);
    assert!(sim.admin().log().iter().all(|e| !e.path.ends_with("/copyfrom")));
    // CARTO not answering: the wait is bounded all the same.
    sim.admin().fault(FaultSpec { group: Some("copy_from".into()), latency_ms: Some(3000), ..fault_spec() });
    let mut up = c.copy_from("COPY tg (id, t) FROM STDIN");
    ok(up.send(make_rows(0, 10), 10).await);
    let t0 = Instant::now();
    let out = up.abort_gracefully(poison(), Duration::from_millis(500)).await;
    assert!(t0.elapsed() < Duration::from_millis(1500), "{:?}", t0.elapsed());
    assert!(matches!(out, AbortOutcome::Unconfirmed(_)), "{out:?}");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(count(&sim, "tg"), 0);
    assert_eq!(open_copies(&sim, "tg"), 0);
    // The table is not locked: a new upload goes through.
    let mut up = c.copy_from("COPY tg (id, t) FROM STDIN");
    ok(up.send(make_rows(0, 10), 10).await);
    assert_eq!(ok(up.finish().await).total_rows, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_from_row_count_mismatch() {
    let sim = TestSim::start_default();
    create_t(&sim, "tm");
    let c = demo(&sim);
    sim.admin().fault(FaultSpec {
        group: Some("copy_from".into()),
        status: Some(200),
        json: Some(serde_json::json!({"time": 0.01, "total_rows": 999})),
        latency_ms: Some(700),
        ..fault_spec()
    });
    let mut up = c.copy_from("COPY tm (id, t) FROM STDIN");
    ok(up.send(make_rows(0, 10), 10).await);
    let e = err(up.finish().await);
    assert_eq!(e.kind, ErrorKind::RowCountMismatch, "{e}");
    assert!(e.message.contains("999") && e.message.contains("10"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_from_rollover_at_small_limit() {
    let sim = TestSim::start_default();
    create_t(&sim, "tr");
    // CARTO's limit (the sim's) at 110 KB; the client rolls over at 100 KB of compressed bytes (the margin
    // covers one chunk of ~2.6 KB and the gzip trailer).
    const LIMIT: u64 = 110 * 1024;
    sim.admin().set_limits(|l| l.copyfrom_max_bytes = LIMIT);
    let c = with(&sim, |c| {
        c.copyfrom_max_bytes = 100 * 1024;
        c.compression_level = 0;
    });
    let sql = "COPY tr (id, t) FROM STDIN";
    let mut up = c.copy_from(sql);
    let mut requests = 0;
    let mut total = 0;
    for i in 0..400u64 {
        ok(up.send(make_rows(i * 50, (i + 1) * 50), 50).await);
        if up.needs_rollover() {
            let s = ok(up.finish().await);
            total += s.total_rows;
            requests += 1;
            up = c.copy_from(sql);
        }
    }
    total += ok(up.finish().await).total_rows;
    requests += 1;
    assert_eq!(total, 20000);
    assert_eq!(count(&sim, "tr"), 20000);
    assert!(requests >= 3, "{requests}");
    for e in sim.admin().log().iter().filter(|e| e.path.ends_with("/copyfrom")) {
        eprintln!("copyfrom request: {} bytes in, status {}", e.bytes_in, e.status);
        assert_eq!(e.status, 200);
        assert!(e.bytes_in <= LIMIT, "{e:?}");
    }
    // The default level on compressible rows: requests end close to the threshold, never far below it (how
    // far below depends on how many chunks wait in the channel when the estimate crosses it: they count at the
    // ratio seen so far plus 25 %).
    sim.admin().clear_log();
    create_t(&sim, "tr3");
    let c1 = with(&sim, |c| c.copyfrom_max_bytes = 40 * 1024);
    let sql3 = "COPY tr3 (id, t) FROM STDIN";
    let mut up = c1.copy_from(sql3);
    let mut total = 0;
    for i in 0..2000u64 {
        ok(up.send(make_rows(i * 50, (i + 1) * 50), 50).await);
        if up.needs_rollover() {
            total += ok(up.finish().await).total_rows;
            up = c1.copy_from(sql3);
        }
    }
    total += ok(up.finish().await).total_rows;
    assert_eq!(total, 100_000);
    let sizes: Vec<u64> = sim.admin().log().iter().filter(|e| e.path.ends_with("/copyfrom")).map(|e| e.bytes_in).collect();
    eprintln!("request sizes: {sizes:?}");
    assert!(sizes.len() >= 3, "{sizes:?}");
    for s in &sizes[..sizes.len() - 1] {
        assert!(*s >= 34 * 1024 && *s <= 44 * 1024, "{sizes:?}");
    }
    // Without roll-over, the sim's limit rejects the upload and nothing is kept.
    let big = with(&sim, |c| c.compression_level = 0);
    create_t(&sim, "tr2");
    let mut up = big.copy_from("COPY tr2 (id, t) FROM STDIN");
    let mut failed = None;
    for i in 0..400u64 {
        if let Err(e) = up.send(make_rows(i * 50, (i + 1) * 50), 50).await {
            failed = Some(checked(e));
            break;
        }
    }
    let e = match failed {
        Some(e) => e,
        None => err(up.finish().await),
    };
    // The server answers 400 and closes the connection while the client may still be writing:
    // whether the client reads the answer or hits the closed socket first is a race (CARTO's own
    // server closes the same way). Either way the upload failed and nothing is kept.
    assert!(matches!(e.kind, ErrorKind::PayloadTooLarge | ErrorKind::Transport), "{e}");
    assert_eq!(count(&sim, "tr2"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_from_keepalive_beats_slow_input_guard() {
    let sim = TestSim::start_default();
    create_t(&sim, "tk");
    sim.admin().set_limits(|l| {
        l.copyfrom_min_bytes_per_interval = 1;
        l.copyfrom_check_interval_secs = 1.0;
        l.idle_timeout_secs = 2.0;
    });
    let c = with(&sim, |c| c.keepalive_interval = Duration::from_millis(300));
    let mut up = c.copy_from("COPY tk (id, t) FROM STDIN");
    ok(up.send(make_rows(0, 10), 10).await);
    tokio::time::sleep(Duration::from_millis(3500)).await; // idle: only keep-alive blocks flow
    ok(up.send(make_rows(10, 20), 10).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = ok(up.finish().await);
    assert_eq!(s.total_rows, 20);
    assert_eq!(count(&sim, "tk"), 20);
    // Control: without keep-alive inside the guard interval, the guard cuts the upload.
    let c = with(&sim, |c| c.keepalive_interval = Duration::from_secs(60));
    let mut up = c.copy_from("COPY tk (id, t) FROM STDIN");
    ok(up.send(make_rows(100, 110), 10).await);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let r = up.send(make_rows(110, 120), 10).await;
    let e = match r {
        Err(e) => checked(e),
        Ok(()) => err(up.finish().await),
    };
    assert!(!e.message.is_empty());
    assert_eq!(count(&sim, "tk"), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_from_429_replayed() {
    let sim = TestSim::start_default();
    create_t(&sim, "tq");
    sim.admin().set_rate_limit("demo", Group::CopyFrom, Some(RateSpec { count: 1, period_secs: 2.0, burst: Some(1) }));
    let c = demo(&sim);
    let mut up = c.copy_from("COPY tq (id, t) FROM STDIN");
    ok(up.send(make_rows(0, 10), 10).await);
    assert_eq!(ok(up.finish().await).total_rows, 10);
    // The second upload is refused with 429 + Retry-After, waited for and replayed from the buffer.
    let mut up = c.copy_from("COPY tq (id, t) FROM STDIN");
    ok(up.send(make_rows(10, 20), 10).await);
    ok(up.send(make_rows(20, 30), 10).await);
    let st = ok(up.finish().await);
    assert_eq!(st.total_rows, 20);
    assert_eq!(st.requests, 2);
    assert_eq!(count(&sim, "tq"), 30);
    // A Retry-After above max_retry_wait: the 429 is returned.
    sim.admin().set_rate_limit("demo", Group::CopyFrom, Some(RateSpec { count: 1, period_secs: 60.0, burst: Some(1) }));
    sim.admin().reset_rate_limits();
    let mut up = c.copy_from("COPY tq (id, t) FROM STDIN");
    ok(up.send(make_rows(100, 110), 10).await);
    ok(up.finish().await);
    let mut up = c.copy_from("COPY tq (id, t) FROM STDIN");
    let r = up.send(make_rows(200, 210), 10).await;
    let e = match r {
        Err(e) => checked(e),
        Ok(()) => err(up.finish().await),
    };
    assert_eq!(e.kind, ErrorKind::RateLimited, "{e}");
    assert!(e.retry_after.is_some());
    assert_eq!(count(&sim, "tq"), 40);
}

// ---------------------------------------------------------------------------------------------------------
// Batch API

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_jobs() {
    let sim = TestSim::start_default();
    let c = demo(&sim);
    let j = ok(c.batch_create(&BatchJobRequest::Single("create table bj (a int)".into())).await);
    assert!(!j.job_id.is_empty());
    let j = ok(c.batch_wait(&j.job_id, Some(Duration::from_secs(30))).await);
    assert_eq!(j.status, JobStatus::Done, "{j:?}");
    let j = ok(c
        .batch_create(&BatchJobRequest::Multi(vec!["insert into bj values (1)".into(), "insert into bj values (2)".into()]))
        .await);
    let j = ok(c.batch_wait(&j.job_id, Some(Duration::from_secs(30))).await);
    assert_eq!(j.status, JobStatus::Done, "{j:?}");
    assert_eq!(count(&sim, "bj"), 2);
    // Fallback form: a failing query runs its onerror.
    let j = ok(c
        .batch_create(&BatchJobRequest::Fallback {
            queries: vec![BatchQuery {
                onerror: Some("insert into bj values (99)".into()),
                ..BatchQuery::new("select 1/0")
            }],
            onsuccess: None,
            onerror: None,
        })
        .await);
    let j = ok(c.batch_wait(&j.job_id, Some(Duration::from_secs(30))).await);
    assert_eq!(j.status, JobStatus::Failed, "{j:?}");
    assert_eq!(sim.psql_value("demo", "select count(*) from bj where a = 99").as_deref(), Some("1"));
    let j2 = ok(c.batch_read(&j.job_id).await);
    assert_eq!(j2.job_id, j.job_id);
    // Cancel a running job.
    let j = ok(c.batch_create(&BatchJobRequest::Single("select pg_sleep(30)".into())).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let j = ok(c.batch_cancel(&j.job_id).await);
    assert_eq!(j.status, JobStatus::Cancelled, "{j:?}");
    // Cancelling a finished job: CARTO's 400.
    let e = err(c.batch_cancel(&j.job_id).await);
    assert_eq!(e.kind, ErrorKind::BadRequest, "{e}");
    // Unknown job.
    let e = err(c.batch_read("00000000-0000-0000-0000-000000000000").await);
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    // batch_wait's own timeout, and cancellation by drop.
    let j = ok(c.batch_create(&BatchJobRequest::Single("select pg_sleep(3)".into())).await);
    let e = err(c.batch_wait(&j.job_id, Some(Duration::from_millis(700))).await);
    assert_eq!(e.kind, ErrorKind::Timeout);
    let r = tokio::time::timeout(Duration::from_millis(300), c.batch_wait(&j.job_id, None)).await;
    assert!(r.is_err());
    // 16 KB checked before sending.
    sim.admin().clear_log();
    let e = err(c.batch_create(&BatchJobRequest::Single(format!("select '{}'", "x".repeat(17000)))).await);
    assert_eq!(e.kind, ErrorKind::PayloadTooLarge);
    assert!(sim.admin().log().iter().all(|e| e.method != "POST"), "a request was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_from_early_answers_keep_carto_message() {
    let sim = TestSim::start_default();
    create_t(&sim, "te");
    // A bad row at the start of a big upload: CARTO answers 400 while the body is still flowing.
    let c = with(&sim, |c| c.compression_level = 0);
    let mut up = c.copy_from("COPY te (id, t) FROM STDIN");
    let mut failed = None;
    if let Err(e) = up.send(Bytes::from_static(b"x\ty\n"), 1).await {
        failed = Some(checked(e));
    }
    if failed.is_none() {
        for i in 0..500u64 {
            if let Err(e) = up.send(make_rows(i * 100, (i + 1) * 100), 100).await {
                failed = Some(checked(e));
                break;
            }
        }
    }
    let e = match failed {
        Some(e) => e,
        None => err(up.finish().await),
    };
    assert_eq!(e.kind, ErrorKind::BadRequest, "{e}");
    assert!(e.message.contains("invalid input syntax"), "{e}");
    // A wrong key: 401 before anything is read.
    let bad = Client::new(cfg(&sim, "demo", Some("wrong-key-0123456789"))).unwrap();
    let mut up = bad.copy_from("COPY te (id, t) FROM STDIN");
    let r = up.send(make_rows(0, 10), 10).await;
    let e = match r {
        Err(e) => checked(e),
        Ok(()) => err(up.finish().await),
    };
    assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
    // The server cuts the upload: an error, and nothing is kept.
    sim.admin().fault(FaultSpec { group: Some("copy_from".into()), cut_upload_after: Some(20_000), ..fault_spec() });
    let c = demo(&sim);
    let mut up = c.copy_from("COPY te (id, t) FROM STDIN");
    let mut failed = None;
    for i in 0..200u64 {
        if let Err(e) = up.send(make_rows(i * 100, (i + 1) * 100), 100).await {
            failed = Some(checked(e));
            break;
        }
    }
    let e = match failed {
        Some(e) => e,
        None => err(up.finish().await),
    };
    assert!(matches!(e.kind, ErrorKind::Transport | ErrorKind::BadRequest), "{e}");
    assert_eq!(count(&sim, "te"), 0);
    // The client still works afterwards.
    let mut up = c.copy_from("COPY te (id, t) FROM STDIN");
    ok(up.send(make_rows(0, 10), 10).await);
    assert_eq!(ok(up.finish().await).total_rows, 10);
}
