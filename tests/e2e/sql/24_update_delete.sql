-- 24_update_delete: UPDATE and DELETE shipped whole as one /sql statement when every part can run on CARTO
-- (direct modify), else row by row addressed by the rowid column in batched /sql requests; TRUNCATE;
-- the options that forbid them; RETURNING refused before anything is sent.
CREATE EXTENSION postgis;
CREATE EXTENSION carto_fdw;
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url', extensions 'postgis');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
\! curl -sS -u "$CARTO_SIM_USER:$CARTO_SIM_API_KEY" --data-urlencode "q=DROP TABLE IF EXISTS t24; CREATE TABLE t24 (cartodb_id serial PRIMARY KEY, the_geom geometry(Geometry,4326), the_geom_webmercator geometry(Geometry,3857), name text, n int); SELECT cdb_cartodbfytable('t24')" "$CARTO_SIM_BASE_URL/api/v2/sql" | grep -o '"total_rows":[0-9]*'; echo
CREATE FOREIGN TABLE t24 (cartodb_id int, the_geom geometry(Geometry,4326), the_geom_webmercator geometry(Geometry,3857),
  name text, n int) SERVER carto OPTIONS (scan_method 'query');
INSERT INTO t24 (cartodb_id, name, n) SELECT i, 'row ' || i, i FROM generate_series(1, 3000) i;
\! curl -sS -X DELETE "$CARTO_SIM_ADMIN/log" >/dev/null

-- 1. Direct: the whole statement is one remote UPDATE/DELETE; the row count comes from CARTO.
EXPLAIN (VERBOSE, COSTS OFF) UPDATE t24 SET n = n + 1, name = upper(name) WHERE n > 2900;
\echo updated :ROW_COUNT
UPDATE t24 SET n = n + 1, name = upper(name) WHERE n > 2900;
\echo updated :ROW_COUNT
EXPLAIN (VERBOSE, COSTS OFF) DELETE FROM t24 WHERE n <= 100;
\echo deleted :ROW_COUNT
DELETE FROM t24 WHERE n <= 100;
\echo deleted :ROW_COUNT
UPDATE t24 SET the_geom = ST_SetSRID(ST_MakePoint(n, 0), 4326) WHERE cartodb_id = 200;
SELECT cartodb_id, name, n, ST_AsText(the_geom) FROM t24
  WHERE cartodb_id IN (200, 2999, 3000) ORDER BY 1;
SELECT count(*), sum(n) FROM t24;
-- A prepared statement's parameters are shipped as literals.
PREPARE upd(int) AS UPDATE t24 SET name = 'prepared' WHERE cartodb_id = $1;
EXECUTE upd(150);
SELECT name FROM t24 WHERE cartodb_id = 150;

-- 2. Row by row: a condition or a new value CARTO cannot compute (a volatile function, a local table).
CREATE TABLE local_ids (id int);
INSERT INTO local_ids SELECT generate_series(101, 2500, 2);
EXPLAIN (VERBOSE, COSTS OFF) UPDATE t24 SET n = -n WHERE cartodb_id IN (SELECT id FROM local_ids);
\! curl -sS -X DELETE "$CARTO_SIM_ADMIN/log" >/dev/null
UPDATE t24 SET n = -n WHERE cartodb_id IN (SELECT id FROM local_ids);
\echo updated :ROW_COUNT
-- 1200 rows in batches of 1000: two UPDATE requests (the only big ones; the scan's reads are small).
\! curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c 'import json,sys; print("UPDATE requests:", sum(1 for e in json.load(sys.stdin) if e["group"] == "query" and e["bytes_in"] > 1500))'
SELECT count(*) FILTER (WHERE n < 0) AS negated, count(*) FROM t24;
UPDATE t24 SET name = name || ' @' || (random() >= 0)::text WHERE cartodb_id BETWEEN 300 AND 302;
SELECT cartodb_id, name FROM t24 WHERE cartodb_id BETWEEN 300 AND 302 ORDER BY 1;
DELETE FROM t24 WHERE cartodb_id IN (SELECT id FROM local_ids WHERE id > 2000);
SELECT count(*) FROM t24;
-- Changing the rowid itself (row-wise: every row is sent at the end of the statement).
UPDATE t24 SET cartodb_id = cartodb_id + 10000 WHERE cartodb_id IN (SELECT id FROM local_ids WHERE id BETWEEN 101 AND 109);
SELECT cartodb_id, n FROM t24 WHERE cartodb_id > 10000 ORDER BY 1;

-- 3. RETURNING is refused before anything is sent; without a rowid column, row-wise is refused clearly.
UPDATE t24 SET n = 0 WHERE cartodb_id = 1000 RETURNING n;
DELETE FROM t24 WHERE cartodb_id = 1000 RETURNING *;
CREATE FOREIGN TABLE t24_noid (name text, n int) SERVER carto OPTIONS (table_name 't24');
UPDATE t24_noid SET n = 0 WHERE name = 'row 1000' AND random() >= 0;
-- A value known only at execution (an InitPlan's) still lets the statement ship whole.
UPDATE t24_noid SET n = 5 WHERE name = (SELECT 'row 1000');
SELECT n FROM t24 WHERE cartodb_id = 1000;
UPDATE t24_noid SET n = 7 WHERE name = 'row 1000';
SELECT n FROM t24 WHERE cartodb_id = 1000;

-- 4. updatable false (table, then server) forbids UPDATE and DELETE.
ALTER FOREIGN TABLE t24 OPTIONS (ADD updatable 'false');
UPDATE t24 SET n = 0;
DELETE FROM t24;
ALTER FOREIGN TABLE t24 OPTIONS (DROP updatable);
ALTER SERVER carto OPTIONS (ADD updatable 'false');
DELETE FROM t24;
ALTER SERVER carto OPTIONS (DROP updatable);

-- 5. TRUNCATE: shipped; truncatable false refuses; RESTART IDENTITY restarts CARTO's sequence.
ALTER FOREIGN TABLE t24 OPTIONS (ADD truncatable 'false');
TRUNCATE t24;
ALTER FOREIGN TABLE t24 OPTIONS (DROP truncatable);
ALTER SERVER carto OPTIONS (ADD truncatable 'false');
TRUNCATE t24;
ALTER SERVER carto OPTIONS (DROP truncatable);
TRUNCATE t24 RESTART IDENTITY;
SELECT count(*) FROM t24;
INSERT INTO t24 (name) VALUES ('after restart');
SELECT cartodb_id, name FROM t24;
-- A TRUNCATE in the transaction that inserted first finishes the pending upload (statement order is kept).
BEGIN;
INSERT INTO t24 (name) VALUES ('gone');
TRUNCATE t24;
INSERT INTO t24 (name) VALUES ('kept');
COMMIT;
SELECT name FROM t24;
-- Several tables in one TRUNCATE (one remote statement per server), and CASCADE passed on.
\! curl -sS -u "$CARTO_SIM_USER:$CARTO_SIM_API_KEY" --data-urlencode "q=DROP TABLE IF EXISTS t24b; CREATE TABLE t24b (cartodb_id serial PRIMARY KEY, name text); INSERT INTO t24b (name) VALUES ('b')" "$CARTO_SIM_BASE_URL/api/v2/sql" | grep -o '"total_rows":[0-9]*'; echo
CREATE FOREIGN TABLE t24b (cartodb_id int, name text) SERVER carto;
TRUNCATE t24, t24b CASCADE;
SELECT (SELECT count(*) FROM t24) AS t24_rows, (SELECT count(*) FROM t24b) AS t24b_rows;
