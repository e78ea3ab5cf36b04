//! /api/v2/sql: routing, credentials, errors, value conversion, streaming errors, timeouts.
mod common;
use base64::Engine;
use common::*;
use serde_json::{json, Value};

async fn get(url: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let r = client().get(url).send().await.expect("request");
    let s = r.status().as_u16();
    let h = r.headers().clone();
    (s, h, r.text().await.expect("body"))
}

fn enc(q: &str) -> String {
    form_urlencoded::byte_serialize(q.as_bytes()).collect()
}

#[tokio::test]
async fn routing_headers_and_unknown_user() {
    let sim = TestSim::start_default();
    let key = DEMO_MASTER_KEY;
    // /user/{user}/ prefix, v2 and v1
    for v in ["v1", "v2"] {
        let (s, h, b) = get(&format!("{}/api/{v}/sql?q=select+1+as+x&api_key={key}", sim.base_url("demo"))).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(h["carto-user"], "demo");
        assert!(h.get("carto-user-id").is_some());
        assert_eq!(h["vary"], "Authorization");
        assert_eq!(h["content-type"], "application/json; charset=utf-8");
        let v: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["rows"], json!([{"x": 1}]));
    }
    // Host-based user: demo.localhost:PORT
    let port = sim.url().rsplit(':').next().unwrap().to_string();
    let r = client()
        .get(format!("{}/api/v2/sql?q=select+current_user+u&api_key={key}", sim.url()))
        .header("host", format!("demo.localhost:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["carto-user"], "demo");
    // Unknown user
    let (s, h, b) = get(&format!("{}/api/v2/sql?q=select+1", sim.base_url("nobody"))).await;
    assert_eq!(s, 404);
    assert_eq!(b, r#"{"error":["Sorry, we can't find CARTO user 'nobody'. Please check that you have entered the correct domain."]}"#);
    assert_eq!(h["content-length"], b.len().to_string().as_str());
    // Organisation member: schema = user name
    let (s, v) = sql(&sim, "alice", "select current_schema() s").await;
    assert_eq!(s, 200);
    assert_eq!(v["rows"][0]["s"], "alice");
    let (_, v) = sql(&sim, "demo", "select current_schema() s").await;
    assert_eq!(v["rows"][0]["s"], "public");
}

#[tokio::test]
async fn credentials_in_every_place_and_their_errors() {
    let sim = TestSim::start_default();
    let url = sim.sql_url("demo");
    let q = "select count(*) n from cities";
    let c = client();
    // Basic auth
    let r = c.get(format!("{url}?q={}", enc(q))).basic_auth("demo", Some(DEMO_MASTER_KEY)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Basic auth with another user → 403
    let r = c.get(format!("{url}?q={}", enc(q))).basic_auth("alice", Some(DEMO_MASTER_KEY)).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.text().await.unwrap(), r#"{"error":["permission denied"]}"#);
    // map_key in the query string
    let r = c.get(format!("{url}?q={}&map_key={DEMO_MASTER_KEY}", enc(q))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // urlencoded form body
    let r = c.post(&url).form(&[("q", q), ("api_key", DEMO_REGULAR_KEY)]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // JSON body
    let r = c.post(&url).json(&json!({"q": q, "api_key": DEMO_MASTER_KEY})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["rows"][0]["n"], 3);
    // multipart body
    let form = reqwest::multipart::Form::new().text("q", q).text("api_key", DEMO_MASTER_KEY);
    let r = c.post(&url).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // The header wins over the query string (and a bad query-string key is then ignored)
    let r = c.get(format!("{url}?q={}&api_key=wrong", enc(q))).basic_auth("demo", Some(DEMO_MASTER_KEY)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Unknown key → 401
    let r = c.get(format!("{url}?q={}&api_key=wrong", enc(q))).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.text().await.unwrap(), r#"{"error":["Unauthorized"]}"#);
    let h = "Basic ".to_string() + &base64::engine::general_purpose::STANDARD.encode("demo:wrong");
    let r = c.get(format!("{url}?q={}", enc(q))).header("authorization", h).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // No key: publicuser, cannot read a private table → 403 permission denied
    let r = c.get(format!("{url}?q={}", enc(q))).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.text().await.unwrap(), r#"{"error":["permission denied for table cities"]}"#);
    // ... but can once the table is granted to publicuser
    sim.psql("demo", "GRANT SELECT ON cities TO publicuser").unwrap();
    let r = c.get(format!("{url}?q={}", enc(q))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Regular key: exactly its grants
    let r = c.post(&url).form(&[("q", "insert into cities(name) values ('x')"), ("api_key", DEMO_REGULAR_KEY)]).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.text().await.unwrap(), r#"{"error":["permission denied for table cities"]}"#);
    let r = c.post(&url).form(&[("q", "create table mine(a int)"), ("api_key", DEMO_REGULAR_KEY)]).send().await.unwrap();
    assert_eq!(r.status(), 403, "regular key without schema create");
}

#[tokio::test]
async fn query_errors_and_statuses() {
    let sim = TestSim::start_default();
    let url = sim.sql_url("demo");
    // Missing q
    let (s, h, b) = get(&format!("{url}?api_key={DEMO_MASTER_KEY}")).await;
    assert_eq!(s, 400);
    assert_eq!(b, r#"{"error":["You must indicate a sql query"]}"#);
    assert_eq!(h["content-type"], "application/json; charset=utf-8");
    assert_eq!(h["content-length"], b.len().to_string().as_str());
    // Missing table: 400, not 404
    let (s, v) = sql(&sim, "demo", "select * from nope").await;
    assert_eq!(s, 400);
    assert_eq!(err_msg(&v), "relation \"nope\" does not exist");
    // detail and hint from PostgreSQL
    let (s, v) = sql(&sim, "demo", "insert into cities(cartodb_id, name) values (1, 'dup')").await;
    assert_eq!(s, 400);
    assert_eq!(err_msg(&v), "duplicate key value violates unique constraint \"cities_pkey\"");
    assert_eq!(v["detail"], "Key (cartodb_id)=(1) already exists.");
    let (s, v) = sql(&sim, "demo", "select foo()").await;
    assert_eq!(s, 400);
    assert!(v["hint"].as_str().unwrap_or_default().contains("No function matches"), "{v}");
    // RAISE in PL/pgSQL: detail and hint, never PostgreSQL's context (carto-sql-api.md 11.2)
    let (s, v) = sql(&sim, "demo", "do $$ begin raise exception 'boom' using detail = 'd', hint = 'h'; end $$").await;
    assert_eq!(s, 400);
    assert_eq!(v, json!({"error": ["boom"], "detail": "d", "hint": "h"}));
    // Invalid format
    let (s, _, b) = get(&format!("{url}?q=select+1&format=xls&api_key={DEMO_MASTER_KEY}")).await;
    assert_eq!(s, 400, "{b}");
    // Not found route
    let (s, _, _) = get(&format!("{}/api/v2/nothing", sim.base_url("demo"))).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn values_and_fields_like_carto() {
    let sim = TestSim::start_default();
    let q = "select 1 as i, 9007199254740993::int8 as big, 123456789012345678901234567890::numeric as n, 1.5::float4 as f, \
             'NaN'::float8 as nan, 'Infinity'::float8 as inf, true as b, 'x'::text as t, 'ab'::char(4) as c, \
             '2026-11-21'::date as d, '2026-11-21 10:11:12.345'::timestamp as ts, '2026-11-21 10:11:12.9+02'::timestamptz as tz, \
             '10:11:12'::time as tm, '1 day 02:03:04.5'::interval as iv, '\\x0102ff'::bytea as by, '{\"k\": [1, 2.50]}'::json as j, \
             ARRAY[1,2,NULL] as arr, ARRAY['a','b c'] as tarr, NULL::text as nul, \
             ST_SetSRID(ST_MakePoint(1,2),4326) as g";
    let (s, v) = sql(&sim, "demo", q).await;
    assert_eq!(s, 200, "{v}");
    let r = &v["rows"][0];
    assert_eq!(r["i"], json!(1));
    assert_eq!(r["big"], json!(9007199254740992u64));
    assert_eq!(r["n"].as_f64(), Some(1.2345678901234568e29));
    assert_eq!(r["f"], json!(1.5));
    assert_eq!(r["nan"], "NaN");
    assert_eq!(r["inf"], "Infinity");
    assert_eq!(r["b"], json!(true));
    assert_eq!(r["c"], "ab  ");
    assert_eq!(r["d"], "2026-11-21T00:00:00Z");
    assert_eq!(r["ts"], "2026-11-21T10:11:12Z");
    assert_eq!(r["tz"], "2026-11-21T08:11:12Z");
    assert_eq!(r["tm"], "10:11:12");
    assert_eq!(r["iv"], json!({"days": 1, "hours": 2, "minutes": 3, "seconds": 4, "milliseconds": 500}));
    assert_eq!(r["by"], json!({"type": "Buffer", "data": [1, 2, 255]}));
    assert_eq!(r["j"], json!({"k": [1, 2.5]}));
    assert_eq!(r["arr"], json!([1, 2, null]));
    assert_eq!(r["tarr"], json!(["a", "b c"]));
    assert_eq!(r["nul"], Value::Null);
    assert_eq!(r["g"], "0101000020E6100000000000000000F03F0000000000000040");
    let f = &v["fields"];
    assert_eq!(f["i"], json!({"type": "number", "pgtype": "int4"}));
    assert_eq!(f["b"], json!({"type": "boolean", "pgtype": "bool"}));
    assert_eq!(f["t"], json!({"type": "string", "pgtype": "text"}));
    assert_eq!(f["d"], json!({"type": "date", "pgtype": "date"}));
    assert_eq!(f["tm"], json!({"type": "date", "pgtype": "time"}));
    assert_eq!(f["iv"], json!({"type": "number", "pgtype": "interval"}));
    assert_eq!(f["j"], json!({"type": "JSON", "pgtype": "JSON"}));
    assert_eq!(f["arr"], json!({"type": "number[]", "pgtype": "_int4"}));
    assert_eq!(f["g"], json!({"type": "geometry", "dims": 4, "srid": -1}));
    assert_eq!(v["total_rows"], 1);
    assert!(v["time"].is_number());
    // A table column keeps its typmod
    let (_, v) = sql(&sim, "demo", "select the_geom from cities limit 1").await;
    assert_eq!(v["fields"]["the_geom"], json!({"type": "geometry", "wkbtype": "Unknown", "dims": 2, "srid": 4326}));
    // Raw text: duplicate names collapse, later value wins at the first position
    let key = sim.master_key("demo");
    let r = client().post(sim.sql_url("demo")).form(&[("q", "select 1 as a, 2 as b, 3 as a"), ("api_key", key.as_str())]).send().await.unwrap();
    let text = r.text().await.unwrap();
    assert!(text.starts_with(r#"{"rows":[{"a":3,"b":2}],"time":"#), "{text}");
    assert!(text.ends_with(r#","fields":{"a":{"type":"number","pgtype":"int4"},"b":{"type":"number","pgtype":"int4"}},"total_rows":1}"#), "{text}");
    let r = client().post(sim.sql_url("demo")).form(&[("q", "select 123456789012345678901234567890::numeric n"), ("api_key", key.as_str())]).send().await.unwrap();
    assert!(r.text().await.unwrap().contains(r#"{"n":1.2345678901234568e+29}"#));
}

#[tokio::test]
async fn statements_writes_notices_and_params() {
    let sim = TestSim::start_default();
    // Writes: rows [], fields {}, total_rows = affected
    let (s, v) = sql(&sim, "demo", "update cities set name = upper(name) where the_geom is not null").await;
    assert_eq!(s, 200);
    assert_eq!(v["rows"], json!([]));
    assert_eq!(v["fields"], json!({}));
    assert_eq!(v["total_rows"], 2);
    // Several statements: rows of all, fields and total_rows of the last; one transaction
    let (s, v) = sql(&sim, "demo", "select 1 as a; select 'x' as b, 2 as c").await;
    assert_eq!(s, 200);
    assert_eq!(v["rows"], json!([{"a": 1}, {"b": "x", "c": 2}]));
    assert_eq!(v["fields"], json!({"b": {"type": "string", "pgtype": "text"}, "c": {"type": "number", "pgtype": "int4"}}));
    assert_eq!(v["total_rows"], 1);
    let (s, _) = sql(&sim, "demo", "create table tx(a int); insert into tx values (1); select 1/0").await;
    assert_eq!(s, 400);
    assert_eq!(sim.psql_value("demo", "select to_regclass('tx')::text"), None, "rolled back");
    let (s, v) = sql(&sim, "demo", "create table tx(a int); insert into tx values (1),(2); select * from tx").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["rows"], json!([{"a": 1}, {"a": 2}]));
    // Notices and warnings
    let (s, v) = sql(&sim, "demo", "do $$ begin raise notice 'n1'; raise warning 'w1'; raise notice 'n2'; end $$").await;
    assert_eq!(s, 200);
    assert_eq!(v["notices"], json!(["n1", "n2"]));
    assert_eq!(v["warnings"], json!(["w1"]));
    // skipfields, rows_per_page/page
    let key = sim.master_key("demo");
    let c = client();
    let r = c
        .get(format!("{}?q=select+cartodb_id,name,the_geom+from+cities+order+by+1&skipfields=the_geom,name&rows_per_page=2&page=1&api_key={key}", sim.sql_url("demo")))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["rows"], json!([{"cartodb_id": 3}]));
    assert_eq!(v["fields"], json!({"cartodb_id": {"type": "number", "pgtype": "int4"}}));
    // filename → Content-Disposition
    let r = c.get(format!("{}?q=select+1&filename=myfile&api_key={key}", sim.sql_url("demo"))).send().await.unwrap();
    let cd = r.headers()["content-disposition"].to_str().unwrap().to_string();
    assert!(cd.starts_with("attachment; filename=myfile.json"), "{cd}");
    // csv: NULL and '' alike, char padding dropped
    let r = c.get(format!("{}?q={}&format=csv&api_key={key}", sim.sql_url("demo"), enc("select 1 as a, NULL::text as b, ''::text as c, 'x'::char(3) as d, 'p,q' as e"))).send().await.unwrap();
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    // every line ends with CRLF, the header's too (carto-sql-api.md 11.5)
    assert_eq!(r.text().await.unwrap(), "a,b,c,d,e\r\n1,,,x,\"p,q\"\r\n");
    // geojson
    let r = c.get(format!("{}?q={}&format=geojson&api_key={key}", sim.sql_url("demo"), enc("select cartodb_id, the_geom from cities where cartodb_id = 1"))).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "FeatureCollection");
    assert_eq!(v["features"][0]["geometry"]["type"], "Point");
    assert_eq!(v["features"][0]["properties"], json!({"cartodb_id": 1}));
}

#[tokio::test]
async fn error_after_streaming_is_a_200_with_error_member() {
    let sim = TestSim::start_default();
    let key = sim.master_key("demo");
    let r = client()
        .post(sim.sql_url("demo"))
        .form(&[("q", "select 10 / (3 - g) as x from generate_series(1, 5) g"), ("api_key", key.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["rows"], json!([{"x": 5}, {"x": 10}]));
    assert_eq!(v["error"], json!(["division by zero"]));
    assert_eq!(v["total_rows"], 2);
    // An error before any row is an ordinary 400
    let (s, v) = sql(&sim, "demo", "select 1/0").await;
    assert_eq!(s, 400);
    assert_eq!(v, json!({"error": ["division by zero"]}));
}

#[tokio::test]
async fn statement_timeout_is_429_without_retry_after() {
    let sim = TestSim::start_default();
    sim.admin().set_statement_timeout("demo", Some(200));
    let key = sim.master_key("demo");
    let r = client().post(sim.sql_url("demo")).form(&[("q", "select pg_sleep(2)"), ("api_key", key.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_none());
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"error":["You are over platform's limits: SQL query timeout error. Refactor your query before running again or contact CARTO support for more details."],"context":"limit","detail":"datasource"}"#
    );
    // The plan's timeout applies on every request even after a session-level SET
    let (s, _) = sql(&sim, "demo", "set statement_timeout = 0").await;
    assert_eq!(s, 200);
    let r = client().post(sim.sql_url("demo")).form(&[("q", "select pg_sleep(1)"), ("api_key", key.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), 429);
    // Free plan: 5 s by default
    sim.admin().set_statement_timeout("demo", None);
    sim.admin().set_plan("demo", carto_sim::config::Plan::Free);
    sim.admin().set_rate_limit("demo", carto_sim::rate_limit::Group::Query, None);
    let (_, v) = sql(&sim, "demo", "show statement_timeout").await;
    assert_eq!(v["rows"][0]["statement_timeout"], "5s");
}

#[tokio::test]
async fn session_state_leaks_across_requests_like_carto() {
    let sim = TestSim::start_default();
    let (s, _) = sql(&sim, "demo", "set application_name = 'leaky'").await;
    assert_eq!(s, 200);
    // Sequential requests reuse the pooled connection
    let (_, v) = sql(&sim, "demo", "select current_setting('application_name') a").await;
    assert_eq!(v["rows"][0]["a"], "leaky");
}

/// A multi-statement `q` behaves as PostgreSQL's simple query (what CARTO sends): BEGIN takes over the
/// implicit transaction, COMMIT/ROLLBACK end it, later statements run in a new one, an error rolls back
/// the current one. Each expectation below is what `psql -c` gives on PostgreSQL itself.
#[tokio::test]
async fn explicit_transactions_inside_one_q_run_as_in_one_simple_query() {
    let sim = TestSim::start_default();
    let rows = |t: &str| sim.psql_value("demo", &format!("select coalesce(array_agg(x order by x)::text, '{{}}') from {t}"));
    let (s, _) = sql(&sim, "demo", "create table t1(x int)").await;
    assert_eq!(s, 200);
    // GDAL's non-COPY writes: no warnings at all
    let (s, v) = sql(&sim, "demo", "BEGIN;INSERT INTO t1 VALUES (1), (2);COMMIT;").await;
    assert_eq!(s, 200, "{v}");
    assert!(v.get("warnings").is_none() && v.get("notices").is_none(), "{v}");
    assert_eq!(v["rows"], json!([]));
    assert_eq!(rows("t1").as_deref(), Some("{1,2}"));
    // Lower case, comments, START TRANSACTION / END
    let (s, v) = sql(&sim, "demo", "/* w */ start transaction; insert into t1 values (3); end").await;
    assert_eq!(s, 200, "{v}");
    assert!(v.get("warnings").is_none(), "{v}");
    // COMMIT without BEGIN ends the implicit block with PostgreSQL's warning; the rest runs in a new one
    let (s, v) = sql(&sim, "demo", "INSERT INTO t1 VALUES (4);COMMIT;INSERT INTO t1 VALUES (5)").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["warnings"], json!(["there is no transaction in progress"]));
    assert_eq!(rows("t1").as_deref(), Some("{1,2,3,4,5}"));
    // An error after a COMMIT rolls back only the new transaction
    let (s, v) = sql(&sim, "demo", "BEGIN;INSERT INTO t1 VALUES (6);COMMIT;INSERT INTO t1 VALUES (7);INSERT INTO t1 VALUES ('x')").await;
    assert_eq!(s, 400);
    assert_eq!(err_msg(&v), "invalid input syntax for type integer: \"x\"");
    assert_eq!(rows("t1").as_deref(), Some("{1,2,3,4,5,6}"));
    // An error inside BEGIN ... COMMIT rolls it all back
    let (s, _) = sql(&sim, "demo", "BEGIN;INSERT INTO t1 VALUES (8);SELECT 1/0;COMMIT").await;
    assert_eq!(s, 400);
    assert_eq!(rows("t1").as_deref(), Some("{1,2,3,4,5,6}"));
    // ROLLBACK ends the transaction (ROLLBACK of an implicit block warns), the rest runs and commits
    let (s, v) = sql(&sim, "demo", "BEGIN;INSERT INTO t1 VALUES (9);ROLLBACK;INSERT INTO t1 VALUES (10)").await;
    assert_eq!(s, 200, "{v}");
    assert!(v.get("warnings").is_none(), "{v}");
    let (s, v) = sql(&sim, "demo", "INSERT INTO t1 VALUES (11);ABORT;INSERT INTO t1 VALUES (12)").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["warnings"], json!(["there is no transaction in progress"]));
    assert_eq!(rows("t1").as_deref(), Some("{1,2,3,4,5,6,10,12}"));
    // A second BEGIN warns, as in PostgreSQL
    let (s, v) = sql(&sim, "demo", "BEGIN;BEGIN;INSERT INTO t1 VALUES (13);COMMIT").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["warnings"], json!(["there is already a transaction in progress"]));
    // BEGIN's transaction modes apply; savepoints work inside BEGIN ... COMMIT
    let (s, v) = sql(&sim, "demo", "BEGIN ISOLATION LEVEL SERIALIZABLE;SELECT current_setting('transaction_isolation') AS i;COMMIT").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["rows"], json!([{"i": "serializable"}]));
    let (s, v) = sql(&sim, "demo", "SELECT 1 AS a;BEGIN ISOLATION LEVEL SERIALIZABLE;SELECT 2").await;
    assert_eq!(s, 200, "streamed: {v}");
    assert_eq!(err_msg(&v), "SET TRANSACTION ISOLATION LEVEL must be called before any query");
    let (s, v) = sql(&sim, "demo", "BEGIN;SAVEPOINT a;INSERT INTO t1 VALUES (14);ROLLBACK TO SAVEPOINT a;INSERT INTO t1 VALUES (15);RELEASE a;COMMIT").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(rows("t1").as_deref(), Some("{1,2,3,4,5,6,10,12,13,15}"));
    // ... but not in an implicit block (PostgreSQL's errors), nor COMMIT AND CHAIN
    for (q, msg) in [
        ("INSERT INTO t1 VALUES (16);SAVEPOINT a", "SAVEPOINT can only be used in transaction blocks"),
        ("INSERT INTO t1 VALUES (16);RELEASE a", "RELEASE SAVEPOINT can only be used in transaction blocks"),
        ("INSERT INTO t1 VALUES (16);ROLLBACK TO a", "ROLLBACK TO SAVEPOINT can only be used in transaction blocks"),
        ("INSERT INTO t1 VALUES (16);COMMIT AND CHAIN", "COMMIT AND CHAIN can only be used in transaction blocks"),
    ] {
        let (s, v) = sql(&sim, "demo", q).await;
        assert_eq!((s, err_msg(&v).as_str()), (400, msg), "{q}");
    }
    let (s, v) = sql(&sim, "demo", "BEGIN;INSERT INTO t1 VALUES (17);COMMIT AND CHAIN;INSERT INTO t1 VALUES (18);COMMIT").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(rows("t1").as_deref(), Some("{1,2,3,4,5,6,10,12,13,15,17,18}"));
    // A BEGIN left open at the end is committed; the pooled connection is clean afterwards
    let (s, v) = sql(&sim, "demo", "SELECT 1;BEGIN;INSERT INTO t1 VALUES (19)").await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = sql(&sim, "demo", "SELECT count(*) AS n FROM t1 WHERE x = 19").await;
    assert_eq!((s, v["rows"][0]["n"].clone()), (200, json!(1)));
    let (s, v) = sql(&sim, "demo", "SAVEPOINT z").await;
    assert_eq!(s, 400, "not inside a transaction: {v}");
}

/// CARTO's cartodbfy is quiet on a fresh table (no "trigger ... does not exist, skipping" notices).
#[tokio::test]
async fn cartodbfy_of_a_new_table_reports_the_missing_triggers() {
    // carto-sql-api.md 11.6: CARTO's cartodbfy drops its triggers with DROP TRIGGER IF EXISTS, so a new table gets
    // PostgreSQL's four "does not exist, skipping" notices; an already cartodbfied one none.
    let sim = TestSim::start_default();
    let (s, v) = sql(&sim, "demo", "CREATE TABLE fresh (cartodb_id serial PRIMARY KEY, the_geom geometry(Geometry,4326), the_geom_webmercator geometry(Geometry,3857), name text)").await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = sql(&sim, "demo", "SELECT CDB_CartodbfyTable('fresh'::regclass)").await;
    assert_eq!(s, 200, "{v}");
    let notices: Vec<String> = ["track_updates", "update_the_geom_webmercator_trigger", "test_quota", "test_quota_per_row"]
        .iter()
        .map(|t| format!("trigger \"{t}\" for relation \"fresh\" does not exist, skipping"))
        .collect();
    assert_eq!(v["notices"], json!(notices), "{v}");
    assert!(v.get("warnings").is_none(), "{v}");
    // Already cartodbfied: its triggers are dropped and made again, quietly.
    let (s, v) = sql(&sim, "demo", "SELECT CDB_CartodbfyTable('fresh'::regclass)").await;
    assert_eq!(s, 200, "{v}");
    assert!(v.get("notices").is_none() && v.get("warnings").is_none(), "{v}");
    let n = sim.psql_value("demo", "select count(*) from pg_trigger where tgrelid = 'fresh'::regclass and not tgisinternal");
    assert_eq!(n.as_deref(), Some("4"), "all four triggers are there");
}
