-- 23_insert_limits: roll-over to a new request before CARTO's byte limit (with a NOTICE), rate limits
-- and injected faults on /copyfrom, a key without INSERT, a constraint failing on a late row: clear
-- errors, and nothing of a failed statement is committed.
CREATE EXTENSION postgis;
CREATE EXTENSION carto_fdw;
CREATE EXTENSION dblink;
-- COPY text: the fault injections below cut uploads at byte counts chosen for its sizes (binary: 43_binary).
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url', copy_format 'text');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
\! curl -sS -u "$CARTO_SIM_USER:$CARTO_SIM_API_KEY" --data-urlencode "q=DROP TABLE IF EXISTS t23; CREATE TABLE t23 (cartodb_id serial PRIMARY KEY, name text, pad text, n int CHECK (n < 19000))" "$CARTO_SIM_BASE_URL/api/v2/sql" | grep -o '"total_rows":[0-9]*'; echo
CREATE FOREIGN TABLE t23 (cartodb_id int, name text, pad text, n int) SERVER carto;
SELECT set_config('e2e.sim_db', :'sim_pg' || ' dbname=cartosim_demo', false) IS NOT NULL AS ok;
CREATE FUNCTION remote_count() RETURNS bigint LANGUAGE sql AS
  $$ SELECT n FROM dblink(current_setting('e2e.sim_db'), 'SELECT count(*) FROM t23') AS r(n bigint) $$;

-- 1. Roll-over: the sim refuses uploads over 1 MB; the server option copyfrom_max_bytes (CARTO's limit) makes the
--    wrapper finish each request before it and open the next one. Every row arrives; a NOTICE tells how many requests.
\! curl -sS -X POST -d '{"copyfrom_max_bytes": 1048576, "copyfrom_max_pretty": "1 MB"}' "$CARTO_SIM_ADMIN/limits" >/dev/null
\! curl -sS -X DELETE "$CARTO_SIM_ADMIN/log" >/dev/null
-- Without roll-over the sim's limit is hit: CARTO's message, nothing stays. (CARTO's 400 reaches the wrapper
-- either while rows are still being sent or when the upload is finished at the end of the statement; which one
-- depends on timing, so the phase in the message is masked.)
\! psql -X -q -d e2e_23_insert_limits -c "INSERT INTO t23 (name, pad) SELECT 'big ' || i, md5(i::text) || md5((i * 7)::text) FROM generate_series(1, 60000) i" 2>&1 | sed -E 's/\(while (inserting into|committing the rows inserted into) foreign table/(while PHASE foreign table/'
SELECT remote_count() AS after_limit;
ALTER SERVER carto OPTIONS (ADD copyfrom_max_bytes '1048576');
-- (the NOTICEs carry the request count, which depends on compression: masked to N)
\set VERBOSITY terse
SELECT set_config('client_min_messages', 'warning', false) IS NOT NULL AS quiet;
INSERT INTO t23 (name, pad) SELECT 'big ' || i, md5(i::text) || md5((i * 7)::text) FROM generate_series(1, 60000) i;
RESET client_min_messages;
\set VERBOSITY default
SELECT remote_count() AS rolled_over_rows;
\! curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c 'import json,sys; l=[e for e in json.load(sys.stdin) if e["group"] == "copy_from" and e["status"] == 200]; print("several requests:", len(l) > 1, "each under the limit:", all(e["bytes_in"] < 1048576 for e in l))'
-- The NOTICE itself (run in another session, request count masked).
\! psql -X -q -d e2e_23_insert_limits -c "INSERT INTO t23 (name, pad) SELECT 'again ' || i, md5(i::text) || md5((i * 7)::text) FROM generate_series(1, 60000) i" 2>&1 | sed -E 's/request [0-9]+/request N/g; s/in [0-9]+ COPY requests/in N COPY requests/; s/with [0-9]+ rows/with M rows/' | sort -u
SELECT remote_count() AS total_rows;
ALTER SERVER carto OPTIONS (DROP copyfrom_max_bytes);
\! curl -sS -X POST -d '{"copyfrom_max_bytes": 2147483648, "copyfrom_max_pretty": null}' "$CARTO_SIM_ADMIN/limits" >/dev/null
TRUNCATE t23;

-- 2. A 429 with Retry-After (the rate limit) before the body was accepted: the client waits and replays it.
\! curl -sS -X POST -d '{"rate_limits": {"copy_from": {"count": 1, "period_secs": 2}}}' "$CARTO_SIM_ADMIN/users/demo" >/dev/null
INSERT INTO t23 (name) VALUES ('first');
INSERT INTO t23 (name) VALUES ('rate limited, then replayed');
SELECT name FROM t23 ORDER BY name;
\! curl -sS -X POST -d '{"reset_rate_limits": true}' "$CARTO_SIM_ADMIN/users/demo" >/dev/null
TRUNCATE t23;

-- 3. A 429 without Retry-After (CARTO's statement timeout), a 502 from a proxy, a connection cut mid-upload:
--    clear errors, nothing resent, nothing committed.
\! curl -sS -X POST -d '{"group": "copy_from", "status": 429, "json": {"error": ["You are over platform'"'"'s limits: SQL query timeout error. Refactor your query before running again or contact CARTO support for more details."], "context": "limit", "detail": "datasource"}}' "$CARTO_SIM_ADMIN/faults" >/dev/null
INSERT INTO t23 (name) SELECT 'f429 ' || i FROM generate_series(1, 1000) i;
\! curl -sS -X POST -d '{"group": "copy_from", "html_502": true}' "$CARTO_SIM_ADMIN/faults" >/dev/null
INSERT INTO t23 (name) SELECT 'f502 ' || i FROM generate_series(1, 1000) i;
\! curl -sS -X POST -d '{"group": "copy_from", "cut_upload_after": 20000}' "$CARTO_SIM_ADMIN/faults" >/dev/null
-- (the message holds the sim's URL, whose port varies: masked)
\! psql -X -q -d e2e_23_insert_limits -c "INSERT INTO t23 (name, pad) SELECT 'cut ' || i, md5(i::text) FROM generate_series(1, 50000) i" 2>&1 | sed -E 's#: error sending request for url .* \(while #: ... (while #'
SELECT remote_count() AS after_faults;
\! curl -sS -X DELETE "$CARTO_SIM_ADMIN/faults" >/dev/null

-- 4. A key without INSERT permission: 403 with CARTO's message and our hint.
CREATE SERVER carto_ro FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto_ro OPTIONS (api_key :'readonly_key');
CREATE FOREIGN TABLE places_ro (cartodb_id int, name text) SERVER carto_ro OPTIONS (table_name 'places');
INSERT INTO places_ro (name) VALUES ('not allowed');

-- 5. A CHECK constraint failing on a late row (n = 19000 of 20000): CARTO's message, nothing committed.
--    (terse: the DETAIL holds a sequence value; the phase is masked as in 1, since the last rows may still be
--    on their way when CARTO answers)
\set VERBOSITY terse
\! psql -X -q -d e2e_23_insert_limits -v VERBOSITY=terse -c "INSERT INTO t23 (name, n) SELECT 'late ' || i, i FROM generate_series(1, 20000) i" 2>&1 | sed -E 's/\(while (inserting into|committing the rows inserted into) foreign table/(while PHASE foreign table/'
SELECT remote_count() AS after_late_violation;
-- Same inside a transaction: the error surfaces at COMMIT (when CARTO finishes the COPY), COMMIT fails.
BEGIN;
INSERT INTO t23 (name, n) VALUES ('early', 1), ('late', 19001);
COMMIT;
\set VERBOSITY default
SELECT remote_count() AS after_commit_failure;
-- A value the remote type rejects.
CREATE FOREIGN TABLE t23_bad (name int, n text) SERVER carto OPTIONS (table_name 't23');
INSERT INTO t23_bad (n) VALUES ('not a number');
SELECT remote_count() AS after_bad_value;
