//! Throughput of carto-client against an in-process carto-sim, beside curl on the same data, plus the COPY text
//! codec's decode/encode speed. Run through bench/client.sh (needs CARTO_SIM_ADMIN_URL).
//!
//!   cargo run --release -p carto-client --example bench_copy -- [ROWS]

use std::io::Write as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use carto_client::copy_text::{self, Decoder};
use carto_client::{Client, ClientConfig};
use carto_sim::testkit::{TestSim, DEMO_MASTER_KEY};

mod common;
use common::curl;

fn mbs(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn report(what: &str, bytes: usize, rows: usize, d: Duration) {
    println!(
        "{what:<44} {:>9.1} MB/s {:>12.0} rows/s   ({} MB, {rows} rows, {:.2} s)",
        mbs(bytes, d),
        rows as f64 / d.as_secs_f64(),
        bytes / 1_000_000,
        d.as_secs_f64()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rows: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(500_000);
    let sim = TestSim::start_default();
    let base = sim.base_url("demo");
    let auth = format!("demo:{DEMO_MASTER_KEY}");
    sim.psql(
        "demo",
        &format!(
            "create table src as select n as id, 'name ' || n as name, n * 1.5 as x, now() as ts, \
             case when n % 10 = 0 then null else md5(n::text) end as h from generate_series(1, {rows}) n; \
             create table dst (like src); create table dst2 (like src)"
        ),
    )
    .expect("setup");
    let client = Client::new(ClientConfig::for_base_url(&base).unwrap().with_api_key(DEMO_MASTER_KEY)).unwrap();
    let copy_out_sql = "COPY src TO STDOUT";
    println!("carto-client bench: {rows} rows, sim at {}", sim.url());

    // copy_to: the client and curl alternately, three times each, best of each (the first read of the table
    // warms the sim's cache; whoever went first would pay for it). The client's chunks are counted, not kept.
    let mut best_client = Duration::MAX;
    let mut best_curl = Duration::MAX;
    let mut client_bytes = 0usize;
    let mut curl_bytes = 0usize;
    for _ in 0..3 {
        let t = Instant::now();
        let mut s = client.copy_to(copy_out_sql).await.expect("copy_to");
        let (mut bytes, mut lines) = (0usize, 0usize);
        while let Some(c) = s.next_chunk().await.expect("chunk") {
            bytes += c.len();
            lines += memchr::memchr_iter(b'\n', &c).count();
        }
        best_client = best_client.min(t.elapsed());
        assert_eq!(lines, rows);
        client_bytes = bytes;

        let (out, d) = curl(&[
            "-sS", "-o", "/dev/null", "-w", "%{size_download}", "-u", &auth, "-X", "POST",
            "--data-urlencode", &format!("q={copy_out_sql}"), &format!("{base}/api/v2/sql/copyto"),
        ]);
        curl_bytes = out.trim().parse().unwrap_or(0);
        best_curl = best_curl.min(d);
    }
    assert_eq!(curl_bytes, client_bytes, "curl got a different size");
    report("copy_to   carto-client (best of 3)", client_bytes, rows, best_client);
    report("copy_to   curl (best of 3)", curl_bytes, rows, best_curl);
    // The COPY text the copy_from runs below upload.
    let mut data: Vec<u8> = Vec::with_capacity(client_bytes);
    let mut s = client.copy_to(copy_out_sql).await.expect("copy_to");
    while let Some(c) = s.next_chunk().await.expect("chunk") {
        data.extend_from_slice(&c);
    }

    // copy_from: the client (gzip level 1 and 0, 64 KB sends of whole lines; compression timed) and curl (plain, and
    // a pre-compressed gzip file: compression not timed), alternately, three rounds, best of each.
    let data = Bytes::from(data);
    let dir = std::env::temp_dir();
    let plain = dir.join(format!("bench-copy-{}.txt", std::process::id()));
    let gz = dir.join(format!("bench-copy-{}.txt.gz", std::process::id()));
    std::fs::write(&plain, &data).unwrap();
    {
        let mut e = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::new(1));
        e.write_all(&data).unwrap();
        e.finish().unwrap();
    }
    let url = format!("{base}/api/v2/sql/copyfrom?q=COPY%20dst2%20FROM%20STDIN");
    let mut best_client = [Duration::MAX; 2];
    let mut sent = [0u64; 2];
    let mut best_curl = [Duration::MAX; 2];
    for _ in 0..3 {
        for (k, level) in [1u32, 0].into_iter().enumerate() {
            sim.psql("demo", "truncate dst").unwrap();
            let mut cfg = ClientConfig::for_base_url(&base).unwrap().with_api_key(DEMO_MASTER_KEY);
            cfg.compression_level = level;
            let c = Client::new(cfg).unwrap();
            let t = Instant::now();
            let mut up = c.copy_from("COPY dst FROM STDIN");
            let mut rest = data.clone();
            while !rest.is_empty() {
                let mut cut = rest.len().min(64 * 1024);
                if cut < rest.len() {
                    cut = memchr_last_nl(&rest[..cut]).map_or(rest.len(), |i| i + 1);
                }
                let chunk = rest.split_to(cut);
                let nrows = copy_text::lines(&chunk).count() as u64;
                up.send(chunk, nrows).await.expect("send");
            }
            let sum = up.finish().await.expect("finish");
            best_client[k] = best_client[k].min(t.elapsed());
            assert_eq!(sum.total_rows as usize, rows);
            sent[k] = sum.bytes_sent;
        }
        for (k, (file, enc)) in [(&plain, false), (&gz, true)].into_iter().enumerate() {
            sim.psql("demo", "truncate dst2").unwrap();
            let mut args = vec![
                "-sS".to_string(), "-u".into(), auth.clone(), "-X".into(), "POST".into(),
                "-H".into(), "Transfer-Encoding: chunked".into(),
                "-H".into(), "Content-Type: application/octet-stream".into(),
            ];
            if enc {
                args.push("-H".into());
                args.push("Content-Encoding: gzip".into());
            }
            args.push("--data-binary".into());
            args.push(format!("@{}", file.display()));
            args.push(url.clone());
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            let (out, d) = curl(&a);
            assert!(out.contains(&format!("\"total_rows\":{rows}")), "curl: {out}");
            best_curl[k] = best_curl[k].min(d);
        }
    }
    for (k, level) in [1u32, 0].into_iter().enumerate() {
        report(&format!("copy_from carto-client gzip {level} ({} MB sent, best of 3)", sent[k] / 1_000_000), data.len(), rows, best_client[k]);
    }
    report("copy_from curl plain (best of 3)", data.len(), rows, best_curl[0]);
    report("copy_from curl gzip 1 (pre-compressed, best of 3)", data.len(), rows, best_curl[1]);
    let _ = std::fs::remove_file(&plain);
    let _ = std::fs::remove_file(&gz);

    // Codec: decode every line, then encode the decoded fields again.
    let mut dec = Decoder::new();
    let t = Instant::now();
    let mut fields = 0usize;
    for _ in 0..3 {
        for l in copy_text::lines(&data) {
            dec.decode(l).expect("decode");
            fields += dec.len();
        }
    }
    let d = t.elapsed();
    assert!(fields > 0);
    report("codec decode (3 passes)", data.len() * 3, rows * 3, d);
    let decoded: Vec<Vec<Option<Vec<u8>>>> = copy_text::lines(&data)
        .map(|l| {
            dec.decode(l).unwrap();
            (0..dec.len()).map(|i| dec.field(i).map(<[u8]>::to_vec)).collect()
        })
        .collect();
    let mut out = Vec::with_capacity(data.len());
    let t = Instant::now();
    for _ in 0..3 {
        out.clear();
        for r in &decoded {
            copy_text::encode_row(r.iter().map(|f| f.as_deref()), &mut out);
        }
    }
    let d = t.elapsed();
    assert!(out == data[..], "re-encoding differs");
    report("codec encode (3 passes)", data.len() * 3, rows * 3, d);
}

fn memchr_last_nl(b: &[u8]) -> Option<usize> {
    memchr::memrchr(b'\n', b)
}
