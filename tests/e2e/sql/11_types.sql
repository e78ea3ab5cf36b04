-- 11_types: a corpus of every built-in type family and of tricky values reads back EXACTLY through
-- both transports (/copyto COPY text and /sql JSON with text casts), compared with the very same
-- data in a local table; timestamptz with a local TimeZone unlike CARTO's; geometry of every kind
-- with and without PostGIS locally; a value that does not convert names its column and table.
CREATE EXTENSION postgis;
CREATE EXTENSION carto_fdw;
\set SHOW_CONTEXT never
-- The same data on CARTO (as the demo user, through the SQL API) and locally (schema loc).
\! curl -sS -u "demo:$CARTO_SIM_API_KEY" "$CARTO_SIM_BASE_URL/api/v2/sql" --data-urlencode q@data/11_types.sql | sed -E 's/"time":[0-9.e+-]+/"time":T/'; echo
CREATE SCHEMA loc;
SET search_path = loc, public;
\i data/11_types.sql
RESET search_path;
-- The enum exists on both sides under the same name (a local type for the foreign column).
CREATE TYPE t11_mood AS ENUM ('sad', 'ok', 'happy ''quoted''');

CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url', fetch_size '2');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
CREATE FOREIGN TABLE ft_scalars (
  cartodb_id int,
  b bool, i2 int2, i4 int4, i8 int8, n numeric, n102 numeric(10,2), f4 float4, f8 float8, m money,
  c5 char(5), vc varchar(10), t text, by bytea,
  d date, tm time, ttz timetz, ts timestamp, tstz timestamptz, iv interval,
  u uuid, ip inet, cid cidr, mac macaddr, mac8 macaddr8, bt bit(4), vb varbit,
  js json, jb jsonb, x xml,
  pt point, ln line, ls lseg, bx box, pa path, pg polygon, ci circle,
  tsv tsvector, tsq tsquery, r4 int4range, rts tstzrange, rn numrange, mr int4multirange,
  at text[], ai int[], a2 int[][], ajb jsonb[], ats timestamptz[],
  e t11_mood, o oid, lsn pg_lsn
) SERVER carto OPTIONS (table_name 't11_scalars');
CREATE FOREIGN TABLE ft_geo (
  cartodb_id int, kind text, the_geom geometry, g4326 geometry(Geometry, 4326), geog geography
) SERVER carto OPTIONS (table_name 't11_geo');

-- Row by row: the text form of every row (each value through its type's output function: float -0,
-- NaN, 40 digits, array quoting, hex EWKB...) is the same as the local copy's, both ways.
CREATE FUNCTION pg_temp.diff(ft regclass, lt regclass) RETURNS TABLE (foreign_table text, transport text, rows_read bigint, rows_differing bigint)
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format($q$
    SELECT %3$L, (SELECT ftoptions[array_length(ftoptions, 1)] FROM pg_foreign_table WHERE ftrelid = %4$s),
           (SELECT count(*) FROM %1$s),
           (SELECT count(*) FROM ((SELECT r::text FROM %1$s r EXCEPT ALL SELECT r::text FROM %2$s r)
                       UNION ALL (SELECT r::text FROM %2$s r EXCEPT ALL SELECT r::text FROM %1$s r)) d)$q$,
    ft, lt, ft::text, ft::oid);
END $$;

ALTER FOREIGN TABLE ft_scalars OPTIONS (ADD scan_method 'copy');
ALTER FOREIGN TABLE ft_geo OPTIONS (ADD scan_method 'copy');
SELECT * FROM pg_temp.diff('ft_scalars', 'loc.t11_scalars') UNION ALL SELECT * FROM pg_temp.diff('ft_geo', 'loc.t11_geo');
EXPLAIN (VERBOSE, COSTS OFF) SELECT cartodb_id, t FROM ft_scalars;
ALTER FOREIGN TABLE ft_scalars OPTIONS (SET scan_method 'query');
ALTER FOREIGN TABLE ft_geo OPTIONS (SET scan_method 'query');
SELECT * FROM pg_temp.diff('ft_scalars', 'loc.t11_scalars') UNION ALL SELECT * FROM pg_temp.diff('ft_geo', 'loc.t11_geo');
EXPLAIN (VERBOSE, COSTS OFF) SELECT cartodb_id, t FROM ft_scalars;

-- The tricky values themselves, through each transport.
ALTER FOREIGN TABLE ft_scalars OPTIONS (SET scan_method 'copy');
SELECT cartodb_id, t IS NULL AS t_null, t = '' AS t_empty, t = E'\\N' AS t_backslash_n, length(t), md5(t)
  FROM ft_scalars ORDER BY cartodb_id;
SELECT cartodb_id, i8, n, f8, f4, f8::text AS f8_text, f4::text AS f4_text FROM ft_scalars ORDER BY cartodb_id;
SELECT cartodb_id, at, array_length(at, 1) AS at_len, at[2] IS NULL AS at2_null, a2, ajb FROM ft_scalars ORDER BY cartodb_id;
SELECT cartodb_id, js::text, jb, by, x::text FROM ft_scalars ORDER BY cartodb_id;
ALTER FOREIGN TABLE ft_scalars OPTIONS (SET scan_method 'query');
SELECT cartodb_id, t IS NULL AS t_null, t = '' AS t_empty, t = E'\\N' AS t_backslash_n, length(t), md5(t)
  FROM ft_scalars ORDER BY cartodb_id;
SELECT cartodb_id, i8, n, f8, f4, f8::text AS f8_text, f4::text AS f4_text FROM ft_scalars ORDER BY cartodb_id;
SELECT cartodb_id, at, array_length(at, 1) AS at_len, at[2] IS NULL AS at2_null, a2, ajb FROM ft_scalars ORDER BY cartodb_id;
SELECT cartodb_id, js::text, jb, by, x::text FROM ft_scalars ORDER BY cartodb_id;

-- timestamptz: CARTO's session runs in UTC, the local one elsewhere (and with other styles).
SET TimeZone = 'Asia/Kathmandu';
SET DateStyle = 'SQL, DMY';
SET IntervalStyle = 'sql_standard';
ALTER FOREIGN TABLE ft_scalars OPTIONS (SET scan_method 'copy');
SELECT cartodb_id, tstz, ts, d, ttz, iv, ats FROM ft_scalars ORDER BY cartodb_id;
SELECT * FROM pg_temp.diff('ft_scalars', 'loc.t11_scalars');
ALTER FOREIGN TABLE ft_scalars OPTIONS (SET scan_method 'query');
SELECT cartodb_id, tstz, ts, d, ttz, iv, ats FROM ft_scalars ORDER BY cartodb_id;
SELECT * FROM pg_temp.diff('ft_scalars', 'loc.t11_scalars');
RESET TimeZone;
RESET DateStyle;
RESET IntervalStyle;

-- Geometry of every kind (text form is hex EWKB; ST_AsEWKT to read it).
ALTER FOREIGN TABLE ft_geo OPTIONS (SET scan_method 'copy');
SELECT cartodb_id, kind, ST_AsEWKT(the_geom) AS ewkt, ST_AsText(geog) AS geog FROM ft_geo ORDER BY cartodb_id;
-- A typmod is checked on input: a column declared geometry(Point, 4326) refuses the other rows.
CREATE FOREIGN TABLE ft_geo_points (cartodb_id int, the_geom geometry(Point, 4326))
  SERVER carto OPTIONS (table_name 't11_geo', scan_method 'copy');
SELECT * FROM ft_geo_points WHERE cartodb_id = 1;
SELECT * FROM ft_geo_points WHERE cartodb_id = 2;
SELECT * FROM ft_geo_points WHERE cartodb_id = 6;

-- A value that does not convert: ERROR naming the column and the foreign table (both transports).
CREATE FOREIGN TABLE ft_bad (cartodb_id int, t int, vc varchar(3)) SERVER carto OPTIONS (table_name 't11_scalars');
SELECT cartodb_id, t FROM ft_bad;
ALTER FOREIGN TABLE ft_bad OPTIONS (ADD scan_method 'copy');
SELECT cartodb_id, t FROM ft_bad;
SELECT cartodb_id, vc FROM ft_bad;
ALTER FOREIGN TABLE ft_bad OPTIONS (SET scan_method 'query');
SELECT cartodb_id, vc FROM ft_bad;

-- A database without PostGIS: geometry columns are text holding hex EWKB.
\c postgres
DROP DATABASE IF EXISTS e2e_11_types_nogis;
CREATE DATABASE e2e_11_types_nogis;
\c e2e_11_types_nogis
CREATE EXTENSION carto_fdw;
SELECT count(*) AS postgis_here FROM pg_extension WHERE extname = 'postgis';
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
CREATE FOREIGN TABLE ft_geo (cartodb_id int, kind text, the_geom text, geog text) SERVER carto OPTIONS (table_name 't11_geo');
ALTER FOREIGN TABLE ft_geo OPTIONS (ADD scan_method 'copy');
SELECT cartodb_id, kind, the_geom, geog FROM ft_geo WHERE cartodb_id IN (1, 4, 5, 23, 25) ORDER BY cartodb_id;
SELECT md5(string_agg(cartodb_id || ':' || coalesce(the_geom, 'N') || ':' || coalesce(geog, 'N'), ',' ORDER BY cartodb_id)) FROM ft_geo;
ALTER FOREIGN TABLE ft_geo OPTIONS (SET scan_method 'query');
SELECT md5(string_agg(cartodb_id || ':' || coalesce(the_geom, 'N') || ':' || coalesce(geog, 'N'), ',' ORDER BY cartodb_id)) FROM ft_geo;
-- ... the same as CARTO's own text form of the values:
\! curl -sS -u "demo:$CARTO_SIM_API_KEY" "$CARTO_SIM_BASE_URL/api/v2/sql" --data-urlencode "q=SELECT md5(string_agg(cartodb_id || ':' || coalesce(the_geom::text, 'N') || ':' || coalesce(geog::text, 'N'), ',' ORDER BY cartodb_id)) FROM t11_geo" | sed -E 's/"time":[0-9.e+-]+/"time":T/'; echo
\c postgres
DROP DATABASE e2e_11_types_nogis;
