-- Data of 12_pushdown and 13_joins: run as is on CARTO (through /sql) and locally (schema loc).
DROP TABLE IF EXISTS t12;
CREATE TABLE t12 (
  cartodb_id int PRIMARY KEY,
  the_geom geometry(Point, 4326),
  i int, n numeric, f float8, t text, d date, ts timestamptz, b bool, arr int[]
);
INSERT INTO t12
SELECT g,
       CASE WHEN g = 13 THEN NULL ELSE ST_SetSRID(ST_MakePoint(g % 20, g / 20), 4326) END,
       CASE WHEN g % 7 = 0 THEN NULL ELSE (g * 37) % 100 - 50 END,
       CASE WHEN g % 11 = 0 THEN NULL ELSE ((g * 13) % 1000) / 10.0 END,
       CASE g WHEN 5 THEN 'NaN'::float8 WHEN 6 THEN 'Infinity' WHEN 7 THEN '-Infinity' ELSE g / 3.0 END,
       CASE g WHEN 1 THEN 'O''Brien' WHEN 2 THEN E'back\\slash' WHEN 3 THEN 'ünïcödé' WHEN 4 THEN '😀 emoji'
              WHEN 5 THEN '' WHEN 6 THEN NULL WHEN 7 THEN 'percent % and _ underscore' WHEN 8 THEN E'tab\there'
              WHEN 9 THEN 'UPPER lower' WHEN 10 THEN 'quote "dq"' WHEN 11 THEN E'a''b\\c"d' ELSE 'name ' || g END,
       date '2026-01-01' + g,
       timestamptz '2026-01-01 00:00:00+00' + g * interval '7 hours',
       CASE g % 3 WHEN 0 THEN true WHEN 1 THEN false END,
       ARRAY[g % 5, g % 7]
  FROM generate_series(1, 400) g;
