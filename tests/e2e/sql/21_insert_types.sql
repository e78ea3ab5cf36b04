-- 21_insert_types: a corpus of awkward values goes into CARTO through INSERT and through COPY FROM STDIN
-- and reads back identical (each value crosses as its type's own text form).
CREATE EXTENSION postgis;
CREATE EXTENSION carto_fdw;
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url', extensions 'postgis');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
\! curl -sS -u "$CARTO_SIM_USER:$CARTO_SIM_API_KEY" --data-urlencode "q=DROP TABLE IF EXISTS t21; CREATE TABLE t21 (cartodb_id int PRIMARY KEY, t text, n numeric, i8 bigint, f8 float8, ts timestamptz, ta text[], ia int[], j json, jb jsonb, g geometry, gg geography, b bytea, d date, iv interval, bo boolean)" "$CARTO_SIM_BASE_URL/api/v2/sql" | grep -o '"total_rows":[0-9]*'; echo
CREATE TABLE corpus (cartodb_id int, t text, n numeric, i8 bigint, f8 float8, ts timestamptz, ta text[], ia int[], j json,
  jb jsonb, g geometry, gg geography, b bytea, d date, iv interval, bo boolean);
CREATE FOREIGN TABLE t21 (cartodb_id int, t text, n numeric, i8 bigint, f8 float8, ts timestamptz, ta text[], ia int[], j json,
  jb jsonb, g geometry, gg geography, b bytea, d date, iv interval, bo boolean) SERVER carto;
SET TimeZone = 'America/New_York';
INSERT INTO corpus (cartodb_id, t) VALUES
  (1, E'tab\there\nnewline\rcr\\backslash ''single'' "double"'), (2, E'\\N'), (3, ''), (4, NULL),
  (5, E'four-byte \U0001F600 \U0001D11E and é'), (6, E'\\.'), (7, E'trailing backslash \\'), (8, E'\b\f\v control');
INSERT INTO corpus (cartodb_id, n, i8, f8) VALUES
  (10, 1234567890123456789012345678901234567890.123, -9223372036854775808, 'NaN'),
  (11, -0.0000000000000000000000000000000000000001, 9223372036854775807, 'Infinity'),
  (12, 'NaN', 0, '-Infinity'), (13, 0, NULL, '-0'), (14, 1.50, 1, 1.0000000000000002), (15, NULL, NULL, 1e-308);
INSERT INTO corpus (cartodb_id, ts, d, iv, bo, b) VALUES
  (20, '2026-11-21 12:34:56.789012+05:30', '2026-11-21', '1 year 2 mons 3 days 04:05:06.789', true, '\x00ff5c0a'),
  (21, 'infinity', 'infinity', '-1 day', false, ''),
  (22, '-infinity', '4713-01-01 BC', '0', NULL, NULL),
  (23, '1900-01-01 00:00:00+00', '1999-12-31', NULL, NULL, '\x5c4e');
INSERT INTO corpus (cartodb_id, ta, ia, j, jb) VALUES
  (30, ARRAY['a', NULL, 'q"uote', E'back\\slash', 'com,ma', '{brace}', '', 'NULL', E'tab\t'], ARRAY[1, NULL, 3], '{"a": [1, 2.50, "x\ty"], "b" : null}', '{"k": "ü", "n": 1.50, "e": []}'),
  (31, '{}', '{{1,2},{3,4}}', '"just a string"', 'null'),
  (32, '{NULL}', '[0:1]={7,8}', '[]', '{"nested": {"deep": [true, false, null]}}');
INSERT INTO corpus (cartodb_id, g) VALUES
  (40, 'SRID=4326;POINT(1 2)'), (41, 'POINT Z (1 2 3)'), (42, 'POINT M (1 2 4)'), (43, 'SRID=3857;POINT ZM (1 2 3 4)'),
  (44, 'SRID=4326;LINESTRING(0 0, 1 1, 2 0)'), (45, 'POLYGON((0 0, 4 0, 4 4, 0 4, 0 0), (1 1, 2 1, 2 2, 1 1))'),
  (46, 'MULTIPOINT Z ((1 2 3), (4 5 6))'), (47, 'MULTILINESTRING((0 0, 1 1), (2 2, 3 3))'),
  (48, 'SRID=4326;MULTIPOLYGON(((0 0, 1 0, 1 1, 0 0)), ((5 5, 6 5, 6 6, 5 5)))'),
  (49, 'GEOMETRYCOLLECTION(POINT(1 1), LINESTRING(0 0, 1 1))'), (50, 'POINT EMPTY'), (51, 'SRID=4326;POLYGON EMPTY'),
  (52, 'GEOMETRYCOLLECTION EMPTY'), (53, 'CIRCULARSTRING(0 0, 1 1, 2 0)'), (54, 'COMPOUNDCURVE(CIRCULARSTRING(0 0, 1 1, 1 0), (1 0, 0 1))'),
  (55, 'CURVEPOLYGON(CIRCULARSTRING(0 0, 4 0, 4 4, 0 4, 0 0))'), (56, 'MULTICURVE((0 0, 5 5), CIRCULARSTRING(4 0, 4 4, 8 4))'),
  (57, 'MULTISURFACE(CURVEPOLYGON(CIRCULARSTRING(0 0, 4 0, 4 4, 0 4, 0 0)))'),
  (58, 'POLYHEDRALSURFACE Z (((0 0 0, 0 1 0, 1 1 0, 0 0 0)))'), (59, 'TRIANGLE((0 0, 0 9, 9 0, 0 0))'),
  (60, 'TIN(((0 0 0, 0 0 1, 0 1 0, 0 0 0)))'), (61, 'LINESTRING M (0 0 1, 1 1 2)'), (62, 'SRID=4326;POINT(-0 0.1)');
INSERT INTO corpus (cartodb_id, gg) VALUES (70, 'SRID=4326;POINT(1 2)'), (71, 'LINESTRING(0 0, 10 10)'), (72, 'POINT EMPTY');
SELECT count(*) AS corpus_rows FROM corpus;
-- 1. INSERT ... SELECT.
INSERT INTO t21 SELECT * FROM corpus;
SET TimeZone = 'Asia/Kolkata';
-- Every row identical, compared as whole-row text (NULL vs empty, -0, NaN, EWKB with SRID/Z/M ...).
SELECT c.cartodb_id, c::text AS sent, f::text AS got
  FROM corpus c FULL JOIN t21 f USING (cartodb_id) WHERE c::text IS DISTINCT FROM f::text ORDER BY 1;
SELECT count(*) AS identical FROM corpus c JOIN t21 f USING (cartodb_id) WHERE c::text = f::text;
-- Spot checks of values whose text hides differences.
SELECT cartodb_id, t IS NULL AS is_null, length(t), t = '' AS is_empty FROM t21 WHERE cartodb_id BETWEEN 1 AND 8 ORDER BY 1;
SELECT cartodb_id, ST_AsEWKT(g) FROM t21 WHERE g IS NOT NULL ORDER BY 1;
-- 2. COPY FROM STDIN (psql's \copy), after TRUNCATE.
TRUNCATE t21;
\copy (SELECT * FROM corpus ORDER BY cartodb_id) TO '/tmp/carto_fdw_e2e_21_types.copy'
SET TimeZone = 'UTC';
\copy t21 FROM '/tmp/carto_fdw_e2e_21_types.copy'
SELECT c.cartodb_id, c::text AS sent, f::text AS got
  FROM corpus c FULL JOIN t21 f USING (cartodb_id) WHERE c::text IS DISTINCT FROM f::text ORDER BY 1;
SELECT count(*) AS identical FROM corpus c JOIN t21 f USING (cartodb_id) WHERE c::text = f::text;
\! rm -f /tmp/carto_fdw_e2e_21_types.copy
