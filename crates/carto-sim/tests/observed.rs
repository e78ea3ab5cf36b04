//! Behaviours of the real server observed side by side with carto-sim (carto-sql-api.md section 11, items 2–9;
//! item 1, the upload race, is in upload_race.rs).
mod common;
use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::Duration;

fn enc(q: &str) -> String {
    form_urlencoded::byte_serialize(q.as_bytes()).collect()
}

fn copyfrom_url(sim: &TestSim, q: &str) -> String {
    format!("{}/api/v2/sql/copyfrom?api_key={}&q={}", sim.base_url("demo"), DEMO_MASTER_KEY, enc(q))
}

fn copyto_url(sim: &TestSim, q: &str) -> String {
    format!("{}/api/v2/sql/copyto?api_key={}&q={}", sim.base_url("demo"), DEMO_MASTER_KEY, enc(q))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data).read_to_end(&mut out).unwrap();
    out
}

/// 11.2: error bodies carry PostgreSQL's detail and hint, never its context, on /sql, /copyfrom and /copyto.
#[tokio::test]
async fn errors_never_carry_postgresql_context() {
    let sim = TestSim::start_default();
    sim.psql("demo", "CREATE TABLE t (id int primary key, name text); INSERT INTO t VALUES (1, 'a')").unwrap();
    let c = client();
    // /sql: a PL/pgSQL error (PostgreSQL gives a context) with detail and hint
    let (s, v) = sql(&sim, "demo", "do $$ begin raise exception 'boom' using detail = 'd', hint = 'h'; end $$").await;
    assert_eq!((s, v), (400, json!({"error": ["boom"], "detail": "d", "hint": "h"})));
    // /copyfrom: a bad row (context "COPY t, line 2, column id") and a duplicate key (detail, context)
    let r = c.post(copyfrom_url(&sim, "COPY t FROM STDIN")).body("2\tb\nx\tc\n").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.text().await.unwrap(), r#"{"error":["invalid input syntax for type integer: \"x\""]}"#);
    let r = c.post(copyfrom_url(&sim, "COPY t FROM STDIN")).body("1\tdup\n").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!({"error": ["duplicate key value violates unique constraint \"t_pkey\""], "detail": "Key (id)=(1) already exists."}));
    // /copyto: an error raised in a PL/pgSQL function (context "PL/pgSQL function ...")
    sim.psql("demo", "CREATE FUNCTION f() RETURNS SETOF int LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'nope' USING HINT = 'hh'; END $$").unwrap();
    let r = c.get(copyto_url(&sim, "COPY (SELECT * FROM f()) TO STDOUT")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"error": ["nope"], "hint": "hh"}));
    // CARTO's own limit errors keep their context
    sim.admin().set_statement_timeout("demo", Some(100));
    let (s, v) = sql(&sim, "demo", "select pg_sleep(1)").await;
    assert_eq!((s, &v["context"]), (429, &json!("limit")), "{v}");
}

/// 11.3: every JSON error answer of /sql, /copyfrom and /copyto is `Content-Disposition: inline`, the 404 of an
/// unknown user too (which also carries Carto-User); the Batch API's: `batch_json_errors_are_inline`.
#[tokio::test]
async fn json_errors_are_inline() {
    let sim = TestSim::start_default();
    let c = client();
    let check = |r: &reqwest::Response, status: u16| {
        assert_eq!(r.status().as_u16(), status);
        assert_eq!(r.headers()["content-type"], "application/json; charset=utf-8");
        assert_eq!(r.headers()["content-disposition"], "inline", "{:?}", r.headers());
    };
    let r = c.get(format!("{}?q={}&api_key={DEMO_MASTER_KEY}", sim.sql_url("demo"), enc("select * from nope"))).send().await.unwrap();
    check(&r, 400);
    let r = c.get(format!("{}?q=select+1&api_key=wrong", sim.sql_url("demo"))).send().await.unwrap();
    check(&r, 401);
    let r = c.post(copyfrom_url(&sim, "COPY nope FROM STDIN")).body("1\n").send().await.unwrap();
    check(&r, 400);
    let r = c.get(copyto_url(&sim, "COPY nope TO STDOUT")).send().await.unwrap();
    check(&r, 400);
    let r = c.get(format!("{}?q=select+1", sim.sql_url("nobody"))).send().await.unwrap();
    check(&r, 404);
    assert_eq!(r.headers()["carto-user"], "nobody");
    // Successful /sql JSON: inline with CARTO's file name
    let r = c.get(format!("{}?q=select+1&api_key={DEMO_MASTER_KEY}", sim.sql_url("demo"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let d = r.headers()["content-disposition"].to_str().unwrap().to_string();
    assert!(d.starts_with("inline; filename=cartodb-query.json; modification-date=\""), "{d}");
}

/// 11.3: the Batch API's JSON errors are `Content-Disposition: inline` too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_json_errors_are_inline() {
    let sim = TestSim::start_default();
    let c = client();
    let url = format!("{}/api/v2/sql/job", sim.base_url("demo"));
    let check = |r: reqwest::Response, status: u16, msg: &'static str| async move {
        assert_eq!(r.status().as_u16(), status, "{msg}");
        assert_eq!(r.headers()["content-type"], "application/json; charset=utf-8", "{msg}");
        assert_eq!(r.headers()["content-disposition"], "inline", "{msg}: {:?}", r.headers());
        let v: Value = r.json().await.unwrap();
        assert!(err_msg(&v).contains(msg), "{v}");
    };
    let select_1 = json!({"query": "select 1"});
    check(c.post(&url).json(&select_1).send().await.unwrap(), 403, "permission denied").await;
    check(c.post(format!("{url}?api_key={DEMO_REGULAR_KEY}")).json(&select_1).send().await.unwrap(), 403, "permission denied").await;
    check(c.post(format!("{url}?api_key=wrong")).json(&select_1).send().await.unwrap(), 401, "Unauthorized").await;
    check(c.post(format!("{url}?api_key={DEMO_MASTER_KEY}")).json(&json!({})).send().await.unwrap(), 400, "You must indicate a valid SQL").await;
    let big = json!({"query": format!("select '{}'", "x".repeat(17000))});
    check(c.post(format!("{url}?api_key={DEMO_MASTER_KEY}")).json(&big).send().await.unwrap(), 400, "Your payload is too large").await;
    let unknown = format!("{url}/00000000-0000-0000-0000-000000000000?api_key={DEMO_MASTER_KEY}");
    check(c.get(&unknown).send().await.unwrap(), 400, "not found").await;
    check(c.delete(&unknown).send().await.unwrap(), 400, "not found").await;
    // A finished job: read and cancel without the master key, then cancel it with the key.
    let r = job(&sim, &select_1).await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["job_id"].as_str().unwrap().to_string();
    assert_eq!(job_done(&sim, &id).await["status"], "done");
    check(c.get(format!("{url}/{id}?api_key={DEMO_REGULAR_KEY}")).send().await.unwrap(), 403, "permission denied").await;
    check(c.delete(format!("{url}/{id}")).send().await.unwrap(), 403, "permission denied").await;
    check(c.delete(format!("{url}/{id}?api_key={DEMO_MASTER_KEY}")).send().await.unwrap(), 400, "Cannot set status from done to cancelled").await;
    // A cancelled one
    let r = job(&sim, &json!({"query": "select pg_sleep(30)"})).await;
    let id = r.json::<Value>().await.unwrap()["job_id"].as_str().unwrap().to_string();
    let r = c.delete(format!("{url}/{id}?api_key={DEMO_MASTER_KEY}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-disposition").is_none(), "only errors are inline: {:?}", r.headers());
    check(c.delete(format!("{url}/{id}?api_key={DEMO_MASTER_KEY}")).send().await.unwrap(), 400, "Cannot set status from cancelled to cancelled").await;
}

/// 11.4: a regular key without the SQL grant (maps-only) gets 403 `forbidden` on every SQL API request.
#[tokio::test]
async fn a_key_without_the_sql_grant_is_forbidden() {
    let sim = TestSim::start_default();
    let c = client();
    let k = carto_sim::testkit::DEMO_MAPS_KEY;
    let base = sim.base_url("demo");
    let forbidden = |r: reqwest::Response| async move {
        assert_eq!(r.status(), 403);
        assert_eq!(r.text().await.unwrap(), r#"{"error":["forbidden"]}"#);
    };
    forbidden(c.get(format!("{base}/api/v2/sql?q=select+1&api_key={k}")).send().await.unwrap()).await;
    forbidden(c.post(format!("{base}/api/v2/sql")).form(&[("q", "select 1"), ("api_key", k)]).send().await.unwrap()).await;
    forbidden(c.get(format!("{base}/api/v2/sql?q=select+1")).basic_auth("demo", Some(k)).send().await.unwrap()).await;
    forbidden(c.post(format!("{base}/api/v2/sql/copyfrom?q={}&api_key={k}", enc("COPY cities (name) FROM STDIN"))).body("x\n").send().await.unwrap()).await;
    forbidden(c.get(format!("{base}/api/v2/sql/copyto?q={}&api_key={k}", enc("COPY cities TO STDOUT"))).send().await.unwrap()).await;
    forbidden(c.post(format!("{base}/api/v2/sql/job?api_key={k}")).json(&json!({"query": "select 1"})).send().await.unwrap()).await;
    // The key with the grant still works.
    let r = c.get(format!("{base}/api/v2/sql?q=select+count(*)+from+cities&api_key={DEMO_REGULAR_KEY}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// 11.5: format=csv ends every line, the header's too, with CRLF.
#[tokio::test]
async fn csv_lines_end_with_crlf() {
    let sim = TestSim::start_default();
    let r = client()
        .get(format!("{}?q={}&format=csv&api_key={DEMO_MASTER_KEY}", sim.sql_url("demo"), enc("select cartodb_id, name from cities order by 1")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "cartodb_id,name\r\n1,Madrid\r\n2,Barcelona\r\n3,Nowhere\r\n");
    // No rows: the header alone, with its CRLF
    let r = client().get(format!("{}?q={}&format=csv&api_key={DEMO_MASTER_KEY}", sim.sql_url("demo"), enc("select 1 as a where false"))).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "a\r\n");
}

/// 11.5: format=csv prints each column as its `::text` cast (CARTO's ogr2ogr selects `column::text`): booleans as
/// `true`/`false`; arrays keep their elements' output (`{t,f}`). Compared with PostgreSQL's own cast.
#[tokio::test]
async fn csv_prints_columns_as_their_text_cast() {
    let sim = TestSim::start_default();
    let cols = "b, ba, c, i4, inet4, inet6, net, n, t";
    sim.psql(
        "demo",
        "CREATE TABLE v (id int, b boolean, ba boolean[], c char(4), i4 int, inet4 inet, inet6 inet, net cidr, n numeric, t text); \
         INSERT INTO v VALUES (1, true, '{t,f,NULL}', 'ab', 7, '10.1.2.3', '::1', '10.0.0.0/8', 1.50, 'x y'), \
                              (2, false, '{}', NULL, NULL, '10.0.0.0/8', 'fe80::1/64', NULL, NULL, NULL), \
                              (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    )
    .unwrap();
    let q = format!("select {cols} from v order by id");
    let r = client().get(format!("{}?q={}&format=csv&api_key={DEMO_MASTER_KEY}", sim.sql_url("demo"), enc(&q))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csv = r.text().await.unwrap();
    assert_eq!(
        csv,
        "b,ba,c,i4,inet4,inet6,net,n,t\r\n\
         true,\"{t,f,NULL}\",ab,7,10.1.2.3/32,::1/128,10.0.0.0/8,1.50,x y\r\n\
         false,{},,,10.0.0.0/8,fe80::1/64,,,\r\n\
         ,,,,,,,,\r\n"
    );
    // The same as PostgreSQL's cast of each column to text (NULL printed empty, quoted when it has a comma).
    let cast: Vec<String> = cols.split(", ").map(|c| format!("{c}::text")).collect();
    let rows = sim.psql("demo", &format!("select {} from v order by id", cast.join(", "))).unwrap();
    let cell = |v: &Option<String>| v.as_deref().map(|s| if s.contains(',') { format!("\"{s}\"") } else { s.to_string() }).unwrap_or_default();
    let expected: Vec<String> = rows.iter().map(|r| r.iter().map(cell).collect::<Vec<_>>().join(",")).collect();
    assert_eq!(csv.lines().skip(1).map(|l| l.trim_end_matches('\r')).collect::<Vec<_>>(), expected);
}

// 11.6 (CDB_CartodbfyTable's notices on a new table): sql_api.rs, cartodbfy_of_a_new_table_reports_the_missing_triggers.

/// 11.7: OPTIONS on the API routes, health, version, and Express's 404 page for a route that does not exist
/// (with CARTO's CORS headers, without the SQL API's own).
#[tokio::test]
async fn routes_around_the_api() {
    let sim = TestSim::start_default();
    // Rate limits on: the 404 page must not carry their headers.
    sim.admin().set_plan("demo", carto_sim::config::Plan::Enterprise);
    let c = client();
    let base = sim.base_url("demo");
    for path in ["/api/v2/sql", "/api/v1/sql", "/api/v2/sql/copyfrom", "/api/v2/sql/copyto", "/api/v2/sql/job", "/api/v2/sql/job/123"] {
        let r = c.request(reqwest::Method::OPTIONS, format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.headers().get("content-type").is_none(), "{path}: {:?}", r.headers());
        assert_eq!(r.headers()["access-control-allow-origin"], "*");
        assert_eq!(r.headers()["access-control-allow-headers"], "*");
        assert_eq!(r.text().await.unwrap(), "");
    }
    for url in [format!("{}/api/v1/health", sim.url()), format!("{base}/api/v1/health")] {
        let r = c.get(url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("access-control-allow-origin").is_none(), "{:?}", r.headers());
        let v: Value = r.json().await.unwrap();
        assert_eq!((&v["enabled"], &v["ok"]), (&json!(true), &json!(true)), "{v}");
        assert!(v["elapsed"].is_u64(), "{v}");
        assert_eq!(v.as_object().unwrap().len(), 3, "{v}");
    }
    let r = c.get(format!("{}/api/v1/version", sim.url())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), r#"{"cartodb_sql_api":"6.0.0"}"#);
    // A route that does not exist
    let r = c.get(format!("{base}/api/v2/sql/job?api_key={DEMO_MASTER_KEY}")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    for h in ["access-control-allow-origin", "access-control-allow-headers", "access-control-expose-headers"] {
        assert_eq!(r.headers().get(h).map(|v| v.to_str().unwrap()), Some("*"), "{h}: {:?}", r.headers());
    }
    for h in ["carto-user", "carto-rate-limit-limit", "carto-rate-limit-remaining", "carto-rate-limit-reset"] {
        assert!(r.headers().get(h).is_none(), "{h}: {:?}", r.headers());
    }
    let page = r.text().await.unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    assert!(page.contains("<pre>Cannot GET /user/demo/api/v2/sql/job</pre>"), "{page}");
    let r = c.delete(format!("{base}/api/v2/sql")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("<pre>Cannot DELETE /user/demo/api/v2/sql</pre>"));
}

async fn job(sim: &TestSim, body: &Value) -> reqwest::Response {
    client().post(format!("{}/api/v2/sql/job?api_key={DEMO_MASTER_KEY}", sim.base_url("demo"))).json(body).send().await.unwrap()
}

async fn job_done(sim: &TestSim, id: &str) -> Value {
    for _ in 0..400 {
        let r = client().get(format!("{}/api/v2/sql/job/{id}?api_key={DEMO_MASTER_KEY}", sim.base_url("demo"))).send().await.unwrap();
        let v: Value = r.json().await.unwrap();
        if ["done", "failed", "cancelled"].contains(&v["status"].as_str().unwrap_or_default()) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("job {id} did not finish");
}

/// 11.8: the Batch API's details.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_api_details() {
    let sim = TestSim::start_default();
    sim.admin().set_plan("demo", carto_sim::config::Plan::Enterprise);
    // A body over 16 KB is refused before rate limiting: no rate-limit headers.
    let big = json!({"query": format!("select '{}'", "x".repeat(17000))});
    let r = job(&sim, &big).await;
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("carto-rate-limit-limit").is_none(), "{:?}", r.headers());
    assert!(r.text().await.unwrap().contains("Your payload is too large"));
    let r = job(&sim, &json!({"query": ["select 1", "select nope"]})).await;
    assert_eq!(r.status(), 201);
    assert!(r.headers().get("carto-rate-limit-limit").is_some(), "a job within the limit is rate limited");
    // A plain array job: items carry only query and status; the job its failed_reason.
    let id = r.json::<Value>().await.unwrap()["job_id"].as_str().unwrap().to_string();
    let v = job_done(&sim, &id).await;
    assert_eq!(v["status"], "failed");
    assert_eq!(v["query"], json!([{"query": "select 1", "status": "done"}, {"query": "select nope", "status": "failed"}]));
    assert_eq!(v["failed_reason"], "column \"nope\" does not exist");
    // The fallback form: <%= error_message %> is pasted unquoted, so this fallback fails with a syntax error,
    // which becomes the item's failed_reason; no top-level failed_reason; items carry started_at/ended_at.
    sim.admin().reset_rate_limits();
    let body = json!({"query": {"query": [{"query": "select * from nope", "onerror": "SELECT <%= error_message %>"}]}});
    let r = job(&sim, &body).await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["job_id"].as_str().unwrap().to_string();
    let v = job_done(&sim, &id).await;
    assert_eq!(v["status"], "failed", "{v}");
    assert!(v.get("failed_reason").is_none(), "{v}");
    let item = &v["query"]["query"][0];
    assert_eq!(item["status"], "failed", "{v}");
    assert_eq!(item["fallback_status"], "failed", "{v}");
    assert_eq!(item["failed_reason"], "syntax error at or near \"does\"", "{v}");
    assert!(item["started_at"].is_string() && item["ended_at"].is_string(), "{v}");
}

/// 11.9: binary COPY both ways, plain or gzip'd, and PostgreSQL's own error for binary data of the wrong type.
#[tokio::test]
async fn binary_copy_both_ways() {
    let sim = TestSim::start_default();
    sim.psql(
        "demo",
        "CREATE TABLE src (id int, g geometry(Point,4326), t text, f float8, ts timestamptz); \
         INSERT INTO src SELECT i, ST_SetSRID(ST_MakePoint(i, -i), 4326), 'row ' || i, i / 3.0, '2026-01-01 00:00:00+00'::timestamptz + i * interval '1 minute' \
         FROM generate_series(1, 5000) i; \
         CREATE TABLE dst (LIKE src); CREATE TABLE dst_gz (LIKE src); CREATE TABLE wide (id int8, g geometry, t text, f float8, ts timestamptz)",
    )
    .unwrap();
    let c = client();
    let r = c.get(copyto_url(&sim, "COPY src TO STDOUT (FORMAT binary)")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    let bin = r.bytes().await.unwrap().to_vec();
    assert!(bin.starts_with(b"PGCOPY\n\xff\r\n\0"), "PostgreSQL's binary signature");
    assert!(bin.ends_with(&[0xff, 0xff]), "the trailer: the whole stream");
    // Back in, plain and gzip'd
    let r = c.post(copyfrom_url(&sim, "COPY dst FROM STDIN (FORMAT binary)")).body(bin.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["total_rows"], 5000);
    let r = c.post(copyfrom_url(&sim, "COPY dst_gz FROM STDIN (FORMAT binary)")).header("content-encoding", "gzip").body(gzip(&bin)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["total_rows"], 5000);
    for t in ["dst", "dst_gz"] {
        let diff = sim.psql_value("demo", &format!("select count(*) from (select * from src except select * from {t}) d")).unwrap();
        assert_eq!(diff, "0", "{t} holds exactly src's rows");
    }
    // gzip'd out (CARTO's nginx), same bytes once decompressed
    sim.admin().set_limits(|l| l.copyto_gzip = true);
    let r = c.get(copyto_url(&sim, "COPY src TO STDOUT (FORMAT binary)")).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(gunzip(&r.bytes().await.unwrap()), bin);
    // int4 data into an int8 column: PostgreSQL's own error, nothing loaded
    let r = c.post(copyfrom_url(&sim, "COPY wide FROM STDIN (FORMAT binary)")).body(bin.clone()).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.text().await.unwrap(), r#"{"error":["insufficient data left in message"]}"#);
    assert_eq!(sim.psql_value("demo", "select count(*) from wide").as_deref(), Some("0"));
}
