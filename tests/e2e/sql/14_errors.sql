-- 14_errors: every failure of a read is a clear ERROR with a fitting SQLSTATE, CARTO's message,
-- detail and hint, never a short or wrong result: missing table or column, 401, 403, 404, 429 with
-- Retry-After (falls back to /sql) and without (CARTO's statement timeout), 400 with detail and hint,
-- an error inside a 200 body, an error appended to a COPY stream, a connection cut mid-stream, an
-- HTML 502; interrupts (statement_timeout) stop a slow transfer within about a second and leave the
-- backend usable; the API key shows up nowhere.
CREATE EXTENSION postgis;
CREATE EXTENSION carto_fdw;
\set SHOW_CONTEXT never
\! curl -sS -u "demo:$CARTO_SIM_API_KEY" "$CARTO_SIM_BASE_URL/api/v2/sql" --data-urlencode "q=DROP TABLE IF EXISTS t14; CREATE TABLE t14 (cartodb_id int PRIMARY KEY, v text); INSERT INTO t14 SELECT g, 'v' || g FROM generate_series(1, 2000) g" | sed -E 's/"time":[0-9.e+-]+/"time":T/'; echo
\! curl -sS -X DELETE "$CARTO_SIM_ADMIN/faults" >/dev/null

-- Runs a statement and shows its error: SQLSTATE, message, detail, hint (or the rows it saw).
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE n bigint; st text; msg text; det text; hin text;
BEGIN
  EXECUTE 'SELECT count(s.*) FROM (' || q || ') s' INTO n;  -- s.*: every column is read
  RETURN 'ok: ' || n || ' rows';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hin = PG_EXCEPTION_HINT;
  RETURN 'ERROR ' || st || ': ' || msg || coalesce(E'\nDETAIL: ' || nullif(det, ''), '') || coalesce(E'\nHINT: ' || nullif(hin, ''), '');
END $$;
\pset format unaligned
\pset tuples_only on

CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
CREATE FOREIGN TABLE t14 (cartodb_id int, v text) SERVER carto;
CREATE FOREIGN TABLE t14_copy (cartodb_id int, v text) SERVER carto OPTIONS (table_name 't14', scan_method 'copy');
CREATE FOREIGN TABLE t14_query (cartodb_id int, v text) SERVER carto OPTIONS (table_name 't14', scan_method 'query');
SELECT pg_temp.try('SELECT * FROM t14_copy');
SELECT pg_temp.try('SELECT * FROM t14_query');

-- 1. A missing remote table, a missing remote column (both transports).
CREATE FOREIGN TABLE nope (x int) SERVER carto OPTIONS (table_name 't14_nope');
CREATE FOREIGN TABLE nocol (cartodb_id int, w text) SERVER carto OPTIONS (table_name 't14');
SELECT pg_temp.try('SELECT * FROM nope');
ALTER FOREIGN TABLE nope OPTIONS (ADD scan_method 'copy');
SELECT pg_temp.try('SELECT * FROM nope');
SELECT pg_temp.try('SELECT * FROM nocol');
ALTER FOREIGN TABLE nocol OPTIONS (ADD scan_method 'copy');
SELECT pg_temp.try('SELECT * FROM nocol');

-- 2. 401: a key CARTO does not know. 403: the readonly key on a table it has no grant on (it may
-- read demo's table places). 404: an unknown user in base_url.
CREATE SERVER wrongkey FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER wrongkey OPTIONS (api_key 'not-a-key-0123456789');
CREATE FOREIGN TABLE t14_wrongkey (cartodb_id int) SERVER wrongkey OPTIONS (table_name 't14');
SELECT pg_temp.try('SELECT * FROM t14_wrongkey');
ALTER FOREIGN TABLE t14_wrongkey OPTIONS (ADD scan_method 'copy');
SELECT pg_temp.try('SELECT * FROM t14_wrongkey');
CREATE SERVER readonly FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER readonly OPTIONS (api_key :'readonly_key');
CREATE FOREIGN TABLE t14_ro (cartodb_id int) SERVER readonly OPTIONS (table_name 't14');
CREATE FOREIGN TABLE places_ro (cartodb_id int, name text) SERVER readonly OPTIONS (table_name 'places');
SELECT pg_temp.try('SELECT * FROM places_ro');
SELECT pg_temp.try('SELECT * FROM t14_ro');
ALTER FOREIGN TABLE t14_ro OPTIONS (ADD scan_method 'copy');
SELECT pg_temp.try('SELECT * FROM t14_ro');
\set nobody_url :sim_url '/user/nobody'
CREATE SERVER nobody FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'nobody_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER nobody OPTIONS (api_key :'api_key');
CREATE FOREIGN TABLE t14_nobody (cartodb_id int) SERVER nobody OPTIONS (table_name 't14');
SELECT pg_temp.try('SELECT * FROM t14_nobody');
ALTER FOREIGN TABLE t14_nobody OPTIONS (ADD scan_method 'copy');
SELECT pg_temp.try('SELECT * FROM t14_nobody');

-- 3. 429 with Retry-After on /copyto (demo's copyto limited to 1 request an hour, used up by
-- curl): the scan falls back to /sql and returns every row.
\! curl -sS -X POST "$CARTO_SIM_ADMIN/users/demo" -d '{"rate_limits": {"copy_to": {"count": 1, "period_secs": 3600}}}' >/dev/null
\! curl -sS -o /dev/null -u "demo:$CARTO_SIM_API_KEY" "$CARTO_SIM_BASE_URL/api/v2/sql/copyto" --data-urlencode "q=COPY (SELECT 1) TO STDOUT"
\! curl -sS -o /dev/null -w '%{http_code}\n' -u "demo:$CARTO_SIM_API_KEY" "$CARTO_SIM_BASE_URL/api/v2/sql/copyto" --data-urlencode "q=COPY (SELECT 1) TO STDOUT"
SELECT pg_temp.try('SELECT * FROM t14_copy');
SELECT count(*), count(DISTINCT v), sum(cartodb_id) FROM t14_copy;
\! curl -sS -X POST "$CARTO_SIM_ADMIN/users/demo" -d '{"reset_rate_limits": true}' >/dev/null

-- 4. 429 without Retry-After: CARTO's statement timeout (demo's /sql limited to 200 ms), and the
-- same answer injected on /copyto. A clear ERROR, not retried.
\! curl -sS -X POST "$CARTO_SIM_ADMIN/users/demo" -d '{"statement_timeout_ms": 200}' >/dev/null
CREATE FOREIGN TABLE slow (x int) SERVER carto OPTIONS (query 'SELECT 1 AS x FROM pg_sleep(1)', scan_method 'query');
SELECT pg_temp.try('SELECT * FROM slow');
\! curl -sS -X POST "$CARTO_SIM_ADMIN/users/demo" -d '{"statement_timeout_ms": null}' >/dev/null
\! curl -sS -X POST "$CARTO_SIM_ADMIN/faults" -d '{"group": "copy_to", "status": 429, "json": {"error": ["You are over platform'"'"'s limits: SQL query timeout error. Refactor your query before running again or contact CARTO support for more details."], "context": "limit", "detail": "datasource"}}' >/dev/null
SELECT pg_temp.try('SELECT * FROM t14_copy');

-- 5. A 400 with CARTO's detail and hint.
\! curl -sS -X POST "$CARTO_SIM_ADMIN/faults" -d '{"group": "copy_to", "status": 400, "json": {"error": ["duplicate key value violates unique constraint \"t14_pkey\""], "detail": "Key (cartodb_id)=(1) already exists.", "hint": "A hint from CARTO."}}' >/dev/null
SELECT pg_temp.try('SELECT * FROM t14_copy');
-- (Read once first: what CARTO's catalogue says of t14 is remembered, so the fault meets the read itself.)
SELECT pg_temp.try('SELECT * FROM t14_query');
\! curl -sS -X POST "$CARTO_SIM_ADMIN/faults" -d '{"group": "query", "status": 400, "json": {"error": ["function nope(integer) does not exist"], "hint": "No function matches the given name and argument types."}}' >/dev/null
SELECT pg_temp.try('SELECT * FROM t14_query');

-- 6. An error inside a 200 body: /sql fails after its rows began (division by zero at row 1500),
-- and a 200 JSON answer carrying rows and an error member.
CREATE FOREIGN TABLE late_q (g int, x int) SERVER carto
  OPTIONS (query 'SELECT g, 1 / (g - 1500) AS x FROM generate_series(1, 3000) g', scan_method 'query');
SELECT pg_temp.try('SELECT * FROM late_q');
\! curl -sS -X POST "$CARTO_SIM_ADMIN/faults" -d '{"group": "query", "status": 200, "json": {"rows": [{"c0": "1", "c1": "v1", "k": "1"}], "time": 0.001, "fields": {}, "total_rows": 1, "error": ["canceling statement due to user request"]}}' >/dev/null
SELECT pg_temp.try('SELECT * FROM t14_query');

-- 7. An error appended to a COPY stream (after more than CARTO's first buffer of rows).
CREATE FOREIGN TABLE late_c (g int, x int) SERVER carto
  OPTIONS (query 'SELECT g, 1 / (g - 1500) AS x FROM generate_series(1, 3000) g', scan_method 'copy');
SELECT pg_temp.try('SELECT * FROM late_c');
SELECT pg_temp.try('SELECT * FROM late_c WHERE g < 1000');

-- 8. A connection cut mid-stream: /copyto cannot be retried once rows flowed (ERROR); a /sql read
-- cut before its end is retried and returns the whole result.
\! curl -sS -X POST "$CARTO_SIM_ADMIN/faults" -d '{"group": "copy_to", "cut_response_after": 5000}' >/dev/null
SELECT pg_temp.try('SELECT * FROM t14_copy');
\! curl -sS -X POST "$CARTO_SIM_ADMIN/faults" -d '{"group": "query", "cut_response_after": 3000}' >/dev/null
SELECT pg_temp.try('SELECT * FROM t14_query');

-- 9. An HTML 502 from a proxy: retried (max_retries 3); when it persists, a clear ERROR.
\! curl -sS -X POST "$CARTO_SIM_ADMIN/faults" -d '{"group": "copy_to", "html_502": true}' >/dev/null
SELECT pg_temp.try('SELECT * FROM t14_copy');
\! curl -sS -X POST "$CARTO_SIM_ADMIN/faults" -d '{"group": "copy_to", "html_502": true, "count": 10}' >/dev/null
ALTER SERVER carto OPTIONS (ADD max_retry_wait '1');
SELECT pg_temp.try('SELECT * FROM t14_copy');
\! curl -sS -X POST "$CARTO_SIM_ADMIN/faults" -d '{"group": "query", "html_502": true, "count": 10}' >/dev/null
SELECT pg_temp.try('SELECT * FROM t14_query');
ALTER SERVER carto OPTIONS (DROP max_retry_wait);
\! curl -sS -X DELETE "$CARTO_SIM_ADMIN/faults" >/dev/null
\pset format aligned
\pset tuples_only off

-- 10. Interrupts: statement_timeout cancels a slow scan within about a second, the connection is
-- closed (the sim logs the request as aborted and CARTO's query is cancelled), the backend goes on.
CREATE FOREIGN TABLE trickle (g int, pad text) SERVER carto OPTIONS (scan_method 'copy',
  query 'SELECT g, repeat(''x'', 100) AS pad FROM generate_series(1, 100000) g WHERE g < 300 OR pg_sleep(0.005) IS NOT NULL');
\! curl -sS -X DELETE "$CARTO_SIM_ADMIN/log" >/dev/null
CREATE TEMP TABLE clock (t0 timestamptz);
INSERT INTO clock SELECT clock_timestamp();
SET statement_timeout = '1s';
SELECT count(pad) FROM (SELECT pad FROM trickle OFFSET 0) s; -- rows read, not count(pad) computed by CARTO
RESET statement_timeout;
SELECT clock_timestamp() - t0 < interval '3 seconds' AS cancelled_in_time FROM clock;
SELECT 1 AS backend_still_usable;
\! sleep 3; curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c 'import json,sys; [print(e["group"], e["status"], "aborted" if e["aborted"] else "completed", e["error"]) for e in json.load(sys.stdin) if e["group"] == "copy_to"]'
\! psql "$CARTO_SIM_PG" -XAtc "SELECT count(*) AS remote_queries_left FROM pg_stat_activity WHERE query LIKE '%pg_sleep(0.005)%' AND pid <> pg_backend_pid()"
-- The same through /sql.
CREATE FOREIGN TABLE sleepy (x int) SERVER carto OPTIONS (query 'SELECT 1 AS x FROM pg_sleep(30)', scan_method 'query');
\! curl -sS -X DELETE "$CARTO_SIM_ADMIN/log" >/dev/null
TRUNCATE clock;
INSERT INTO clock SELECT clock_timestamp();
SET statement_timeout = '1s';
SELECT * FROM sleepy;
RESET statement_timeout;
SELECT clock_timestamp() - t0 < interval '3 seconds' AS cancelled_in_time FROM clock;
SELECT count(*) AS backend_still_usable FROM t14;
-- A latency-injected sim (no answer for 5 s): cancelled in time too.
\! curl -sS -X POST "$CARTO_SIM_ADMIN/faults" -d '{"group": "copy_to", "latency_ms": 5000}' >/dev/null
TRUNCATE clock;
INSERT INTO clock SELECT clock_timestamp();
SET statement_timeout = '1s';
SELECT count(*) FROM (SELECT * FROM t14_copy OFFSET 0) s;
RESET statement_timeout;
SELECT clock_timestamp() - t0 < interval '3 seconds' AS cancelled_in_time FROM clock;
SELECT count(*) AS backend_still_usable FROM t14_query;
\! curl -sS -X DELETE "$CARTO_SIM_ADMIN/faults" >/dev/null

-- 11. No output of this file holds the API key (nor the readonly key).
\! grep -c -F -e "$CARTO_SIM_API_KEY" -e "$CARTO_SIM_READONLY_KEY" results/14_errors.out || true
