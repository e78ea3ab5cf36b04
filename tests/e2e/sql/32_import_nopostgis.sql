-- 32_import_nopostgis: IMPORT FOREIGN SCHEMA into a database without PostGIS: geometry and geography
-- columns become text holding hex EWKB (with a NOTICE), and every table still reads.
CREATE EXTENSION carto_fdw;
SELECT count(*) AS postgis_installed FROM pg_extension WHERE extname = 'postgis';
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
SET client_min_messages = warning;
SELECT carto.exec('carto', $$
DROP TABLE IF EXISTS i32_points, i32_geo;
CREATE TABLE i32_points (cartodb_id serial PRIMARY KEY, the_geom geometry(Point,4326), the_geom_webmercator geometry(Point,3857),
  name text NOT NULL);
INSERT INTO i32_points (the_geom, name) VALUES ('SRID=4326;POINT(1 2)', 'p1'), (NULL, 'p2');
UPDATE i32_points SET the_geom_webmercator = ST_Transform(the_geom, 3857);
CREATE TABLE i32_geo (cartodb_id serial PRIMARY KEY, geog geography(Point,4326), geoms geometry[], n numeric(5,1)[]);
INSERT INTO i32_geo (geog, geoms, n) VALUES ('SRID=4326;POINT(3 4)', ARRAY['POINT(1 1)'::geometry, NULL], '{1.5,NULL}')
$$);
RESET client_min_messages;
IMPORT FOREIGN SCHEMA public LIMIT TO (i32_points, i32_geo) FROM SERVER carto INTO public;
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
 WHERE c.relname IN ('i32_points', 'i32_geo') ORDER BY c.relname, a.attnum;
SELECT * FROM i32_points ORDER BY cartodb_id;
SELECT * FROM i32_geo;
-- Filters on the text column still work (checked locally or on CARTO).
SELECT name FROM i32_points WHERE the_geom IS NULL;
-- IMPORT options still apply.
CREATE SCHEMA nomerc;
IMPORT FOREIGN SCHEMA public LIMIT TO (i32_points) FROM SERVER carto INTO nomerc OPTIONS (import_webmercator 'false');
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'nomerc.i32_points'::regclass AND attnum > 0 ORDER BY attnum;
SELECT carto.exec('carto', 'DROP TABLE i32_points, i32_geo');
