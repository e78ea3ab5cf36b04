//! Memory stays flat while streaming large uploads and downloads (bounded buffers end to end).
mod common;
use bytes::Bytes;
use common::*;
use futures_util::StreamExt;

/// Peak resident set of this process (the sim runs in-process), in MB.
fn peak_mb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_copies_stream_with_flat_memory() {
    let sim = TestSim::start_default();
    let base = peak_mb();
    // 256 MB download
    let q = "COPY (select repeat('x', 1023) from generate_series(1, 262144)) TO STDOUT";
    let url = format!("{}/api/v2/sql/copyto?api_key={DEMO_MASTER_KEY}&q={}", sim.base_url("demo"), form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>());
    let r = client().get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut s = r.bytes_stream();
    let mut n: u64 = 0;
    while let Some(b) = s.next().await {
        n += b.unwrap().len() as u64;
    }
    assert_eq!(n, 262144 * 1024);
    // 128 MB upload, generated on the fly, chunked
    sim.psql("demo", "CREATE UNLOGGED TABLE big (t text)").unwrap();
    let row = Bytes::from(format!("{}\n", "y".repeat(8191)));
    let rows = 16384u64;
    let body = futures_util::stream::iter((0..rows).map(move |_| Ok::<Bytes, std::io::Error>(row.clone())));
    let url = format!("{}/api/v2/sql/copyfrom?api_key={DEMO_MASTER_KEY}&q=COPY+big+FROM+STDIN", sim.base_url("demo"));
    let r = client().post(url).body(reqwest::Body::wrap_stream(body)).send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(&format!("\"total_rows\":{rows}")), "{text}");
    let grown = peak_mb().saturating_sub(base);
    eprintln!("peak RSS grew by {grown} MB while moving 384 MB");
    assert!(grown < 96, "memory grew by {grown} MB");
}
