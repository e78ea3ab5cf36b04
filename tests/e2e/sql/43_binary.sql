-- 43_binary: COPY binary both ways. The type corpus of 11_types (every type family, NULLs, extremes,
-- NaN/±Infinity, -0, BC dates, infinity timestamps, arrays with NULLs and bounds, enums, json with duplicate
-- keys, geometries with Z/M and SRIDs, geography) reads and writes identically through copy_format 'binary'
-- and 'text', compared value by value with digests CARTO computes itself; a type that cannot go binary, or
-- a local type unlike CARTO's, takes the text path under 'auto' and gives a clear error under 'binary'.
CREATE EXTENSION postgis;
CREATE EXTENSION carto_fdw;
\set SHOW_CONTEXT never
-- The corpus on CARTO (tables t43_*) and locally (schema loc).
\! sed 's/t11_/t43_/g' data/11_types.sql | curl -sS -u "demo:$CARTO_SIM_API_KEY" "$CARTO_SIM_BASE_URL/api/v2/sql" --data-urlencode q@- | sed -E 's/"time":[0-9.e+-]+/"time":T/'; echo
CREATE SCHEMA loc;
SET search_path = loc, public;
\! sed 's/t11_/t43_/g' data/11_types.sql > /tmp/e2e_43_types.sql
\i /tmp/e2e_43_types.sql
\! rm -f /tmp/e2e_43_types.sql
RESET search_path;
CREATE TYPE t43_mood AS ENUM ('sad', 'ok', 'happy ''quoted''');

CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url', scan_method 'copy');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
-- Every column but the xml one (xml never goes binary: see ft_all below).
\set scalars 'cartodb_id int, b bool, i2 int2, i4 int4, i8 int8, n numeric, n102 numeric(10,2), f4 float4, f8 float8, m money, c5 char(5), vc varchar(10), t text, by bytea, d date, tm time, ttz timetz, ts timestamp, tstz timestamptz, iv interval, u uuid, ip inet, cid cidr, mac macaddr, mac8 macaddr8, bt bit(4), vb varbit, js json, jb jsonb, pt point, ln line, ls lseg, bx box, pa path, pg polygon, ci circle, tsv tsvector, tsq tsquery, r4 int4range, rts tstzrange, rn numrange, mr int4multirange, at text[], ai int[], a2 int[][], ajb jsonb[], ats timestamptz[], e t43_mood, o oid, lsn pg_lsn'
\set geos 'cartodb_id int, kind text, the_geom geometry, g4326 geometry(Geometry, 4326), geog geography'
CREATE FOREIGN TABLE ft_bin (:scalars) SERVER carto OPTIONS (table_name 't43_scalars');
CREATE FOREIGN TABLE ft_geo (:geos) SERVER carto OPTIONS (table_name 't43_geo');

-- Digests of every value: md5 of its text form (DateStyle ISO, IntervalStyle postgres, extra_float_digits 3,
-- UTC), float4send/float8send for floats (-0 and NaN bits), hex EWKB for geometries, money as numeric.
-- The same select list runs on CARTO (carto.query) over CARTO's table and here over a foreign table.
CREATE FUNCTION pg_temp.digest_list(cols regclass) RETURNS text LANGUAGE sql AS $$
  SELECT string_agg(CASE format_type(atttypid, NULL)
      WHEN 'real' THEN format('encode(float4send(%I), ''hex'') AS %I', attname, attname)
      WHEN 'double precision' THEN format('encode(float8send(%I), ''hex'') AS %I', attname, attname)
      WHEN 'money' THEN format('%I::numeric::text AS %I', attname, attname)
      WHEN 'geometry' THEN format('encode(ST_AsEWKB(%I), ''hex'') AS %I', attname, attname)
      WHEN 'geography' THEN format('encode(ST_AsEWKB(%I::geometry), ''hex'') AS %I', attname, attname)
      ELSE format('md5(%I::text) AS %I', attname, attname) END, ', ' ORDER BY attnum)
  FROM pg_attribute WHERE attrelid = cols AND attnum > 0 AND NOT attisdropped $$;
CREATE FUNCTION pg_temp.settings() RETURNS text LANGUAGE sql AS $$
  SELECT 'SET LOCAL DateStyle = ISO; SET LOCAL IntervalStyle = postgres; SET LOCAL extra_float_digits = 3; SET LOCAL TimeZone = UTC; ' $$;
-- CARTO's digests of its table `remote` (columns as in `cols`).
CREATE FUNCTION pg_temp.remote_digests(cols regclass, remote text) RETURNS SETOF jsonb LANGUAGE sql AS $$
  SELECT * FROM carto.query('carto', pg_temp.settings() || format('SELECT %s FROM %I', pg_temp.digest_list(cols), remote)) $$;
-- Our digests of the rows read through foreign table `ft`, in one local transaction with the same settings.
CREATE FUNCTION pg_temp.local_digests(ft regclass) RETURNS SETOF jsonb LANGUAGE plpgsql AS $$
BEGIN
  SET LOCAL DateStyle = ISO; SET LOCAL IntervalStyle = postgres; SET LOCAL extra_float_digits = 3; SET LOCAL TimeZone = UTC;
  RETURN QUERY EXECUTE format('SELECT to_jsonb(digests_row.*) FROM (SELECT %s FROM %s) digests_row', pg_temp.digest_list(ft), ft);
END $$;
-- Rows and values that differ between two digest sets (one row = one jsonb object of column digests).
CREATE FUNCTION pg_temp.compare(a text, b text, OUT rows_a bigint, OUT rows_b bigint, OUT rows_differing bigint,
                                OUT columns_differing text) LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format($q$
    WITH a AS (SELECT j FROM %s j), b AS (SELECT j FROM %s j),
         d AS ((SELECT j FROM a EXCEPT ALL SELECT j FROM b) UNION ALL (SELECT j FROM b EXCEPT ALL SELECT j FROM a))
    SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b), (SELECT count(*) FROM d),
           (SELECT string_agg(DISTINCT k, ',') FROM a JOIN b ON a.j->>'cartodb_id' = b.j->>'cartodb_id',
                   jsonb_object_keys(a.j) k WHERE a.j->k IS DISTINCT FROM b.j->k)$q$, a, b)
    INTO rows_a, rows_b, rows_differing, columns_differing;
END $$;

-- Reads: binary and text against CARTO's own digests.
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ft_bin;
SELECT 'auto' AS copy_format, * FROM pg_temp.compare('pg_temp.remote_digests(''ft_bin'', ''t43_scalars'')', 'pg_temp.local_digests(''ft_bin'')');
ALTER FOREIGN TABLE ft_bin OPTIONS (ADD copy_format 'binary');
SELECT 'binary' AS copy_format, * FROM pg_temp.compare('pg_temp.remote_digests(''ft_bin'', ''t43_scalars'')', 'pg_temp.local_digests(''ft_bin'')');
ALTER FOREIGN TABLE ft_bin OPTIONS (SET copy_format 'text');
EXPLAIN (VERBOSE, COSTS OFF) SELECT cartodb_id, t FROM ft_bin;
SELECT 'text' AS copy_format, * FROM pg_temp.compare('pg_temp.remote_digests(''ft_bin'', ''t43_scalars'')', 'pg_temp.local_digests(''ft_bin'')');
-- The geometries (Z, M, ZM, SRIDs, empty, collections) and geography, both formats.
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ft_geo;
SELECT 'binary' AS copy_format, * FROM pg_temp.compare('pg_temp.remote_digests(''ft_geo'', ''t43_geo'')', 'pg_temp.local_digests(''ft_geo'')');
ALTER FOREIGN TABLE ft_geo OPTIONS (ADD copy_format 'text');
SELECT 'text' AS copy_format, * FROM pg_temp.compare('pg_temp.remote_digests(''ft_geo'', ''t43_geo'')', 'pg_temp.local_digests(''ft_geo'')');
ALTER FOREIGN TABLE ft_geo OPTIONS (DROP copy_format);
-- The receive function applies the local typmod as the input function does: errors, never truncation.
CREATE FOREIGN TABLE ft_geo_points (cartodb_id int, the_geom geometry(Point, 4326))
  SERVER carto OPTIONS (table_name 't43_geo', copy_format 'binary');
SELECT cartodb_id, ST_AsEWKT(the_geom) FROM ft_geo_points WHERE cartodb_id = 1;
SELECT * FROM ft_geo_points WHERE cartodb_id = 2;
CREATE FOREIGN TABLE ft_short (cartodb_id int, vc varchar(3)) SERVER carto OPTIONS (table_name 't43_scalars', copy_format 'binary');
SELECT * FROM ft_short;

-- Writes: the corpus INSERTed into empty CARTO tables in each format; CARTO's digests of what it stored
-- equal its digests of the original.
SET client_min_messages = warning;
SELECT carto.exec('carto', 'DROP TABLE IF EXISTS t43_w_bin, t43_w_text, t43_wg_bin, t43_wg_text; CREATE TABLE t43_w_bin (LIKE t43_scalars); CREATE TABLE t43_w_text (LIKE t43_scalars);
                            CREATE TABLE t43_wg_bin (LIKE t43_geo); CREATE TABLE t43_wg_text (LIKE t43_geo)');
RESET client_min_messages;
CREATE FOREIGN TABLE fw_bin (:scalars) SERVER carto OPTIONS (table_name 't43_w_bin');
CREATE FOREIGN TABLE fw_text (:scalars) SERVER carto OPTIONS (table_name 't43_w_text', copy_format 'text');
CREATE FOREIGN TABLE fwg_bin (:geos) SERVER carto OPTIONS (table_name 't43_wg_bin');
CREATE FOREIGN TABLE fwg_text (:geos) SERVER carto OPTIONS (table_name 't43_wg_text', copy_format 'text');
EXPLAIN (VERBOSE, COSTS OFF) INSERT INTO fw_bin SELECT * FROM fw_bin;
EXPLAIN (VERBOSE, COSTS OFF) INSERT INTO fw_text SELECT * FROM fw_text;
CREATE FUNCTION pg_temp.cols(ft regclass) RETURNS text LANGUAGE sql AS $$
  SELECT string_agg(CASE attname WHEN 'e' THEN 'e::text::public.t43_mood' ELSE quote_ident(attname) END, ', ' ORDER BY attnum)
  FROM pg_attribute WHERE attrelid = ft AND attnum > 0 AND NOT attisdropped $$;
DO $$ BEGIN
  EXECUTE format('INSERT INTO fw_bin SELECT %1$s FROM loc.t43_scalars', pg_temp.cols('fw_bin'));
  EXECUTE format('INSERT INTO fw_text SELECT %1$s FROM loc.t43_scalars', pg_temp.cols('fw_text'));
  INSERT INTO fwg_bin SELECT * FROM loc.t43_geo;
  INSERT INTO fwg_text SELECT * FROM loc.t43_geo;
END $$;
SELECT 'binary' AS copy_format, * FROM pg_temp.compare('pg_temp.remote_digests(''fw_bin'', ''t43_scalars'')', 'pg_temp.remote_digests(''fw_bin'', ''t43_w_bin'')');
SELECT 'text' AS copy_format, * FROM pg_temp.compare('pg_temp.remote_digests(''fw_text'', ''t43_scalars'')', 'pg_temp.remote_digests(''fw_text'', ''t43_w_text'')');
SELECT 'binary' AS copy_format, * FROM pg_temp.compare('pg_temp.remote_digests(''fwg_bin'', ''t43_geo'')', 'pg_temp.remote_digests(''fwg_bin'', ''t43_wg_bin'')');
SELECT 'text' AS copy_format, * FROM pg_temp.compare('pg_temp.remote_digests(''fwg_text'', ''t43_geo'')', 'pg_temp.remote_digests(''fwg_text'', ''t43_wg_text'')');
-- ... and read back in binary, they equal the local originals.
SELECT count(*) AS differing FROM ((SELECT r::text FROM ft_geo r EXCEPT ALL SELECT r::text FROM fwg_bin r)
                           UNION ALL (SELECT r::text FROM fwg_bin r EXCEPT ALL SELECT r::text FROM ft_geo r)) d;

-- Types that cannot go binary: auto reads them as text inside the binary stream (writes them as COPY text),
-- 'binary' says why not.
CREATE FOREIGN TABLE ft_all (cartodb_id int, x xml, t text) SERVER carto OPTIONS (table_name 't43_scalars');
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ft_all;
SELECT cartodb_id, x FROM ft_all ORDER BY cartodb_id LIMIT 2;
ALTER FOREIGN TABLE ft_all OPTIONS (ADD copy_format 'binary');
SELECT cartodb_id, x FROM ft_all;
CREATE FOREIGN TABLE ft_ageo (cartodb_id int, ag geometry[]) SERVER carto OPTIONS (query 'SELECT 1 AS cartodb_id, ARRAY[''POINT(1 2)''::geometry] AS ag', copy_format 'binary');
SELECT * FROM ft_ageo;

-- A local type unlike CARTO's: auto reads that column as text inside the binary stream (the text path's values and
-- errors, naming the column)...
CREATE FOREIGN TABLE ft_mis (cartodb_id int, i8 int4) SERVER carto OPTIONS (table_name 't43_scalars');
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ft_mis;
SELECT cartodb_id, i8 FROM ft_mis ORDER BY cartodb_id;
-- ... 'binary' casts on CARTO's side: out-of-range values are CARTO's error, never wrapped data.
ALTER FOREIGN TABLE ft_mis OPTIONS (ADD copy_format 'binary');
SELECT cartodb_id, i8 FROM ft_mis ORDER BY cartodb_id;
-- Writes: int4 binary into CARTO's bigint column is refused by CARTO; auto sends text and succeeds.
SET client_min_messages = warning;
SELECT carto.exec('carto', 'DROP TABLE IF EXISTS t43_w_mis; CREATE TABLE t43_w_mis (cartodb_id int, i8 bigint)');
RESET client_min_messages;
CREATE FOREIGN TABLE fw_mis (cartodb_id int, i8 int4) SERVER carto OPTIONS (table_name 't43_w_mis', copy_format 'binary');
INSERT INTO fw_mis VALUES (1, 42);
ALTER FOREIGN TABLE fw_mis OPTIONS (SET copy_format 'auto');
EXPLAIN (VERBOSE, COSTS OFF) INSERT INTO fw_mis VALUES (1, 42);
INSERT INTO fw_mis VALUES (1, 42);
SELECT * FROM carto.query('carto', 'SELECT * FROM t43_w_mis');

-- client_encoding unlike the database's: binary text values would be converted, so the scan goes as text
-- and the values stay exact.
SET client_encoding = 'LATIN1';
SELECT 'latin1' AS client_encoding, * FROM pg_temp.compare('pg_temp.remote_digests(''ft_bin'', ''t43_scalars'')', 'pg_temp.local_digests(''ft_bin'')');
RESET client_encoding;

-- carto.push goes binary into the tables it creates (here: replace through a staging table), text with a
-- server whose copy_format is 'text'; both land exactly the corpus (CARTO's digests of each equal its
-- digests of the original), and carto.pull brings them back unchanged.
CREATE SERVER carto_text FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url', copy_format 'text');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto_text OPTIONS (api_key :'api_key');
CREATE TABLE corpus AS SELECT cartodb_id, b, i2, i4, i8, n, n102, f4, f8, c5, vc, t, by, d, tm, ttz, ts, tstz, iv, u, ip,
  cid, mac, mac8, bt, vb, js, jb, pt, ln, ls, bx, pa, pg, ci, tsv, tsq, r4, rts, rn, mr, at, ai, a2, ajb, ats, o, lsn
  FROM loc.t43_scalars;
SELECT carto.push('corpus', 'carto', 't43_push_bin', mode => 'replace', cartodbfy => false) AS pushed_binary;
SELECT carto.push('corpus', 'carto_text', 't43_push_text', mode => 'replace', cartodbfy => false) AS pushed_text;
CREATE FOREIGN TABLE fp_cols (cartodb_id int, b bool, i2 int2, i4 int4, i8 int8, n numeric, n102 numeric(10,2), f4 float4,
  f8 float8, c5 char(5), vc varchar(10), t text, by bytea, d date, tm time, ttz timetz, ts timestamp, tstz timestamptz,
  iv interval, u uuid, ip inet, cid cidr, mac macaddr, mac8 macaddr8, bt bit(4), vb varbit, js json, jb jsonb, pt point,
  ln line, ls lseg, bx box, pa path, pg polygon, ci circle, tsv tsvector, tsq tsquery, r4 int4range, rts tstzrange,
  rn numrange, mr int4multirange, at text[], ai int[], a2 int[][], ajb jsonb[], ats timestamptz[], o oid, lsn pg_lsn)
  SERVER carto OPTIONS (table_name 't43_push_bin');
SELECT 'push binary' AS path, * FROM pg_temp.compare('pg_temp.remote_digests(''fp_cols'', ''t43_scalars'')', 'pg_temp.remote_digests(''fp_cols'', ''t43_push_bin'')');
SELECT 'push text' AS path, * FROM pg_temp.compare('pg_temp.remote_digests(''fp_cols'', ''t43_scalars'')', 'pg_temp.remote_digests(''fp_cols'', ''t43_push_text'')');
CREATE TABLE corpus_back (LIKE corpus);
SELECT carto.pull('carto', 't43_push_bin', 'corpus_back') AS pulled;
SELECT count(*) AS differences FROM ((SELECT c::text FROM corpus c EXCEPT ALL SELECT c::text FROM corpus_back c)
  UNION ALL (SELECT c::text FROM corpus_back c EXCEPT ALL SELECT c::text FROM corpus c)) d;
