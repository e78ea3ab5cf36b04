//! `Client::query_rows` (the `/sql` answer read as it streams) and the bounds on what CARTO's answers make the
//! client buffer, against carto-sim. Needs CARTO_SIM_ADMIN_URL like tests/sim.rs.

use std::time::{Duration, Instant};

use carto_client::{Client, ClientConfig, Error, ErrorKind, QueryRowStream, RawRow};
use carto_sim::faults::FaultSpec;
use carto_sim::testkit::{self, fault_spec, TestSim};

mod common;
use common::wait_query_gone;

fn demo(sim: &TestSim, f: impl FnOnce(&mut ClientConfig)) -> Client {
    let mut c = ClientConfig::for_base_url(&sim.base_url("demo")).unwrap().with_api_key(testkit::DEMO_MASTER_KEY);
    c.max_retry_wait = Duration::from_secs(5);
    f(&mut c);
    Client::new(c).unwrap()
}

/// Every row of a stream, then its end.
async fn drain(s: &mut QueryRowStream) -> (Vec<RawRow>, Result<(), Error>) {
    let mut rows = Vec::new();
    loop {
        match s.next_row().await {
            Ok(Some(r)) => rows.push(r),
            Ok(None) => return (rows, Ok(())),
            Err(e) => return (rows, Err(e)),
        }
    }
}

fn xs(rows: &[RawRow]) -> Vec<i64> {
    rows.iter().map(|r| r.text_row(&["x"]).unwrap()[0].as_deref().unwrap().parse().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_rows_basics_and_errors() {
    let sim = TestSim::start_default();
    let c = demo(&sim, |_| {});
    let mut s = c
        .query_rows("select cartodb_id::text as id, name::text, null::text as n from cities order by cartodb_id", true)
        .await
        .unwrap();
    assert!(s.summary().is_none());
    let (rows, end) = drain(&mut s).await;
    end.unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].text_row(&["id", "name", "n"]).unwrap(), vec![Some("1".into()), Some("Madrid".into()), None]);
    assert_eq!(rows[2].index(), 3);
    assert_eq!(rows[0].to_map().unwrap()["name"], serde_json::json!("Madrid"));
    let sum = s.summary().unwrap();
    assert_eq!(sum.total_rows, 3);
    assert_eq!(sum.fields.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(), ["id", "name", "n"]);
    assert_eq!(sum.stats.requests, 1);
    assert!(sum.stats.bytes_received > 0);
    // The end repeats.
    assert!(s.next_row().await.unwrap().is_none());
    // Writes: no rows, total_rows = affected rows.
    let mut s = c.query_rows("update cities set name = name where cartodb_id < 3", false).await.unwrap();
    assert!(s.next_row().await.unwrap().is_none());
    assert_eq!(s.summary().unwrap().total_rows, 2);
    // Errors before any row are returned by query_rows itself, as by query.
    let e = c.query_rows("select nme from cities", true).await.unwrap_err();
    assert_eq!((e.kind, e.status), (ErrorKind::BadRequest, Some(400)));
    // CARTO's error after rows went out: the rows before it are a prefix, the end is the error, repeated.
    let mut s = c.query_rows("select x::text as x, 1/(300000 - x) as d from generate_series(1, 400000) x", true).await.unwrap();
    let (rows, end) = drain(&mut s).await;
    let e = end.unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadRequest);
    assert!(e.message.contains("division by zero"), "{e}");
    assert_eq!(s.next_row().await.unwrap_err(), e);
    assert!(s.summary().is_none());
    assert!(rows.len() < 300000);
    assert_eq!(xs(&rows), (1..=rows.len() as i64).collect::<Vec<_>>());
    // Retries before the first row, for reads: an HTML 502 and a body cut before its first row.
    sim.admin().fault(FaultSpec { group: Some("query".into()), html_502: true, ..fault_spec() });
    let mut s = c.query_rows("select 1 as one", true).await.unwrap();
    assert!(s.next_row().await.unwrap().is_some());
    assert_eq!(s.stats().retries, 1);
    sim.admin().fault(FaultSpec { group: Some("query".into()), cut_response_after: Some(5), ..fault_spec() });
    let mut s = c.query_rows("select repeat('x', 1000) as x", true).await.unwrap();
    assert!(s.next_row().await.unwrap().is_some());
    assert_eq!(s.stats().retries, 1);
    // ... not for writes.
    sim.admin().fault(FaultSpec { group: Some("query".into()), cut_response_after: Some(5), ..fault_spec() });
    let e = c.query_rows("select repeat('x', 1000) as x", false).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transport);
    // A cut after rows went out is an error, never a short result.
    sim.admin().fault(FaultSpec { group: Some("query".into()), cut_response_after: Some(200_000), ..fault_spec() });
    let mut s = c.query_rows("select x from generate_series(1, 100000) x", true).await.unwrap();
    let (rows, end) = drain(&mut s).await;
    assert_eq!(end.unwrap_err().kind, ErrorKind::Transport);
    assert!(!rows.is_empty() && rows.len() < 100000);
}

/// CARTO's statement timeout hitting a query whose rows were already streaming: the end is RemoteTimeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_after_streaming_began() {
    let sim = TestSim::start_default();
    let c = demo(&sim, |_| {});
    sim.admin().set_statement_timeout("demo", Some(1000));
    let mut s = c
        .query_rows("select x, case when x = 150000 then pg_sleep(5) end as s from generate_series(1, 300000) x", true)
        .await
        .unwrap();
    let t = Instant::now();
    let first = s.next_row().await.unwrap().unwrap();
    assert_eq!(first.to_map().unwrap()["x"], serde_json::json!(1));
    let (rows, end) = drain(&mut s).await;
    let e = end.unwrap_err();
    assert_eq!(e.kind, ErrorKind::RemoteTimeout, "{e}");
    assert_eq!(e.status, Some(200));
    assert!(rows.len() < 150000, "{}", rows.len());
    assert!(t.elapsed() < Duration::from_secs(4));
    // No row was made of the error.
    assert!(rows.iter().all(|r| !String::from_utf8_lossy(r.as_bytes()).contains("error")));
    // The buffered API gives the same error.
    let e = c.query_readonly("select x, case when x = 150000 then pg_sleep(5) end as s from generate_series(1, 300000) x").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::RemoteTimeout);
}

/// next_row raced against a short timer, as the extension does (select! in 100 ms slices, here 1 ms): no row
/// is lost or repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_row_is_cancel_safe() {
    let sim = TestSim::start_default();
    let c = demo(&sim, |_| {});
    let mut s = c.query_rows("select x::text as x from generate_series(1, 200000) x", true).await.unwrap();
    let mut got = Vec::new();
    let mut timeouts = 0;
    loop {
        tokio::select! {
            r = s.next_row() => match r.unwrap() {
                Some(r) => got.push(r),
                None => break,
            },
            _ = tokio::time::sleep(Duration::from_micros(200)) => timeouts += 1,
        }
    }
    assert_eq!(xs(&got), (1..=200000).collect::<Vec<_>>());
    assert_eq!(s.rows_returned(), 200000);
    assert_eq!(s.summary().unwrap().total_rows, 200000);
    eprintln!("{timeouts} next_row futures dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_cancels_remote_query() {
    let sim = TestSim::start_default();
    let c = demo(&sim, |_| {});
    let mut s = c.query_rows("select n, repeat('x', 100) as r from generate_series(1, 100000000) n", true).await.unwrap();
    assert!(s.next_row().await.unwrap().is_some());
    drop(s);
    let e = sim.admin().wait_log(Duration::from_secs(10), |e| e.path.ends_with("/api/v2/sql") && e.aborted);
    assert!(e.is_some(), "the sim did not see the connection close");
    wait_query_gone(&sim, "select n, repeat").await;
}

/// Rows and COPY lines over max_row_bytes are refused; error bodies are read up to 64 KiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounds() {
    let sim = TestSim::start_default();
    let c = demo(&sim, |c| c.max_row_bytes = 100_000);
    let mut s = c.query_rows("select x, repeat('y', case when x = 500 then 200000 else 10 end) as r from generate_series(1, 1000) x", true).await.unwrap();
    let (rows, end) = drain(&mut s).await;
    let e = end.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Protocol);
    assert!(e.message.contains("max_row_bytes"), "{e}");
    assert!(rows.len() < 500);
    let e = c.query_readonly("select repeat('y', 200000) as r").await.unwrap_err();
    assert!(e.message.contains("max_row_bytes"), "{e}");
    let mut s = c.copy_to("COPY (select x, repeat('y', case when x = 500 then 300000 else 10 end) from generate_series(1, 1000) x) TO STDOUT").await.unwrap();
    let e = loop {
        match s.next_chunk().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("a line over max_row_bytes was accepted"),
            Err(e) => break e,
        }
    };
    assert_eq!(e.kind, ErrorKind::Protocol);
    assert!(e.message.contains("max_row_bytes"), "{e}");
    // An error page larger than 64 KiB: its start is still the message.
    sim.admin().fault(FaultSpec {
        group: Some("query".into()),
        status: Some(500),
        body: Some(format!("<html>upstream exploded {}</html>", "z".repeat(200_000))),
        ..fault_spec()
    });
    let e = c.query("select 1").await.unwrap_err();
    assert_eq!((e.kind, e.status), (ErrorKind::Protocol, Some(500)));
    assert!(e.message.starts_with("upstream exploded"), "{e}");
}
