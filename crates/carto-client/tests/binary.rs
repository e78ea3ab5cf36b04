//! Binary COPY both ways against carto-sim: `copy_to_binary` + `copy_binary::Decoder`, `copy_from_binary` +
//! `copy_binary::Encoder`. Needs CARTO_SIM_ADMIN_URL like tests/sim.rs.

use std::time::Duration;

use bytes::Bytes;
use carto_client::copy_binary::{Decoder, Encoder, Step};
use carto_client::{Client, ClientConfig, CopyOutStream, Error, ErrorKind};
use carto_sim::testkit::{self, TestSim};

mod common;
use common::{open_copies, vm_hwm};

fn demo(sim: &TestSim, f: impl FnOnce(&mut ClientConfig)) -> Client {
    let mut c = ClientConfig::for_base_url(&sim.base_url("demo")).unwrap().with_api_key(testkit::DEMO_MASTER_KEY);
    c.max_retry_wait = Duration::from_secs(5);
    f(&mut c);
    Client::new(c).unwrap()
}

type Row = Vec<Option<Vec<u8>>>;

/// Every tuple of a binary stream, decoded chunk by chunk as they come.
async fn read_binary(s: CopyOutStream, fields: usize) -> Result<(Vec<Row>, usize), (Error, usize)> {
    read_with(s, Decoder::new(Some(fields))).await
}

async fn read_with(mut s: CopyOutStream, mut d: Decoder) -> Result<(Vec<Row>, usize), (Error, usize)> {
    let mut rows = Vec::new();
    let mut chunks = 0;
    loop {
        match d.next_tuple() {
            Ok(Step::Tuple) => rows.push((0..d.len()).map(|i| d.field(i).map(<[u8]>::to_vec)).collect()),
            Ok(Step::NeedData | Step::End) => match s.next_chunk().await {
                Ok(Some(c)) => {
                    chunks += 1;
                    d.push(c)
                }
                Ok(None) => {
                    let n = rows.len();
                    return d.finish().map(|_| (rows, chunks)).map_err(|e| (e, n));
                }
                Err(e) => return Err((e, rows.len())),
            },
            Err(e) => return Err((e, rows.len())),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_to_binary_plain_gzip_and_error_tail() {
    let sim = TestSim::start_default();
    let c = demo(&sim, |_| {});
    // Rows of int4, text with NULLs and bytes that look like framing (newlines, `{"error":`), float8.
    let sql = "COPY (select n::int4, case when n % 7 = 0 then null when n % 5 = 0 then '{\"error\":[\"x\"]}' \
               else repeat(E'\\n', n % 300) end, n::float8 / 4 from generate_series(1, 30000) n) TO STDOUT (FORMAT binary)";
    for gzip in [false, true] {
        sim.admin().set_limits(|l| l.copyto_gzip = gzip);
        let (rows, chunks) = read_binary(c.copy_to_binary(sql, true).await.unwrap(), 3).await.map_err(|e| e.0).unwrap();
        assert_eq!(rows.len(), 30000);
        assert!(chunks > 1, "one chunk only: fields never straddled");
        for (i, r) in rows.iter().enumerate() {
            let n = i as i32 + 1;
            assert_eq!(r[0].as_deref(), Some(&n.to_be_bytes()[..]));
            let t: Option<Vec<u8>> = if n % 7 == 0 {
                None
            } else if n % 5 == 0 {
                Some(b"{\"error\":[\"x\"]}".to_vec())
            } else {
                Some(vec![b'\n'; (n % 300) as usize])
            };
            assert_eq!(r[1], t, "row {n}");
            assert_eq!(r[2].as_deref(), Some(&(n as f64 / 4.0).to_be_bytes()[..]));
        }
    }
    // CARTO's error appended after streaming began: an Err with CARTO's message, never rows; a prefix before.
    for gzip in [false, true] {
        sim.admin().set_limits(|l| l.copyto_gzip = gzip);
        let s = c
            .copy_to_binary("COPY (select n, 1/(n-30000) from generate_series(1, 40000) n) TO STDOUT (FORMAT binary)", true)
            .await
            .unwrap();
        let (e, got) = read_binary(s, 2).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadRequest, "{e}");
        assert!(e.message.contains("division by zero"), "{e}");
        assert!(got > 0 && got < 29999, "{got}");
    }
    // An error before streaming: a 4xx as for text.
    let e = c.copy_to_binary("COPY nosuch TO STDOUT (FORMAT binary)", true).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadRequest);
}

fn tuples(from: i64, to: i64) -> Bytes {
    let mut out = Vec::new();
    for n in from..to {
        let t = format!("row {n}\twith\\ \n é");
        let t = if n % 5 == 0 { None } else { Some(t.as_bytes()) };
        Encoder::tuple(&mut out, [Some(&n.to_be_bytes()[..]), t].into_iter());
    }
    Bytes::from(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_from_binary_round_trip_rollover_and_type_mismatch() {
    let sim = TestSim::start_default();
    sim.psql("demo", "create table tb (id bigint primary key, t text)").unwrap();
    let c = demo(&sim, |_| {});
    let mut up = c.copy_from_binary("COPY tb (id, t) FROM STDIN (FORMAT binary)");
    for i in 0..10 {
        up.send(tuples(i * 1000, (i + 1) * 1000), 1000).await.unwrap();
    }
    let s = up.finish().await.unwrap();
    assert_eq!((s.total_rows, s.requests), (10000, 1));
    let v = sim.psql("demo", "select count(*), count(t), sum(id) from tb").unwrap();
    assert_eq!(v[0], vec![Some("10000".into()), Some("8000".into()), Some("49995000".into())]);
    let v = sim.psql("demo", "select t from tb where id = 7").unwrap();
    assert_eq!(v[0][0].as_deref(), Some("row 7\twith\\ \n é"));

    // Roll-over: every request carries its own header and trailer.
    sim.psql("demo", "create table tr (id bigint primary key, t text)").unwrap();
    let c2 = demo(&sim, |c| {
        c.copyfrom_max_bytes = 100 * 1024;
        c.compression_level = 0;
    });
    let sql = "COPY tr (id, t) FROM STDIN (FORMAT binary)";
    let (mut up, mut total, mut requests) = (c2.copy_from_binary(sql), 0, 0);
    for i in 0..200 {
        up.send(tuples(i * 50, (i + 1) * 50), 50).await.unwrap();
        if up.needs_rollover() {
            total += up.finish().await.unwrap().total_rows;
            requests += 1;
            up = c2.copy_from_binary(sql);
        }
    }
    total += up.finish().await.unwrap().total_rows;
    assert_eq!(total, 10000);
    assert!(requests >= 2, "{requests}");
    assert_eq!(sim.psql_value("demo", "select count(*) from tr").as_deref(), Some("10000"));

    // int4 data into an int8 column: CARTO's error, nothing stays.
    let mut up = c.copy_from_binary("COPY tb (id, t) FROM STDIN (FORMAT binary)");
    let mut out = Vec::new();
    Encoder::tuple(&mut out, [Some(&20001i32.to_be_bytes()[..]), None].into_iter());
    let e = match up.send(Bytes::from(out), 1).await {
        Err(e) => e,
        Ok(()) => up.finish().await.unwrap_err(),
    };
    assert_eq!(e.kind, ErrorKind::BadRequest, "{e}");
    assert!(e.message.contains("insufficient data left in message"), "{e}");
    assert_eq!(sim.psql_value("demo", "select count(*) from tb").as_deref(), Some("10000"));
}

/// A binary upload ended by `abort_gracefully` with its format's poison (a tuple with one field more than
/// the column list, never the trailer): CARTO's COPY fails by itself ("row field count"), no row stays
/// and no COPY stays open, even right after the first tuples (inside the sim's upload race, on by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_from_binary_abort_gracefully_ends_the_copy() {
    use carto_client::AbortOutcome;
    let sim = TestSim::start_default();
    sim.psql("demo", "create table tgb (id bigint primary key, t text)").unwrap();
    let c = demo(&sim, |_| {});
    let sql = "COPY tgb (id, t) FROM STDIN (FORMAT binary)";
    for (i, pause_ms) in [0u64, 0, 50, 300].into_iter().enumerate() {
        let mut up = c.copy_from_binary(sql);
        assert!(up.is_binary());
        up.send(tuples(0, 2000), 2000).await.unwrap();
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        let poison = up.poison(2);
        assert_eq!(&poison[..2], &3i16.to_be_bytes()[..], "one field more than the column list");
        let t0 = std::time::Instant::now();
        let out = up.abort_gracefully(poison, Duration::from_secs(2)).await;
        assert!(t0.elapsed() < Duration::from_millis(2500), "case {i}: the wait is bounded");
        match &out {
            AbortOutcome::Rejected(m) => assert!(m.contains("row field count is 3, expected 2"), "case {i}: {m}"),
            other => panic!("case {i}: expected CARTO's rejection, got {other:?}"),
        }
        assert_eq!(sim.psql_value("demo", "select count(*) from tgb").as_deref(), Some("0"), "case {i}");
        assert_eq!(open_copies(&sim, "tgb"), 0, "case {i}");
    }
    // A text poison line (or the trailer) is no poison for a binary upload: refused, the connection broken.
    // (On its own table: a broken connection may leave its COPY open in the sim's race.)
    sim.psql("demo", "create table tgb2 (id bigint primary key, t text)").unwrap();
    let mut up = c.copy_from_binary("COPY tgb2 (id, t) FROM STDIN (FORMAT binary)");
    up.send(tuples(0, 10), 10).await.unwrap();
    let out = up.abort_gracefully(Bytes::from_static(carto_client::copy_binary::TRAILER), Duration::from_secs(1)).await;
    assert!(matches!(&out, AbortOutcome::Unconfirmed(m) if m.contains("not a binary COPY tuple")), "{out:?}");
    // The poisoned table is not locked: a new upload goes through.
    let mut up = c.copy_from_binary(sql);
    up.send(tuples(0, 10), 10).await.unwrap();
    assert_eq!(up.finish().await.unwrap().total_rows, 10);
}

/// A hostile (or broken) server declaring a field of about 1 GB: refused as soon as its length arrives, with
/// nothing of that size allocated; a lower per-tuple limit refuses smaller ones the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_1gb_field_is_refused_without_allocating_it() {
    use carto_sim::faults::FaultSpec;
    let sim = TestSim::start_default();
    let c = demo(&sim, |_| {});
    let body = |len: i32| {
        let mut b = carto_client::copy_binary::HEADER.to_vec();
        b.extend_from_slice(&1i16.to_be_bytes());
        b.extend_from_slice(&len.to_be_bytes());
        b.extend_from_slice(&[b'x'; 100_000]);
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    };
    let before = vm_hwm();
    for (len, limit) in [(0x3fff_ffff, None), (1_000_000_000, Some(64 << 20))] {
        sim.admin().fault(FaultSpec {
            group: Some("copy_to".into()),
            status: Some(200),
            body_hex: Some(body(len)),
            ..testkit::fault_spec()
        });
        let s = c.copy_to_binary("COPY cities (cartodb_id) TO STDOUT (FORMAT binary)", true).await.unwrap();
        let mut d = Decoder::new(Some(1));
        if let Some(l) = limit {
            d = d.with_max_tuple_bytes(l);
        }
        let (e, n) = read_with(s, d).await.unwrap_err();
        assert_eq!((e.kind, n), (ErrorKind::Protocol, 0), "{e}");
        assert!(e.message.contains("accepted"), "{e}");
    }
    let grew = vm_hwm().saturating_sub(before);
    assert!(grew < 64 << 20, "peak RSS grew by {grew} bytes");
}
