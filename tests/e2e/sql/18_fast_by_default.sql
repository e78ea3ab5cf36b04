-- 18_fast_by_default: the fast paths without knowing the internals (a server made as the README makes it).
-- CARTO's requests are counted from carto-sim's request log: `sql` is /api/v2/sql (catalogue lookups, pages,
-- pushed aggregates), `copyto` one COPY stream.
CREATE EXTENSION postgis;
CREATE EXTENSION carto_fdw;
-- The README's server: no extensions option, no tuning.
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
SELECT carto.exec('carto', 'DROP TABLE IF EXISTS t18_fresh, t18_types');
-- 300000 rows made by CREATE TABLE AS: never analyzed (reltuples -1), and autovacuum kept away so it stays so.
SELECT carto.exec('carto', $$CREATE TABLE t18_fresh WITH (autovacuum_enabled = false) AS
  SELECT g::bigint AS cartodb_id, ST_SetSRID(ST_MakePoint((g % 1000) / 10.0, (g / 1000) / 10.0), 4326) AS the_geom,
         'name ' || g AS name, (g % 97)::int AS k
    FROM generate_series(1, 300000) g$$);
SELECT * FROM carto.query('carto', $$SELECT reltuples FROM pg_class WHERE oid = 't18_fresh'::regclass$$);
CREATE FOREIGN TABLE fresh (cartodb_id bigint, the_geom geometry(Point, 4326), name text, k int)
  SERVER carto OPTIONS (table_name 't18_fresh');
\setenv PYLOG 'import json, sys, collections; c = collections.Counter(e["path"].rsplit("/", 1)[-1] for e in json.load(sys.stdin)); print("requests:", ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "none")'
-- A scan's endpoint, switch, requests and rows, from EXPLAIN ANALYZE.
CREATE FUNCTION scan(q text) RETURNS TABLE (endpoint text, switch text, requests bigint, actual_rows bigint)
LANGUAGE plpgsql AS $$
DECLARE j jsonb;
BEGIN
  EXECUTE 'EXPLAIN (ANALYZE, VERBOSE, FORMAT JSON) ' || q INTO j;
  RETURN QUERY SELECT x ->> 'CARTO endpoint', x ->> 'CARTO switch', (x ->> 'CARTO requests')::bigint,
                      (x ->> 'Actual Rows')::bigint
    FROM jsonb_path_query(j, 'strict $.** ? (@."Node Type" == "Foreign Scan")') x;
END $$;

-- 1. A never-analyzed table is as large as CARTO's planner says, not 1000 rows: one COPY stream. In all, one
-- request for CARTO's catalogue, one for its planner's estimate, one COPY.
\! curl -sS -X DELETE "$CARTO_SIM_ADMIN/log" >/dev/null
SELECT * FROM scan('SELECT cartodb_id, name FROM fresh');
\! curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c "$PYLOG"
EXPLAIN (VERBOSE, COSTS OFF) SELECT cartodb_id, name FROM fresh;
CREATE TEMP TABLE fresh_rows AS SELECT * FROM fresh;
SELECT count(*), count(DISTINCT cartodb_id), sum(cartodb_id), md5(string_agg(name || k, ',' ORDER BY cartodb_id))
  FROM fresh_rows;
SELECT count(*), count(DISTINCT g), sum(g), md5(string_agg('name ' || g || g % 97, ',' ORDER BY g))
  FROM generate_series(1, 300000) g;

-- 2. A spatial filter ships with the README's server (PostGIS is installed here, and CARTO always has it).
EXPLAIN (VERBOSE, COSTS OFF)
SELECT cartodb_id FROM fresh WHERE ST_Intersects(the_geom, ST_MakeEnvelope(0, 0, 10, 10, 4326));
-- (Estimated small, it starts through /sql; its pages come full, so the rest comes in one /copyto stream.)
SELECT * FROM scan('SELECT cartodb_id FROM fresh WHERE ST_Intersects(the_geom, ST_MakeEnvelope(0, 0, 10, 10, 4326))');
-- ... and so does the count (one /sql request: CARTO counts).
\! curl -sS -X DELETE "$CARTO_SIM_ADMIN/log" >/dev/null
SELECT count(*) FROM fresh WHERE ST_Intersects(the_geom, ST_MakeEnvelope(0, 0, 10, 10, 4326));
\! curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c "$PYLOG"
-- extensions '' turns it off: the filter stays local (same answer, the whole table read).
CREATE SERVER carto_plain FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url', extensions '');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto_plain OPTIONS (api_key :'api_key');
CREATE FOREIGN TABLE fresh_plain (cartodb_id bigint, the_geom geometry(Point, 4326), name text, k int)
  SERVER carto_plain OPTIONS (table_name 't18_fresh');
EXPLAIN (VERBOSE, COSTS OFF)
SELECT count(*) FROM fresh_plain WHERE ST_Intersects(the_geom, ST_MakeEnvelope(0, 0, 10, 10, 4326));
SELECT count(*) FROM fresh_plain WHERE ST_Intersects(the_geom, ST_MakeEnvelope(0, 0, 10, 10, 4326));

-- 3. A local-only filter does not shrink what CARTO sends: its low estimate (0.5%) no longer pages the whole
-- table through /sql. (local_name is PL/pgSQL, so it is evaluated here.)
CREATE FUNCTION local_name(t text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN upper(t); END $$;
EXPLAIN (VERBOSE, COSTS OFF) SELECT cartodb_id FROM fresh WHERE local_name(name) = 'NAME 77';
SELECT * FROM scan($$SELECT cartodb_id FROM fresh WHERE local_name(name) = 'NAME 77'$$);
SELECT cartodb_id FROM fresh WHERE local_name(name) = 'NAME 77';

-- 4. A wrong estimate is corrected at run time: `k = 5` is shipped but estimated at 0.5% of the table
-- (/sql); 3093 rows come, so after a few full pages the rest arrives in one /copyto stream.
EXPLAIN (VERBOSE, COSTS OFF) SELECT cartodb_id FROM fresh WHERE k = 5;
SELECT * FROM scan('SELECT cartodb_id FROM fresh WHERE k = 5');
-- Every row exactly once, whichever request brought it.
SELECT count(*), count(DISTINCT cartodb_id), sum(cartodb_id), min(cartodb_id), max(cartodb_id)
  FROM fresh WHERE k = 5;
SELECT count(*), sum(g) FROM generate_series(1, 300000) g WHERE g % 97 = 5;
-- A fetch_size of 500: the switch comes after twice the estimate; the same rows.
ALTER FOREIGN TABLE fresh OPTIONS (ADD fetch_size '500');
SELECT * FROM scan('SELECT cartodb_id, name FROM fresh WHERE k = 6');
SELECT count(*), count(DISTINCT cartodb_id), sum(cartodb_id), md5(string_agg(name, ',' ORDER BY cartodb_id))
  FROM fresh WHERE k = 6;
SELECT count(*), count(DISTINCT g), sum(g), md5(string_agg('name ' || g, ',' ORDER BY g))
  FROM generate_series(1, 300000) g WHERE g % 97 = 6;
-- scan_method 'query' is the user's explicit choice: it never switches.
ALTER FOREIGN TABLE fresh OPTIONS (SET fetch_size '1000', ADD scan_method 'query');
SELECT * FROM scan('SELECT cartodb_id FROM fresh WHERE k = 5');
ALTER FOREIGN TABLE fresh OPTIONS (DROP fetch_size, DROP scan_method);

-- 5. Columns declared with other types than CARTO's (bigint, numeric, varchar, timestamptz there) stay in
-- COPY binary: only they travel as text, read by the local type's input function with its typmod. A cast that
-- gives the text path's very value and cannot fail (text into varchar(12)) is made by CARTO, the column binary;
-- numeric into float8 arrives as numeric and is converted here (numeric_float8: float8in of numeric_out).
SELECT carto.exec('carto', $$CREATE TABLE t18_types (cartodb_id bigint PRIMARY KEY, n numeric, v varchar(20),
  ts timestamptz, f float8, t text)$$);
SELECT carto.exec('carto', $$INSERT INTO t18_types SELECT g, g / 7.0, 'v' || g,
  timestamptz '2026-01-01 00:00:00+00' + g * interval '1 minute', g / 3.0, 'text ' || g FROM generate_series(1, 20000) g$$);
CREATE FOREIGN TABLE hand (cartodb_id integer, n float8, v text, ts text, f float8, t varchar(12))
  SERVER carto OPTIONS (table_name 't18_types', scan_method 'copy');
CREATE FOREIGN TABLE hand_text (cartodb_id integer, n float8, v text, ts text, f float8, t varchar(12))
  SERVER carto OPTIONS (table_name 't18_types', scan_method 'copy', copy_format 'text');
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM hand;
-- The same values as the text path, and as local conversions of CARTO's values.
CREATE TEMP TABLE via_text AS SELECT * FROM hand_text;
CREATE TEMP TABLE via_binary AS SELECT * FROM hand;
SELECT (SELECT count(*) FROM via_binary) AS binary_rows,
       (SELECT count(*) FROM (SELECT * FROM via_binary EXCEPT ALL SELECT * FROM via_text) d) AS not_in_text,
       (SELECT count(*) FROM (SELECT * FROM via_text EXCEPT ALL SELECT * FROM via_binary) d) AS not_in_binary;
SELECT count(*) AS rows_equal_to_local_conversion FROM via_binary b JOIN (
  SELECT g::integer AS cartodb_id, (g / 7.0)::float8 AS n, 'v' || g AS v,
         timestamptz '2026-01-01 00:00:00+00' + g * interval '1 minute' AS ts,
         (g / 3.0)::float8 AS f, ('text ' || g)::varchar(12) AS t
    FROM generate_series(1, 20000) g) l
  ON (b.cartodb_id, b.n, b.v, b.ts::timestamptz, b.f, b.t) = (l.cartodb_id, l.n, l.v, l.ts, l.f, l.t);
-- The text path's errors, naming the column: a bigint beyond integer, a text longer than varchar(12).
SELECT carto.exec('carto', $$INSERT INTO t18_types VALUES (3000000000, 1, 'big', now(), 1, 'x')$$);
CREATE TEMP TABLE e1 AS SELECT * FROM hand;
CREATE TEMP TABLE e1 AS SELECT * FROM hand_text;
SELECT carto.exec('carto', $$DELETE FROM t18_types WHERE cartodb_id = 3000000000$$);
SELECT carto.exec('carto', $$UPDATE t18_types SET t = 'a text of 22 characters' WHERE cartodb_id = 5$$);
CREATE TEMP TABLE e2 AS SELECT * FROM hand;
CREATE TEMP TABLE e2 AS SELECT * FROM hand_text;
SELECT carto.exec('carto', $$UPDATE t18_types SET t = 'text 5' WHERE cartodb_id = 5$$);
-- CARTO's numeric into a local float8 arrives as numeric and is converted as the text path would: a value beyond
-- float8 is float8in's error, naming the column.
SELECT carto.exec('carto', $$UPDATE t18_types SET n = 1e309 WHERE cartodb_id = 6$$);
CREATE TEMP TABLE e3 AS SELECT * FROM hand;
CREATE TEMP TABLE e3 AS SELECT * FROM hand_text;
SELECT carto.exec('carto', $$UPDATE t18_types SET n = 6 / 7.0 WHERE cartodb_id = 6$$);

-- 6. CARTO's catalogue is remembered across transactions (no lookup for the second read), and forgotten when
-- the foreign table changes, or when carto.exec runs SQL on CARTO.
ALTER FOREIGN TABLE hand OPTIONS (ADD fetch_size '1000');
SELECT cartodb_id FROM hand WHERE cartodb_id < 3 ORDER BY 1;
\! curl -sS -X DELETE "$CARTO_SIM_ADMIN/log" >/dev/null
SELECT cartodb_id FROM hand WHERE cartodb_id < 3 ORDER BY 1;
\! curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c "$PYLOG"
ALTER FOREIGN TABLE hand OPTIONS (DROP fetch_size);
\! curl -sS -X DELETE "$CARTO_SIM_ADMIN/log" >/dev/null
SELECT cartodb_id FROM hand WHERE cartodb_id < 3 ORDER BY 1;
\! curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c "$PYLOG"
SELECT carto.exec('carto', 'ANALYZE t18_types');
\! curl -sS -X DELETE "$CARTO_SIM_ADMIN/log" >/dev/null
SELECT cartodb_id FROM hand WHERE cartodb_id < 3 ORDER BY 1;
\! curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c "$PYLOG"
