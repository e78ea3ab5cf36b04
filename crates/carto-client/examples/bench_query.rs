//! `Client::query_rows` over a large `/sql` answer against an in-process carto-sim, beside curl of the same
//! POST, with the process's peak RSS (VmHWM). Run through `bench/client.sh query` (needs CARTO_SIM_ADMIN_URL):
//!
//!   cargo run --release -p carto-client --example bench_query -- [ROWS]
//!
//! The query is issue 22's: `SELECT x, md5(x::text) AS h FROM generate_series(1, ROWS) x` (2M rows, about
//! 105 MB of JSON). Client and curl run alternately, three times each, best of each; then, for comparison,
//! the buffered `query_readonly` once (its rows all parsed into memory), whose peak RSS is printed after.

use std::time::{Duration, Instant};

use carto_client::{Client, ClientConfig};
use carto_sim::testkit::{TestSim, DEMO_MASTER_KEY};

mod common;
use common::curl;

fn vm_hwm_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A minimal HTTP/1.1 server answering every request with `body` (Content-Length, then the connection closes).
fn serve(body: Vec<u8>) -> u16 {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = std::sync::Arc::new(body);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let body = body.clone();
            std::thread::spawn(move || {
                // The request: its head, then Content-Length bytes of form.
                let mut req = Vec::new();
                let mut buf = [0u8; 65536];
                let need = loop {
                    let Ok(n) = conn.read(&mut buf) else { return };
                    if n == 0 {
                        return;
                    }
                    req.extend_from_slice(&buf[..n]);
                    if let Some(i) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&req[..i]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
                            .unwrap_or(0);
                        break i + 4 + len;
                    }
                };
                while req.len() < need {
                    let Ok(n) = conn.read(&mut buf) else { return };
                    if n == 0 {
                        return;
                    }
                    req.extend_from_slice(&buf[..n]);
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).and_then(|_| conn.write_all(&body));
            });
        }
    });
    port
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rows: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(2_000_000);
    let sim = TestSim::start_default();
    let base = sim.base_url("demo");
    let auth = format!("demo:{DEMO_MASTER_KEY}");
    let sql = format!("SELECT x, md5(x::text) AS h FROM generate_series(1, {rows}) x");
    let mut cfg = ClientConfig::for_base_url(&base).unwrap().with_api_key(DEMO_MASTER_KEY);
    cfg.request_timeout = Duration::from_secs(1200);
    let client = Client::new(cfg).unwrap();
    println!("carto-client query bench: {rows} rows, sim at {}", sim.url());
    let url = format!("{base}/api/v2/sql");
    let q = format!("q={sql}");
    let curl_args = ["-sS", "-o", "/dev/null", "-w", "%{size_download}", "-u", &auth, "--data-urlencode", &q, &url];

    let answer_file = std::env::temp_dir().join(format!("bench-query-{}.json", std::process::id()));
    let mut best = [Duration::MAX; 3];
    let mut curl_bytes = 0u64;
    let mut client_bytes = 0u64;
    for _ in 0..3 {
        // query_rows, rows counted (what a consumer of the raw JSON pays for the transport).
        let t = Instant::now();
        let mut s = client.query_rows(&sql, true).await.expect("query_rows");
        let mut n = 0u64;
        while let Some(_r) = s.next_row().await.expect("row") {
            n += 1;
        }
        best[0] = best[0].min(t.elapsed());
        assert_eq!(n, rows);
        client_bytes = s.summary().expect("summary").stats.bytes_received;

        // query_rows, every row parsed (serde_json Map).
        let t = Instant::now();
        let mut s = client.query_rows(&sql, true).await.expect("query_rows");
        let mut n = 0u64;
        while let Some(r) = s.next_row().await.expect("row") {
            let m = r.to_map().expect("row json");
            n += m.len() as u64 / 2;
        }
        best[1] = best[1].min(t.elapsed());
        assert_eq!(n, rows);

        let (out, d) = curl(&curl_args);
        if !answer_file.exists() {
            curl(&["-sS", "-o", answer_file.to_str().unwrap(), "-u", &auth, "--data-urlencode", &q, &url]);
        }
        curl_bytes = out.trim().parse().unwrap_or(0);
        best[2] = best[2].min(d);
    }
    // The same answer but for `time`'s digits.
    assert!(curl_bytes.abs_diff(client_bytes) < 32, "curl got {curl_bytes} bytes, the client {client_bytes}");
    let mb = client_bytes as f64 / 1e6;
    let line = |what: &str, d: Duration| {
        println!(
            "{what:<42} {:>6.2} s {:>8.1} MB/s {:>10.0} rows/s   {:.2}x curl",
            d.as_secs_f64(),
            mb / d.as_secs_f64(),
            rows as f64 / d.as_secs_f64(),
            d.as_secs_f64() / best[2].as_secs_f64()
        )
    };
    println!("answer: {:.1} MB of JSON", mb);
    line("query_rows (rows counted), best of 3", best[0]);
    line("query_rows + RawRow::to_map, best of 3", best[1]);
    line("curl -o /dev/null, best of 3", best[2]);
    println!("VmHWM after the streamed runs: {:.1} MB (the in-process carto-sim included)", vm_hwm_mb());

    // The reader's own speed: the same answer from memory, served by a minimal HTTP server (the sim's JSON
    // writer, not the client, sets the pace above).
    let body = std::fs::read(&answer_file).expect("answer");
    let _ = std::fs::remove_file(&answer_file);
    let port = serve(body);
    let mut cfg = ClientConfig::for_base_url(&format!("http://127.0.0.1:{port}/user/demo")).unwrap().with_api_key("k");
    cfg.request_timeout = Duration::from_secs(1200);
    let mem = Client::new(cfg).unwrap();
    let mem_url = format!("http://127.0.0.1:{port}/user/demo/api/v2/sql");
    let mem_args = ["-sS", "-o", "/dev/null", "-w", "%{size_download}", "--data-urlencode", &q, &mem_url];
    let mut best_mem = [Duration::MAX; 2];
    // More rounds (BENCH_QUERY_MEM_ROUNDS) for profiling the reader.
    let rounds: usize = std::env::var("BENCH_QUERY_MEM_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    for _ in 0..rounds {
        let t = Instant::now();
        let mut s = mem.query_rows(&sql, true).await.expect("query_rows");
        let mut n = 0u64;
        while let Some(_r) = s.next_row().await.expect("row") {
            n += 1;
        }
        best_mem[0] = best_mem[0].min(t.elapsed());
        assert_eq!(n, rows);
        let (_, d) = curl(&mem_args);
        best_mem[1] = best_mem[1].min(d);
    }
    println!(
        "from memory: query_rows {:.2} s ({:.0} MB/s), curl {:.2} s ({:.0} MB/s): {:.2}x curl",
        best_mem[0].as_secs_f64(),
        mb / best_mem[0].as_secs_f64(),
        best_mem[1].as_secs_f64(),
        mb / best_mem[1].as_secs_f64(),
        best_mem[0].as_secs_f64() / best_mem[1].as_secs_f64()
    );
    println!("VmHWM: {:.1} MB (the answer held in memory by the server included)", vm_hwm_mb());

    // The buffered API, once, for comparison: all rows parsed into memory.
    let t = Instant::now();
    let r = client.query_readonly(&sql).await.expect("query_readonly");
    let d = t.elapsed();
    assert_eq!(r.rows.len() as u64, rows);
    drop(r);
    line("query_readonly (buffered, rows kept)", d);
    println!("VmHWM after query_readonly: {:.1} MB", vm_hwm_mb());
}
