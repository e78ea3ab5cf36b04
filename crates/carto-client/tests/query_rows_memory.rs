//! A 2M-row `/sql` answer (about 100 MB of JSON) read with `Client::query_rows` in flat memory. Alone in its
//! own test binary, so the process's peak RSS (VmHWM) is this test's. Needs CARTO_SIM_ADMIN_URL like
//! tests/sim.rs.

use std::time::{Duration, Instant};

use carto_client::{Client, ClientConfig};
use carto_sim::testkit::{self, TestSim};

mod common;
use common::vm_hwm;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_million_rows_in_flat_memory() {
    let sim = TestSim::start_default();
    let mut cfg = ClientConfig::for_base_url(&sim.base_url("demo")).unwrap().with_api_key(testkit::DEMO_MASTER_KEY);
    cfg.request_timeout = Duration::from_secs(600);
    let c = Client::new(cfg).unwrap();
    // Warm up the sim, its pool and the client's connection.
    let mut s = c.query_rows("select x, md5(x::text) as h from generate_series(1, 20000) x", true).await.unwrap();
    while s.next_row().await.unwrap().is_some() {}
    let before = vm_hwm();
    let t = Instant::now();
    let mut s = c
        .query_rows("SELECT x, md5(x::text) AS h FROM generate_series(1, 2000000) x", true)
        .await
        .unwrap();
    let mut n = 0u64;
    let mut bytes = 0usize;
    while let Some(r) = s.next_row().await.unwrap() {
        n += 1;
        bytes += r.as_bytes().len();
        assert_eq!(r.index(), n);
        if n % 100_000 == 1 {
            let m = r.to_map().unwrap();
            assert_eq!(m["x"], serde_json::json!(n));
            assert_eq!(m["h"].as_str().unwrap().len(), 32);
        }
    }
    let sum = s.summary().unwrap();
    assert_eq!(n, 2_000_000);
    assert_eq!(sum.total_rows, 2_000_000);
    let received = sum.stats.bytes_received;
    let grew = vm_hwm().saturating_sub(before);
    eprintln!(
        "2M rows, {} MB of JSON ({} MB of rows) in {:.1} s; peak RSS grew by {:.1} MB",
        received / 1_000_000,
        bytes / 1_000_000,
        t.elapsed().as_secs_f64(),
        grew as f64 / 1e6
    );
    assert!(received > 90_000_000, "{received}");
    // Buffering the body alone would take 100 MB; the stream holds a few channel batches and chunks.
    assert!(grew < 32 << 20, "peak RSS grew by {grew} bytes while streaming {received} bytes");
}
