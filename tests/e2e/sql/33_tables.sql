-- 33_tables: carto.cartodbfy, carto.create_table (both forms), carto.drop_table — single user and organisation member.
CREATE EXTENSION postgis;
CREATE EXTENSION carto_fdw;
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
\set alice_url :sim_url '/user/alice'
CREATE SERVER carto_alice FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'alice_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto_alice OPTIONS (api_key :'alice_key');
SELECT p.oid::regprocedure AS function, p.provolatile, p.proparallel, p.proisstrict,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute
  FROM pg_proc p WHERE p.pronamespace = 'carto'::regnamespace
   AND p.proname IN ('cartodbfy', 'create_table', '_create_table_like', 'drop_table') ORDER BY 1::text;
SET client_min_messages = warning;
SELECT carto.exec('carto', 'DROP TABLE IF EXISTS t33_raw, t33_ready, t33_new, t33_local, t33_plain, t33_like, t33_bad');
SELECT carto.exec('carto_alice', 'DROP TABLE IF EXISTS t33_a, t33_anew');
RESET client_min_messages;

-- A table without CARTO's columns: cartodbfy must rewrite it (new OID on CARTO's side, and a NOTICE).
SELECT carto.exec('carto', 'CREATE TABLE t33_raw (id integer PRIMARY KEY, name text); INSERT INTO t33_raw VALUES (7, ''seven'')');
SELECT q->>'oid' AS oid FROM carto.query('carto', 'SELECT ''t33_raw''::regclass::oid AS oid') q \gset raw_before_
SELECT carto.cartodbfy('carto', 't33_raw');
SELECT q->>'oid' <> :'raw_before_oid' AS rewritten FROM carto.query('carto', 'SELECT ''t33_raw''::regclass::oid AS oid') q;
SELECT q->>'column_name' AS column_name, q->>'type' AS type FROM carto.query('carto',
  'SELECT attname AS column_name, format_type(atttypid, atttypmod) AS type FROM pg_attribute WHERE attrelid = ''t33_raw''::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum') q;
SELECT * FROM carto.query('carto', 'SELECT cartodb_id, name FROM t33_raw');
-- Cartodbfy is idempotent: the second time nothing is rewritten (no NOTICE, same OID).
SELECT q->>'oid' AS oid FROM carto.query('carto', 'SELECT ''t33_raw''::regclass::oid AS oid') q \gset raw_after_
SELECT carto.cartodbfy('carto', 't33_raw');
SELECT q->>'oid' = :'raw_after_oid' AS same_table FROM carto.query('carto', 'SELECT ''t33_raw''::regclass::oid AS oid') q;

-- A table with cartodb_id (primary key with a sequence), the_geom and the_geom_webmercator up front: no rewrite.
SELECT carto.exec('carto', 'CREATE TABLE t33_ready (cartodb_id bigserial PRIMARY KEY, the_geom geometry(Geometry,4326), the_geom_webmercator geometry(Geometry,3857), v text)');
SELECT q->>'oid' AS oid FROM carto.query('carto', 'SELECT ''t33_ready''::regclass::oid AS oid') q \gset ready_
SELECT carto.cartodbfy('carto', 't33_ready', 'public');
SELECT q->>'oid' = :'ready_oid' AS same_table FROM carto.query('carto', 'SELECT ''t33_ready''::regclass::oid AS oid') q;

-- create_table: the three columns up front, then cartodbfy in the same request (no rewrite, no NOTICE).
SELECT carto.create_table('carto', 't33_new', 'name text NOT NULL, pop integer');
SELECT q->>'column_name' AS column_name, q->>'type' AS type, q->>'not_null' AS not_null FROM carto.query('carto',
  'SELECT attname AS column_name, format_type(atttypid, atttypmod) AS type, attnotnull AS not_null FROM pg_attribute WHERE attrelid = ''t33_new''::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum') q;
SELECT q->>'tgname' AS cartodb_triggers FROM carto.query('carto',
  'SELECT tgname FROM pg_trigger WHERE tgrelid = ''t33_new''::regclass AND NOT tgisinternal ORDER BY 1') q;
SELECT carto.exec('carto', $$INSERT INTO t33_new (name, pop, the_geom) VALUES ('a', 1, CDB_LatLng(41.38, 2.17))$$);
SELECT q->>'cartodb_id' AS cartodb_id, q->>'merc' AS the_geom_webmercator FROM carto.query('carto',
  'SELECT cartodb_id, ST_AsText(ST_SnapToGrid(the_geom_webmercator, 1)) AS merc FROM t33_new') q;
-- ... and the matching local foreign table (IMPORT FOREIGN SCHEMA of just that table).
SELECT carto.create_table('carto', 't33_local', 'label varchar(10), amount numeric(8,2)', local_schema => 'public');
SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute WHERE attrelid = 't33_local'::regclass AND attnum > 0 ORDER BY attnum;
SELECT carto.exec('carto', $$INSERT INTO t33_local (label, amount) VALUES ('x', 1.25)$$);
SELECT cartodb_id, label, amount, the_geom FROM t33_local;
-- Without cartodbfy: the plain table only.
SELECT carto.create_table('carto', 't33_plain', '', cartodbfy => false);
SELECT q->>'n' AS triggers FROM carto.query('carto', 'SELECT count(*) AS n FROM pg_trigger WHERE tgrelid = ''t33_plain''::regclass AND NOT tgisinternal') q;
-- The definition taken from a local table (its cartodb_id / the_geom columns are replaced by CARTO's).
CREATE TABLE local_def (cartodb_id int, the_geom geometry(Point,4326), name varchar(10) NOT NULL, price numeric(8,2), tags text[], at timestamptz);
SELECT carto.create_table('carto', 't33_like', 'local_def'::regclass);
SELECT q->>'column_name' AS column_name, q->>'type' AS type, q->>'not_null' AS not_null FROM carto.query('carto',
  'SELECT attname AS column_name, format_type(atttypid, atttypmod) AS type, attnotnull AS not_null FROM pg_attribute WHERE attrelid = ''t33_like''::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum') q;

-- Failures leave nothing behind on CARTO.
SELECT carto.create_table('carto', 't33_bad', 'name nosuchtype');
SELECT carto.create_table('carto', 't33_bad', 'name text', local_schema => 'no_such_schema');
CREATE TABLE t33_taken (x int);
SELECT carto.create_table('carto', 't33_taken', 'x int', local_schema => 'public');
SELECT q->>'t' IS NULL AS nothing_created FROM carto.query('carto', 'SELECT to_regclass(''t33_bad'')::text AS t') q;
SELECT q->>'t' IS NULL AS nothing_created FROM carto.query('carto', 'SELECT to_regclass(''t33_taken'')::text AS t') q;
SELECT carto.create_table('carto', 't33_new', 'x int');
SELECT carto.cartodbfy('carto', 't33_nope');
SELECT carto.cartodbfy('carto', 't33_new', 'no_such_schema');
-- NULL arguments.
SELECT carto.cartodbfy(NULL, 't33_new');
SELECT carto.cartodbfy('carto', NULL);
SELECT carto.create_table('carto', 't33_x', NULL);
SELECT carto.drop_table('carto', NULL);
-- 401.
CREATE SERVER carto_badkey FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto_badkey OPTIONS (api_key 'not-a-key');
SELECT carto.cartodbfy('carto_badkey', 't33_new');

-- An organisation member (alice): her schema is "alice", and CDB_CartodbfyTable needs it.
SELECT carto.exec('carto_alice', 'CREATE TABLE t33_a (id integer PRIMARY KEY, v text)');
SELECT * FROM carto.query('carto_alice', 'SELECT cartodb.CDB_CartodbfyTable(''t33_a''::regclass)');
\! curl -sS -o /dev/null -X DELETE "$CARTO_SIM_ADMIN/log"
SELECT carto.cartodbfy('carto_alice', 't33_a');
SELECT carto.cartodbfy('carto_alice', 't33_a', 'alice');
SELECT carto.create_table('carto_alice', 't33_anew', 'v text', local_schema => 'public');
-- The schema was asked once (SELECT current_schema()), then one request per call (create_table: two, with the import's catalogue).
\! curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c 'import json,sys; l=json.load(sys.stdin); print("requests:", len(l), [e["status"] for e in l])'
SELECT q->>'nspname' AS schema, q->>'relname' AS table FROM carto.query('carto_alice',
  'SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname IN (''t33_a'', ''t33_anew'') ORDER BY 2') q;
SELECT ftoptions FROM pg_foreign_table WHERE ftrelid = 'public.t33_anew'::regclass;
SELECT count(*) FROM t33_anew;

-- drop_table.
SELECT carto.drop_table('carto', 't33_plain');
SELECT carto.drop_table('carto', 't33_plain');
SELECT carto.drop_table('carto', 't33_plain', if_exists => true);
SELECT carto.drop_table('carto_alice', 't33_a');
SELECT carto.drop_table('carto_alice', 't33_anew');
SET client_min_messages = warning;
SELECT carto.exec('carto', 'DROP TABLE IF EXISTS t33_raw, t33_ready, t33_new, t33_local, t33_like');
