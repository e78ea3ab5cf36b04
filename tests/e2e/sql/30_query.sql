-- 30_query: carto.query and carto.exec — any SQL through CARTO's /sql endpoint, with CARTO's errors as ERRORs.
CREATE EXTENSION carto_fdw;
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url', max_retries '1', max_retry_wait '1');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
-- Network functions are VOLATILE, PARALLEL UNSAFE; the ones without optional arguments are STRICT.
SELECT p.proname, pg_get_function_identity_arguments(p.oid) AS args, p.provolatile, p.proparallel, p.proisstrict,
       pg_get_function_result(p.oid) AS result
  FROM pg_proc p WHERE p.pronamespace = 'carto'::regnamespace AND p.proname IN ('query', 'exec') ORDER BY 1;
-- ... and not executable by PUBLIC.
SELECT has_function_privilege('public', 'carto.query(text,text)', 'EXECUTE') AS public_can_query,
       has_function_privilege('public', 'carto.exec(text,text)', 'EXECUTE') AS public_can_exec;

-- Writes return CARTO's total_rows.
SELECT carto.exec('carto', 'DROP TABLE IF EXISTS q30_t');
SELECT carto.exec('carto', 'CREATE TABLE q30_t (id int PRIMARY KEY, name text, born date, score numeric(6,2), tags text[], g geometry(Point,4326))');
SELECT carto.exec('carto', $$INSERT INTO q30_t VALUES (1, 'it''s', '2020-02-29', 1.5, '{a,b}', ST_SetSRID(ST_MakePoint(1, 2), 4326)),
                                                      (2, NULL, NULL, NULL, NULL, NULL), (3, 'c', NULL, -2, '{}', NULL)$$) AS inserted;
SELECT carto.exec('carto', 'UPDATE q30_t SET score = score * 2 WHERE score IS NOT NULL') AS updated;
-- Each row is a jsonb object with CARTO's JSON values (geometry as hex EWKB, dates as ISO-8601 UTC).
SELECT * FROM carto.query('carto', 'SELECT * FROM q30_t ORDER BY id');
SELECT r->>'name' AS name, (r->>'score')::numeric AS score, jsonb_typeof(r->'tags') AS tags_type
  FROM carto.query('carto', 'SELECT name, score, tags FROM q30_t ORDER BY id') AS r;
-- No rows; a query with several statements gives the rows of all of them.
SELECT count(*) FROM carto.query('carto', 'SELECT * FROM q30_t WHERE false');
SELECT * FROM carto.query('carto', 'SELECT 1 AS a; SELECT 2 AS b');
-- Parameters are the caller's business: quote with format() / quote_literal().
SELECT * FROM carto.query('carto', format('SELECT id FROM q30_t WHERE name = %L', 'it''s'));
-- exec on a query: total_rows is the number of rows returned.
SELECT carto.exec('carto', 'SELECT * FROM q30_t');

-- SQL errors carry CARTO's message, detail and hint ...
SELECT carto.exec('carto', 'INSERT INTO q30_t (id) VALUES (1)');
SELECT * FROM carto.query('carto', 'SELECT * FROM q30_nope');
SELECT * FROM carto.query('carto', 'SELEC 1');
SELECT * FROM carto.query('carto', 'SELECT nope FROM q30_t');
-- An error after rows began streaming arrives inside a 200 answer: still an ERROR, never rows.
SELECT * FROM carto.query('carto', 'SELECT 10 / (3 - x) AS v FROM generate_series(1, 5) x');
-- ... and a fitting SQLSTATE.
CREATE FUNCTION pg_temp.sqlstate_of(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text;
BEGIN
  EXECUTE sql;
  RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE;
  RETURN st;
END $$;
SELECT q, pg_temp.sqlstate_of(q) FROM (VALUES
  ($$SELECT carto.exec('carto', 'INSERT INTO q30_t (id) VALUES (1)')$$),
  ($$SELECT carto.query('carto', 'SELECT * FROM q30_nope')$$),
  ($$SELECT carto.query('carto', 'SELEC 1')$$),
  ($$SELECT carto.query('carto', 'SELECT nope FROM q30_t')$$),
  ($$SELECT carto.query('carto', 'SELECT 10 / (3 - x) AS v FROM generate_series(1, 5) x')$$)) AS t(q);
-- The failed statements changed nothing (one transaction per request on CARTO's side).
SELECT carto.exec('carto', 'INSERT INTO q30_t (id) VALUES (10); INSERT INTO q30_t (id) VALUES (1)');
SELECT r->>'n' AS rows_left FROM carto.query('carto', 'SELECT count(*) AS n FROM q30_t') r;

-- 401: a key CARTO does not know. The key never shows in the message.
CREATE SERVER carto_badkey FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto_badkey OPTIONS (api_key 'no-such-key-SECRET');
SELECT carto.exec('carto_badkey', 'SELECT 1');
-- 403: a regular key without the permission.
CREATE SERVER carto_ro FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto_ro OPTIONS (api_key :'readonly_key');
SELECT count(*) FROM carto.query('carto_ro', 'SELECT * FROM places');
SELECT carto.exec('carto_ro', 'DELETE FROM places');
-- No key at all: CARTO's public access (nothing granted to it here).
CREATE SERVER carto_public FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto_public;
SELECT * FROM carto.query('carto_public', 'SELECT count(*) FROM places');

-- 429 of the statement-timeout kind (no Retry-After): never retried.
\! curl -sS -o /dev/null -X POST "$CARTO_SIM_ADMIN/users/demo" -d '{"statement_timeout_ms": 200}'
SELECT * FROM carto.query('carto', 'SELECT pg_sleep(2)');
\! curl -sS -o /dev/null -X POST "$CARTO_SIM_ADMIN/users/demo" -d '{"statement_timeout_ms": 0}'
-- 429 of the rate-limit kind (Retry-After): retried up to max_retries while Retry-After <= max_retry_wait.
\! curl -sS -o /dev/null -X POST "$CARTO_SIM_ADMIN/rate_limits/reset"
\! curl -sS -o /dev/null -X POST "$CARTO_SIM_ADMIN/users/demo" -d '{"rate_limits": {"query": {"count": 1, "period_secs": 60}}}'
SELECT carto.exec('carto', 'SELECT 1') AS first_passes;
SELECT carto.exec('carto', 'SELECT 1') AS second_is_refused;
\! curl -sS -o /dev/null -X POST "$CARTO_SIM_ADMIN/users/demo" -d '{"reset_rate_limits": true}'
\! curl -sS -o /dev/null -X POST "$CARTO_SIM_ADMIN/rate_limits/reset"
-- A proxy's HTML 502 in front of CARTO.
\! curl -sS -o /dev/null -X POST "$CARTO_SIM_ADMIN/faults" -d '{"group": "query", "html_502": true, "count": 2}'
SELECT carto.exec('carto', 'DELETE FROM q30_t WHERE id = 3');
\! curl -sS -o /dev/null -X DELETE "$CARTO_SIM_ADMIN/faults"
SELECT carto.exec('carto', 'SELECT 1') AS back_to_normal;

-- Arguments: NULL gives NULL (STRICT, nothing sent); bad server names are clear errors.
SELECT carto.exec(NULL, 'SELECT 1') IS NULL AS null_server, carto.exec('carto', NULL) IS NULL AS null_sql;
SELECT count(*) FROM carto.query('carto', NULL);
SELECT carto.exec('no_such_server', 'SELECT 1');
CREATE FOREIGN DATA WRAPPER other_fdw;
CREATE SERVER not_carto FOREIGN DATA WRAPPER other_fdw;
SELECT carto.exec('not_carto', 'SELECT 1');
-- No user mapping: PostgreSQL's own error.
CREATE SERVER carto_nomap FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
SELECT carto.exec('carto_nomap', 'SELECT 1');

-- Privileges: a role needs EXECUTE (granted explicitly) and USAGE on the server.
CREATE ROLE q30_user;
CREATE USER MAPPING FOR q30_user SERVER carto OPTIONS (api_key :'api_key');
GRANT USAGE ON SCHEMA carto TO q30_user;
SET ROLE q30_user;
SELECT carto.exec('carto', 'SELECT 1');
RESET ROLE;
GRANT EXECUTE ON FUNCTION carto.exec(text, text) TO q30_user;
SET ROLE q30_user;
SELECT carto.exec('carto', 'SELECT 1');
RESET ROLE;
GRANT USAGE ON FOREIGN SERVER carto TO q30_user;
SET ROLE q30_user;
SELECT carto.exec('carto', 'SELECT 1') AS granted;
RESET ROLE;
DROP USER MAPPING FOR q30_user SERVER carto;
REVOKE ALL ON FOREIGN SERVER carto FROM q30_user;
REVOKE ALL ON FUNCTION carto.exec(text, text) FROM q30_user;
REVOKE ALL ON SCHEMA carto FROM q30_user;
DROP ROLE q30_user;

-- Statement timeout and cancel stop a call that waits on CARTO.
SET statement_timeout = '500ms';
SELECT carto.exec('carto', 'SELECT pg_sleep(5)');
RESET statement_timeout;
SELECT carto.exec('carto', 'DROP TABLE q30_t');
