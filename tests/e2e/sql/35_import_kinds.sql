-- 35_import_kinds: IMPORT FOREIGN SCHEMA of range and multirange columns (built-in: the same types; the
-- account's own range type: text), composite types (text), a partitioned table with its partitions, and a
-- materialized view (only with import_views); every imported table reads, ranges and the partitioned table write.
CREATE EXTENSION postgis;
CREATE EXTENSION carto_fdw;
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');

SELECT carto.exec('carto', $$
DROP MATERIALIZED VIEW IF EXISTS i35_mv;
DROP TABLE IF EXISTS i35_ranges, i35_comp, i35_part;
DROP TYPE IF EXISTS i35_pair, i35_floatrange;
CREATE TYPE i35_pair AS (a int, b text);
CREATE TYPE i35_floatrange AS RANGE (subtype = float8);
CREATE TABLE i35_ranges (cartodb_id serial PRIMARY KEY, r4 int4range, r8 int8range NOT NULL, rn numrange, rts tsrange,
  rtz tstzrange, rd daterange, mr4 int4multirange, mrd datemultirange, ar int4range[], fr i35_floatrange,
  fmr i35_floatmultirange);
INSERT INTO i35_ranges (r4, r8, rn, rts, rtz, rd, mr4, mrd, ar, fr, fmr) VALUES
  ('[1,5)', '(,10]', '[1.5,2.5]', '[2026-01-01 00:00,2026-01-02 00:00)', '[2026-01-01 00:00+00,)', 'empty',
   '{[1,3),[5,7)}', '{[2026-01-01,2026-01-10)}', '{"[1,2)","[3,4)"}', '[1.5,2.5)', '{[1,2),[3,4)}'),
  (NULL, 'empty', NULL, NULL, NULL, NULL, '{}', NULL, '{}', NULL, NULL);
CREATE TABLE i35_comp (cartodb_id serial PRIMARY KEY, p i35_pair, ps i35_pair[]);
INSERT INTO i35_comp (p, ps) VALUES (ROW(1, 'one, "quoted"'), ARRAY[ROW(2, 'two')::i35_pair, NULL]), (NULL, NULL);
CREATE TABLE i35_part (cartodb_id int NOT NULL, region text NOT NULL, v numeric, PRIMARY KEY (cartodb_id, region))
  PARTITION BY LIST (region);
CREATE TABLE i35_part_east PARTITION OF i35_part FOR VALUES IN ('east');
CREATE TABLE i35_part_west PARTITION OF i35_part FOR VALUES IN ('west');
INSERT INTO i35_part VALUES (1, 'east', 1.5), (2, 'west', 2.5), (3, 'east', NULL);
CREATE MATERIALIZED VIEW i35_mv AS SELECT region, count(*) AS n, sum(v) AS total FROM i35_part GROUP BY region
$$);

CREATE SCHEMA imp;
IMPORT FOREIGN SCHEMA public LIMIT TO (i35_ranges, i35_comp, i35_part, i35_part_east, i35_part_west, i35_mv)
  FROM SERVER carto INTO imp;
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
 WHERE c.relnamespace = 'imp'::regnamespace ORDER BY c.relname COLLATE "C", a.attnum;
SELECT c.relname, ft.ftoptions FROM pg_foreign_table ft JOIN pg_class c ON c.oid = ft.ftrelid
 WHERE c.relnamespace = 'imp'::regnamespace ORDER BY c.relname COLLATE "C";
-- Every imported table reads; values cross in text form (CARTO's text of a composite or of its own range type).
SELECT * FROM imp.i35_ranges ORDER BY cartodb_id;
SELECT r4 @> 3 AS r4_has_3, mr4 @> 6 AS mr4_has_6, upper(rn) AS rn_upper, isempty(rd) AS rd_empty, ar[2] AS ar_2
  FROM imp.i35_ranges ORDER BY cartodb_id;
SELECT * FROM imp.i35_comp ORDER BY cartodb_id;
SELECT * FROM imp.i35_part ORDER BY cartodb_id;
SELECT * FROM imp.i35_part_east ORDER BY cartodb_id;
SELECT * FROM imp.i35_part_west ORDER BY cartodb_id;
-- The materialized view needs import_views.
CREATE SCHEMA imp2;
IMPORT FOREIGN SCHEMA public LIMIT TO (i35_mv) FROM SERVER carto INTO imp2 OPTIONS (import_views 'true');
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS type
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
 WHERE c.relnamespace = 'imp2'::regnamespace ORDER BY c.relname, a.attnum;
SELECT * FROM imp2.i35_mv ORDER BY region;

-- Writes: ranges and multiranges as CARTO normalizes them; rows into the partitioned table land in the partition
-- CARTO routes them to.
INSERT INTO imp.i35_ranges (cartodb_id, r4, r8, mr4, rd, ar) VALUES (3, '[10,20]', '[1,1]', '{[1,2),[2,3)}', '[2026-02-01,2026-02-01]', '{"(0,1]"}');
SELECT cartodb_id, r4, r8, mr4, rd, ar FROM imp.i35_ranges WHERE cartodb_id = 3;
UPDATE imp.i35_ranges SET mr4 = mr4 + '{[10,12)}' WHERE cartodb_id = 3;
SELECT mr4 FROM imp.i35_ranges WHERE cartodb_id = 3;
INSERT INTO imp.i35_part VALUES (4, 'west', 4.5), (5, 'east', 5.5);
SELECT * FROM carto.query('carto', 'SELECT tableoid::regclass::text AS part, cartodb_id, v FROM i35_part ORDER BY cartodb_id');
