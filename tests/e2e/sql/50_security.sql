-- 50_security: no privilege escalation, no forged records, no hostile server text in local DDL
-- (docs/security.md). Three non-superuser roles — sec_key (a regular key: SELECT on places only),
-- sec_master (the master key), sec_nokey (no USAGE, no mapping of its own) — and a PUBLIC mapping
-- holding the master key try every escalation; carto-sim faults play a hostile CARTO.
CREATE EXTENSION carto_fdw;
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url', max_retries '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
DROP ROLE IF EXISTS sec_key;
DROP ROLE IF EXISTS sec_master;
DROP ROLE IF EXISTS sec_nokey;
CREATE ROLE sec_key;
CREATE ROLE sec_master;
CREATE ROLE sec_nokey;
-- Everything of the extension is executable by all three: only the server's rule stands in the way.
GRANT USAGE ON SCHEMA carto TO sec_key, sec_master, sec_nokey;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA carto TO sec_key, sec_master, sec_nokey;
GRANT SELECT ON carto.batch_jobs, carto.batch_jobs_latest, carto.sync_runs, carto.sync_status TO sec_key, sec_master, sec_nokey;
GRANT CREATE ON SCHEMA public TO sec_key, sec_master, sec_nokey;
GRANT USAGE ON FOREIGN SERVER carto TO sec_key, sec_master;
CREATE USER MAPPING FOR sec_key SERVER carto OPTIONS (api_key :'readonly_key');
CREATE USER MAPPING FOR sec_master SERVER carto OPTIONS (api_key :'api_key');
CREATE USER MAPPING FOR PUBLIC SERVER carto OPTIONS (api_key :'api_key');
-- A private table of the account (only the master key reaches it).
SELECT carto.exec('carto', 'DROP TABLE IF EXISTS sec50_private');
SELECT carto.exec('carto', $$CREATE TABLE sec50_private (id int, secret text); INSERT INTO sec50_private VALUES (1, 'the secret')$$);

-- ---------------------------------------------------------------------------------------------
-- 1. One privilege rule for every function that names a server: USAGE on it (and a mapping).
SET ROLE sec_nokey;
SELECT carto.push('select 1 as id', 'carto', 'sec50_private', create_table => false);
SELECT carto.pull('carto', 'sec50_private', 'sec50_loot');
SELECT * FROM carto.query('carto', 'SELECT secret FROM sec50_private');
SELECT carto.exec('carto', 'DELETE FROM sec50_private');
SELECT carto.cartodbfy('carto', 'sec50_private');
SELECT carto.create_table('carto', 'sec50_new', 'x int');
SELECT carto.drop_table('carto', 'sec50_private');
SELECT carto.batch_submit('carto', ARRAY['DELETE FROM sec50_private']);
SELECT carto.batch_status('carto', '00000000-0000-0000-0000-000000000000');
IMPORT FOREIGN SCHEMA public LIMIT TO (sec50_private) FROM SERVER carto INTO public;
RESET ROLE;
-- Nothing reached the private table.
SELECT * FROM carto.query('carto', 'SELECT id, secret FROM sec50_private ORDER BY id');

-- ---------------------------------------------------------------------------------------------
-- 2. A foreign table's query: exactly one SELECT, checked with PostgreSQL's parser ...
SET ROLE sec_key;
CREATE FOREIGN TABLE sec_breakout (x text) SERVER carto OPTIONS (scan_method 'query', query $$SELECT '1' AS x) AS q0; CREATE TABLE loot AS SELECT * FROM sec50_private; GRANT SELECT ON loot TO publicuser; SELECT "x"::text AS c0 FROM (SELECT '1' AS x$$);
CREATE FOREIGN TABLE sec_bad (x text) SERVER carto OPTIONS (query 'SELECT 1 AS x; DELETE FROM sec50_private');
CREATE FOREIGN TABLE sec_bad (x text) SERVER carto OPTIONS (query 'WITH d AS (DELETE FROM sec50_private RETURNING secret) SELECT secret AS x FROM d');
CREATE FOREIGN TABLE sec_bad (x text) SERVER carto OPTIONS (query 'SELECT secret AS x INTO loot FROM sec50_private');
CREATE FOREIGN TABLE sec_bad (x text) SERVER carto OPTIONS (query 'SELECT secret AS x FROM sec50_private FOR UPDATE');
CREATE FOREIGN TABLE sec_bad (x text) SERVER carto OPTIONS (query 'SELECT secret AS x FROM sec50_private --');
CREATE FOREIGN TABLE sec_bad (x text) SERVER carto OPTIONS (query 'DELETE FROM sec50_private');
-- ... and it runs only with the key of a reader who may choose that SQL: its owner here.
CREATE FOREIGN TABLE sec_q (x text) SERVER carto OPTIONS (query 'SELECT secret AS x FROM sec50_private');
GRANT SELECT ON sec_q TO sec_master;
CREATE VIEW sec_qv AS SELECT * FROM sec_q;
GRANT SELECT ON sec_qv TO sec_master;
RESET ROLE;
SET ROLE sec_master;
SELECT * FROM sec_q;
-- (A view of it runs with its owner's key, sec_key's regular key: CARTO refuses the private table.)
SELECT * FROM sec_qv;
RESET ROLE;
-- Being a superuser does not make another role's SQL fit to run with the superuser's key either.
SELECT * FROM sec_q;
-- A superuser's query table is trusted; through /sql it runs in a read-only transaction on CARTO.
SELECT carto.exec('carto', 'DROP SEQUENCE IF EXISTS sec50_seq; CREATE SEQUENCE sec50_seq');
CREATE FOREIGN TABLE sec_writes (x text) SERVER carto OPTIONS (scan_method 'query', query $$SELECT nextval('sec50_seq')::text AS x$$);
GRANT SELECT ON sec_writes TO sec_master;
SET ROLE sec_master;
SELECT * FROM sec_writes;
RESET ROLE;
SELECT * FROM carto.query('carto', $$SELECT last_value, is_called FROM sec50_seq$$);
-- Through /copyto (COPY (query) TO STDOUT cannot be made read-only) the same checked text stays one
-- subquery of the one COPY statement.
CREATE FOREIGN TABLE sec_copy (x text) SERVER carto OPTIONS (scan_method 'copy', query $$SELECT secret AS x FROM sec50_private$$);
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM sec_copy;
SELECT * FROM sec_copy;

-- ---------------------------------------------------------------------------------------------
-- 3. IMPORT FOREIGN SCHEMA: a hostile catalogue answer cannot write local DDL.
CREATE SCHEMA imp;
\! curl -sS -o /dev/null -X POST "$CARTO_SIM_ADMIN/faults" -d '{"group":"query","status":200,"json":{"rows":[{"cur":"public","schema_exists":true,"rel":"sec50_evil","kind":"r","attnum":1,"col":"cartodb_id","type":"integer","notnull":true,"is_array":false,"elem_type":"int4","elem_kind":"b","delim":",","builtin":true,"ext_type":false,"pkey":"cartodb_id"},{"cur":"public","schema_exists":true,"rel":"sec50_evil","kind":"r","attnum":2,"col":"x","type":"integer DEFAULT 42) SERVER carto OPTIONS (table_name $$a$$); CREATE FOREIGN TABLE injected (z text DEFAULT current_setting($$is_superuser$$)) SERVER carto OPTIONS (table_name $$b$$); CREATE FOREIGN TABLE imp.more (y integer","notnull":false,"is_array":false,"elem_type":"int4","elem_kind":"b","delim":",","builtin":true,"ext_type":false,"pkey":"cartodb_id"},{"cur":"public","schema_exists":true,"rel":"sec50_evil","kind":"r","attnum":3,"col":"g","type":"geometry(Point,4326)) SERVER carto; CREATE FOREIGN TABLE injected2 (z text","notnull":false,"is_array":false,"elem_type":"geometry","elem_kind":"b","delim":":","builtin":false,"ext_type":true,"pkey":"cartodb_id"}],"fields":{},"total_rows":3}}'
IMPORT FOREIGN SCHEMA public LIMIT TO (sec50_evil) FROM SERVER carto INTO imp;
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.atthasdef
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
 WHERE c.relname IN ('sec50_evil', 'injected', 'injected2', 'more') ORDER BY 1, a.attnum;

-- ---------------------------------------------------------------------------------------------
-- 4. Text from CARTO is checked against the database encoding, over /copyto and /sql.
CREATE FOREIGN TABLE sec_text_copy (x text) SERVER carto OPTIONS (scan_method 'copy', table_name 'sec50_private');
\! curl -sS -o /dev/null -X POST "$CARTO_SIM_ADMIN/faults" -d '{"group":"copy_to","status":200,"body_hex":"6f6b0a fffe6162630a"}'
SELECT x FROM sec_text_copy;
CREATE FOREIGN TABLE sec_text_sql (x text) SERVER carto OPTIONS (scan_method 'query', query 'SELECT secret AS x FROM sec50_private');
\! curl -sS -o /dev/null -X POST "$CARTO_SIM_ADMIN/faults" -d '{"group":"query","status":200,"json":{"rows":[{"c0":"abc\u0000def"}],"fields":{},"total_rows":1}}'
SELECT x FROM sec_text_sql;
\! curl -sS -o /dev/null -X POST "$CARTO_SIM_ADMIN/faults" -d '{"group":"query","status":200,"json":{"rows":[{"c0":"ünïcödé ✓"}],"fields":{},"total_rows":1}}'
SELECT x FROM sec_text_sql;
-- The same over COPY binary: the text type's receive function checks CARTO's bytes (client_encoding and
-- the database are UTF8), and the error names the column.
CREATE FOREIGN TABLE sec_text_bin (x text) SERVER carto OPTIONS (scan_method 'copy', copy_format 'binary', table_name 'sec50_private');
EXPLAIN (VERBOSE, COSTS OFF) SELECT x FROM sec_text_bin;
\! curl -sS -o /dev/null -X POST "$CARTO_SIM_ADMIN/faults" -d '{"group":"copy_to","status":200,"body_hex":"5047434f50590aff0d0a0000000000000000000001000000026f6b0001000000056162fffe63ffff"}'
SELECT x FROM sec_text_bin;
\! curl -sS -o /dev/null -X POST "$CARTO_SIM_ADMIN/faults" -d '{"group":"copy_to","status":200,"body_hex":"5047434f50590aff0d0a00000000000000000000010000000761626300646566ffff"}'
SELECT x FROM sec_text_bin;
\! curl -sS -o /dev/null -X POST "$CARTO_SIM_ADMIN/faults" -d '{"group":"copy_to","status":200,"body_hex":"5047434f50590aff0d0a00000000000000000000010000000fc3bc6ec3af63c3b664c3a920e29c93ffff"}'
SELECT x FROM sec_text_bin;
\! curl -sS -o /dev/null -X DELETE "$CARTO_SIM_ADMIN/faults"

-- ---------------------------------------------------------------------------------------------
-- 5. Batch jobs and sync runs: each role sees its own rows; only the functions write them.
SET ROLE sec_master;
SELECT carto.batch_submit('carto', ARRAY[$$UPDATE sec50_private SET secret = 'the secret' WHERE id = 1$$]) IS NOT NULL AS submitted;
SELECT count(*) AS my_jobs FROM carto.batch_jobs;
SELECT carto.exec('carto', 'DROP TABLE IF EXISTS sec50_src; CREATE TABLE sec50_src (id int, at int); INSERT INTO sec50_src VALUES (1, 1), (2, 2), (3, 3)');
CREATE TABLE sec50_dst (id int, at int);
RESET ROLE;
SET ROLE sec_key;
-- Another role's job (and its SQL) is invisible, and no role may write the tables.
SELECT count(*) AS others_jobs FROM carto.batch_jobs;
SELECT count(*) AS others_jobs_latest FROM carto.batch_jobs_latest;
UPDATE carto.batch_jobs SET last_status = 'failed';
INSERT INTO carto.sync_runs (name, direction, mode, server, source, target, started_at, status, watermark_to)
VALUES ('master pull', 'pull', 'append', 'carto', 'carto.sec50_src', 'sec50_dst', now(), 'succeeded', '999999');
SELECT * FROM carto.sync_locks FOR UPDATE;
RESET ROLE;
-- Even a granted INSERT allows nothing (row-level security has no policy for it).
GRANT INSERT ON carto.sync_runs TO sec_key;
GRANT USAGE ON SEQUENCE carto.sync_runs_run_id_seq TO sec_key;
SET ROLE sec_key;
INSERT INTO carto.sync_runs (name, direction, mode, server, source, target, started_at, status, watermark_to, role_id)
VALUES ('master pull', 'pull', 'append', 'carto', 'carto.sec50_src', 'sec50_dst', now(), 'succeeded', '999999', 'sec_master'::regrole);
RESET ROLE;
-- sec_key holds the advisory lock the sync lock used to be, in another session, meanwhile:
\! psql -X -q -d e2e_50_security -c "SET ROLE sec_key; SELECT pg_advisory_lock(hashtextextended('carto_fdw sync ' || 'master pull', 0)), pg_sleep(4)" >/dev/null 2>&1 &
SELECT pg_sleep(1.5);
SET ROLE sec_master;
-- ... and sec_master's incremental pull still loads all 3 rows, not skipped, no forged watermark.
SELECT carto.pull('carto', 'sec50_src', 'sec50_dst', mode => 'append', since => 'at', name => 'master pull') AS pulled;
SELECT name, last_status, last_rows, watermark, run_by FROM carto.sync_status;
RESET ROLE;
SET ROLE sec_key;
SELECT count(*) AS others_runs FROM carto.sync_runs;
SELECT count(*) AS others_status FROM carto.sync_status;
RESET ROLE;

-- ---------------------------------------------------------------------------------------------
-- 7. base_url: no credentials, no query string, and the value is never echoed.
-- (Each error's SQLSTATE and message, with any trace of the value shown as <LEAK>.)
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE s text; m text;
BEGIN
  EXECUTE q; RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, m = MESSAGE_TEXT;
  RETURN s || ' ' || replace(m, 'sEcReT', '<LEAK>');
END $$;
SELECT pg_temp.try(format('CREATE SERVER sec_bad FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url %L)', u)) FROM (VALUES
  ('http://demo:sEcReT-pw@127.0.0.1:1/user/demo'),
  ('http://sEcReT-user@127.0.0.1:1/user/demo'),
  ('http://127.0.0.1:1/user/demo?token=sEcReT-tok'),
  ('http://127.0.0.1:1/user/demo#sEcReT'),
  ('ftp://sEcReT-host/user/demo'),
  ('http://sEcReT host/'),
  ('http://127.0.0.1:1/user/demo')) AS v(u);
DROP SERVER sec_bad;
-- Job ids are uuids, checked before any request.
\! curl -sS -o /dev/null -X DELETE "$CARTO_SIM_ADMIN/log"
SELECT carto.batch_status('carto', '..');
SELECT carto.batch_cancel('carto', '../../sql?q=DROP TABLE x');
SELECT carto.batch_wait('carto', '');
\! curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)), "requests")'
-- carto.pull takes a table, or explicitly a query.
CREATE TABLE sec50_pulled (id int, secret text);
SELECT carto.pull('carto', 'SELECT id, secret FROM sec50_private', 'sec50_pulled');
SELECT carto.pull('carto', 'sec50_private', 'sec50_pulled', query => 'SELECT 1 AS id');
SELECT carto.pull('carto', NULL, 'sec50_pulled', query => 'SELECT id, upper(secret) AS secret FROM sec50_private') AS pulled_query;
SELECT * FROM sec50_pulled;
SELECT carto.pull('carto', NULL, 'sec50_pulled', query => 'SELECT 1 AS id; DELETE FROM sec50_private');
-- Names with quotes work in cartodbfy.
SELECT carto.exec('carto', $$DROP TABLE IF EXISTS "sec50 ""q"""; CREATE TABLE "sec50 ""q""" (id int)$$);
SELECT carto.cartodbfy('carto', 'sec50 "q"');
SELECT * FROM carto.query('carto', $$SELECT column_name FROM information_schema.columns WHERE table_name = 'sec50 "q"' ORDER BY ordinal_position$$);
SELECT carto.drop_table('carto', 'sec50 "q"');


-- ---------------------------------------------------------------------------------------------
-- 8. Code that runs as another role (the bookkeeping, as the carto.* tables' owner) never resolves
-- a name through the caller's search_path. sec_evil has exactly the documented grants and a schema
-- of its own before pg_catalog, shadowing the functions and operators the extension's SQL uses with
-- versions that make sec_evil a superuser (and say so) when they run as any other role.
DROP ROLE IF EXISTS sec_evil;
CREATE ROLE sec_evil;
CREATE SCHEMA evil AUTHORIZATION sec_evil;
GRANT USAGE ON SCHEMA carto TO sec_evil;
GRANT USAGE ON FOREIGN SERVER carto TO sec_evil;
CREATE USER MAPPING FOR sec_evil SERVER carto OPTIONS (api_key :'api_key');
GRANT EXECUTE ON FUNCTION carto.push(text, text, text, text, text, text, boolean, boolean, text[], text, boolean),
  carto._push(text, text, text, text, text, text, boolean, boolean, text[], text, boolean),
  carto.pull(text, text, text, text, text, text, text, boolean, text),
  carto._pull(text, text, text, text, text, text, text, boolean, text),
  carto.query(text, text), carto.exec(text, text),
  carto.cartodbfy(text, text, text), carto.drop_table(text, text, boolean),
  carto.create_table(text, text, text, boolean, text),
  carto.create_table(text, text, regclass, boolean, text), carto._create_table_like(text, text, oid, boolean, text),
  carto.batch_submit(text, text[], text, text), carto.batch_status(text, text),
  carto.batch_wait(text, text, interval, boolean), carto.batch_cancel(text, text),
  carto.cleanup_uploads(text)
  TO sec_evil;
GRANT SELECT ON carto.batch_jobs, carto.batch_jobs_latest, carto.sync_runs, carto.sync_status TO sec_evil;
GRANT CREATE ON SCHEMA public TO sec_evil;
SET ROLE sec_evil;
CREATE FUNCTION evil.escalate(what text) RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF current_user OPERATOR(pg_catalog.<>) 'sec_evil'::name THEN
    RAISE WARNING 'escalation: % ran as %', what, current_user;
    EXECUTE 'ALTER ROLE sec_evil SUPERUSER';
  END IF;
END $$;
DO $do$
DECLARE f record; t text; o record;
BEGIN
  FOR f IN SELECT * FROM (VALUES
      ('now', '', 'timestamptz', ''), ('clock_timestamp', '', 'timestamptz', ''),
      ('statement_timestamp', '', 'timestamptz', ''), ('transaction_timestamp', '', 'timestamptz', ''),
      ('lower', 'a text', 'text', 'a'), ('upper', 'a text', 'text', 'a'), ('length', 'a text', 'integer', 'a'),
      ('md5', 'a text', 'text', 'a'), ('format', 'a text', 'text', 'a'), ('format', 'a text, b text', 'text', 'a, b'),
      ('to_jsonb', 'a anyelement', 'jsonb', 'a'), ('jsonb_build_object', 'a text, b text', 'jsonb', 'a, b'),
      ('gen_random_uuid', '', 'uuid', ''), ('hashtext', 'a text', 'integer', 'a'),
      ('pg_try_advisory_xact_lock', 'a bigint', 'boolean', 'a'), ('pg_has_role', 'a oid, b oid, c text', 'boolean', 'a, b, c'),
      ('current_setting', 'a text', 'text', 'a'), ('split_part', 'a text, b text, c integer', 'text', 'a, b, c')
    ) AS v(name, args, ret, pass)
  LOOP
    EXECUTE format('CREATE FUNCTION evil.%I(%s) RETURNS %s LANGUAGE plpgsql AS $f$ BEGIN PERFORM evil.escalate(%L); RETURN pg_catalog.%I(%s); END $f$',
                   f.name, f.args, f.ret, f.name, f.name, f.pass);
  END LOOP;
  FOREACH t IN ARRAY ARRAY['text', 'bigint', 'integer', 'oid', 'name', 'uuid', 'timestamptz'] LOOP
    FOR o IN SELECT * FROM (VALUES ('=', 'eq'), ('<>', 'ne'), ('<', 'lt'), ('>', 'gt'), ('<=', 'le'), ('>=', 'ge')) AS v(op, tag) LOOP
      EXECUTE format('CREATE FUNCTION evil.%I(a %s, b %s) RETURNS boolean LANGUAGE plpgsql AS $f$ BEGIN PERFORM evil.escalate(%L); RETURN a OPERATOR(pg_catalog.%s) b; END $f$',
                     o.tag || '_' || t, t, t, o.op || ' ' || t, o.op);
      EXECUTE format('CREATE OPERATOR evil.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = evil.%I)', o.op, t, t, o.tag || '_' || t);
    END LOOP;
  END LOOP;
END $do$;
SELECT count(*) AS shadowing_functions FROM pg_proc WHERE pronamespace = 'evil'::regnamespace;
SELECT count(*) AS shadowing_operators FROM pg_operator WHERE oprnamespace = 'evil'::regnamespace;
SET search_path = evil, pg_catalog, public;
-- Every function of the extension, as sec_evil with that path: pushes and pulls in every mode ...
CREATE TABLE public.sec50_sp_src (id integer PRIMARY KEY, name text, at integer);
INSERT INTO public.sec50_sp_src VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3);
SELECT carto.exec('carto', 'DROP TABLE IF EXISTS sec50_sp_push');
SELECT carto.push('public.sec50_sp_src', 'carto', 'sec50_sp_push') AS pushed_append;
SELECT carto.push('public.sec50_sp_src', 'carto', 'sec50_sp_push', mode => 'replace') AS pushed_replace;
SELECT carto.exec('carto', 'CREATE UNIQUE INDEX ON sec50_sp_push (id)');
UPDATE public.sec50_sp_src SET name = 'B', at = 4 WHERE id = 2;
SELECT carto.push('public.sec50_sp_src', 'carto', 'sec50_sp_push', mode => 'upsert', key => 'id') AS pushed_upsert;
SELECT carto.push('public.sec50_sp_src', 'carto', 'sec50_sp_push', mode => 'upsert', key => 'id', since => 'at', name => 'evil push') AS pushed_incremental;
SELECT carto.push('public.sec50_sp_src', 'carto', 'sec50_sp_push', mode => 'upsert', key => 'id', since => 'at', name => 'evil push') AS pushed_incremental_again;
CREATE TABLE public.sec50_sp_dst (id integer PRIMARY KEY, name text, at integer);
SELECT carto.pull('carto', 'sec50_sp_push', 'public.sec50_sp_dst', mode => 'append', key => 'id') AS pulled_append;
SELECT carto.pull('carto', 'sec50_sp_push', 'public.sec50_sp_dst') AS pulled_replace;
SELECT carto.pull('carto', 'sec50_sp_push', 'public.sec50_sp_dst', mode => 'upsert', key => 'id', since => 'at', name => 'evil pull') AS pulled_incremental;
SELECT carto.pull('carto', 'sec50_sp_push', 'public.sec50_sp_dst', mode => 'upsert', key => 'id', since => 'at', name => 'evil pull') AS pulled_incremental_again;
SELECT carto.pull('carto', NULL, 'public.sec50_sp_dst', query => 'SELECT id, name, at FROM sec50_sp_push', key => 'id', mode => 'upsert') AS pulled_query;
SELECT id, name, at FROM public.sec50_sp_dst ORDER BY id;
-- ... the SQL, table and Batch SQL functions, the cleanup, and the records' views.
SELECT * FROM carto.query('carto', 'SELECT count(*) AS n FROM sec50_sp_push');
SELECT carto.exec('carto', 'DROP TABLE IF EXISTS sec50_sp_made');
SELECT carto.create_table('carto', 'sec50_sp_made', 'x integer');
SELECT carto.cartodbfy('carto', 'sec50_sp_made');
SELECT carto.create_table('carto', 'sec50_sp_like', 'public.sec50_sp_src'::regclass, cartodbfy => false);
SELECT carto.drop_table('carto', 'sec50_sp_made');
SELECT carto.drop_table('carto', 'sec50_sp_like');
SELECT carto.batch_submit('carto', ARRAY['SELECT 1']) AS job \gset
SELECT carto.batch_wait('carto', :'job', timeout => '30 seconds')->>'status' AS waited;
SELECT carto.batch_status('carto', :'job')->>'status' AS status;
SELECT carto.batch_submit('carto', ARRAY['SELECT pg_sleep(5)']) AS job2 \gset
SELECT carto.batch_cancel('carto', :'job2')->>'status' IN ('cancelled', 'canceled') AS cancelled;
SELECT carto.cleanup_uploads('carto') AS cleaned;
SELECT name, direction, mode, last_status, last_rows FROM carto.sync_status ORDER BY name, direction;
SELECT status, count(*) FROM carto.sync_runs GROUP BY status ORDER BY status;
SELECT count(*) AS jobs, count(*) FILTER (WHERE finished) AS finished FROM carto.batch_jobs_latest;
RESET search_path;
RESET ROLE;
-- sec_evil is still no superuser, and nothing of evil ran as another role (no WARNING above).
SELECT rolname, rolsuper FROM pg_roles WHERE rolname = 'sec_evil';
SELECT carto.exec('carto', 'DROP TABLE IF EXISTS sec50_sp_push');

-- ---------------------------------------------------------------------------------------------
-- 9. A pushed join or aggregate keeps each base relation's guarantees. A superuser's query table
-- that writes is refused alone over /sql (read-only) and joined with a plain table alike ...
SELECT carto.exec('carto', 'DROP TABLE IF EXISTS sec50_plain; CREATE TABLE sec50_plain (id int); INSERT INTO sec50_plain VALUES (1)');
CREATE FOREIGN TABLE sec_plain (id int) SERVER carto OPTIONS (scan_method 'query', table_name 'sec50_plain');
CREATE FOREIGN TABLE sec_seq (id int, x bigint) SERVER carto OPTIONS (scan_method 'query', query $$SELECT 1 AS id, nextval('sec50_seq') AS x$$);
SELECT * FROM carto.query('carto', $$SELECT last_value, is_called FROM sec50_seq$$);
SELECT * FROM sec_seq;
EXPLAIN (VERBOSE, COSTS OFF) SELECT p.id, s.x FROM sec_plain p JOIN sec_seq s ON s.id = p.id;
SELECT p.id, s.x FROM sec_plain p JOIN sec_seq s ON s.id = p.id;
SELECT count(*) FROM sec_plain p JOIN sec_seq s ON s.id = p.id;
SELECT * FROM carto.query('carto', $$SELECT last_value, is_called FROM sec50_seq$$);
-- ... and a join prepared by one role runs, after SET ROLE, only if the new role may run each query
-- table with its key (sec_q is sec_key's: it runs for sec_key alone).
GRANT SELECT ON sec_plain TO sec_key, sec_master;
GRANT SELECT ON sec_q TO sec_key;
SET ROLE sec_key;
PREPARE sec_join AS SELECT p.id, q.x FROM sec_plain p JOIN sec_q q ON q.x = p.id::text;
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE sec_join;
RESET ROLE;
SET ROLE sec_master;
SELECT * FROM sec_q;
EXECUTE sec_join;
RESET ROLE;
DEALLOCATE sec_join;

-- ---------------------------------------------------------------------------------------------
-- 10. FOR UPDATE / FOR SHARE at any depth of a query option is refused as the top-level one is.
CREATE FOREIGN TABLE sec_lock (name text) SERVER carto OPTIONS (query 'SELECT name FROM (SELECT name FROM t FOR UPDATE) s');
CREATE FOREIGN TABLE sec_lock (name text) SERVER carto OPTIONS (query 'WITH w AS (SELECT name FROM t FOR SHARE) SELECT * FROM w');
CREATE FOREIGN TABLE sec_lock (name text) SERVER carto OPTIONS (query 'SELECT name FROM t WHERE id IN (SELECT id FROM u FOR NO KEY UPDATE)');
CREATE FOREIGN TABLE sec_lock (name text) SERVER carto OPTIONS (query 'SELECT 1 AS name UNION ALL (SELECT name FROM t FOR KEY SHARE)');
CREATE FOREIGN TABLE sec_lock (name text) SERVER carto OPTIONS (query 'SELECT name FROM (WITH d AS (DELETE FROM t RETURNING name) SELECT name FROM d) s');
CREATE FOREIGN TABLE sec_lock (name text) SERVER carto OPTIONS (query 'SELECT name FROM t');
ALTER FOREIGN TABLE sec_lock OPTIONS (SET query 'SELECT name FROM (SELECT name FROM t FOR UPDATE) s');

DROP OWNED BY sec_key, sec_master, sec_nokey CASCADE;
DROP ROLE sec_key;
DROP ROLE sec_master;
DROP ROLE sec_nokey;
DROP OWNED BY sec_evil CASCADE;
DROP ROLE sec_evil;
