-- 31_import: IMPORT FOREIGN SCHEMA — one foreign table per CARTO table, exact types, one /sql request.
CREATE EXTENSION postgis;
CREATE EXTENSION carto_fdw;
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
\set bob_url :sim_url '/user/bob'
CREATE SERVER carto_bob FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'bob_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto_bob OPTIONS (api_key :'bob_key');

-- The account (demo, a single user: schema public): ten tables of varied types, and a view.
SELECT carto.exec('carto', $$
DROP VIEW IF EXISTS i31_view;
DROP TABLE IF EXISTS i31_points, i31_types, "i31_it's ""q""", i31_geo, i31_enum, i31_nopk, i31_noid, "I31_Mixed", i31_empty;
DROP TYPE IF EXISTS i31_mood; DROP DOMAIN IF EXISTS i31_posint;
CREATE TYPE i31_mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN i31_posint AS integer CHECK (VALUE > 0);
CREATE TABLE i31_points (cartodb_id serial PRIMARY KEY, the_geom geometry(Point,4326), the_geom_webmercator geometry(Point,3857),
  name varchar(20) NOT NULL, price numeric(10,2));
INSERT INTO i31_points (the_geom, the_geom_webmercator, name, price) VALUES
  (ST_SetSRID(ST_MakePoint(2.17, 41.38), 4326), ST_Transform(ST_SetSRID(ST_MakePoint(2.17, 41.38), 4326), 3857), 'Barcelona', 12.5),
  (NULL, NULL, 'Nowhere', NULL);
CREATE TABLE i31_types (cartodb_id bigint PRIMARY KEY, b boolean, i2 smallint, i8 bigint, r real, f8 double precision, d date,
  ts timestamp, tstz timestamptz, tm time, iv interval, j json, jb jsonb, u uuid, bin bytea, ch char(3), tags text[],
  nums integer[], vcs varchar(5)[], n numeric NOT NULL);
INSERT INTO i31_types VALUES (1, true, 2, 9007199254740993, 1.5, 0.1, '2026-02-28', '2026-02-28 12:34:56.789', '2026-02-28 12:34:56.789+00',
  '23:59:59', '1 day 02:03:04', '{"a": [1, 2]}', '{"b": null}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\x00ff', 'ab',
  '{"x y","a,b",NULL}', '{1,NULL,3}', '{abc}', 123456789012345678901234567890.123),
  (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0);
CREATE TABLE "i31_it's ""q""" (cartodb_id serial PRIMARY KEY, "we""ird col" text, "Upper" int);
INSERT INTO "i31_it's ""q""" ("we""ird col", "Upper") VALUES ('tab	and ''quote''', 1);
CREATE TABLE i31_geo (cartodb_id serial PRIMARY KEY, the_geom geometry(Geometry,4326), poly geometry(MultiPolygon,4326),
  line geometry(LineStringZ,3857), geog geography(Point,4326), anygeom geometry, geoms geometry[]);
INSERT INTO i31_geo (the_geom, poly, line, geog, anygeom, geoms) VALUES (
  'SRID=4326;POINT(1 2)', 'SRID=4326;MULTIPOLYGON(((0 0,1 0,1 1,0 0)))', 'SRID=3857;LINESTRING(0 0 1,1 1 2)',
  'SRID=4326;POINT(3 4)', 'POINT(5 6)', ARRAY['POINT(1 1)'::geometry]);
CREATE TABLE i31_enum (cartodb_id serial PRIMARY KEY, m i31_mood NOT NULL, ms i31_mood[], pos i31_posint);
INSERT INTO i31_enum (m, ms, pos) VALUES ('happy', '{sad,ok}', 7);
CREATE TABLE i31_nopk (id int PRIMARY KEY, v text);
INSERT INTO i31_nopk VALUES (1, 'one'), (2, 'two');
CREATE TABLE i31_noid (v text);
INSERT INTO i31_noid VALUES ('only');
CREATE TABLE "I31_Mixed" (cartodb_id serial PRIMARY KEY, "CamelCol" text);
INSERT INTO "I31_Mixed" ("CamelCol") VALUES ('Camel');
CREATE TABLE i31_empty (cartodb_id serial PRIMARY KEY);
CREATE VIEW i31_view AS SELECT cartodb_id, name, price * 2 AS double_price FROM i31_points
$$);

-- LIMIT TO: exactly the named tables, in one /sql request for the whole catalogue.
CREATE SCHEMA imp;
\! curl -sS -o /dev/null -X DELETE "$CARTO_SIM_ADMIN/log"
IMPORT FOREIGN SCHEMA public LIMIT TO (i31_points, i31_types, "i31_it's ""q""", i31_geo, i31_enum, i31_nopk, i31_noid,
  "I31_Mixed", i31_empty, i31_view, i31_missing) FROM SERVER carto INTO imp;
\! curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c 'import json,sys; l=json.load(sys.stdin); print("requests:", [(e["method"], e["path"].split("/api/")[1], e["status"]) for e in l])'
-- The imported definitions: exact types (typmods, arrays), NOT NULL, options.
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
 WHERE c.relnamespace = 'imp'::regnamespace ORDER BY c.relname COLLATE "C", a.attnum;
SELECT c.relname, ft.ftoptions FROM pg_foreign_table ft JOIN pg_class c ON c.oid = ft.ftrelid
 WHERE c.relnamespace = 'imp'::regnamespace ORDER BY c.relname COLLATE "C";
-- Every imported table reads.
SELECT cartodb_id, ST_AsText(the_geom) AS the_geom, ST_SRID(the_geom_webmercator) AS merc_srid, name, price FROM imp.i31_points ORDER BY cartodb_id;
SELECT * FROM imp.i31_types ORDER BY cartodb_id;
SELECT * FROM imp."i31_it's ""q""";
SELECT cartodb_id, ST_AsEWKT(the_geom) AS the_geom, ST_AsEWKT(poly) AS poly, ST_AsEWKT(line) AS line, ST_AsEWKT(geog::geometry) AS geog,
       ST_AsEWKT(anygeom) AS anygeom, array_length(geoms, 1) AS n_geoms FROM imp.i31_geo;
SELECT * FROM imp.i31_enum;
SELECT * FROM imp.i31_nopk ORDER BY id;
SELECT * FROM imp.i31_noid;
SELECT * FROM imp."I31_Mixed";
SELECT count(*) FROM imp.i31_empty;
-- Importing again into the same schema: PostgreSQL's own error (the tables exist).
IMPORT FOREIGN SCHEMA public LIMIT TO (i31_nopk) FROM SERVER carto INTO imp;

-- Views need import_views; import_webmercator 'false' leaves out the_geom_webmercator.
CREATE SCHEMA imp2;
IMPORT FOREIGN SCHEMA public LIMIT TO (i31_view, i31_points) FROM SERVER carto INTO imp2
  OPTIONS (import_views 'true', import_webmercator 'false');
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS type
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
 WHERE c.relnamespace = 'imp2'::regnamespace ORDER BY c.relname, a.attnum;
SELECT * FROM imp2.i31_view ORDER BY cartodb_id;
-- import_not_null 'false' drops the NOT NULL constraints.
CREATE SCHEMA imp3;
IMPORT FOREIGN SCHEMA public LIMIT TO (i31_points) FROM SERVER carto INTO imp3 OPTIONS (import_not_null 'false');
SELECT attname, attnotnull FROM pg_attribute WHERE attrelid = 'imp3.i31_points'::regclass AND attnum > 0 ORDER BY attnum;

-- Options are checked, with a hint listing the valid ones.
IMPORT FOREIGN SCHEMA public LIMIT TO (i31_points) FROM SERVER carto INTO imp3 OPTIONS (import_view 'true');
IMPORT FOREIGN SCHEMA public LIMIT TO (i31_points) FROM SERVER carto INTO imp3 OPTIONS (import_views 'maybe');
-- A schema the account does not have.
IMPORT FOREIGN SCHEMA nope FROM SERVER carto INTO imp3;
-- CARTO's errors: an unknown key.
CREATE SERVER carto_badkey FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto_badkey OPTIONS (api_key 'not-a-key');
IMPORT FOREIGN SCHEMA public FROM SERVER carto_badkey INTO imp3;
-- A regular key imports only the tables it can read.
CREATE SERVER carto_ro FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto_ro OPTIONS (api_key :'readonly_key');
CREATE SCHEMA imp_ro;
IMPORT FOREIGN SCHEMA public FROM SERVER carto_ro INTO imp_ro;
SELECT relname FROM pg_class WHERE relnamespace = 'imp_ro'::regnamespace ORDER BY 1;

-- An organisation member (bob): the schema is the username. Everything, then EXCEPT.
SELECT carto.exec('carto_bob', $$
DROP TABLE IF EXISTS i31_a, i31_b, i31_c CASCADE;
CREATE TABLE i31_a (cartodb_id serial PRIMARY KEY, the_geom geometry(Point,4326), label text);
INSERT INTO i31_a (the_geom, label) VALUES ('SRID=4326;POINT(0 0)', 'a');
CREATE TABLE i31_b (cartodb_id serial PRIMARY KEY, qty int NOT NULL DEFAULT 0);
INSERT INTO i31_b (qty) VALUES (5);
CREATE TABLE i31_c (cartodb_id serial PRIMARY KEY);
CREATE VIEW i31_bview AS SELECT cartodb_id, qty FROM i31_b
$$);
IMPORT FOREIGN SCHEMA public FROM SERVER carto_bob INTO imp3;
CREATE SCHEMA imp_bob;
IMPORT FOREIGN SCHEMA bob FROM SERVER carto_bob INTO imp_bob OPTIONS (import_views 'true');
SELECT c.relname, ft.ftoptions FROM pg_foreign_table ft JOIN pg_class c ON c.oid = ft.ftrelid
 WHERE c.relnamespace = 'imp_bob'::regnamespace AND c.relname LIKE 'i31%' ORDER BY 1;
SELECT label, ST_AsText(the_geom) FROM imp_bob.i31_a;
SELECT qty FROM imp_bob.i31_b;
SELECT * FROM imp_bob.i31_bview;
SELECT count(*) FROM imp_bob.i31_c;
CREATE SCHEMA imp_bob2;
IMPORT FOREIGN SCHEMA bob EXCEPT (i31_a, i31_c) FROM SERVER carto_bob INTO imp_bob2;
SELECT relname FROM pg_class WHERE relnamespace = 'imp_bob2'::regnamespace AND relname LIKE 'i31%' ORDER BY 1;
-- bob's schema, seen from demo's account: not there.
IMPORT FOREIGN SCHEMA bob FROM SERVER carto INTO imp_bob2;

SELECT carto.exec('carto_bob', 'DROP TABLE i31_a, i31_b, i31_c CASCADE');
SELECT carto.exec('carto', $$DROP VIEW i31_view; DROP TABLE i31_points, i31_types, "i31_it's ""q""", i31_geo, i31_enum, i31_nopk,
  i31_noid, "I31_Mixed", i31_empty; DROP TYPE i31_mood; DROP DOMAIN i31_posint$$);
