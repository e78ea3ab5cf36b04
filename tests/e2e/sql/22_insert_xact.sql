-- 22_insert_xact: the upload commits with the local transaction. ROLLBACK, an error in the statement or
-- later, a rolled-back subtransaction, statement_timeout and a killed backend leave the remote table
-- unchanged; COMMIT makes every row appear at once; several statements share one request per table.
CREATE EXTENSION postgis;
CREATE EXTENSION carto_fdw;
CREATE EXTENSION dblink;
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
\! curl -sS -u "$CARTO_SIM_USER:$CARTO_SIM_API_KEY" --data-urlencode "q=DROP TABLE IF EXISTS t22a, t22b; CREATE TABLE t22a (cartodb_id serial PRIMARY KEY, name text, pad text); CREATE TABLE t22b (cartodb_id serial PRIMARY KEY, name text, pad text)" "$CARTO_SIM_BASE_URL/api/v2/sql" | grep -o '"total_rows":[0-9]*'; echo
CREATE FOREIGN TABLE t22a (cartodb_id int, name text, pad text) SERVER carto;
CREATE FOREIGN TABLE t22b (cartodb_id int, name text, pad text) SERVER carto;
-- Row counts straight from the sim's database (behind CARTO's back: committed rows only).
SELECT set_config('e2e.sim_db', :'sim_pg' || ' dbname=cartosim_demo', false) IS NOT NULL AS ok;
CREATE FUNCTION remote_count(tbl text) RETURNS bigint LANGUAGE sql AS
  $$ SELECT n FROM dblink(current_setting('e2e.sim_db'), 'SELECT count(*) FROM ' || quote_ident(tbl)) AS r(n bigint) $$;
\! curl -sS -X DELETE "$CARTO_SIM_ADMIN/log" >/dev/null

-- 1. ROLLBACK: nothing arrives.
BEGIN;
INSERT INTO t22a (name, pad) SELECT 'rb ' || i, repeat('x', 200) FROM generate_series(1, 5000) i;
SELECT remote_count('t22a') AS during;
ROLLBACK;
SELECT remote_count('t22a') AS after_rollback;

-- 2. Two INSERTs into one table and one into another: two requests, no row before COMMIT, all after.
BEGIN;
INSERT INTO t22a (name) SELECT 'one ' || i FROM generate_series(1, 300) i;
INSERT INTO t22a (name) SELECT 'two ' || i FROM generate_series(1, 200) i;
INSERT INTO t22b (name) SELECT 'b ' || i FROM generate_series(1, 100) i;
SELECT remote_count('t22a') AS a_before, remote_count('t22b') AS b_before;
COMMIT;
SELECT remote_count('t22a') AS a_after, remote_count('t22b') AS b_after;
\! curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c 'import json,sys; l=[e for e in json.load(sys.stdin) if e["group"] == "copy_from"]; print("committed copyfrom requests:", sum(1 for e in l if e["status"] == 200 and not e["aborted"]))'

-- 3. An error in the middle of the statement (after rows were streamed): nothing stays.
INSERT INTO t22a (name, pad) SELECT 'err ' || i, CASE WHEN i < 9000 THEN repeat('y', 200) ELSE (1 / (i - 9000))::text END FROM generate_series(1, 10000) i;
SELECT remote_count('t22a') AS after_error;

-- 4. An error later in the same transaction.
BEGIN;
INSERT INTO t22a (name) SELECT 'later ' || i FROM generate_series(1, 1000) i;
SELECT 1 / 0;
COMMIT;
SELECT remote_count('t22a') AS after_later_error;

-- 5. INSERT then SELECT of the same table in one transaction sees the rows (the upload is finished first).
BEGIN;
INSERT INTO t22b (name) VALUES ('seen');
SELECT name FROM t22b WHERE name = 'seen';
COMMIT;

-- 6. Subtransactions: rows sent in a rolled-back one cannot be withdrawn, so COMMIT fails; a released one is fine.
BEGIN;
INSERT INTO t22b (name) VALUES ('outer');
SAVEPOINT s1;
INSERT INTO t22b (name) VALUES ('inner');
ROLLBACK TO SAVEPOINT s1;
COMMIT;
SELECT count(*) FILTER (WHERE name IN ('outer', 'inner')) AS after_doomed FROM t22b;
BEGIN;
SAVEPOINT s1;
INSERT INTO t22b (name) VALUES ('released');
RELEASE SAVEPOINT s1;
COMMIT;
SELECT name FROM t22b WHERE name = 'released';
-- An exception block that catches an error after rows were sent dooms the transaction too.
DO $$ BEGIN
  INSERT INTO t22b (name) VALUES ('in block');
  PERFORM 1 / 0;
EXCEPTION WHEN division_by_zero THEN RAISE NOTICE 'caught';
END $$;
SELECT count(*) AS in_block FROM t22b WHERE name = 'in block';

-- 7. PREPARE TRANSACTION is refused while an upload is open; the transaction is rolled back.
BEGIN;
INSERT INTO t22b (name) VALUES ('prepared');
PREPARE TRANSACTION 'p22';
SELECT count(*) AS prepared FROM t22b WHERE name = 'prepared';

-- 8. 20k rows: exactly 20k remote rows, in ONE copyfrom request.
TRUNCATE t22a;
\! curl -sS -X DELETE "$CARTO_SIM_ADMIN/log" >/dev/null
INSERT INTO t22a (name, pad) SELECT 'bulk ' || i, md5(i::text) FROM generate_series(1, 20000) i;
SELECT remote_count('t22a') AS bulk_rows;
\! curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c 'import json,sys; l=[e for e in json.load(sys.stdin) if e["group"] == "copy_from"]; print("committed copyfrom requests:", sum(1 for e in l if e["status"] == 200 and not e["aborted"]))'

-- 9. Idle between INSERT and COMMIT while the sim's slow-input guard is strict: keep-alive blocks keep it fed.
\! curl -sS -X POST -d '{"copyfrom_min_bytes_per_interval": 1, "copyfrom_check_interval_secs": 6}' "$CARTO_SIM_ADMIN/limits" >/dev/null
BEGIN;
INSERT INTO t22b (name) VALUES ('idle');
SELECT pg_sleep(14);
COMMIT;
SELECT name FROM t22b WHERE name = 'idle';
\! curl -sS -X POST -d '{"copyfrom_min_bytes_per_interval": 0, "copyfrom_check_interval_secs": 15}' "$CARTO_SIM_ADMIN/limits" >/dev/null

-- 10. statement_timeout in the middle of the stream.
TRUNCATE t22a;
SET statement_timeout = '1500ms';
INSERT INTO t22a (name, pad) SELECT 'slow ' || i, repeat('z', 2000) || pg_sleep(0.002) FROM generate_series(1, 100000) i;
RESET statement_timeout;
SELECT remote_count('t22a') AS after_timeout;

-- 11. A backend killed mid-stream (pg_terminate_backend from this session; the victim runs through dblink).
SELECT dblink_connect('victim', format('host=127.0.0.1 port=%s dbname=%s user=postgres application_name=victim',
  current_setting('port'), current_database()));
SELECT dblink_send_query('victim', $$INSERT INTO t22a (name, pad) SELECT 'killed ' || i, repeat('k', 2000) || pg_sleep(0.002) FROM generate_series(1, 100000) i$$);
SELECT pg_sleep(2);
SELECT count(*) AS victims FROM pg_stat_activity WHERE application_name = 'victim' AND state = 'active';
SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'victim';
SELECT pg_sleep(1);
SELECT dblink_disconnect('victim');
SELECT remote_count('t22a') AS after_kill;
-- The sim saw those uploads broken off (rolled back), never committed.
-- (aborted uploads are logged when the sim notices, so earlier counts only include committed requests)
\! curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c 'import json,sys; l=[e for e in json.load(sys.stdin) if e["group"] == "copy_from"]; print("last two copyfrom requests aborted:", [e["aborted"] or e["status"] != 200 for e in l[-2:]])'
