//! /copyfrom and /copyto: bodies, gzip both ways, errors, limits, rollback on abort, cancel on disconnect.
mod common;
use bytes::Bytes;
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::Duration;

fn enc(q: &str) -> String {
    form_urlencoded::byte_serialize(q.as_bytes()).collect()
}

fn from_url(sim: &TestSim, q: &str) -> String {
    format!("{}/api/v2/sql/copyfrom?api_key={}&q={}", sim.base_url("demo"), DEMO_MASTER_KEY, enc(q))
}

fn to_url(sim: &TestSim, q: &str) -> String {
    format!("{}/api/v2/sql/copyto?api_key={}&q={}", sim.base_url("demo"), DEMO_MASTER_KEY, enc(q))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

const COPY_T: &str = "COPY t (id, name) FROM STDIN";

fn make_table(sim: &TestSim) {
    sim.psql("demo", "CREATE TABLE t (id int primary key, name text)").unwrap();
}

fn count(sim: &TestSim) -> i64 {
    sim.psql_value("demo", "select count(*) from t").unwrap().parse().unwrap()
}

async fn post(url: &str, body: reqwest::Body, gz: bool) -> (u16, String) {
    let mut r = client().post(url).header("content-type", "application/octet-stream");
    if gz {
        r = r.header("content-encoding", "gzip");
    }
    match r.body(body).send().await {
        Ok(resp) => {
            let s = resp.status().as_u16();
            (s, resp.text().await.unwrap_or_else(|e| format!("<body error: {e}>")))
        }
        Err(e) => (0, format!("<request error: {e}>")),
    }
}

/// A chunked body from a list of chunks, each after `pause`.
fn chunked(chunks: Vec<Vec<u8>>, pause: Duration, fail_at_end: bool) -> reqwest::Body {
    let s = futures_util::stream::iter(chunks.into_iter().map(Some).chain(std::iter::once(None))).then(move |c| async move {
        tokio::time::sleep(pause).await;
        match c {
            Some(c) => Ok(Bytes::from(c)),
            None if fail_at_end => Err(std::io::Error::other("client gives up")),
            None => Ok(Bytes::new()),
        }
    });
    reqwest::Body::wrap_stream(s)
}

#[tokio::test]
async fn copyfrom_plain_chunked_gzip_and_errors() {
    let sim = TestSim::start_default();
    make_table(&sim);
    // Content-Length body
    let (s, b) = post(&from_url(&sim, COPY_T), reqwest::Body::from("1\ta\n2\tb\n"), false).await;
    assert_eq!(s, 200, "{b}");
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["total_rows"], 2);
    assert!(v["time"].is_number());
    // chunked
    let (s, b) = post(&from_url(&sim, COPY_T), chunked(vec![b"3\tc\n4\t".to_vec(), b"d\n".to_vec()], Duration::ZERO, false), false).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(serde_json::from_str::<Value>(&b).unwrap()["total_rows"], 2);
    // gzip, chunked in 8 KB pieces like carto-python
    let mut data = String::new();
    for i in 100..5100 {
        data.push_str(&format!("{i}\tname {i}\n"));
    }
    let gz = gzip(data.as_bytes());
    let pieces: Vec<Vec<u8>> = gz.chunks(8192).map(|c| c.to_vec()).collect();
    let (s, b) = post(&from_url(&sim, COPY_T), chunked(pieces, Duration::ZERO, false), true).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(serde_json::from_str::<Value>(&b).unwrap()["total_rows"], 5000);
    assert_eq!(count(&sim), 5004);
    // bad gzip
    let (s, b) = post(&from_url(&sim, COPY_T), reqwest::Body::from("9\tx\n"), true).await;
    assert_eq!(s, 400);
    assert_eq!(b, r#"{"error":["Error while gunzipping: incorrect header check"]}"#);
    // truncated gzip: rolled back
    let (s, b) = post(&from_url(&sim, COPY_T), reqwest::Body::from(gz[..gz.len() / 2].to_vec()), true).await;
    assert_eq!(s, 400);
    assert!(b.starts_with(r#"{"error":["Error while gunzipping: "#), "{b}");
    // zero rows
    let (s, b) = post(&from_url(&sim, COPY_T), reqwest::Body::from(""), false).await;
    assert_eq!(s, 400);
    assert_eq!(b, r#"{"error":["No rows copied"]}"#);
    // q problems
    let url = format!("{}/api/v2/sql/copyfrom?api_key={}", sim.base_url("demo"), DEMO_MASTER_KEY);
    let (s, b) = post(&url, reqwest::Body::from("1\n"), false).await;
    assert_eq!((s, b.as_str()), (400, r#"{"error":["SQL is missing"]}"#));
    let (s, b) = post(&from_url(&sim, "select 1"), reqwest::Body::from("1\n"), false).await;
    assert_eq!((s, b.as_str()), (400, r#"{"error":["SQL must start with COPY"]}"#));
    // PostgreSQL errors, without PostgreSQL's context (carto-sql-api.md 11.2); the COPY is rolled back
    let (s, b) = post(&from_url(&sim, COPY_T), reqwest::Body::from("10\tok\nx\tbad\n"), false).await;
    assert_eq!(s, 400);
    assert_eq!(b, r#"{"error":["invalid input syntax for type integer: \"x\""]}"#);
    let (s, b) = post(&from_url(&sim, COPY_T), reqwest::Body::from("11\tok\textra\n"), false).await;
    assert_eq!(s, 400);
    assert_eq!(err_msg(&serde_json::from_str(&b).unwrap()), "extra data after last expected column");
    let (s, b) = post(&from_url(&sim, "COPY nope FROM STDIN"), reqwest::Body::from("1\n"), false).await;
    assert_eq!(s, 400);
    assert_eq!(err_msg(&serde_json::from_str(&b).unwrap()), "relation \"nope\" does not exist");
    let (s, b) = post(&from_url(&sim, COPY_T), reqwest::Body::from("1\tdup\n"), false).await;
    assert_eq!(s, 400);
    assert_eq!(serde_json::from_str::<Value>(&b).unwrap()["detail"], "Key (id)=(1) already exists.", "{b}");
    assert_eq!(count(&sim), 5004, "nothing of a failed COPY stays");
    // Regular key without INSERT: 403
    let url = format!("{}/api/v2/sql/copyfrom?api_key={}&q={}", sim.base_url("demo"), DEMO_REGULAR_KEY, enc("COPY cities (name) FROM STDIN"));
    let (s, b) = post(&url, reqwest::Body::from("x\n"), false).await;
    assert_eq!(s, 403, "{b}");
    // Basic auth works on COPY
    let r = client().post(from_url(&sim, COPY_T).replace(&format!("api_key={DEMO_MASTER_KEY}&"), "")).basic_auth("demo", Some(DEMO_MASTER_KEY)).body("20\tz\n").send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn copyfrom_limits_and_client_abort_roll_back() {
    let sim = TestSim::start_default();
    make_table(&sim);
    sim.psql("demo", "INSERT INTO t VALUES (0, 'before')").unwrap();
    // Byte limit, counted on the received (compressed) bytes
    sim.admin().set_limits(|l| l.copyfrom_max_bytes = 4096);
    let rows: Vec<u8> = (1..1000).flat_map(|i| format!("{i}\tsame name on every row\n").into_bytes()).collect();
    assert!(gzip(&rows).len() < 4096 && rows.len() > 4096);
    let (s, b) = post(&from_url(&sim, COPY_T), reqwest::Body::from(rows.clone()), false).await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b, r#"{"error":["COPY FROM maximum POST size of 4 KB exceeded"]}"#);
    assert_eq!(count(&sim), 1);
    // gzip of the same data is small enough
    let (s, b) = post(&from_url(&sim, COPY_T), reqwest::Body::from(gzip(&rows)), true).await;
    assert_eq!(s, 200, "{b}");
    sim.psql("demo", "DELETE FROM t WHERE id > 0").unwrap();
    sim.admin().set_limits(|l| {
        l.copyfrom_max_bytes = 2 * 1024 * 1024 * 1024;
        l.copyfrom_max_pretty = None;
    });

    // Slow-input guard
    sim.admin().set_limits(|l| {
        l.copyfrom_min_bytes_per_interval = 100;
        l.copyfrom_check_interval_secs = 0.3;
    });
    let body = chunked(vec![b"1\ta\n".to_vec(), b"2\tb\n".to_vec(), b"3\tc\n".to_vec()], Duration::from_millis(400), false);
    let (s, b) = post(&from_url(&sim, COPY_T), body, false).await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b, r#"{"error":["Connection closed by server: input data too slow"]}"#);
    assert_eq!(count(&sim), 1);
    sim.admin().set_limits(|l| l.copyfrom_min_bytes_per_interval = 0);

    // Idle socket timeout: the connection is cut, nothing stays
    sim.admin().set_limits(|l| l.idle_timeout_secs = 0.3);
    sim.admin().clear_log();
    let body = chunked(vec![b"1\ta\n".to_vec(), b"2\tb\n".to_vec()], Duration::from_millis(800), false);
    let (s, _) = post(&from_url(&sim, COPY_T), body, false).await;
    assert_ne!(s, 200);
    let e = sim.admin().wait_log(Duration::from_secs(5), |e| e.group.as_deref() == Some("copy_from")).expect("logged");
    assert!(e.aborted, "{e:?}");
    assert_eq!(count(&sim), 1);
    sim.admin().set_limits(|l| l.idle_timeout_secs = 600.0);

    // The client disconnects mid-body: rolled back (CopyFail), logged as aborted
    sim.admin().clear_log();
    let body = chunked(vec![b"1\ta\n".to_vec(), b"2\tb\n".to_vec()], Duration::from_millis(100), true);
    let (s, _) = post(&from_url(&sim, COPY_T), body, false).await;
    assert_ne!(s, 200);
    let e = sim.admin().wait_log(Duration::from_secs(5), |e| e.group.as_deref() == Some("copy_from")).expect("logged");
    assert!(e.aborted, "{e:?}");
    assert!(e.bytes_in >= 8, "{e:?}");
    assert_eq!(count(&sim), 1);
    // No COPY left open on the database
    let open_copies = || sim.psql_admin("demo", "select count(*) from pg_stat_activity where datname = current_database() and query like 'COPY t %' and state <> 'idle'").unwrap()[0][0].clone();
    let mut left = open_copies();
    for _ in 0..40 {
        if left.as_deref() == Some("0") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        left = open_copies();
    }
    assert_eq!(left.as_deref(), Some("0"));
    // and the table is not locked: a write goes through at once
    sim.psql("demo", "SET lock_timeout = '2s'; INSERT INTO t VALUES (99, 'after')").unwrap();

    // Node's request timeout cuts a long upload
    sim.admin().set_limits(|l| l.copyfrom_request_timeout_secs = 0.5);
    let body = chunked(vec![b"1\ta\n".to_vec(), b"2\tb\n".to_vec(), b"3\tc\n".to_vec()], Duration::from_millis(300), false);
    let (s, _) = post(&from_url(&sim, COPY_T), body, false).await;
    assert_ne!(s, 200);
    assert_eq!(count(&sim), 2);
    sim.admin().set_limits(|l| l.copyfrom_request_timeout_secs = 0.0);

    // DB quota: checked before (nothing left) and during the load (decompressed bytes)
    let used: i64 = sim.psql_admin("demo", "select cartodb.CDB_UserDataSize('public')").unwrap()[0][0].clone().unwrap().parse().unwrap();
    sim.psql_admin("demo", &format!("select cartodb.CDB_SetUserQuotaInBytes('public', {})", used + 100)).unwrap();
    let big: Vec<u8> = (1000..1100).flat_map(|i| format!("{i}\tsome text\n").into_bytes()).collect();
    let (s, b) = post(&from_url(&sim, COPY_T), reqwest::Body::from(big), false).await;
    assert_eq!((s, b.as_str()), (400, r#"{"error":["DB Quota exceeded"]}"#));
    sim.psql_admin("demo", &format!("select cartodb.CDB_SetUserQuotaInBytes('public', {})", used / 2)).unwrap();
    let (s, b) = post(&from_url(&sim, COPY_T), reqwest::Body::from("7\tx\n"), false).await;
    assert_eq!((s, b.as_str()), (400, r#"{"error":["DB Quota exceeded"]}"#));
    sim.psql_admin("demo", "select cartodb.CDB_SetUserQuotaInBytes('public', 0)").unwrap();
    assert_eq!(count(&sim), 2);

    // Upload cut by fault injection after 6 bytes
    sim.admin().fault(carto_sim::faults::FaultSpec { group: Some("copy_from".into()), cut_upload_after: Some(6), ..carto_sim::testkit::fault_spec() });
    let (s, _) = post(&from_url(&sim, COPY_T), reqwest::Body::from("5\ta\n6\tb\n"), false).await;
    assert_ne!(s, 200);
    assert_eq!(count(&sim), 2);
}

#[tokio::test]
async fn copyto_streams_gzips_and_appends_errors() {
    let sim = TestSim::start_default();
    let c = client();
    // Plain text COPY
    let r = c.get(to_url(&sim, "COPY (select cartodb_id, name from cities order by 1) TO STDOUT")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(r.headers()["content-disposition"], "attachment; filename=carto-sql-copyto.dmp");
    assert_eq!(r.headers()["transfer-encoding"], "chunked");
    assert_eq!(r.headers()["carto-user"], "demo");
    assert_eq!(r.text().await.unwrap(), "1\tMadrid\n2\tBarcelona\n3\tNowhere\n");
    // csv with header, POST form, filename
    let r = c
        .post(format!("{}/api/v2/sql/copyto", sim.base_url("demo")))
        .form(&[("q", "COPY (select name from cities where cartodb_id = 1) TO STDOUT WITH (FORMAT csv, HEADER true)"), ("api_key", DEMO_MASTER_KEY), ("filename", "x.csv")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-disposition"], "attachment; filename=x.csv");
    assert_eq!(r.text().await.unwrap(), "name\nMadrid\n");
    // binary COPY round trip
    sim.psql("demo", "CREATE TABLE b (id int, g geometry)").unwrap();
    let bin = c.get(to_url(&sim, "COPY (select cartodb_id, the_geom from cities) TO STDOUT (FORMAT binary)")).send().await.unwrap().bytes().await.unwrap();
    assert!(bin.starts_with(b"PGCOPY\n\xff\r\n\0"));
    let (s, b) = post(&from_url(&sim, "COPY b FROM STDIN (FORMAT binary)"), reqwest::Body::from(bin.to_vec()), false).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(sim.psql_value("demo", "select count(*) from b where g is not null").as_deref(), Some("2"));
    // gzip: never from the API itself...
    let r = c.get(to_url(&sim, "COPY cities (name) TO STDOUT")).header("accept-encoding", "gzip").send().await.unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    // ...but with the nginx switch on, when the client accepts it
    sim.admin().set_limits(|l| l.copyto_gzip = true);
    let r = c.get(to_url(&sim, "COPY (select cartodb_id from cities order by 1) TO STDOUT")).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let gz = r.bytes().await.unwrap();
    let mut out = String::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut out).unwrap();
    assert_eq!(out, "1\n2\n3\n");
    let r = c.get(to_url(&sim, "COPY cities (cartodb_id) TO STDOUT")).send().await.unwrap();
    assert!(r.headers().get("content-encoding").is_none(), "no Accept-Encoding, no gzip");
    sim.admin().set_limits(|l| l.copyto_gzip = false);
    // errors before the stream: JSON 4xx
    let r = c.get(to_url(&sim, "COPY nope TO STDOUT")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.text().await.unwrap(), r#"{"error":["relation \"nope\" does not exist"]}"#);
    let r = c.get(to_url(&sim, "COPY (select 1/(g-3) from generate_series(1,5) g) TO STDOUT")).send().await.unwrap();
    assert_eq!(r.status(), 400, "an error in the first KB is still a JSON answer");
    let r = c.get(to_url(&sim, "select 1")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), r#"{"error":["SQL must start with COPY"]}"#);
    let r = c.get(format!("{}/api/v2/sql/copyto?api_key={DEMO_MASTER_KEY}", sim.base_url("demo"))).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), r#"{"error":["SQL is missing"]}"#);
    let r = c.get(format!("{}/api/v2/sql/copyto?q={}", sim.base_url("demo"), enc("COPY cities TO STDOUT"))).send().await.unwrap();
    assert_eq!(r.status(), 403, "publicuser");
    // error after streaming started: appended to the 200 body, rows before it are a prefix
    let r = c
        .get(to_url(&sim, "COPY (select g, repeat('x', 100) from generate_series(1, 50000) g where 1 / (40000 - g) > -1) TO STDOUT"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(body.ends_with("\n{\"error\":[\"division by zero\"]}"), "{}", &body[body.len() - 200..]);
    let data = &body[..body.len() - r#"{"error":["division by zero"]}"#.len()];
    let last: i64 = data.lines().last().unwrap().split('\t').next().unwrap().parse().unwrap();
    assert!(last < 39999 && last > 39000, "a prefix of the rows: {last}");
}

// multi_thread: the sync testkit helpers below must not starve reqwest's connection task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copyto_disconnect_cancels_the_backend() {
    let sim = TestSim::start_default();
    sim.admin().clear_log();
    let q = "COPY (select g, repeat('x', 500) from (select generate_series(1, 100000000) g) s) TO STDOUT";
    let r = client().get(to_url(&sim, q)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut s = r.bytes_stream();
    let mut got = 0;
    while got < 100_000 {
        got += s.next().await.unwrap().unwrap().len();
    }
    drop(s);
    let active = || {
        sim.psql_admin("demo", "select count(*) from pg_stat_activity where datname = current_database() and query like 'COPY (select g, repeat%' and state = 'active'").unwrap()[0][0].clone().unwrap()
    };
    let mut n = active();
    for _ in 0..100 {
        if n == "0" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        n = active();
    }
    assert_eq!(n, "0", "the backend query was cancelled");
    let e = sim.admin().wait_log(Duration::from_secs(5), |e| e.group.as_deref() == Some("copy_to")).expect("logged");
    assert!(e.aborted, "{e:?}");
    assert!(e.bytes_out >= 100_000);
    let _ = json!({});
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_gzip_bug_reproduced_on_demand() {
    let sim = TestSim::start_default();
    make_table(&sim);
    sim.admin().set_limits(|l| {
        l.copyfrom_bad_gzip_bug = true;
        l.idle_timeout_secs = 1.0;
        l.copy_statement_timeout_ms = 1500;
    });
    // One keep-alive connection for both requests
    let c = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
    let r = c.post(from_url(&sim, COPY_T)).header("content-encoding", "gzip").body("not gzip").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.text().await.unwrap(), r#"{"error":["Error while gunzipping: incorrect header check"]}"#);
    // The COPY stays open on the database
    let open = sim.psql_admin_async("demo", "select count(*) from pg_stat_activity where datname = current_database() and query like 'COPY t %' and state = 'active'").await.unwrap();
    assert_eq!(open[0][0].as_deref(), Some("1"));
    // The next request on the same connection gets no answer
    let r = tokio::time::timeout(Duration::from_millis(500), c.get(format!("{}?q=select+1&api_key={DEMO_MASTER_KEY}", sim.sql_url("demo"))).send()).await;
    assert!(r.is_err(), "no answer on a poisoned connection");
    // A new connection is fine
    let (s, _) = sql(&sim, "demo", "select 1").await;
    assert_eq!(s, 200);
    // After the statement timeout the COPY is gone
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let open = sim.psql_admin_async("demo", "select count(*) from pg_stat_activity where datname = current_database() and query like 'COPY t %' and state = 'active'").await.unwrap();
    assert_eq!(open[0][0].as_deref(), Some("0"));
    assert_eq!(count(&sim), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_socket_timeout_cuts_silent_responses() {
    let sim = TestSim::start_default();
    sim.admin().set_limits(|l| l.idle_timeout_secs = 0.5);
    let c = client();
    // Nothing at all for longer than the timeout: cut before any answer
    let r = c.post(sim.sql_url("demo")).form(&[("q", "select pg_sleep(2)"), ("api_key", DEMO_MASTER_KEY)]).send().await;
    match r {
        Ok(r) => assert!(r.bytes().await.is_err()),
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    // Data first, then silence: the body is cut, the backend cancelled
    let q = "COPY (select g, repeat('x', 100), case when g > 2000 then pg_sleep(5) end from (select generate_series(1, 3000) g) s) TO STDOUT";
    let r = c.get(to_url(&sim, q)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.is_err(), "cut after the idle timeout");
    let e = sim.admin().wait_log(Duration::from_secs(5), |e| e.group.as_deref() == Some("copy_to")).expect("logged");
    assert!(e.aborted && e.error.as_deref() == Some("idle socket timeout"), "{e:?}");
    let mut n = String::new();
    for _ in 0..100 {
        n = sim.psql_admin_async("demo", "select count(*) from pg_stat_activity where datname = current_database() and query like 'COPY (select g, repeat%' and state = 'active'").await.unwrap()[0][0].clone().unwrap();
        if n == "0" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(n, "0");
}

/// An error after the /copyto stream began: like CARTO, at least 6 KB of the rows produced before it are
/// dropped, at a row boundary, so the data before the error JSON is a strict prefix of the rows produced.
#[tokio::test]
async fn copyto_error_after_streaming_drops_at_least_6kb_of_rows() {
    let sim = TestSim::start_default();
    let c = client();
    // (row width, row that fails): small rows, rows about the hold-back size, rows larger than it
    for (width, fail_at) in [(10usize, 3000u32), (100, 500), (3000, 40), (7000, 6), (20000, 12)] {
        let q = format!("COPY (select g, repeat('x', {width}) from generate_series(1, {}) g where 1 / ({fail_at} - g) > -1) TO STDOUT", fail_at + 100);
        let r = c.get(to_url(&sim, &q)).send().await.unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        let produced: String = (1..fail_at).map(|g| format!("{g}\t{}\n", "x".repeat(width))).collect();
        let err = r#"{"error":["division by zero"]}"#;
        if status == 400 {
            // Not enough rows before the error to send any: an ordinary JSON answer
            assert_eq!(body, err);
            assert!(produced.len() < 8192 + 2 * (width + 6), "{width}: {} bytes produced", produced.len());
            continue;
        }
        assert_eq!(status, 200, "{width}");
        assert!(body.ends_with(err), "{width}: {}", &body[body.len().saturating_sub(200)..]);
        let data = &body[..body.len() - err.len()];
        assert!(data.is_empty() || data.ends_with('\n'), "{width}: a row boundary");
        assert!(produced.starts_with(data), "{width}: a prefix of the rows");
        let dropped = produced.len() - data.len();
        assert!(dropped >= 6 * 1024, "{width}: only {dropped} bytes dropped");
        assert!(dropped <= 18 * 1024 || dropped <= 8192 + width + 7, "{width}: {dropped} bytes dropped");
    }
    // Without an error everything arrives
    let r = c.get(to_url(&sim, "COPY (select g, repeat('x', 20000) from generate_series(1, 12) g) TO STDOUT")).send().await.unwrap();
    let body = r.text().await.unwrap();
    assert_eq!(body.lines().count(), 12);
}

/// A client that leaves before the first byte of the answer (the query has produced nothing yet) gets its
/// backend query cancelled at once, on /copyto and on /sql, as CARTO's server does when the socket closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_disconnect_cancels_the_query_before_any_byte() {
    let sim = TestSim::start_default();
    let running = |tag: &str| -> usize {
        let q = format!(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%{tag}%' AND state = 'active' AND pid <> pg_backend_pid()"
        );
        sim.psql_admin("demo", &q).ok().and_then(|r| r.first().and_then(|x| x.first().cloned().flatten())).and_then(|v| v.parse().ok()).unwrap_or(99)
    };
    let quick = reqwest::Client::builder().timeout(Duration::from_millis(800)).no_gzip().build().unwrap();
    let copy = quick.get(to_url(&sim, "COPY (SELECT pg_sleep(20.5)) TO STDOUT")).send().await;
    assert!(copy.is_err(), "the request should time out on the client side");
    let sql = quick
        .get(format!("{}?api_key={}&q={}", sim.sql_url("demo"), DEMO_MASTER_KEY, enc("SELECT pg_sleep(20.6)")))
        .send()
        .await;
    assert!(sql.is_err(), "the request should time out on the client side");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (c, s) = (running("pg_sleep(20.5)"), running("pg_sleep(20.6)"));
        if c == 0 && s == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still running after the clients left: copyto {c}, sql {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
