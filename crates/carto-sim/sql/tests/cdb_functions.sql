-- Regression tests of ../cdb_functions.sql. Run by ./run (fresh database, PostGIS, the file loaded by a
-- superuser, roles cdbt_owner / cdbt_reader / publicuser created). Output compared with expected/.
\set VERBOSITY terse
SET client_min_messages = warning;

-- ===================================================================== setup as carto-sim does it
SELECT cartodb.CDB_SetUserQuotaInBytes('cdbt_org', 0);   -- an organisation member's schema, no public quota yet
GRANT CREATE ON SCHEMA public TO cdbt_owner;
SHOW search_path;
SET ROLE cdbt_owner;
SHOW search_path;

-- ===================================================================== CDB_LatLng
SELECT ST_AsEWKT(CDB_LatLng(40.4168, -3.7038)) AS numeric_args,
       ST_AsEWKT(CDB_LatLng(40.5::float8, -3.5::float8)) AS float_args,
       ST_AsEWKT(CDB_LatLng(1, 2)) AS int_args,
       CDB_LatLng(NULL::float8, 1) IS NULL AS null_in_null_out;

-- ===================================================================== CDB_TransformToWebmercator
SELECT ST_AsEWKT(ST_SnapToGrid(CDB_TransformToWebmercator(CDB_LatLng(40, -3)), 0.01)) AS point;
SELECT ST_AsEWKT(CDB_TransformToWebmercator('SRID=3857;POINT(1 2)')) AS already_3857;
SELECT CDB_TransformToWebmercator(NULL) IS NULL AS null_geom;
SELECT CDB_TransformToWebmercator('SRID=4326;POINT(0 90)') IS NULL AS pole_point_is_null;
-- a polygon over the pole is clipped at latitude 89
SELECT ST_AsText(ST_SnapToGrid(ST_Transform(CDB_TransformToWebmercator(
         'SRID=4326;POLYGON((0 80,10 80,10 90,0 90,0 80))'), 4326), 0.001)) AS clipped;
-- MULTI stays MULTI after clipping
SELECT GeometryType(CDB_TransformToWebmercator(
         'SRID=4326;MULTIPOLYGON(((0 80,10 80,10 90,0 90,0 80)))')) AS multi_kept;
-- a line reaching the pole is cut at 89 degrees; points beyond it are dropped from a MULTIPOINT
SELECT ST_AsText(ST_SnapToGrid(CDB_TransformToWebmercator('SRID=4326;LINESTRING(90 90, 0 80)'), 1)) AS line_cut,
       ST_AsText(ST_SnapToGrid(CDB_TransformToWebmercator('SRID=4326;MULTIPOINT(10 3, 0 90, 0 4)'), 1)) AS multipoint,
       CDB_TransformToWebmercator('SRID=4326;LINESTRING(90 90, 0 90)') IS NULL AS all_beyond_is_null;
-- NaN coordinates give NULL, not an error
SELECT CDB_TransformToWebmercator('SRID=4326;POLYGON((NaN 5000000,NaN 5000001,NaN 5000002,NaN 5000000))') IS NULL
       AS nan_is_null;
-- other SRIDs are transformed through 4326
SELECT ST_AsText(ST_SnapToGrid(CDB_TransformToWebmercator(ST_Transform(CDB_LatLng(10, 20), 32634)), 0.01)) AS via_utm;

-- ===================================================================== CDB_ColumnNames / CDB_ColumnType
CREATE TABLE coltypes (a integer, b text, dropped int, c numeric(10,2), d varchar(5), g geometry(Point,4326),
                       e timestamptz, f int8[]);
ALTER TABLE coltypes DROP COLUMN dropped;
SELECT * FROM CDB_ColumnNames('coltypes');
SELECT pg_typeof(c) FROM CDB_ColumnNames('coltypes') c LIMIT 1;
SELECT n, CDB_ColumnType('coltypes', n) FROM CDB_ColumnNames('coltypes') n;
SELECT CDB_ColumnType('coltypes', 'nosuch') IS NULL AS missing_column,
       CDB_ColumnType('coltypes', 'ctid') IS NULL AS system_column;
DROP TABLE coltypes;

-- ===================================================================== CDB_UserTables
CREATE TABLE ut_private (x int);
CREATE TABLE ut_public (x int);
CREATE TABLE ut_shared (x int);
CREATE VIEW ut_view AS SELECT 1 AS x;
GRANT SELECT ON ut_public TO publicuser;
GRANT SELECT ON ut_shared TO cdbt_reader;
SELECT 'all' AS perm, array_agg(t ORDER BY t) FROM CDB_UserTables() t
UNION ALL SELECT 'all2', array_agg(t ORDER BY t) FROM CDB_UserTables('all') t
UNION ALL SELECT 'public', array_agg(t ORDER BY t) FROM CDB_UserTables('public') t
UNION ALL SELECT 'private', array_agg(t ORDER BY t) FROM CDB_UserTables('private') t
UNION ALL SELECT 'bogus', array_agg(t ORDER BY t) FROM CDB_UserTables('bogus') t;
SELECT pg_typeof(t) FROM CDB_UserTables() t LIMIT 1;
RESET ROLE;
SET ROLE cdbt_reader;   -- a regular API key's role: sees what it can read, and the public tables
SELECT array_agg(t ORDER BY t) AS reader_all FROM CDB_UserTables() t;
SELECT array_agg(t ORDER BY t) AS reader_private FROM CDB_UserTables('private') t;
RESET ROLE;
SET ROLE publicuser;
SELECT array_agg(t ORDER BY t) AS publicuser_all FROM CDB_UserTables() t;
RESET ROLE;
SET ROLE cdbt_owner;
DROP VIEW ut_view;
DROP TABLE ut_private, ut_public, ut_shared;

-- a helper to show a table's shape
CREATE FUNCTION pg_temp.shape(t regclass) RETURNS TABLE (col name, type text, notnull boolean, def text)
AS $$
  SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid)
    FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
   WHERE a.attrelid = t AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
$$ LANGUAGE sql;
CREATE FUNCTION pg_temp.extras(t regclass) RETURNS TABLE (kind text, name name, def text)
AS $$
  SELECT 'index', c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
   WHERE i.indrelid = t
  UNION ALL
  SELECT 'constraint', conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = t AND contype <> 'p'
  UNION ALL
  SELECT 'trigger', tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = t AND NOT tgisinternal
  ORDER BY 1, 2
$$ LANGUAGE sql;

-- ===================================================================== organisation user: quota per schema
CREATE TABLE cdbt_org.orgt (name text);
INSERT INTO cdbt_org.orgt VALUES ('x');
SELECT CDB_CartodbfyTable('cdbt_org.orgt');             -- 1-arg form = schema public: no quota there
SELECT CDB_CartodbfyTable('nosuchschema', 'cdbt_org.orgt');
SELECT CDB_CartodbfyTable('cdbt_org', 'cdbt_org.orgt');
SELECT * FROM pg_temp.shape('cdbt_org.orgt');
SELECT cartodb_id, name, the_geom FROM cdbt_org.orgt;

RESET ROLE;
SELECT cartodb.CDB_SetUserQuotaInBytes('public', 0);     -- single user: quota in public
SELECT cartodb.CDB_SetUserQuotaInBytes(0);                  -- the one-argument form is for 'public'
SELECT public._CDB_UserQuotaInBytes();
SELECT cartodb._CDB_total_relation_size('public', 'no_such_table') AS missing_is_zero;
SET ROLE cdbt_owner;

-- ===================================================================== no rewrite: the "perfect" table
CREATE TABLE perfect (cartodb_id serial PRIMARY KEY, the_geom geometry(Point,4326),
                      the_geom_webmercator geometry(Point,3857), name text CHECK (name <> ''));
INSERT INTO perfect (the_geom, name) VALUES (CDB_LatLng(1, 2), 'a');
SELECT 'perfect'::regclass::oid AS oid_before \gset
-- a new table: PostgreSQL's four "does not exist, skipping" notices of DROP TRIGGER IF EXISTS, as on CARTO
SET client_min_messages = notice;
SELECT CDB_CartodbfyTable('perfect');
SET client_min_messages = warning;
SELECT 'perfect'::regclass::oid = :oid_before AS oid_unchanged;
SELECT * FROM pg_temp.shape('perfect');
SELECT * FROM pg_temp.extras('perfect');
-- idempotent (and quiet: the triggers exist)
SET client_min_messages = notice;
SELECT CDB_CartodbfyTable('perfect');
SET client_min_messages = warning;
SELECT 'perfect'::regclass::oid = :oid_before AS oid_unchanged_again;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'perfect'::regclass AND NOT tgisinternal;
SELECT count(*) AS indexes FROM pg_index WHERE indrelid = 'perfect'::regclass;
-- the webmercator trigger, on insert and on update of the_geom
INSERT INTO perfect (the_geom, name) VALUES (CDB_LatLng(10, 20), 'b'), (NULL, 'c');
UPDATE perfect SET the_geom = CDB_LatLng(0, 0) WHERE name = 'a';
SELECT cartodb_id, name, ST_AsText(the_geom), ST_AsText(ST_SnapToGrid(the_geom_webmercator, 0.01))
  FROM perfect ORDER BY cartodb_id;
-- the metadata trigger (and only cartodbfied tables are recorded)
SELECT tabname, updated_at IS NOT NULL AS has_time FROM cartodb.cdb_tablemetadata_text ORDER BY 1; -- not for users
RESET ROLE;
SELECT tabname, updated_at IS NOT NULL AS has_time FROM cartodb.cdb_tablemetadata_text ORDER BY 1;
SET ROLE cdbt_owner;
-- users cannot write the metadata table themselves
INSERT INTO cartodb.cdb_tablemetadata VALUES ('perfect', now());
-- disabled triggers come back enabled
ALTER TABLE perfect DISABLE TRIGGER update_the_geom_webmercator_trigger;
SELECT CDB_CartodbfyTable('perfect');
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'perfect'::regclass AND NOT tgisinternal ORDER BY 1;

-- ===================================================================== no rewrite: bigint key, identity key
CREATE TABLE big (cartodb_id bigserial PRIMARY KEY, the_geom geometry(Geometry,4326),
                  the_geom_webmercator geometry(Geometry,3857));
SELECT 'big'::regclass::oid AS oid_before \gset
SELECT CDB_CartodbfyTable('big');
SELECT 'big'::regclass::oid = :oid_before AS oid_unchanged;
SELECT * FROM pg_temp.shape('big');

CREATE TABLE ident (cartodb_id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, the_geom geometry(Point,4326),
                    the_geom_webmercator geometry(Point,3857));
SELECT 'ident'::regclass::oid AS oid_before \gset
SELECT CDB_CartodbfyTable('ident');
SELECT 'ident'::regclass::oid = :oid_before AS oid_unchanged;

-- ===================================================================== no rewrite: integer primary key renamed
CREATE TABLE renamed_pk (id serial PRIMARY KEY, the_geom geometry(Point,4326),
                         the_geom_webmercator geometry(Point,3857), v text);
INSERT INTO renamed_pk (v) VALUES ('one'), ('two');
SELECT 'renamed_pk'::regclass::oid AS oid_before \gset
SELECT CDB_CartodbfyTable('renamed_pk');
SELECT 'renamed_pk'::regclass::oid = :oid_before AS oid_unchanged;
SELECT * FROM pg_temp.shape('renamed_pk');
INSERT INTO renamed_pk (v) VALUES ('three');
SELECT cartodb_id, v FROM renamed_pk ORDER BY 1;

-- ===================================================================== no rewrite: unique not-null cartodb_id, move to another schema
CREATE TABLE movable (cartodb_id serial UNIQUE NOT NULL, the_geom geometry(Point,4326),
                      the_geom_webmercator geometry(Point,3857));
SELECT 'movable'::regclass::oid AS oid_before \gset
SELECT CDB_CartodbfyTable('cdbt_org', 'movable');
SELECT 'cdbt_org.movable'::regclass::oid = :oid_before AS oid_unchanged, to_regclass('public.movable') IS NULL AS gone;
SELECT * FROM pg_temp.extras('cdbt_org.movable');

-- ===================================================================== rewrite: plain table, no key, no geometry
CREATE TABLE plain (name text NOT NULL, n integer DEFAULT 7 CHECK (n > 0), UNIQUE (name));
INSERT INTO plain VALUES ('b', 2), ('a', 1), ('c', 3);
SELECT 'plain'::regclass::oid AS oid_before \gset
SELECT CDB_CartodbfyTable('plain');
SELECT 'plain'::regclass::oid <> :oid_before AS oid_changed;
SELECT * FROM pg_temp.shape('plain');
SELECT * FROM pg_temp.extras('plain');
SELECT cartodb_id, the_geom IS NULL AS no_geom, name, n FROM plain ORDER BY cartodb_id;
INSERT INTO plain (name) VALUES ('d') RETURNING cartodb_id, n;
SELECT has_table_privilege('publicuser', 'plain', 'SELECT') AS publicuser_reads_after_rewrite;

-- ===================================================================== rewrite: bigint key without sequence becomes integer, CHECKs dropped
CREATE TABLE nokeyseq (cartodb_id bigint PRIMARY KEY, the_geom geometry(Point,4326), v int CHECK (v > 0));
INSERT INTO nokeyseq VALUES (10, CDB_LatLng(1, 1), 1), (20, NULL, 2);
GRANT SELECT ON nokeyseq TO publicuser;
SELECT 'nokeyseq'::regclass::oid AS oid_before \gset
SELECT CDB_CartodbfyTable('nokeyseq');
SELECT 'nokeyseq'::regclass::oid <> :oid_before AS oid_changed;
SELECT * FROM pg_temp.shape('nokeyseq');
SELECT * FROM pg_temp.extras('nokeyseq');
SELECT cartodb_id, ST_AsText(the_geom), ST_AsText(ST_SnapToGrid(the_geom_webmercator, 0.01)), v FROM nokeyseq ORDER BY 1;
INSERT INTO nokeyseq (v) VALUES (-1) RETURNING cartodb_id, v;
SELECT has_table_privilege('publicuser', 'nokeyseq', 'SELECT') AS publicuser_reads_after_rewrite;
-- now it is perfect: no further rewrite
SELECT 'nokeyseq'::regclass::oid AS oid_before \gset
SELECT CDB_CartodbfyTable('nokeyseq');
SELECT 'nokeyseq'::regclass::oid = :oid_before AS oid_unchanged;

-- ===================================================================== rewrite: serial key whose sequence is not owned (what GDAL creates)
CREATE TABLE gdal_like (cartodb_id serial, the_geom geometry(Point,4326), name text, PRIMARY KEY (cartodb_id));
DROP SEQUENCE gdal_like_cartodb_id_seq CASCADE;
CREATE SEQUENCE gdal_like_cartodb_id_seq START 1;
ALTER TABLE gdal_like ALTER COLUMN cartodb_id SET DEFAULT nextval('gdal_like_cartodb_id_seq');
INSERT INTO gdal_like (the_geom, name) VALUES (CDB_LatLng(5, 6), 'p');
SELECT 'gdal_like'::regclass::oid AS oid_before \gset
SELECT CDB_CartodbfyTable('gdal_like');
SELECT 'gdal_like'::regclass::oid <> :oid_before AS oid_changed;
SELECT * FROM pg_temp.shape('gdal_like');
SELECT relname FROM pg_class WHERE relname LIKE 'gdal_like%seq%' ORDER BY 1;

-- ===================================================================== rewrite: geometry from another column, SRID transformed
CREATE TABLE othergeom (cartodb_id serial PRIMARY KEY, name text, geom geometry(Point,32630), extra int);
INSERT INTO othergeom (name, geom, extra) VALUES ('m', ST_Transform(CDB_LatLng(40, -3), 32630), 1);
SELECT CDB_CartodbfyTable('othergeom');
SELECT * FROM pg_temp.shape('othergeom');
SELECT cartodb_id, name, ST_AsText(ST_SnapToGrid(the_geom, 0.000001)), extra FROM othergeom;

-- geometry column without SRID: taken as 4326
CREATE TABLE nosrid (g geometry);
INSERT INTO nosrid VALUES ('POINT(3 4)');
SELECT CDB_CartodbfyTable('nosrid');
SELECT cartodb_id, ST_AsEWKT(the_geom) FROM nosrid;

-- ===================================================================== the_geom chosen among all 4326 columns: the last one wins
CREATE TABLE twogeoms (cartodb_id serial PRIMARY KEY, the_geom geometry(Point,4326),
                       area geometry(Polygon,4326), the_geom_webmercator geometry(Geometry,3857));
INSERT INTO twogeoms (the_geom, area) VALUES (CDB_LatLng(1, 1), 'SRID=4326;POLYGON((0 0,1 0,1 1,0 0))');
SELECT 'twogeoms'::regclass::oid AS oid_before \gset
SELECT CDB_CartodbfyTable('twogeoms');
SELECT 'twogeoms'::regclass::oid = :oid_before AS oid_unchanged;
SELECT * FROM pg_temp.shape('twogeoms');
SELECT ST_AsText(the_geom) FROM twogeoms;

-- a geometry(PointZ,4326) column next to the_geom: renamed into its place, then the rewrite fails on Z
CREATE TABLE withz (name text, the_geom geometry(Point,4326), z geometry(PointZ,4326));
INSERT INTO withz VALUES ('a', CDB_LatLng(1, 1), 'SRID=4326;POINT(1 1 5)');
SELECT CDB_CartodbfyTable('withz');
SELECT * FROM pg_temp.shape('withz');   -- rolled back: unchanged

-- ===================================================================== text the_geom
CREATE TABLE textgeom (the_geom text, name text);
INSERT INTO textgeom VALUES ('POINT(7 8)', 'wkt'), ('SRID=4326;POINT(1 2)', 'ewkt'), (NULL, 'none');
SELECT CDB_CartodbfyTable('textgeom');
SELECT * FROM pg_temp.shape('textgeom');
SELECT name, ST_AsEWKT(the_geom) FROM textgeom ORDER BY name;

-- (as on CARTO: the highest SRID found decides; mixing SRID 0 and 4326 texts fails)
CREATE TABLE textgeom2 (the_geom varchar, name text);
INSERT INTO textgeom2 VALUES ('POINT(7 8)', 'wkt'), ('0101000000000000000000F03F0000000000000040', 'hexwkb');
SELECT CDB_CartodbfyTable('textgeom2');
SELECT * FROM pg_temp.shape('textgeom2');
SELECT cartodb_id, name, ST_AsEWKT(the_geom) FROM textgeom2 ORDER BY name;

CREATE TABLE junkgeom (the_geom text, the_geom_webmercator integer);
INSERT INTO junkgeom VALUES ('not a geometry', 5);
SELECT CDB_CartodbfyTable('junkgeom');
SELECT * FROM pg_temp.shape('junkgeom');
SELECT cartodb_id, the_geom IS NULL AS null_geom, the_geom0, the_geom_webmercator0 FROM junkgeom;

-- ===================================================================== unusable cartodb_id
CREATE TABLE dupids (cartodb_id int, v text);
INSERT INTO dupids VALUES (1, 'a'), (1, 'b');
SELECT CDB_CartodbfyTable('dupids');
CREATE TABLE textids (cartodb_id text, v text);
INSERT INTO textids VALUES ('x', 'a');
SELECT CDB_CartodbfyTable('textids');
-- a non-unique but usable cartodb_id is accepted and kept
CREATE TABLE goodids (cartodb_id int, v text);
INSERT INTO goodids VALUES (5, 'a'), (3, 'b');
SELECT CDB_CartodbfyTable('goodids');
SELECT cartodb_id, v FROM goodids ORDER BY 1;
INSERT INTO goodids (v) VALUES ('c') RETURNING cartodb_id;

-- ===================================================================== a dependent view stops a rewrite
CREATE TABLE withview (name text);
CREATE VIEW withview_v AS SELECT name FROM withview;
SELECT CDB_CartodbfyTable('withview');
DROP VIEW withview_v;
SELECT CDB_CartodbfyTable('withview');

-- ===================================================================== quota
INSERT INTO plain (name) SELECT 'q' || g FROM generate_series(1, 2000) g;
RESET ROLE;
SELECT cartodb.CDB_SetUserQuotaInBytes('public', 1000);
SET ROLE cdbt_owner;
DO $$
BEGIN
  INSERT INTO plain (name) VALUES ('over');
  RAISE NOTICE 'no error';
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'insert refused: %', regexp_replace(SQLERRM, '[0-9.]+KB', 'NKB');
END
$$;
SELECT CDB_UserDataSize() > 1000 AS over_quota, CDB_UserDataSize('cdbt_org') >= 0 AS org_size;
RESET ROLE;
SELECT cartodb.CDB_SetUserQuotaInBytes('public', 0);
SET ROLE cdbt_owner;
INSERT INTO plain (name) VALUES ('unlimited again');
SELECT count(*) FROM plain;

-- ===================================================================== a key role writes into a cartodbfied table
GRANT SELECT, INSERT, UPDATE ON perfect TO cdbt_reader;
GRANT USAGE ON SEQUENCE perfect_cartodb_id_seq TO cdbt_reader;
RESET ROLE;
SET ROLE cdbt_reader;
INSERT INTO perfect (the_geom, name) VALUES (CDB_LatLng(2, 2), 'by key');
SELECT name, ST_AsText(ST_SnapToGrid(the_geom_webmercator, 0.01)) FROM perfect WHERE name = 'by key';
RESET ROLE;

SELECT CDB_Version();
