-- 15_limit: when a LIMIT is satisfied locally (a filter CARTO cannot evaluate keeps the LIMIT local),
-- the /copyto stream is dropped at once: the sim logs the request as aborted by the client after a
-- small part of the table, and CARTO's query is cancelled.
CREATE EXTENSION postgis;
CREATE EXTENSION carto_fdw;
\set SHOW_CONTEXT never
\! curl -sS -u "demo:$CARTO_SIM_API_KEY" "$CARTO_SIM_BASE_URL/api/v2/sql" --data-urlencode "q=DROP TABLE IF EXISTS t15; CREATE TABLE t15 AS SELECT g AS cartodb_id, repeat('x', 200) AS pad FROM generate_series(1, 200000) g" | sed -E 's/"time":[0-9.e+-]+/"time":T/'; echo
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
CREATE FOREIGN TABLE t15 (cartodb_id int, pad text) SERVER carto OPTIONS (scan_method 'copy');
-- The full table is about 40 MB of COPY text.
EXPLAIN (VERBOSE, COSTS OFF) SELECT cartodb_id FROM t15 WHERE random() < 2 LIMIT 5;
\! curl -sS -X DELETE "$CARTO_SIM_ADMIN/log" >/dev/null
SELECT length(pad) FROM t15 WHERE random() < 2 LIMIT 5;
\! sleep 1; curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c 'import json,sys; [print(e["group"], e["status"], "aborted" if e["aborted"] else "completed", e["error"], "less than a quarter of the table sent" if e["bytes_out"] < 10000000 else "%d bytes sent" % e["bytes_out"]) for e in json.load(sys.stdin) if e["group"] == "copy_to"]'
\! sleep 1; psql "$CARTO_SIM_PG" -XAtc "SELECT count(*) AS copies_still_running FROM pg_stat_activity WHERE query LIKE 'COPY (SELECT%t15%' AND pid <> pg_backend_pid()"
-- A LIMIT CARTO applies itself: the stream ends normally.
EXPLAIN (VERBOSE, COSTS OFF) SELECT cartodb_id FROM t15 LIMIT 5;
\! curl -sS -X DELETE "$CARTO_SIM_ADMIN/log" >/dev/null
SELECT cartodb_id FROM t15 ORDER BY cartodb_id LIMIT 3;
\! sleep 1; curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c 'import json,sys; [print(e["group"], e["status"], "aborted" if e["aborted"] else "completed", e["bytes_out"]) for e in json.load(sys.stdin) if e["group"] == "copy_to"]'
-- An EXISTS stops after the first row, too.
\! curl -sS -X DELETE "$CARTO_SIM_ADMIN/log" >/dev/null
SELECT EXISTS (SELECT 1 FROM t15 WHERE pad LIKE 'x%' AND random() < 2) AS found;
\! sleep 1; curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c 'import json,sys; [print(e["group"], e["status"], "aborted" if e["aborted"] else "completed", "less than a quarter of the table sent" if e["bytes_out"] < 10000000 else "%d bytes sent" % e["bytes_out"]) for e in json.load(sys.stdin) if e["group"] == "copy_to"]'
-- A cursor closed after a few rows (CARTO's synchronized seqscans may start anywhere: no ids shown).
\! curl -sS -X DELETE "$CARTO_SIM_ADMIN/log" >/dev/null
BEGIN;
DECLARE c CURSOR FOR SELECT length(pad) FROM t15;
FETCH 2 FROM c;
CLOSE c;
COMMIT;
\! sleep 1; curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c 'import json,sys; [print(e["group"], e["status"], "aborted" if e["aborted"] else "completed", "less than a quarter of the table sent" if e["bytes_out"] < 10000000 else "%d bytes sent" % e["bytes_out"]) for e in json.load(sys.stdin) if e["group"] == "copy_to"]'
