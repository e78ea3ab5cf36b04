-- 13_joins: joins of local and CARTO tables (hash, merge, parameterized nested loop), a self-join of
-- two foreign tables, two foreign tables read by one statement on a FREE plan account (copyto allows
-- 1 request a minute: the second table falls back to /sql, no 429 reaches the user), rescans,
-- cursors, prepared statements with parameters. Every result equals the same query on local copies.
CREATE EXTENSION postgis;
CREATE EXTENSION carto_fdw;
\set SHOW_CONTEXT never
\! curl -sS -u "demo:$CARTO_SIM_API_KEY" "$CARTO_SIM_BASE_URL/api/v2/sql" --data-urlencode q@data/13_joins.sql | sed -E 's/"time":[0-9.e+-]+/"time":T/'; echo
\! curl -sS -u "demo:$CARTO_SIM_API_KEY" "$CARTO_SIM_BASE_URL/api/v2/sql" --data-urlencode q@data/12_pushdown.sql | sed -E 's/"time":[0-9.e+-]+/"time":T/; s/,"notices":\[[^]]*\]//'; echo
CREATE SCHEMA loc;
SET search_path = loc, public;
\i data/13_joins.sql
\i data/12_pushdown.sql
RESET search_path;
CREATE TABLE loc.ten (id int PRIMARY KEY, label text);
INSERT INTO loc.ten SELECT g * 997 % 100000, 'ten ' || g FROM generate_series(1, 10) g;
ANALYZE loc.ten;

CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url', extensions 'postgis');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
CREATE FOREIGN TABLE big (cartodb_id int, the_geom geometry(Point, 4326), k int, name text)
  SERVER carto OPTIONS (table_name 't13_big');
CREATE FOREIGN TABLE ft12 (cartodb_id int, the_geom geometry(Point, 4326), i int, n numeric, f float8,
  t text, d date, ts timestamptz, b bool, arr int[]) SERVER carto OPTIONS (table_name 't12');

-- Compares a query on the foreign tables with the same query on the local copies ({big} / {t12}).
CREATE FUNCTION pg_temp.same(q text) RETURNS TABLE (rows int, same bool) LANGUAGE plpgsql AS $$
DECLARE r record; a text[] := '{}'; b text[] := '{}';
BEGIN
  FOR r IN EXECUTE replace(replace(q, '{big}', 'big'), '{t12}', 'ft12') LOOP a := a || r::text; END LOOP;
  FOR r IN EXECUTE replace(replace(q, '{big}', 'loc.t13_big'), '{t12}', 'loc.t12') LOOP b := b || r::text; END LOOP;
  IF q !~* 'order by' THEN
    a := ARRAY(SELECT x FROM unnest(a) x ORDER BY x);
    b := ARRAY(SELECT x FROM unnest(b) x ORDER BY x);
  END IF;
  rows := coalesce(array_length(a, 1), 0); same := a = b; RETURN NEXT;
END $$;

-- 1. Parameterized nested loop: 10 local rows × 100k remote rows on cartodb_id. CARTO's statistics
-- give the size; the plan looks up each outer row through /sql with the outer value as a parameter.
EXPLAIN (VERBOSE, COSTS OFF)
SELECT t.id, t.label, b.name FROM loc.ten t JOIN big b ON b.cartodb_id = t.id;
SELECT t.id, t.label, b.name, b.k FROM loc.ten t JOIN big b ON b.cartodb_id = t.id ORDER BY t.id;
SELECT * FROM pg_temp.same($$SELECT t.id, b.* FROM loc.ten t JOIN {big} b ON b.cartodb_id = t.id$$);
-- Ten requests to /sql, none to /copyto:
\! curl -sS -X DELETE "$CARTO_SIM_ADMIN/log" >/dev/null
SELECT count(*) FROM loc.ten t JOIN big b ON b.cartodb_id = t.id;
\! curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c 'import json,sys,collections; c=collections.Counter((e["group"], e["status"]) for e in json.load(sys.stdin)); print(sorted(c.items()))'
-- With an extra join clause and a remote-only filter.
EXPLAIN (VERBOSE, COSTS OFF)
SELECT t.id, b.name FROM loc.ten t JOIN big b ON b.cartodb_id = t.id AND b.k = t.id % 1000 WHERE b.name LIKE 'row%';
SELECT * FROM pg_temp.same($$SELECT t.id, b.name FROM loc.ten t JOIN {big} b ON b.cartodb_id = t.id AND b.k = t.id % 1000 WHERE b.name LIKE 'row%'$$);

-- 2. Hash join: a local table × a remote one read once.
SET enable_nestloop = off;
SET enable_mergejoin = off;
EXPLAIN (VERBOSE, COSTS OFF)
SELECT t.id, f.t FROM loc.ten t JOIN ft12 f ON f.i = t.id % 50;
SELECT * FROM pg_temp.same($$SELECT t.id, f.t FROM loc.ten t JOIN {t12} f ON f.i = t.id % 50$$);
SELECT * FROM pg_temp.same($$SELECT l.cartodb_id, f.t FROM loc.t12 l JOIN {t12} f ON f.i = l.i AND f.cartodb_id <> l.cartodb_id$$);
-- 3. Merge join.
SET enable_hashjoin = off;
SET enable_mergejoin = on;
EXPLAIN (VERBOSE, COSTS OFF)
SELECT l.cartodb_id, f.t FROM loc.t12 l JOIN ft12 f ON f.cartodb_id = l.cartodb_id WHERE l.i > 0;
SELECT * FROM pg_temp.same($$SELECT l.cartodb_id, f.t FROM loc.t12 l JOIN {t12} f ON f.cartodb_id = l.cartodb_id WHERE l.i > 0$$);
-- 4. Self-join of two foreign tables: one remote statement, the join computed by CARTO (17_pushdown_agg_join).
EXPLAIN (VERBOSE, COSTS OFF)
SELECT a.cartodb_id, b.cartodb_id FROM ft12 a JOIN ft12 b ON a.i = b.cartodb_id WHERE a.b;
SELECT * FROM pg_temp.same($$SELECT a.cartodb_id, b.cartodb_id, b.t FROM {t12} a JOIN {t12} b ON a.i = b.cartodb_id WHERE a.b$$);
RESET enable_hashjoin;
RESET enable_mergejoin;
RESET enable_nestloop;

-- 5. Rescans: the inner side of a nested loop without parameters is read again for each outer row
-- (after the first read, through /sql).
SET enable_hashjoin = off;
SET enable_mergejoin = off;
SET enable_material = off;
-- CARTO's estimate of t12 is its 400 rows: cheaper /sql requests keep ft12 on the inner side.
ALTER SERVER carto OPTIONS (ADD fdw_startup_cost '10');
EXPLAIN (VERBOSE, COSTS OFF)
SELECT t.id, f.cartodb_id FROM loc.ten t JOIN ft12 f ON f.i < t.id % 7 - 45;
SELECT * FROM pg_temp.same($$SELECT t.id, f.cartodb_id FROM loc.ten t JOIN {t12} f ON f.i < t.id % 7 - 45$$);
ALTER FOREIGN TABLE ft12 OPTIONS (ADD scan_method 'copy');
\! curl -sS -X DELETE "$CARTO_SIM_ADMIN/log" >/dev/null
SELECT * FROM pg_temp.same($$SELECT t.id, f.cartodb_id FROM loc.ten t JOIN {t12} f ON f.i < t.id % 7 - 45$$);
-- One /copyto for the first scan, /sql for the nine rescans (and two for CARTO's catalogue, looked up again after
-- the ALTER above: the row count and column types, then its planner's estimate of the never-analyzed t12).
\! curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c 'import json,sys,collections; c=collections.Counter((e["group"], e["status"]) for e in json.load(sys.stdin)); print(sorted(c.items()))'
ALTER SERVER carto OPTIONS (DROP fdw_startup_cost);
RESET enable_hashjoin;
RESET enable_mergejoin;
RESET enable_material;
-- A correlated subquery: the scan is restarted for every outer row with a new parameter value.
EXPLAIN (VERBOSE, COSTS OFF)
SELECT t.id, (SELECT count(*) FROM ft12 f WHERE f.i = t.id % 50) FROM loc.ten t;
SELECT * FROM pg_temp.same($$SELECT t.id, (SELECT count(*) FROM {t12} f WHERE f.i = t.id % 50) FROM loc.ten t$$);
ALTER FOREIGN TABLE ft12 OPTIONS (DROP scan_method);

-- 6. Cursors: FETCH in steps, through both transports, and a cursor closed early.
BEGIN;
DECLARE c CURSOR FOR SELECT cartodb_id, t FROM ft12 WHERE cartodb_id <= 30 ORDER BY cartodb_id;
FETCH 3 FROM c;
FETCH 5 FROM c;
MOVE 10 IN c;
FETCH 2 FROM c;
FETCH ALL FROM c;
FETCH 1 FROM c;
CLOSE c;
COMMIT;
ALTER FOREIGN TABLE big OPTIONS (ADD scan_method 'copy');
BEGIN;
DECLARE c2 CURSOR FOR SELECT cartodb_id, name FROM big;
FETCH 2 FROM c2;
FETCH 3 FROM c2;
CLOSE c2;
DECLARE c3 NO SCROLL CURSOR FOR SELECT cartodb_id, k FROM big WHERE k = 7;
FETCH 4 FROM c3;
COMMIT;
ALTER FOREIGN TABLE big OPTIONS (DROP scan_method);
BEGIN;
DECLARE c4 CURSOR FOR SELECT cartodb_id, name FROM big WHERE cartodb_id < 20;
FETCH 4 FROM c4;
FETCH 4 FROM c4;
COMMIT;

-- 7. Prepared statements with parameters: custom plans, then the generic plan ($1 in the remote SQL).
PREPARE p(int, text) AS SELECT cartodb_id, i, t FROM ft12 WHERE i = $1 OR t = $2 ORDER BY cartodb_id;
EXECUTE p(10, 'O''Brien');
EXECUTE p(-50, E'back\\slash');
EXECUTE p(3, '😀 emoji');
EXECUTE p(NULL, E'a''b\\c"d');
EXECUTE p(11, 'nothing');
EXECUTE p(10, 'quote "dq"');
SET plan_cache_mode = force_generic_plan;
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE p(10, 'x');
EXECUTE p(10, 'O''Brien');
EXECUTE p(-50, E'back\\slash');
-- A date parameter under another DateStyle is sent in ISO form.
SET DateStyle = 'SQL, DMY';
PREPARE pd(date) AS SELECT cartodb_id, d FROM ft12 WHERE d = $1;
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE pd('03/02/2026');
EXECUTE pd('03/02/2026');
EXECUTE pd('01/03/2026');
RESET DateStyle;
RESET plan_cache_mode;
PREPARE pb(int) AS SELECT t.id, b.name FROM loc.ten t JOIN big b ON b.cartodb_id = t.id + $1 ORDER BY t.id;
EXECUTE pb(1);
EXECUTE pb(2);

-- 8. A FREE plan account (copyto: 1 request a minute): a statement reading two foreign tables
-- through copy gets one /copyto; the other is refused (429 with Retry-After) and read through /sql.
\! curl -sS -X POST "$CARTO_SIM_ADMIN/users/bob" -d '{"plan": "free"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["plan"])'
\! curl -sS -X POST "$CARTO_SIM_ADMIN/rate_limits/reset" >/dev/null
\! curl -sS -u "bob:$CARTO_SIM_MASTER_KEY_BOB" "$CARTO_SIM_URL/user/bob/api/v2/sql" --data-urlencode "q=DROP TABLE IF EXISTS t13_a; DROP TABLE IF EXISTS t13_b; CREATE TABLE t13_a AS SELECT g AS cartodb_id, 'a' || g AS v FROM generate_series(1, 50) g; CREATE TABLE t13_b AS SELECT g AS cartodb_id, g % 5 AS a_id FROM generate_series(1, 30) g" | sed -E 's/"time":[0-9.e+-]+/"time":T/'; echo
\set bob_url :sim_url '/user/bob'
CREATE SERVER bob FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'bob_url', scan_method 'copy');
CREATE USER MAPPING FOR CURRENT_USER SERVER bob OPTIONS (api_key :'bob_key');
CREATE FOREIGN TABLE t13_a (cartodb_id int, v text) SERVER bob OPTIONS (schema_name 'bob');
CREATE FOREIGN TABLE t13_b (cartodb_id int, a_id int) SERVER bob OPTIONS (schema_name 'bob');
\! curl -sS -X DELETE "$CARTO_SIM_ADMIN/log" >/dev/null
CREATE TEMP TABLE clock AS SELECT clock_timestamp() AS t0;
-- (OFFSET 0 keeps the two reads apart: the join of two CARTO tables would otherwise be one remote statement.)
SELECT count(*), count(DISTINCT a.cartodb_id), min(a.v), max(b.cartodb_id)
  FROM (SELECT * FROM t13_a OFFSET 0) a JOIN (SELECT * FROM t13_b OFFSET 0) b ON b.a_id = a.cartodb_id;
-- ... without waiting a minute for CARTO's rate limit to refill:
SELECT clock_timestamp() - t0 < interval '10 seconds' AS fast FROM clock;
-- Requests: planning asked each table's size and column types (/sql); one /copyto went through, the other was
-- refused with 429 + Retry-After and that table was read through /sql at once.
\! curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c 'import json,sys,collections; c=collections.Counter((e["group"], e["status"]) for e in json.load(sys.stdin) if e["user"] == "bob"); print(sorted(c.items()))'
\! curl -sS -X POST "$CARTO_SIM_ADMIN/users/bob" -d '{"plan": "enterprise"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["plan"])'
