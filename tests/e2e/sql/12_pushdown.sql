-- 12_pushdown: a corpus of WHERE / ORDER BY / LIMIT / OFFSET queries over a CARTO table and an
-- identical local copy. Every query's result through the foreign table equals the local one (in
-- order when the query orders), through both transports; the flags show what went to CARTO (the
-- remote statement's WHERE, ORDER BY, LIMIT) and what stayed local (a Filter on the Foreign Scan).
CREATE EXTENSION postgis;
CREATE EXTENSION carto_fdw;
\set SHOW_CONTEXT never
\! curl -sS -u "demo:$CARTO_SIM_API_KEY" "$CARTO_SIM_BASE_URL/api/v2/sql" --data-urlencode q@data/12_pushdown.sql | sed -E 's/"time":[0-9.e+-]+/"time":T/'; echo
CREATE SCHEMA loc;
SET search_path = loc, public;
\i data/12_pushdown.sql
RESET search_path;
ANALYZE loc.t12;

CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url', extensions 'postgis');
CREATE SERVER carto_noext FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url', extensions '');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto_noext OPTIONS (api_key :'api_key');
CREATE FOREIGN TABLE ft12 (cartodb_id int, the_geom geometry(Point, 4326), i int, n numeric, f float8,
  t text, d date, ts timestamptz, b bool, arr int[]) SERVER carto OPTIONS (table_name 't12', scan_method 'copy');
CREATE FOREIGN TABLE ft12_noext (cartodb_id int, the_geom geometry(Point, 4326), i int, n numeric, f float8,
  t text, d date, ts timestamptz, b bool, arr int[]) SERVER carto_noext OPTIONS (table_name 't12', scan_method 'copy');

-- Runs query q ({t} = the table) on the foreign table ft and on loc.t12; compares the rows (in
-- order when q has ORDER BY, else as multisets) and reads the plan's Remote SQL and Filter.
CREATE FUNCTION pg_temp.run(q text, ft text)
RETURNS TABLE (rows int, same bool, remote_where bool, remote_order bool, remote_limit bool, local_filter bool)
LANGUAGE plpgsql AS $$
DECLARE r record; a text[] := '{}'; b text[] := '{}'; j jsonb; rsql text;
BEGIN
  FOR r IN EXECUTE replace(q, '{t}', ft) LOOP a := a || r::text; END LOOP;
  FOR r IN EXECUTE replace(q, '{t}', 'loc.t12') LOOP b := b || r::text; END LOOP;
  IF q !~* 'order by' THEN
    a := ARRAY(SELECT x FROM unnest(a) x ORDER BY x);
    b := ARRAY(SELECT x FROM unnest(b) x ORDER BY x);
  END IF;
  EXECUTE 'EXPLAIN (VERBOSE, COSTS OFF, FORMAT JSON) ' || replace(q, '{t}', ft) INTO j;
  rsql := jsonb_path_query_first(j, '$.**."Remote SQL"') #>> '{}';
  rows := coalesce(array_length(a, 1), 0);
  same := a = b;
  remote_where := rsql ~ ' WHERE ';
  remote_order := rsql ~ ' ORDER BY ';
  remote_limit := rsql ~ ' LIMIT ';
  local_filter := jsonb_path_exists(j, '$.** ? (@."Node Type" == "Foreign Scan" && exists (@."Filter"))');
  RETURN NEXT;
END $$;

CREATE TEMP TABLE corpus (id int PRIMARY KEY, q text);
INSERT INTO corpus VALUES
 (1, $$SELECT * FROM {t} WHERE i = 10$$),
 (2, $$SELECT * FROM {t} WHERE i <> 10$$),
 (3, $$SELECT * FROM {t} WHERE i < 0$$),
 (4, $$SELECT * FROM {t} WHERE i >= 25 AND i <= 30$$),
 (5, $$SELECT * FROM {t} WHERE i BETWEEN -5 AND 5$$),
 (6, $$SELECT * FROM {t} WHERE i NOT BETWEEN -40 AND 40$$),
 (7, $$SELECT * FROM {t} WHERE i IN (1, 2, 3, -50)$$),
 (8, $$SELECT * FROM {t} WHERE i NOT IN (1, 2, 3)$$),
 (9, $$SELECT * FROM {t} WHERE i = ANY (ARRAY[4, 5, 6])$$),
 (10, $$SELECT * FROM {t} WHERE i <> ALL ('{1,2}')$$),
 (11, $$SELECT * FROM {t} WHERE i IS NULL$$),
 (12, $$SELECT * FROM {t} WHERE i IS NOT NULL AND n IS NULL$$),
 (13, $$SELECT * FROM {t} WHERE (i > 10 OR n < 5) AND NOT b$$),
 (14, $$SELECT * FROM {t} WHERE NOT (i > 0)$$),
 (15, $$SELECT * FROM {t} WHERE b$$),
 (16, $$SELECT * FROM {t} WHERE b IS NOT TRUE$$),
 (17, $$SELECT * FROM {t} WHERE b IS DISTINCT FROM true$$),
 (18, $$SELECT * FROM {t} WHERE t = 'O''Brien'$$),
 (19, $$SELECT * FROM {t} WHERE t = E'back\\slash'$$),
 (20, $$SELECT * FROM {t} WHERE t = 'ünïcödé'$$),
 (21, $$SELECT * FROM {t} WHERE t = '😀 emoji'$$),
 (22, $$SELECT * FROM {t} WHERE t = ''$$),
 (23, $$SELECT * FROM {t} WHERE t = E'a''b\\c"d'$$),
 (24, $$SELECT * FROM {t} WHERE t IN ('O''Brien', E'back\\slash', '😀 emoji', E'tab\there')$$),
 (25, $$SELECT * FROM {t} WHERE t LIKE 'name 1%'$$),
 (26, $$SELECT * FROM {t} WHERE t LIKE '%\%%'$$),
 (27, $$SELECT * FROM {t} WHERE t LIKE 'name 1_'$$),
 (28, $$SELECT * FROM {t} WHERE t ILIKE 'upper%'$$),
 (29, $$SELECT * FROM {t} WHERE t NOT LIKE 'name%'$$),
 (30, $$SELECT * FROM {t} WHERE t ~ '^name [0-9]{2}$'$$),
 (31, $$SELECT * FROM {t} WHERE lower(t) = 'upper lower'$$),
 (32, $$SELECT * FROM {t} WHERE length(t) = 7$$),
 (33, $$SELECT * FROM {t} WHERE upper(t) LIKE 'NAME 3%'$$),
 (34, $$SELECT * FROM {t} WHERE t || 'x' = 'name 12x'$$),
 (35, $$SELECT * FROM {t} WHERE position('1' in t) = 6$$),
 (36, $$SELECT * FROM {t} WHERE substring(t from 1 for 4) = 'name' AND cartodb_id < 30$$),
 (37, $$SELECT * FROM {t} WHERE coalesce(i, -1000) = -1000$$),
 (38, $$SELECT * FROM {t} WHERE abs(i) = 50$$),
 (39, $$SELECT * FROM {t} WHERE i + 1 = 11$$),
 (40, $$SELECT * FROM {t} WHERE i * 2 - 1 > 90$$),
 (41, $$SELECT * FROM {t} WHERE i % 10 = 3$$),
 (42, $$SELECT * FROM {t} WHERE i::numeric / 3 > 10$$),
 (43, $$SELECT * FROM {t} WHERE i = 10::bigint$$),
 (44, $$SELECT * FROM {t} WHERE n > 50.5$$),
 (45, $$SELECT * FROM {t} WHERE n = 12.3$$),
 (46, $$SELECT * FROM {t} WHERE n::int = 12$$),
 (47, $$SELECT * FROM {t} WHERE i::text = '10'$$),
 (48, $$SELECT * FROM {t} WHERE f > 100$$),
 (49, $$SELECT * FROM {t} WHERE f = 'NaN'$$),
 (50, $$SELECT * FROM {t} WHERE f = 'Infinity'::float8 OR f = '-Infinity'$$),
 (51, $$SELECT * FROM {t} WHERE f = 33.333333333333336$$),
 (52, $$SELECT * FROM {t} WHERE d = '2026-02-01'$$),
 (53, $$SELECT * FROM {t} WHERE d BETWEEN '2026-03-01' AND '2026-03-10'$$),
 (54, $$SELECT * FROM {t} WHERE d + 1 = '2026-01-10'$$),
 (55, $$SELECT * FROM {t} WHERE extract(month from d) = 2$$),
 (56, $$SELECT * FROM {t} WHERE ts > '2026-03-01 12:00+00'$$),
 (57, $$SELECT * FROM {t} WHERE ts < '2026-01-05 00:00:00+05:30'$$),
 (58, $$SELECT * FROM {t} WHERE ts AT TIME ZONE 'UTC' < '2026-01-03'$$),
 (59, $$SELECT * FROM {t} WHERE ts < now()$$),
 (60, $$SELECT * FROM {t} WHERE d > now()::date - 100000 AND i = 3$$),
 (61, $$SELECT * FROM {t} WHERE i = 10 AND random() < 2$$),
 (62, $$SELECT * FROM {t} WHERE t = 'name 100' COLLATE "POSIX"$$),
 (63, $$SELECT * FROM {t} WHERE t < 'name 2' COLLATE "C"$$),
 (64, $$SELECT * FROM {t} WHERE arr @> ARRAY[3]$$),
 (65, $$SELECT * FROM {t} WHERE arr[1] = 2$$),
 (66, $$SELECT * FROM {t} WHERE cartodb_id = 42$$),
 (67, $$SELECT t FROM {t} WHERE cartodb_id < 20$$),
 (68, $$SELECT count(*), sum(i), max(t) FROM {t} WHERE i > 0$$),
 (69, $$SELECT cartodb_id, t FROM {t} ORDER BY t ASC NULLS FIRST, cartodb_id LIMIT 10$$),
 (70, $$SELECT cartodb_id, i FROM {t} ORDER BY i DESC NULLS LAST, cartodb_id LIMIT 15$$),
 (71, $$SELECT cartodb_id, n FROM {t} ORDER BY n ASC NULLS LAST, cartodb_id DESC LIMIT 5 OFFSET 10$$),
 (72, $$SELECT cartodb_id, i FROM {t} ORDER BY i NULLS FIRST, cartodb_id DESC LIMIT 12$$),
 (73, $$SELECT cartodb_id, f FROM {t} ORDER BY f DESC, cartodb_id LIMIT 8$$),
 (74, $$SELECT * FROM {t} ORDER BY d DESC LIMIT 3 OFFSET 2$$),
 (75, $$SELECT * FROM {t} WHERE i > 0 ORDER BY cartodb_id LIMIT 5$$),
 (76, $$SELECT * FROM {t} WHERE t ILIKE 'name 1%' ORDER BY cartodb_id LIMIT 3 OFFSET 3$$),
 (77, $$SELECT * FROM {t} WHERE i = 10 AND random() < 2 ORDER BY cartodb_id LIMIT 2$$),
 (78, $$SELECT * FROM {t} LIMIT 0$$),
 (79, $$SELECT * FROM {t} ORDER BY cartodb_id OFFSET 395$$),
 (80, $$SELECT cartodb_id, t FROM {t} ORDER BY lower(t), cartodb_id LIMIT 5$$),
 (81, $$SELECT cartodb_id, t FROM {t} ORDER BY t COLLATE "POSIX", cartodb_id LIMIT 5$$),
 (82, $$SELECT DISTINCT i FROM {t} ORDER BY i NULLS FIRST LIMIT 5$$),
 (83, $$SELECT cartodb_id, i FROM {t} WHERE i > 40 ORDER BY i FETCH FIRST 3 ROWS WITH TIES$$),
 (84, $$SELECT cartodb_id, ts FROM {t} ORDER BY ts DESC, cartodb_id LIMIT 4$$),
 (85, $$SELECT count(*) FROM (SELECT * FROM {t} LIMIT 7) s$$),
 (86, $$SELECT * FROM {t} WHERE the_geom && ST_MakeEnvelope(0, 0, 5, 5, 4326)$$),
 (87, $$SELECT * FROM {t} WHERE ST_Intersects(the_geom, ST_MakeEnvelope(2, 2, 8, 8, 4326))$$),
 (88, $$SELECT * FROM {t} WHERE ST_DWithin(the_geom, ST_SetSRID(ST_MakePoint(10, 10), 4326), 3)$$),
 (89, $$SELECT * FROM {t} WHERE ST_Contains(ST_MakeEnvelope(0, 0, 10, 10, 4326), the_geom)$$),
 (90, $$SELECT * FROM {t} WHERE ST_X(the_geom) > 15 AND i > 0$$),
 (91, $$SELECT * FROM {t} WHERE the_geom IS NULL$$),
 (92, $$SELECT cartodb_id FROM {t} WHERE the_geom && 'SRID=4326;POLYGON((0 0,0 3,3 3,3 0,0 0))'::geometry ORDER BY cartodb_id LIMIT 4$$);

-- 1. Copy transport (/copyto), PostGIS shipped (server option extensions 'postgis').
SELECT c.id, r.rows, r.same, r.remote_where AS "where", r.remote_order AS "order", r.remote_limit AS "limit",
       r.local_filter AS "filter", c.q
  FROM corpus c, pg_temp.run(c.q, 'ft12') r ORDER BY c.id;

-- 2. Query transport (/sql, paged by keyset, 7 rows a page): the same results.
ALTER FOREIGN TABLE ft12 OPTIONS (SET scan_method 'query', ADD fetch_size '7');
SELECT count(*) AS queries, count(*) FILTER (WHERE r.same) AS same, string_agg(c.id::text, ',') FILTER (WHERE NOT r.same) AS differing
  FROM corpus c, pg_temp.run(c.q, 'ft12') r;
-- 3. auto (the default): small results through /sql, the whole table through /copyto.
ALTER FOREIGN TABLE ft12 OPTIONS (SET scan_method 'auto', DROP fetch_size);
SELECT count(*) AS queries, count(*) FILTER (WHERE r.same) AS same, string_agg(c.id::text, ',') FILTER (WHERE NOT r.same) AS differing
  FROM corpus c, pg_temp.run(c.q, 'ft12') r;
ALTER FOREIGN TABLE ft12 OPTIONS (SET scan_method 'copy');

-- 4. With extensions '' on the server (PostGIS off), PostGIS clauses stay local (same results).
SELECT c.id, r.rows, r.same, r.remote_where AS "where", r.remote_order AS "order", r.remote_limit AS "limit",
       r.local_filter AS "filter"
  FROM corpus c, pg_temp.run(c.q, 'ft12_noext') r WHERE c.id >= 86 ORDER BY c.id;

-- 5. Representative plans: what went remote (Remote SQL) and what stayed local (Filter).
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ft12 WHERE (i > 10 OR n < 5) AND NOT b;
EXPLAIN (VERBOSE, COSTS OFF) SELECT cartodb_id FROM ft12 WHERE t IN ('O''Brien', E'back\\slash', '😀 emoji') AND t LIKE '%\%%';
EXPLAIN (VERBOSE, COSTS OFF) SELECT cartodb_id FROM ft12 WHERE ts < now() AND d > '2026-02-01' AND i = 10 AND random() < 2;
EXPLAIN (VERBOSE, COSTS OFF) SELECT cartodb_id FROM ft12 WHERE t = 'name 100' COLLATE "POSIX" AND arr[1] = 2 AND arr @> ARRAY[3];
EXPLAIN (VERBOSE, COSTS OFF) SELECT cartodb_id FROM ft12 WHERE position('1' in t) = 6 AND extract(month from d) = 2 AND i::numeric / 3 > 10;
EXPLAIN (VERBOSE, COSTS OFF) SELECT cartodb_id, i FROM ft12 ORDER BY i DESC NULLS LAST, cartodb_id LIMIT 15;
EXPLAIN (VERBOSE, COSTS OFF) SELECT cartodb_id, n FROM ft12 ORDER BY n ASC NULLS LAST, cartodb_id DESC LIMIT 5 OFFSET 10;
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ft12 WHERE i = 10 AND random() < 2 ORDER BY cartodb_id LIMIT 2;
EXPLAIN (VERBOSE, COSTS OFF) SELECT cartodb_id, t FROM ft12 ORDER BY lower(t), cartodb_id LIMIT 5;
EXPLAIN (VERBOSE, COSTS OFF) SELECT cartodb_id FROM ft12 WHERE ST_DWithin(the_geom, ST_SetSRID(ST_MakePoint(10, 10), 4326), 3) AND the_geom && ST_MakeEnvelope(0, 0, 15, 15, 4326);
EXPLAIN (VERBOSE, COSTS OFF) SELECT cartodb_id FROM ft12_noext WHERE ST_DWithin(the_geom, ST_SetSRID(ST_MakePoint(10, 10), 4326), 3) AND i > 0;
-- Constants print the same whatever the session's DateStyle / IntervalStyle / extra_float_digits.
SET DateStyle = 'SQL, DMY';
SET IntervalStyle = 'iso_8601';
SET extra_float_digits = -15;
EXPLAIN (VERBOSE, COSTS OFF) SELECT cartodb_id FROM ft12 WHERE d = '03/02/2026' AND f = 33.333333333333336 AND ts > '01/03/2026 12:00 UTC' AND d - interval '1 day 2 hours' < '01/01/2027';
SELECT cartodb_id, d, f FROM ft12 WHERE d = '03/02/2026';
SELECT cartodb_id FROM ft12 WHERE f = 33.333333333333336;
RESET DateStyle;
RESET IntervalStyle;
RESET extra_float_digits;

-- 6. A foreign table over a query (OPTIONS (query ...)): WHERE, ORDER BY and LIMIT apply to the subquery.
CREATE FOREIGN TABLE ft12_q (cartodb_id int, i int, t text) SERVER carto
  OPTIONS (query 'SELECT cartodb_id, i, t FROM t12 WHERE cartodb_id <= 200');
CREATE VIEW loc.t12_q AS SELECT cartodb_id, i, t FROM loc.t12 WHERE cartodb_id <= 200;
CREATE FUNCTION pg_temp.runq(q text) RETURNS TABLE (rows int, same bool) LANGUAGE plpgsql AS $$
DECLARE r record; a text[] := '{}'; b text[] := '{}';
BEGIN
  FOR r IN EXECUTE replace(q, '{t}', 'ft12_q') LOOP a := a || r::text; END LOOP;
  FOR r IN EXECUTE replace(q, '{t}', 'loc.t12_q') LOOP b := b || r::text; END LOOP;
  IF q !~* 'order by' THEN
    a := ARRAY(SELECT x FROM unnest(a) x ORDER BY x);
    b := ARRAY(SELECT x FROM unnest(b) x ORDER BY x);
  END IF;
  rows := coalesce(array_length(a, 1), 0); same := a = b; RETURN NEXT;
END $$;
SELECT q, r.* FROM (VALUES
  ($$SELECT * FROM {t}$$),
  ($$SELECT * FROM {t} WHERE i > 40$$),
  ($$SELECT * FROM {t} WHERE t LIKE 'name 1%' AND random() < 2$$),
  ($$SELECT * FROM {t} ORDER BY i DESC NULLS LAST, cartodb_id LIMIT 3$$),
  ($$SELECT cartodb_id FROM {t} WHERE i < 0 ORDER BY cartodb_id DESC LIMIT 4 OFFSET 1$$)) v(q),
  pg_temp.runq(q) r;
EXPLAIN (VERBOSE, COSTS OFF) SELECT cartodb_id FROM ft12_q WHERE i < 0 ORDER BY cartodb_id DESC LIMIT 4 OFFSET 1;
ALTER FOREIGN TABLE ft12_q OPTIONS (ADD scan_method 'copy');
EXPLAIN (VERBOSE, COSTS OFF) SELECT cartodb_id FROM ft12_q WHERE i < 0 ORDER BY cartodb_id DESC LIMIT 4 OFFSET 1;
SELECT * FROM pg_temp.runq($$SELECT cartodb_id FROM {t} WHERE i < 0 ORDER BY cartodb_id DESC LIMIT 4 OFFSET 1$$);
