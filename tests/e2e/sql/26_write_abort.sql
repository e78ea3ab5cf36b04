-- 26_write_abort: an upload that must not commit is ended deterministically (a poison row CARTO's COPY
-- rejects, then the body's end), with carto-sim's upload race on: after 200 cycles each of ROLLBACK, an
-- ERROR mid-statement and pg_terminate_backend right after the INSERT, and after statement_timeout,
-- pg_cancel_backend and ROLLBACK TO SAVEPOINT, no COPY is left open on CARTO's database and the table is
-- unchanged. statement_timeout bounds the commit-time finish while CARTO does not answer; the COPY is
-- cancelled on CARTO. carto.cleanup_uploads cancels what a killed backend left, and nothing of others.
CREATE EXTENSION carto_fdw;
CREATE EXTENSION dblink;
\set SHOW_CONTEXT never
\set VERBOSITY terse
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
SELECT carto.exec('carto', 'DROP TABLE IF EXISTS t26; CREATE TABLE t26 (cartodb_id serial PRIMARY KEY, name text, pad text); INSERT INTO t26 (name) VALUES (''kept'')') AS created;
CREATE FOREIGN TABLE t26 (cartodb_id int, name text, pad text) SERVER carto;
-- Behind CARTO's back (the sim's database, superuser): committed rows, and COPYs still open.
SELECT set_config('e2e.sim_db', :'sim_pg' || ' dbname=cartosim_demo', false) IS NOT NULL AS ok;
CREATE FUNCTION remote_count() RETURNS bigint LANGUAGE sql AS
  $$ SELECT n FROM dblink(current_setting('e2e.sim_db'), 'SELECT count(*) FROM t26') AS r(n bigint) $$;
CREATE FUNCTION open_copies() RETURNS bigint LANGUAGE sql AS
  $$ SELECT n FROM dblink(current_setting('e2e.sim_db'),
       $q$SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY "t26"%' AND state <> 'idle' AND pid <> pg_backend_pid()$q$) AS r(n bigint) $$;
-- COPYs still open once the aborts are over (an abort ends its upload after the client got the error:
-- wait up to 5 s for it).
CREATE FUNCTION open_copies_settled_at(expected bigint) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
  FOR i IN 1..50 LOOP
    n := open_copies();
    EXIT WHEN n <= expected;
    PERFORM pg_sleep(0.1);
  END LOOP;
  RETURN n;
END $$;
CREATE FUNCTION open_copies_settled() RETURNS bigint LANGUAGE sql AS $$ SELECT open_copies_settled_at(0) $$;
-- A second session of this database, through dblink.
CREATE FUNCTION local_conn() RETURNS text LANGUAGE sql AS
  $$ SELECT format('host=%s port=%s dbname=%s user=%s', split_part(current_setting('unix_socket_directories'), ',', 1),
                   current_setting('port'), current_database(), current_user) $$;

-- 1. 200 x BEGIN; INSERT; ROLLBACK.
DO $$ BEGIN
  FOR i IN 1..200 LOOP
    INSERT INTO t26 (name) SELECT 'rollback ' || i || '.' || j FROM generate_series(1, 100) j;
    ROLLBACK;
  END LOOP;
END $$;
SELECT remote_count() AS rows_after_rollbacks, open_copies_settled() AS open_copies;

-- 2. 200 x an INSERT that fails after its first rows were streamed (another session, so each is its own
-- statement and transaction).
SELECT dblink_connect('other', local_conn());
SET client_min_messages = warning;
SELECT count(*) FILTER (WHERE dblink_exec('other', $q$INSERT INTO t26 (name, pad) SELECT 'error ' || j,
         CASE WHEN j < 300 THEN repeat('e', 1000) ELSE (1 / (j - 300))::text END FROM generate_series(1, 301) j$q$, false) = 'ERROR') AS failed
  FROM generate_series(1, 200) i;
RESET client_min_messages;
SELECT dblink_error_message('other') AS last_error;
SELECT dblink_disconnect('other');
SELECT remote_count() AS rows_after_errors, open_copies_settled() AS open_copies;

-- 3. 200 x pg_terminate_backend right after the INSERT (the transaction still open).
CREATE FUNCTION terminate_cycle(i int) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE p int;
BEGIN
  PERFORM dblink_connect('victim', local_conn());
  SELECT pid INTO p FROM dblink('victim', 'SELECT pg_backend_pid()') AS r(pid int);
  PERFORM dblink_exec('victim', 'BEGIN');
  PERFORM dblink_exec('victim', format($q$INSERT INTO t26 (name) SELECT 'killed %s.' || j FROM generate_series(1, 100) j$q$, i));
  PERFORM pg_terminate_backend(p, 10000);
  PERFORM dblink_disconnect('victim');
  RETURN true;
END $$;
SELECT count(*) AS terminated FROM generate_series(1, 200) i WHERE terminate_cycle(i);
SELECT remote_count() AS rows_after_terminations, open_copies_settled() AS open_copies;

-- 4. statement_timeout and pg_cancel_backend in the middle of a streaming INSERT.
SET statement_timeout = '500ms';
INSERT INTO t26 (name, pad) SELECT 'timeout ' || j, repeat('t', 1000) FROM generate_series(1, 100000) j, LATERAL pg_sleep(0.001 + j * 0);
RESET statement_timeout;
SELECT dblink_connect('other', local_conn());
SELECT dblink_send_query('other', $q$INSERT INTO t26 (name, pad) SELECT 'cancel ' || j, repeat('c', 1000) FROM generate_series(1, 100000) j, LATERAL pg_sleep(0.001 + j * 0)$q$);
SELECT pg_sleep(0.5);
SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%''cancel '' || j%' AND pid <> pg_backend_pid();
SET client_min_messages = warning;
SELECT count(*) AS result_rows FROM dblink_get_result('other', false) AS r(t text);
RESET client_min_messages;
SELECT dblink_error_message('other') AS cancelled;
SELECT dblink_disconnect('other');
SELECT remote_count() AS rows_after_cancels, open_copies_settled() AS open_copies;

-- 5. ROLLBACK TO SAVEPOINT of a subtransaction that sent rows: its upload is ended at once.
BEGIN;
SAVEPOINT s;
INSERT INTO t26 (name) SELECT 'savepoint ' || j FROM generate_series(1, 100) j;
ROLLBACK TO SAVEPOINT s;
SELECT open_copies_settled() AS open_copies_in_doomed_transaction;
COMMIT;
SELECT remote_count() AS rows_after_savepoint, open_copies_settled() AS open_copies;

-- 6. statement_timeout bounds the commit-time finish: CARTO does not answer (its COPY waits for a lock
-- another session holds on the table), the INSERT fails after ~3 s, and its COPY is cancelled on CARTO.
\! psql "$CARTO_SIM_PG dbname=cartosim_demo" -X -q -c "BEGIN; LOCK TABLE t26 IN SHARE MODE; SELECT pg_sleep(15)" >/dev/null 2>&1 &
SELECT pg_sleep(0.5);
SET statement_timeout = '3s';
SELECT clock_timestamp() AS t0 \gset
INSERT INTO t26 (name) VALUES ('no answer');
SELECT clock_timestamp() - :'t0'::timestamptz BETWEEN interval '2.5 s' AND interval '8 s' AS bounded_by_statement_timeout;
RESET statement_timeout;
SELECT open_copies_settled() AS open_copies_after_commit_timeout;
SELECT n AS released FROM dblink(current_setting('e2e.sim_db'),
  $q$SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE '%LOCK TABLE t26%' AND pid <> pg_backend_pid()$q$) AS r(n bigint);
SELECT pg_sleep(0.5);
SELECT remote_count() AS rows_after_commit_timeout, open_copies_settled() AS open_copies;
-- The same with pg_cancel_backend while COMMIT waits: the COPY is ended on CARTO before the cancel is raised.
\! psql "$CARTO_SIM_PG dbname=cartosim_demo" -X -q -c "BEGIN; LOCK TABLE t26 IN SHARE MODE; SELECT pg_sleep(15)" >/dev/null 2>&1 &
SELECT pg_sleep(0.5);
SELECT dblink_connect('other', local_conn());
SELECT dblink_send_query('other', $q$INSERT INTO t26 (name) VALUES ('cancelled at commit')$q$);
SELECT pg_sleep(1.5);
SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%''cancelled at commit''%' AND pid <> pg_backend_pid();
SET client_min_messages = warning;
SELECT count(*) AS result_rows FROM dblink_get_result('other', false) AS r(t text);
RESET client_min_messages;
SELECT dblink_error_message('other') AS cancelled;
SELECT dblink_disconnect('other');
SELECT open_copies_settled() AS open_copies_after_cancel_at_commit;
SELECT n AS released FROM dblink(current_setting('e2e.sim_db'),
  $q$SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE '%LOCK TABLE t26%' AND pid <> pg_backend_pid()$q$) AS r(n bigint);
SELECT pg_sleep(0.5);
SELECT remote_count() AS rows_after_cancel_at_commit, open_copies_settled() AS open_copies;

\! rm -f /tmp/e2e_26_curl.pids
-- 7. carto.cleanup_uploads: a COPY left running by a local backend that no longer exists is cancelled;
-- a live session's upload is not. (The leftover is simulated: an upload through CARTO's /copyfrom whose
-- COPY carries this cluster's tag with a pid that is no local backend, its body kept open.)
SELECT dblink_connect('other', local_conn());
SELECT dblink_exec('other', 'BEGIN');
SELECT dblink_exec('other', $q$INSERT INTO t26 (name) VALUES ('live')$q$);
\! STALE="COPY \"t26\" (name) FROM STDIN /* carto_fdw upload $(psql -X -Atc 'SELECT system_identifier FROM pg_control_system()' -d postgres):999999:1:1 */"; export STALE; (printf 'stale row\n'; sleep 8) | curl -sS -u "demo:$CARTO_SIM_API_KEY" -X POST -T - -H 'Content-Type: application/octet-stream' "$CARTO_SIM_BASE_URL/api/v2/sql/copyfrom?q=$(python3 -c 'import os, urllib.parse; print(urllib.parse.quote(os.environ["STALE"]))')" >/dev/null 2>&1 & echo $! >> /tmp/e2e_26_curl.pids
SELECT pg_sleep(1);
SELECT open_copies() AS open_before_cleanup;
SELECT carto.cleanup_uploads('carto') AS cancelled;
SELECT open_copies_settled_at(1) AS open_after_cleanup;
SELECT dblink_exec('other', 'COMMIT');
SELECT dblink_disconnect('other');
SELECT name, count(*) FROM t26 GROUP BY name ORDER BY name;

-- 8. The next write to the account from any backend ends such a leftover first: a TRUNCATE from a new
-- session is not blocked by the lock of a COPY a killed backend left open.
\! STALE="COPY \"t26\" (name) FROM STDIN /* carto_fdw upload $(psql -X -Atc 'SELECT system_identifier FROM pg_control_system()' -d postgres):999998:1:1 */"; export STALE; (printf 'stale row\n'; sleep 8) | curl -sS -u "demo:$CARTO_SIM_API_KEY" -X POST -T - -H 'Content-Type: application/octet-stream' "$CARTO_SIM_BASE_URL/api/v2/sql/copyfrom?q=$(python3 -c 'import os, urllib.parse; print(urllib.parse.quote(os.environ["STALE"]))')" >/dev/null 2>&1 & echo $! >> /tmp/e2e_26_curl.pids
SELECT pg_sleep(1);
SELECT open_copies() AS stale_open;
SELECT dblink_connect('fresh', local_conn());
SELECT dblink_exec('fresh', 'SET statement_timeout = ''15s''');
SELECT dblink_exec('fresh', 'TRUNCATE t26');
SELECT dblink_disconnect('fresh');
SELECT open_copies_settled() AS open_after_truncate, remote_count() AS rows_after_truncate;
-- The background uploads are over before the next file runs (its request log must not see them).
\! for p in $(cat /tmp/e2e_26_curl.pids); do while kill -0 "$p" 2>/dev/null; do sleep 0.2; done; done; rm -f /tmp/e2e_26_curl.pids

-- 9. Both COPY formats, chosen explicitly: a binary upload is ended by a binary tuple whose field count is
-- not the column list's (never the trailer, which would commit it), a text upload by a poison line; either
-- way ROLLBACK and a rolled-back savepoint leave no row and no open COPY, with the sim's race on.
CREATE FOREIGN TABLE t26_bin (cartodb_id int, name text, pad text) SERVER carto OPTIONS (table_name 't26', copy_format 'binary');
CREATE FOREIGN TABLE t26_text (cartodb_id int, name text, pad text) SERVER carto OPTIONS (table_name 't26', copy_format 'text');
EXPLAIN (VERBOSE, COSTS OFF) INSERT INTO t26_bin (name) VALUES ('x');
EXPLAIN (VERBOSE, COSTS OFF) INSERT INTO t26_text (name) VALUES ('x');
\! curl -sS -o /dev/null -X DELETE "$CARTO_SIM_ADMIN/log"
DO $$ BEGIN
  FOR i IN 1..20 LOOP
    INSERT INTO t26_bin (name) SELECT 'binary rollback ' || i || '.' || j FROM generate_series(1, 100) j;
    ROLLBACK;
    INSERT INTO t26_text (name) SELECT 'text rollback ' || i || '.' || j FROM generate_series(1, 100) j;
    ROLLBACK;
  END LOOP;
END $$;
SELECT remote_count() AS rows_after_format_rollbacks, open_copies_settled() AS open_copies;
-- Each upload was refused by CARTO's COPY (400: its body ended properly with the poison), none was a
-- dropped connection (aborted) or left open. (Which poison: carto-client's tests check CARTO's message.)
\! curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c 'import json,sys,collections; print(sorted(collections.Counter((e["status"], e["aborted"], e["left_open"]) for e in json.load(sys.stdin) if e["group"] == "copy_from").items()))'
BEGIN;
SAVEPOINT s;
INSERT INTO t26_bin (name) SELECT 'binary savepoint ' || j FROM generate_series(1, 100) j;
ROLLBACK TO SAVEPOINT s;
SELECT open_copies_settled() AS open_copies_in_doomed_binary_transaction;
COMMIT;
-- And a binary upload that does commit, so the poison above is what kept the others out.
INSERT INTO t26_bin (name) SELECT 'binary kept ' || j FROM generate_series(1, 3) j;
SELECT remote_count() AS rows_after_binary_commit, open_copies_settled() AS open_copies;

-- 10. carto.push in COPY binary failing mid-stream (a source row raises after the first megabyte went out):
-- its tagged upload goes to the abort, which ends it with the binary poison; nothing stays open, no row.
CREATE FUNCTION open_uploads_settled() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
  FOR i IN 1..50 LOOP
    SELECT r.n INTO n FROM dblink(current_setting('e2e.sim_db'),
      $q$SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY %/* carto_fdw upload %' AND state <> 'idle' AND pid <> pg_backend_pid()$q$) AS r(n bigint);
    EXIT WHEN n = 0;
    PERFORM pg_sleep(0.1);
  END LOOP;
  RETURN n;
END $$;
CREATE VIEW push26_src AS SELECT j AS id, 1 / (j - 150000) AS x FROM generate_series(1, 200000) j;
SELECT carto.exec('carto', 'DROP TABLE IF EXISTS t26_push; CREATE TABLE t26_push (id integer, x integer)') AS created;
-- (replace goes through a staging table push creates with the source's types: binary)
\! curl -sS -o /dev/null -X DELETE "$CARTO_SIM_ADMIN/log"
SELECT carto.push('push26_src', 'carto', 't26_push', mode => 'replace', cartodbfy => false) AS pushed;
SELECT open_uploads_settled() AS open_uploads_after_failed_push;
-- CARTO's COPY refused the poisoned body (400), it was no dropped connection (aborted) nor left open.
\! curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c 'import json,sys; print([(e["status"], e["aborted"], e["left_open"]) for e in json.load(sys.stdin) if e["group"] == "copy_from"])'
SELECT n AS pushed_rows FROM dblink(current_setting('e2e.sim_db'), 'SELECT count(*) FROM t26_push') AS r(n bigint);
SELECT carto.exec('carto', 'DROP TABLE t26_push') AS dropped;
\! curl -sS -o /dev/null -X DELETE "$CARTO_SIM_ADMIN/log"

-- 11. A transaction's own open uploads are never ended by its own cleanup, on demand or automatic:
-- one table, two foreign tables of one account, and one table's two uploads (with and without
-- cartodb_id: two column lists, two COPYs); then the automatic cleanup due at every upload's start
-- (carto_fdw.upload_cleanup_interval 0), which still ends a killed backend's leftover. Before, the
-- cleanup took the backend's own uploads for stale ones, and COMMIT failed.
SELECT carto.exec('carto', 'DROP TABLE IF EXISTS t26_own; CREATE TABLE t26_own (cartodb_id serial PRIMARY KEY, name text, pad text); DROP TABLE IF EXISTS t26_own2; CREATE TABLE t26_own2 (id int, name text)') AS created;
CREATE FOREIGN TABLE t26_own (cartodb_id int, name text, pad text) SERVER carto;
CREATE FOREIGN TABLE t26_own2 (id int, name text) SERVER carto;
CREATE FUNCTION own_open() RETURNS bigint LANGUAGE sql AS
  $$ SELECT n FROM dblink(current_setting('e2e.sim_db'),
       $q$SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY "t26_own%' AND state <> 'idle' AND pid <> pg_backend_pid()$q$) AS r(n bigint) $$;
CREATE FUNCTION stale_open() RETURNS bigint LANGUAGE sql AS
  $$ SELECT n FROM dblink(current_setting('e2e.sim_db'),
       $q$SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY %:999997:1:1 */' AND state <> 'idle' AND pid <> pg_backend_pid()$q$) AS r(n bigint) $$;
CREATE FUNCTION stale_open_settled() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
  FOR i IN 1..50 LOOP
    n := stale_open();
    EXIT WHEN n = 0;
    PERFORM pg_sleep(0.1);
  END LOOP;
  RETURN n;
END $$;
-- Uploads open on CARTO once their first data arrived (polled up to 5 s, the requests start asynchronously).
CREATE FUNCTION own_open_at(expected bigint) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
  FOR i IN 1..50 LOOP
    n := own_open();
    EXIT WHEN n >= expected;
    PERFORM pg_sleep(0.1);
  END LOOP;
  RETURN n;
END $$;
CREATE FUNCTION own_rows() RETURNS TABLE (tbl text, n bigint) LANGUAGE sql AS
  $$ SELECT * FROM dblink(current_setting('e2e.sim_db'),
       $q$SELECT 't26_own', count(*) FROM t26_own UNION ALL SELECT 't26_own2', count(*) FROM t26_own2$q$) AS r(tbl text, n bigint) $$;
BEGIN;
INSERT INTO t26_own (name, pad) SELECT 'one ' || g, md5(g::text) || md5((-g)::text) FROM generate_series(1, 20000) g;
SELECT own_open_at(1) AS own_open_uploads;
SELECT carto.cleanup_uploads('carto') AS cancelled_one_table;
COMMIT;
SELECT * FROM own_rows();
BEGIN;
INSERT INTO t26_own (name, pad) SELECT 'two ' || g, md5(g::text) || md5((-g)::text) FROM generate_series(1, 20000) g;
INSERT INTO t26_own2 (id, name) SELECT g, 'two ' || md5(g::text) || md5((-g)::text) FROM generate_series(1, 20000) g;
SELECT own_open_at(2) AS own_open_uploads;
SELECT carto.cleanup_uploads('carto') AS cancelled_two_tables;
COMMIT;
SELECT * FROM own_rows();
-- (rows without a cartodb_id go in a COPY of their own, so the default applies: two uploads of one table)
BEGIN;
INSERT INTO t26_own (cartodb_id, name, pad) SELECT CASE WHEN g % 2 = 0 THEN 1000000 + g END, 'mixed ' || g, md5(g::text) || md5((-g)::text) FROM generate_series(1, 20000) g;
SELECT own_open_at(2) AS own_open_uploads;
SELECT carto.cleanup_uploads('carto') AS cancelled_two_uploads;
COMMIT;
SELECT * FROM own_rows();
-- The automatic cleanup, due at every upload's start, with a killed backend's leftover waiting.
SET carto_fdw.upload_cleanup_interval = 0;
SHOW carto_fdw.upload_cleanup_interval;
\! STALE="COPY \"t26_own2\" (name) FROM STDIN /* carto_fdw upload $(psql -X -Atc 'SELECT system_identifier FROM pg_control_system()' -d postgres):999997:1:1 */"; export STALE; (printf 'stale row\n'; sleep 8) | curl -sS -u "demo:$CARTO_SIM_API_KEY" -X POST -T - -H 'Content-Type: application/octet-stream' "$CARTO_SIM_BASE_URL/api/v2/sql/copyfrom?q=$(python3 -c 'import os, urllib.parse; print(urllib.parse.quote(os.environ["STALE"]))')" >/dev/null 2>&1 & echo $! >> /tmp/e2e_26_curl.pids
SELECT pg_sleep(1);
SELECT stale_open() AS stale_open;
BEGIN;
INSERT INTO t26_own (cartodb_id, name, pad) SELECT CASE WHEN g % 2 = 0 THEN 2000000 + g END, 'auto ' || g, md5(g::text) || md5((-g)::text) FROM generate_series(1, 20000) g;
INSERT INTO t26_own2 (id, name) SELECT g, 'auto ' || md5(g::text) || md5((-g)::text) FROM generate_series(1, 20000) g;
-- Three own uploads open (each start was due a cleanup); the leftover was ended.
SELECT own_open_at(3) AS own_open_uploads, stale_open_settled() AS stale_open;
COMMIT;
SELECT * FROM own_rows();
RESET carto_fdw.upload_cleanup_interval;
\! for p in $(cat /tmp/e2e_26_curl.pids); do while kill -0 "$p" 2>/dev/null; do sleep 0.2; done; done; rm -f /tmp/e2e_26_curl.pids
SELECT carto.exec('carto', 'DROP TABLE t26_own; DROP TABLE t26_own2') AS dropped;
