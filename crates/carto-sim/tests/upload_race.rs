//! CARTO's upload race (carto-sql-api.md 11.1): a /copyfrom client that leaves before the server listens is
//! never noticed, and its COPY stays open on the database, holding its lock, until the COPY statement timeout.
//! The clients here are raw TCP: they send the request head and some body, then close at once.
mod common;
use common::*;
use serde_json::{json, Value};
use std::io::Write;
use std::time::{Duration, Instant};

const COPY_T: &str = "COPY t (id, name) FROM STDIN";

fn make_table(sim: &TestSim) {
    sim.psql("demo", "CREATE TABLE t (id int primary key, name text); INSERT INTO t VALUES (0, 'before')").unwrap();
}

fn count(sim: &TestSim) -> i64 {
    sim.psql_value("demo", "select count(*) from t").unwrap().parse().unwrap()
}

/// Send the head of a chunked /copyfrom and `body` as one chunk (plus the last chunk when `complete`), wait
/// `linger`, then close the connection without reading anything.
fn send_and_leave(sim: &TestSim, body: &[u8], complete: bool, linger: Duration) {
    let addr = sim.url().trim_start_matches("http://").to_string();
    let q: String = form_urlencoded::byte_serialize(COPY_T.as_bytes()).collect();
    let mut req = format!(
        "POST /user/demo/api/v2/sql/copyfrom?api_key={DEMO_MASTER_KEY}&q={q} HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req.extend_from_slice(b"\r\n");
    if complete {
        req.extend_from_slice(b"0\r\n\r\n");
    }
    let mut s = std::net::TcpStream::connect(&addr).expect("connect");
    s.write_all(&req).expect("write");
    std::thread::sleep(linger);
    drop(s);
}

/// Poll `f` until it is true (at most `secs`).
fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// The COPYs on t as pg_stat_activity shows them: (pid, state, wait_event).
fn copies_on_the_database(sim: &TestSim) -> Vec<(String, String, String)> {
    let rows = sim
        .psql_admin(
            "demo",
            "select pid::text, state, coalesce(wait_event, '') from pg_stat_activity \
             where datname = current_database() and query like 'COPY t %' and state <> 'idle' and pid <> pg_backend_pid()",
        )
        .unwrap();
    rows.into_iter().map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap_or_default(), r[2].clone().unwrap())).collect()
}

fn admin_get(sim: &TestSim, path: &str) -> Value {
    let url = format!("{}/_sim/{path}", sim.url());
    sim_block(async move { client().get(url).send().await.unwrap().json::<Value>().await.unwrap() })
}

fn admin_send(sim: &TestSim, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    let url = format!("{}/_sim/{path}", sim.url());
    sim_block(async move {
        let r = client().request(method, url).json(&body).send().await.unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    })
}

/// Run a future on a runtime of its own (the tests are plain threads, like the sim's sync helpers).
fn sim_block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

fn upload_entry(sim: &TestSim) -> carto_sim::request_log::Entry {
    sim.admin().wait_log(Duration::from_secs(5), |e| e.group.as_deref() == Some("copy_from")).expect("the upload is logged")
}

/// The lock of the open COPY: a TRUNCATE of its table cannot get through (rolled back when it does).
fn truncate_is_blocked(sim: &TestSim) -> bool {
    match sim.psql("demo", "BEGIN; SET LOCAL lock_timeout = '300ms'; TRUNCATE t; ROLLBACK") {
        Ok(_) => false,
        Err(e) => {
            assert!(e.contains("lock timeout"), "{e}");
            true
        }
    }
}

#[test]
fn a_client_that_leaves_at_once_leaves_its_copy_open_until_ended() {
    // The default settings: this is what every test of the project meets.
    let sim = TestSim::start_default();
    assert!(sim.admin().limits().copyfrom_upload_race, "on by default");
    make_table(&sim);
    send_and_leave(&sim, b"1\ta\n2\tb\n", false, Duration::ZERO);

    assert!(wait_until(5, || admin_get(&sim, "open_copies")["count"] == 1), "{}", admin_get(&sim, "open_copies"));
    let listed = admin_get(&sim, "open_copies");
    let open = &listed["open_copies"][0];
    assert_eq!(open["user"], "demo");
    assert_eq!(open["query"], COPY_T);
    // On the database: one COPY, active, waiting for client data.
    let on_db = copies_on_the_database(&sim);
    assert_eq!(on_db.len(), 1, "{on_db:?}");
    assert_eq!(on_db[0].0, open["pid"].to_string());
    assert_eq!((on_db[0].1.as_str(), on_db[0].2.as_str()), ("active", "ClientRead"));
    // It holds its table lock.
    assert!(truncate_is_blocked(&sim));
    // The request log shows it as left open, not aborted.
    let e = upload_entry(&sim);
    assert!(e.left_open && !e.aborted, "{e:?}");
    assert!(e.bytes_in >= 8, "{e:?}");
    // It stays open.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sim.admin().open_copies().len(), 1);
    assert_eq!(copies_on_the_database(&sim).len(), 1);

    // Ended through the admin API: rolled back, lock released.
    let (s, v) = admin_send(&sim, reqwest::Method::DELETE, "open_copies", json!({}));
    assert_eq!((s, v), (200, json!({"ended": 1})));
    assert_eq!(admin_get(&sim, "open_copies")["count"], 0);
    assert_eq!(count(&sim), 1, "nothing of the open COPY stays");
    assert!(!truncate_is_blocked(&sim));
    let e = upload_entry(&sim);
    assert!(e.error.as_deref().is_some_and(|m| m.contains("rolled back through /_sim/open_copies")), "{e:?}");
    assert!(wait_until(5, || copies_on_the_database(&sim).is_empty()));
}

#[test]
fn a_row_postgresql_rejects_ends_a_copy_left_open() {
    let sim = TestSim::start_default();
    make_table(&sim);
    // The data sent before leaving still reaches the COPY: its bad second row ends it.
    send_and_leave(&sim, b"1\ta\nx\tb\n", false, Duration::ZERO);
    let e = sim
        .admin()
        .wait_log(Duration::from_secs(10), |e| e.left_open && e.error.as_deref().is_some_and(|m| m.contains("ended by PostgreSQL")))
        .unwrap_or_else(|| panic!("the rejected row ends the COPY: {:?}", sim.admin().log()));
    assert!(e.error.as_deref().unwrap().contains(r#"invalid input syntax for type integer: "x""#), "{e:?}");
    assert!(sim.admin().open_copies().is_empty());
    assert!(wait_until(5, || copies_on_the_database(&sim).is_empty()), "{:?}", copies_on_the_database(&sim));
    assert!(!truncate_is_blocked(&sim));
}

#[test]
fn a_complete_body_sent_before_leaving_commits() {
    let sim = TestSim::start_default();
    make_table(&sim);
    send_and_leave(&sim, b"1\ta\n2\tb\n", true, Duration::ZERO);
    assert!(wait_until(5, || count(&sim) == 3), "the end of the body arrived: the COPY commits");
    assert!(sim.admin().open_copies().is_empty());
}

#[test]
fn the_copy_statement_timeout_ends_a_copy_left_open() {
    let sim = TestSim::start_default();
    make_table(&sim);
    sim.admin().set_limits(|l| l.copy_statement_timeout_ms = 700);
    send_and_leave(&sim, b"1\ta\n", false, Duration::ZERO);
    assert!(wait_until(5, || sim.admin().open_copies().len() == 1));
    assert!(wait_until(10, || sim.admin().open_copies().is_empty()), "ended at the timeout");
    let e = upload_entry(&sim);
    assert!(e.left_open && e.error.as_deref().is_some_and(|m| m.contains("timeout")), "{e:?}");
    assert!(wait_until(5, || copies_on_the_database(&sim).is_empty()));
    assert_eq!(count(&sim), 1);
}

#[test]
fn a_client_that_leaves_after_the_window_is_noticed() {
    let sim = TestSim::start_default();
    make_table(&sim);
    // The default window is a few ms; this client stays 300 ms.
    send_and_leave(&sim, b"1\ta\n2\tb\n", false, Duration::from_millis(300));
    let e = upload_entry(&sim);
    assert!(e.aborted && !e.left_open, "{e:?}");
    assert!(sim.admin().open_copies().is_empty());
    assert!(wait_until(5, || copies_on_the_database(&sim).is_empty()));
    assert_eq!(count(&sim), 1);
    // A wider window (tests may widen it) catches the same client.
    sim.admin().clear_log();
    sim.admin().set_limits(|l| l.copyfrom_upload_race_window_ms = 2000.0);
    send_and_leave(&sim, b"1\ta\n2\tb\n", false, Duration::from_millis(300));
    let e = upload_entry(&sim);
    assert!(e.left_open && !e.aborted, "{e:?}");
    assert_eq!(sim.admin().end_open_copies(), 1);
}

#[test]
fn the_race_switched_off_in_the_config_or_through_the_admin_api() {
    // The config knob.
    let mut cfg = carto_sim::testkit::default_config();
    cfg.limits.copyfrom_upload_race = false;
    let sim = TestSim::start(cfg);
    make_table(&sim);
    send_and_leave(&sim, b"1\ta\n2\tb\n", false, Duration::ZERO);
    let e = upload_entry(&sim);
    assert!(e.aborted && !e.left_open, "the old behaviour: noticed and rolled back: {e:?}");
    assert!(wait_until(5, || copies_on_the_database(&sim).is_empty()));
    assert!(sim.admin().open_copies().is_empty());
    assert!(!truncate_is_blocked(&sim));
    assert_eq!(count(&sim), 1);

    // The admin switch turns it on again ...
    let (s, v) = admin_send(&sim, reqwest::Method::POST, "limits", json!({"copyfrom_upload_race": true}));
    assert_eq!(s, 200, "{v}");
    sim.admin().clear_log();
    send_and_leave(&sim, b"1\ta\n2\tb\n", false, Duration::ZERO);
    assert!(upload_entry(&sim).left_open);
    assert_eq!(sim.admin().end_open_copies(), 1);
    // ... and off.
    let (s, v) = admin_send(&sim, reqwest::Method::POST, "limits", json!({"copyfrom_upload_race": false}));
    assert_eq!((s, &v["copyfrom_upload_race"]), (200, &json!(false)), "{v}");
    sim.admin().clear_log();
    send_and_leave(&sim, b"1\ta\n2\tb\n", false, Duration::ZERO);
    assert!(upload_entry(&sim).aborted);
    assert!(sim.admin().open_copies().is_empty());
}

#[test]
fn a_gzip_upload_left_open_gets_what_was_decompressed() {
    let sim = TestSim::start_default();
    make_table(&sim);
    // The first half of a gzip stream whose second row is bad: decompressed and rejected.
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b"1\ta\nx\tb\n").unwrap();
    e.flush().unwrap();
    let partial = e.get_ref().clone();
    let addr = sim.url().trim_start_matches("http://").to_string();
    let q: String = form_urlencoded::byte_serialize(COPY_T.as_bytes()).collect();
    let mut req = format!(
        "POST /user/demo/api/v2/sql/copyfrom?api_key={DEMO_MASTER_KEY}&q={q} HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        partial.len()
    )
    .into_bytes();
    req.extend_from_slice(&partial);
    req.extend_from_slice(b"\r\n");
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(&req).unwrap();
    drop(s);
    let e = sim
        .admin()
        .wait_log(Duration::from_secs(10), |e| e.left_open && e.error.as_deref().is_some_and(|m| m.contains("ended by PostgreSQL")))
        .unwrap_or_else(|| panic!("the rejected row ends the COPY: {:?} {:?}", sim.admin().log(), sim.admin().open_copies()));
    assert!(e.error.as_deref().unwrap().contains(r#"invalid input syntax for type integer: "x""#), "{e:?}");
}
