-- 44_binary_cancel: statement_timeout and Ctrl-C (pg_cancel_backend) in the middle of a binary COPY read
-- (copy_format 'binary') stop the scan within about a second; the HTTP stream is closed (the sim logs the
-- /copyto request as answered 200 and then aborted), CARTO's query is cancelled, and the next binary read of
-- the same backend gets every row (OFFSET 0 keeps the aggregates local, so the rows are read, not counted by CARTO).
CREATE EXTENSION postgis;
CREATE EXTENSION carto_fdw;
\set SHOW_CONTEXT never
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url', scan_method 'copy', copy_format 'binary');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
SELECT carto.exec('carto', 'DROP TABLE IF EXISTS t44_small');
SELECT carto.exec('carto', 'CREATE TABLE t44_small AS SELECT g AS cartodb_id, md5(g::text) AS h, decode(md5(g::text), ''hex'') AS b FROM generate_series(1, 5000) g');
CREATE FOREIGN TABLE small (cartodb_id int, h text, b bytea) SERVER carto OPTIONS (table_name 't44_small');
-- 300 rows at once, then one row every 5 ms (100000 rows: minutes), each with text and bytea.
CREATE FOREIGN TABLE trickle (g int, pad text, b bytea) SERVER carto OPTIONS (
  query 'SELECT g, repeat(''x'', 100) AS pad, decode(md5(g::text), ''hex'') AS b FROM generate_series(1, 100000) g WHERE g < 300 OR pg_sleep(0.005) IS NOT NULL');
EXPLAIN (VERBOSE, COSTS OFF) SELECT pad FROM trickle;
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM small;
CREATE TEMP TABLE clock (t0 timestamptz);

-- 1. statement_timeout.
\! curl -sS -X DELETE "$CARTO_SIM_ADMIN/log" >/dev/null
INSERT INTO clock SELECT clock_timestamp();
SET statement_timeout = '1s';
SELECT count(pad), count(b) FROM (SELECT pad, b FROM trickle OFFSET 0) s; -- rows read, not counted by CARTO
RESET statement_timeout;
SELECT clock_timestamp() - t0 < interval '3 seconds' AS cancelled_in_time FROM clock;
SELECT count(*), sum(cartodb_id), count(DISTINCT h), bool_and(b = decode(h, 'hex')) AS bytes_intact FROM (SELECT * FROM small OFFSET 0) s;
\! sleep 3; curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c 'import json,sys; [print(e["group"], e["status"], "aborted" if e["aborted"] else "completed", e["error"]) for e in json.load(sys.stdin) if e["group"] == "copy_to"]'
\! psql "$CARTO_SIM_PG" -XAtc "SELECT count(*) AS remote_queries_left FROM pg_stat_activity WHERE query LIKE '%pg_sleep(0.005)%' AND pid <> pg_backend_pid()"

-- 2. Ctrl-C: another session cancels this one once its binary read has run for half a second.
\! curl -sS -X DELETE "$CARTO_SIM_ADMIN/log" >/dev/null
SET application_name = 'e2e_44_reader';
\! for i in $(seq 150); do n=$(psql -X -q -At -d postgres -c "SELECT count(*) FILTER (WHERE pg_cancel_backend(pid)) FROM pg_stat_activity WHERE application_name = 'e2e_44_reader' AND state = 'active' AND query LIKE '%FROM trickle%' AND clock_timestamp() - query_start > interval '0.5 s'" </dev/null 2>/dev/null); [ "$n" = 1 ] && break; sleep 0.2; done >/dev/null 2>&1 </dev/null &
TRUNCATE clock;
INSERT INTO clock SELECT clock_timestamp();
SELECT count(pad), count(b) FROM (SELECT pad, b FROM trickle OFFSET 0) s;
RESET application_name;
SELECT clock_timestamp() - t0 < interval '3 seconds' AS cancelled_in_time FROM clock;
SELECT count(*), sum(cartodb_id), count(DISTINCT h), bool_and(b = decode(h, 'hex')) AS bytes_intact FROM (SELECT * FROM small OFFSET 0) s;
\! sleep 3; curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c 'import json,sys; [print(e["group"], e["status"], "aborted" if e["aborted"] else "completed", e["error"]) for e in json.load(sys.stdin) if e["group"] == "copy_to"]'
\! psql "$CARTO_SIM_PG" -XAtc "SELECT count(*) AS remote_queries_left FROM pg_stat_activity WHERE query LIKE '%pg_sleep(0.005)%' AND pid <> pg_backend_pid()"

-- 3. Inside a transaction: the cancelled statement aborts it; after ROLLBACK the backend reads again.
BEGIN;
SELECT count(*) FROM (SELECT * FROM small OFFSET 0) s;
SET LOCAL statement_timeout = '1s';
SELECT count(pad) FROM (SELECT pad FROM trickle OFFSET 0) s;
ROLLBACK;
SELECT count(*) AS after_rollback FROM (SELECT * FROM small OFFSET 0) s;
