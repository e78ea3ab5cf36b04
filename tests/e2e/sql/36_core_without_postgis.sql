-- 36_core_without_postgis: carto_fdw's core in a database without PostGIS (the PostgreSQL 18 of the tests has
-- none; the same output is expected on 15): IMPORT FOREIGN SCHEMA, reads with WHERE / ORDER BY / LIMIT, an
-- aggregate and a join pushed down, INSERT with COMMIT and ROLLBACK, UPDATE (direct and row by row), DELETE,
-- carto.query and carto.exec.
CREATE EXTENSION carto_fdw;
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
SELECT carto.exec('carto', $$DROP TABLE IF EXISTS core36_items; DROP TABLE IF EXISTS core36_kinds;
  CREATE TABLE core36_kinds (kind_id int PRIMARY KEY, label text NOT NULL);
  CREATE TABLE core36_items (cartodb_id serial PRIMARY KEY, kind_id int, name text, qty numeric(10,2), seen timestamptz);
  INSERT INTO core36_kinds VALUES (1, 'apple'), (2, 'pear'), (3, 'plum');
  INSERT INTO core36_items (kind_id, name, qty, seen)
  SELECT 1 + g % 3, 'item ' || g, g * 1.5, timestamptz '2026-01-01 00:00:00+00' + g * interval '1 hour' FROM generate_series(1, 30) g$$) AS created;
CREATE SCHEMA imp;
IMPORT FOREIGN SCHEMA public LIMIT TO (core36_items, core36_kinds) FROM SERVER carto INTO imp;
SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns
 WHERE table_schema = 'imp' ORDER BY table_name, ordinal_position;
-- Reads: conditions, order and limit shipped.
EXPLAIN (VERBOSE, COSTS OFF) SELECT name, qty FROM imp.core36_items WHERE kind_id = 2 AND qty > 10 ORDER BY qty DESC LIMIT 3;
SELECT name, qty FROM imp.core36_items WHERE kind_id = 2 AND qty > 10 ORDER BY qty DESC LIMIT 3;
SELECT name, seen FROM imp.core36_items WHERE seen >= '2026-01-02 04:00:00+00' ORDER BY seen;
-- An aggregate and a join, computed by CARTO.
EXPLAIN (VERBOSE, COSTS OFF) SELECT kind_id, count(*), sum(qty) FROM imp.core36_items GROUP BY kind_id ORDER BY kind_id;
SELECT kind_id, count(*), sum(qty) FROM imp.core36_items GROUP BY kind_id ORDER BY kind_id;
EXPLAIN (VERBOSE, COSTS OFF) SELECT k.label, i.name FROM imp.core36_items i JOIN imp.core36_kinds k ON k.kind_id = i.kind_id WHERE i.qty < 6;
SELECT k.label, i.name FROM imp.core36_items i JOIN imp.core36_kinds k ON k.kind_id = i.kind_id WHERE i.qty < 6 ORDER BY i.name;
-- INSERT: what COMMIT sends lands, what ROLLBACK sends does not.
BEGIN;
INSERT INTO imp.core36_items (kind_id, name, qty, seen) VALUES (3, 'kept', 1.25, '2026-02-01 12:00:00+00');
COMMIT;
BEGIN;
INSERT INTO imp.core36_items (kind_id, name, qty) SELECT 1, 'rolled back ' || g, g FROM generate_series(1, 100) g;
ROLLBACK;
SELECT count(*) FILTER (WHERE name = 'kept') AS kept, count(*) FILTER (WHERE name LIKE 'rolled back%') AS rolled_back,
       count(*) AS total FROM imp.core36_items;
-- UPDATE sent whole, then row by row (a volatile local condition cannot be shipped), and DELETE.
EXPLAIN (VERBOSE, COSTS OFF) UPDATE imp.core36_items SET qty = qty + 1 WHERE kind_id = 3;
UPDATE imp.core36_items SET qty = qty + 1 WHERE kind_id = 3;
EXPLAIN (VERBOSE, COSTS OFF) UPDATE imp.core36_items SET name = name || '!' WHERE name = 'kept' AND random() >= 0;
UPDATE imp.core36_items SET name = name || '!' WHERE name = 'kept' AND random() >= 0;
DELETE FROM imp.core36_items WHERE kind_id = 1 AND cartodb_id > 20;
SELECT * FROM carto.query('carto', $$SELECT kind_id, count(*) AS n, sum(qty)::text AS total, string_agg(name, ',' ORDER BY name) FILTER (WHERE name LIKE 'kept%') AS kept FROM core36_items GROUP BY kind_id ORDER BY kind_id$$);
SELECT carto.exec('carto', 'DROP TABLE core36_items; DROP TABLE core36_kinds') AS dropped;
