-- 25_write_settings: every write path carries the type corpus to CARTO exactly whatever the session's
-- settings (DateStyle, IntervalStyle, extra_float_digits, TimeZone, bytea_output; all together and one at a
-- time) and in a database whose defaults are hostile (as a pg_cron job runs). Judged by digests CARTO
-- computes itself under fixed ISO settings, never by reading back through the wrapper.
CREATE EXTENSION postgis;
CREATE EXTENSION carto_fdw;
\set SHOW_CONTEXT never
-- The corpus (data/11_types.sql, renamed t25_*) on CARTO (the reference), and locally in schema loc.
\! sed 's/t11_/t25_/g' data/11_types.sql | curl -sS -u "demo:$CARTO_SIM_API_KEY" "$CARTO_SIM_BASE_URL/api/v2/sql" --data-urlencode q@- | sed -E 's/"time":[0-9.e+-]+/"time":T/'; echo
CREATE SCHEMA loc;
SET search_path = loc, public;
\! sed 's/t11_/t25_/g' data/11_types.sql > /tmp/e2e_25_types.sql
\i /tmp/e2e_25_types.sql
RESET search_path;
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');

-- Write targets on CARTO: empty tables like the reference; keys of awkward types for row-wise DELETE; a
-- table for whole-statement UPDATEs; and the digests, computed by CARTO under fixed settings.
SELECT carto.exec('carto', $$
DROP TABLE IF EXISTS t25_w, t25_wg, t25_del, t25_direct, t25_since CASCADE;
CREATE TABLE t25_w (LIKE t25_scalars INCLUDING ALL);
CREATE TABLE t25_wg (LIKE t25_geo INCLUDING ALL);
CREATE TABLE t25_del (combo int, kind int, k_f8 float8, k_d date, k_ts timestamp, k_tz timestamptz, k_iv interval, k_n numeric);
CREATE TABLE t25_direct (id int PRIMARY KEY, f8 float8, f4 float4, d date, ts timestamp, tz timestamptz, iv interval, by bytea, pt point);
CREATE OR REPLACE FUNCTION t25_rowtext(r anyelement) RETURNS text LANGUAGE sql STABLE AS
  'SELECT substr(r::text, strpos(r::text, '',''))';
CREATE OR REPLACE FUNCTION t25_diff(t text, ref text) RETURNS TABLE (rows bigint, differing bigint) LANGUAGE plpgsql AS $f$
BEGIN
  RETURN QUERY EXECUTE format('SELECT (SELECT count(*) FROM %1$I), (SELECT count(*) FROM (
      (SELECT pushed_row::text FROM %1$I pushed_row EXCEPT ALL SELECT ref_row::text FROM %2$I ref_row)
      UNION ALL (SELECT ref_row::text FROM %2$I ref_row EXCEPT ALL SELECT pushed_row::text FROM %1$I pushed_row)) d)', t, ref);
END $f$;
$$) AS created;
CREATE FOREIGN TABLE ft_w (
  cartodb_id int,
  b bool, i2 int2, i4 int4, i8 int8, n numeric, n102 numeric(10,2), f4 float4, f8 float8, m money,
  c5 char(5), vc varchar(10), t text, by bytea,
  d date, tm time, ttz timetz, ts timestamp, tstz timestamptz, iv interval,
  u uuid, ip inet, cid cidr, mac macaddr, mac8 macaddr8, bt bit(4), vb varbit,
  js json, jb jsonb, x xml,
  pt point, ln line, ls lseg, bx box, pa path, pg polygon, ci circle,
  tsv tsvector, tsq tsquery, r4 int4range, rts tstzrange, rn numrange, mr int4multirange,
  at text[], ai int[], a2 int[][], ajb jsonb[], ats timestamptz[],
  e loc.t25_mood, o oid, lsn pg_lsn
) SERVER carto OPTIONS (table_name 't25_w');
CREATE FOREIGN TABLE ft_wg (cartodb_id int, kind text, the_geom geometry, g4326 geometry(Geometry, 4326), geog geography)
  SERVER carto OPTIONS (table_name 't25_wg');
CREATE FOREIGN TABLE ft_del_f8 (combo int, kind int, k_f8 float8) SERVER carto OPTIONS (table_name 't25_del', rowid_column 'k_f8');
CREATE FOREIGN TABLE ft_del_d (combo int, kind int, k_d date) SERVER carto OPTIONS (table_name 't25_del', rowid_column 'k_d');
CREATE FOREIGN TABLE ft_del_ts (combo int, kind int, k_ts timestamp) SERVER carto OPTIONS (table_name 't25_del', rowid_column 'k_ts');
CREATE FOREIGN TABLE ft_del_tz (combo int, kind int, k_tz timestamptz) SERVER carto OPTIONS (table_name 't25_del', rowid_column 'k_tz');
CREATE FOREIGN TABLE ft_del_iv (combo int, kind int, k_iv interval) SERVER carto OPTIONS (table_name 't25_del', rowid_column 'k_iv');
CREATE FOREIGN TABLE ft_del_n (combo int, kind int, k_n numeric) SERVER carto OPTIONS (table_name 't25_del', rowid_column 'k_n');
CREATE FOREIGN TABLE ft_direct (id int, f8 float8, f4 float4, d date, ts timestamp, tz timestamptz, iv interval, by bytea, pt point)
  SERVER carto OPTIONS (table_name 't25_direct');
SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) AS cols FROM pg_attribute
 WHERE attrelid = 'loc.t25_scalars'::regclass AND attnum > 1 AND NOT attisdropped \gset
SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) AS gcols FROM pg_attribute
 WHERE attrelid = 'loc.t25_geo'::regclass AND attnum > 1 AND NOT attisdropped \gset

-- The hostile settings: all together (twice, differently), then one at a time. Combination n writes
-- cartodb_id n*1000 + path*100 + the corpus row's id (path 1 INSERT, 2 COPY FROM, 3 row-wise UPDATE).
CREATE TABLE combos (n int PRIMARY KEY, label text, settings text[]);
INSERT INTO combos VALUES
 (1, 'all together', '{"DateStyle=SQL, DMY","IntervalStyle=sql_standard","extra_float_digits=-15","TimeZone=America/St_Johns","bytea_output=escape"}'),
 (2, 'all together 2', '{"DateStyle=German","IntervalStyle=iso_8601","extra_float_digits=0","TimeZone=UTC+14","bytea_output=escape"}'),
 (3, 'DateStyle SQL, DMY', '{"DateStyle=SQL, DMY"}'),
 (4, 'DateStyle German', '{"DateStyle=German"}'),
 (5, 'DateStyle Postgres, MDY', '{"DateStyle=Postgres, MDY"}'),
 (6, 'IntervalStyle sql_standard', '{"IntervalStyle=sql_standard"}'),
 (7, 'IntervalStyle iso_8601', '{"IntervalStyle=iso_8601"}'),
 (8, 'IntervalStyle postgres_verbose', '{"IntervalStyle=postgres_verbose"}'),
 (9, 'extra_float_digits -15', '{"extra_float_digits=-15"}'),
 (10, 'extra_float_digits 0', '{"extra_float_digits=0"}'),
 (11, 'extra_float_digits 3', '{"extra_float_digits=3"}'),
 (12, 'TimeZone America/St_Johns', '{"TimeZone=America/St_Johns"}'),
 (13, 'TimeZone Asia/Kathmandu', '{"TimeZone=Asia/Kathmandu"}'),
 (14, 'TimeZone UTC+14', '{"TimeZone=UTC+14"}'),
 (15, 'bytea_output escape', '{"bytea_output=escape"}');
-- COPY FROM reads files written now, under ISO settings (COPY's own input then parses them under each
-- combination's settings, as a user's file would be).
SELECT format('COPY (SELECT cartodb_id + %s, %s FROM loc.t25_scalars) TO %L', n * 1000 + 200, :'cols', '/tmp/e2e_25_s_' || n || '.copy'),
       format('COPY (SELECT cartodb_id + %s, %s FROM loc.t25_geo) TO %L', n * 1000 + 200, :'gcols', '/tmp/e2e_25_g_' || n || '.copy')
  FROM combos ORDER BY n \gexec
-- Rows the row-wise statements address: skeletons (only the key) sent by /sql, and the awkward keys.
SELECT carto.exec('carto', format($$
  INSERT INTO t25_w (cartodb_id) SELECT c * 1000 + 300 + cartodb_id FROM t25_scalars, generate_series(1, %1$s) c;
  INSERT INTO t25_wg (cartodb_id) SELECT c * 1000 + 300 + cartodb_id FROM t25_geo, generate_series(1, %1$s) c;
  INSERT INTO t25_del SELECT c, k, CASE k WHEN 1 THEN 0.1234567890123456789 + c END, CASE k WHEN 2 THEN date '2024-03-04' + c END,
    CASE k WHEN 3 THEN timestamp '2024-03-04 05:06:07.123456' + c * interval '1 day' END,
    CASE k WHEN 4 THEN timestamptz '2024-03-04 05:06:07.123456+00' + c * interval '1 day' END,
    CASE k WHEN 5 THEN interval '-1 year -2 mons +3 days -04:05:06.789' + c * interval '1 day' END,
    CASE k WHEN 6 THEN 12345678901234567890.123456789 + c END
    FROM generate_series(1, %1$s) c, generate_series(1, 6) k;
  INSERT INTO t25_direct (id) SELECT c * 10 + k FROM generate_series(1, %1$s) c, generate_series(1, 2) k$$,
  (SELECT max(n) FROM combos))) AS skeleton_rows;
PREPARE upd_direct(float8, float4, date, timestamp, timestamptz, interval, bytea, point, int) AS
  UPDATE ft_direct SET f8 = $1, f4 = $2, d = $3, ts = $4, tz = $5, iv = $6, by = $7, pt = $8 WHERE id = $9;

-- Every write path under each combination. Each generated statement is its own transaction.
SELECT s FROM combos, LATERAL (
  SELECT format('SET %s = %L', split_part(x, '=', 1), split_part(x, '=', 2)) AS s, 1 AS o, i FROM unnest(settings) WITH ORDINALITY u(x, i)
  UNION ALL SELECT format('INSERT INTO ft_w (cartodb_id, %s) SELECT cartodb_id + %s, %1$s FROM loc.t25_scalars', :'cols', n * 1000 + 100), 2, 1
  UNION ALL SELECT format('INSERT INTO ft_wg (cartodb_id, %s) SELECT cartodb_id + %s, %1$s FROM loc.t25_geo', :'gcols', n * 1000 + 100), 2, 2
  UNION ALL SELECT format('COPY ft_w FROM %L', '/tmp/e2e_25_s_' || n || '.copy'), 3, 1
  UNION ALL SELECT format('COPY ft_wg FROM %L', '/tmp/e2e_25_g_' || n || '.copy'), 3, 2
  UNION ALL SELECT format('UPDATE ft_w w SET (%s) = (SELECT %1$s FROM loc.t25_scalars s WHERE s.cartodb_id = w.cartodb_id - %s) WHERE w.cartodb_id BETWEEN %2$s AND %2$s + 99', :'cols', n * 1000 + 300), 4, 1
  UNION ALL SELECT format('UPDATE ft_wg w SET (%s) = (SELECT %1$s FROM loc.t25_geo s WHERE s.cartodb_id = w.cartodb_id - %s) WHERE w.cartodb_id BETWEEN %2$s AND %2$s + 99', :'gcols', n * 1000 + 300), 4, 2
  UNION ALL SELECT format('DELETE FROM %s WHERE combo = %s AND kind = %s AND random() >= 0', t, n, k), 5, k
    FROM unnest(ARRAY['ft_del_f8', 'ft_del_d', 'ft_del_ts', 'ft_del_tz', 'ft_del_iv', 'ft_del_n']) WITH ORDINALITY d(t, k)
  UNION ALL SELECT format($u$UPDATE ft_direct SET f8 = 0.1234567890123456789, f4 = 0.1234567, d = '2024-03-04',
      ts = '2024-03-04 05:06:07.123456', tz = '2024-03-04 05:06:07.123456+05:45', iv = '-1 year -2 mons +3 days -04:05:06.789',
      by = '\x00ff5c0a', pt = '(0.1,0.30000000000000004)' WHERE id = %s$u$, n * 10 + 1), 6, 1
  UNION ALL SELECT 'SET plan_cache_mode = force_generic_plan', 6, 2
  UNION ALL SELECT format($u$EXECUTE upd_direct(0.1234567890123456789, 0.1234567, '2024-03-04', '2024-03-04 05:06:07.123456',
      '2024-03-04 05:06:07.123456+05:45', '-1 year -2 mons +3 days -04:05:06.789', '\x00ff5c0a', '(0.1,0.30000000000000004)', %s)$u$, n * 10 + 2), 6, 3
  UNION ALL SELECT format('SELECT carto.push(%L, %L, %L, mode => %L, key => %L, cartodbfy => false) IS NOT NULL AS pushed',
      'loc.t25_scalars', 'carto', 't25_p' || left(m, 1) || '_' || n, m, CASE m WHEN 'upsert' THEN 'cartodb_id' END), 7, j
    FROM unnest(ARRAY['replace', 'append', 'upsert']) WITH ORDINALITY pm(m, j)
  UNION ALL SELECT format('SELECT carto.push(%L, %L, %L, mode => %L, cartodbfy => false) IS NOT NULL AS pushed', 'loc.t25_geo', 'carto', 't25_pg_' || n, 'append'), 7, 4
  UNION ALL SELECT 'RESET ALL', 9, 1
) g ORDER BY n, o, i \gexec

-- INSERT, COPY FROM and row-wise UPDATE: every row CARTO holds equals the reference, compared as CARTO's
-- own text form under ISO settings (float8 shortest-exact, timestamptz in UTC, bytea hex, EWKB hex).
SELECT r->>'path' AS path, r->>'combos' AS combos, r->>'rows' AS rows, r->>'differing' AS differing, r->>'missing' AS missing
  FROM carto.query('carto', $$
SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 3;
SET LOCAL TimeZone = 'UTC'; SET LOCAL bytea_output = 'hex';
SELECT p.path, count(DISTINCT w.cartodb_id / 1000) AS combos, count(w.cartodb_id) AS rows,
       count(*) FILTER (WHERE t25_rowtext(w) IS DISTINCT FROM t25_rowtext(r)) AS differing,
       count(*) FILTER (WHERE w.cartodb_id IS NULL) AS missing
  FROM (VALUES (1, 'INSERT'), (2, 'COPY FROM'), (3, 'row-wise UPDATE')) p(k, path)
  CROSS JOIN generate_series(1, 15) c
  CROSS JOIN t25_scalars r
  LEFT JOIN t25_w w ON w.cartodb_id = c * 1000 + p.k * 100 + r.cartodb_id
 GROUP BY p.k, p.path
UNION ALL
SELECT p.path || ' (geometry)', count(DISTINCT w.cartodb_id / 1000), count(w.cartodb_id),
       count(*) FILTER (WHERE t25_rowtext(w) IS DISTINCT FROM t25_rowtext(r)
                          OR ST_AsEWKB(w.the_geom)::text IS DISTINCT FROM ST_AsEWKB(r.the_geom)::text),
       count(*) FILTER (WHERE w.cartodb_id IS NULL)
  FROM (VALUES (1, 'INSERT'), (2, 'COPY FROM'), (3, 'row-wise UPDATE')) p(k, path)
  CROSS JOIN generate_series(1, 15) c
  CROSS JOIN t25_geo r
  LEFT JOIN t25_wg w ON w.cartodb_id = c * 1000 + p.k * 100 + r.cartodb_id
 GROUP BY p.k, p.path
ORDER BY 1$$) r;
-- Which combinations and columns differ, if any (empty when all is exact).
SELECT r->>'combo' AS combo, r->>'path' AS path, r->>'row' AS row
  FROM carto.query('carto', $$
SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 3;
SET LOCAL TimeZone = 'UTC'; SET LOCAL bytea_output = 'hex';
SELECT w.cartodb_id / 1000 AS combo, (w.cartodb_id / 100) % 10 AS path, w.cartodb_id % 100 AS row
  FROM t25_w w JOIN t25_scalars r ON r.cartodb_id = w.cartodb_id % 100
 WHERE t25_rowtext(w) IS DISTINCT FROM t25_rowtext(r)
 ORDER BY 1, 2, 3 LIMIT 20$$) r;

-- Row-wise DELETE by keys of awkward types (each combination's own values): every row is gone.
SELECT r->>'kind' AS key_type, r->>'left' AS rows_left FROM carto.query('carto', $$
SELECT CASE kind WHEN 1 THEN 'float8' WHEN 2 THEN 'date' WHEN 3 THEN 'timestamp' WHEN 4 THEN 'timestamptz'
       WHEN 5 THEN 'interval' ELSE 'numeric' END AS kind, count(*) AS left FROM t25_del GROUP BY kind ORDER BY kind$$) r;

-- Whole-statement UPDATE, with literals (id n*10+1) and with parameters (id n*10+2).
SELECT r->>'exact' AS exact, r->>'rows' AS rows FROM carto.query('carto', $$
SELECT count(*) FILTER (WHERE f8 = float8 '0.1234567890123456789' AND f4 = float4 '0.1234567' AND d = date '2024-03-04'
  AND ts = timestamp '2024-03-04 05:06:07.123456' AND tz = timestamptz '2024-03-04 05:06:07.123456+05:45'
  AND iv = interval '-1 year -2 mons +3 days -04:05:06.789' AND by = '\x00ff5c0a'::bytea
  AND pt ~= point '(0.1,0.30000000000000004)' AND float8send(pt[1]) = float8send(0.30000000000000004)) AS exact,
  count(*) AS rows FROM t25_direct$$) r;

-- carto.push in its modes: each pushed table equals the reference (45 tables of scalars, 15 of geometry).
SELECT r->>'kind' AS pushed, r->>'tables' AS tables, r->>'rows' AS rows, r->>'differing' AS differing FROM carto.query('carto', $$
SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 3;
SET LOCAL TimeZone = 'UTC'; SET LOCAL bytea_output = 'hex';
SELECT CASE WHEN relname LIKE 't25_pg%' THEN 'geometry (append)' WHEN relname LIKE 't25_pr%' THEN 'replace'
            WHEN relname LIKE 't25_pa%' THEN 'append' ELSE 'upsert' END AS kind,
       count(*) AS tables, sum(d.rows) AS rows, sum(d.differing) AS differing
  FROM pg_class c, t25_diff(c.relname, CASE WHEN c.relname LIKE 't25_pg%' THEN 't25_geo' ELSE 't25_scalars' END) d
 WHERE c.relkind = 'r' AND c.relname ~ '^t25_p[rau]?g?_[0-9]+$' AND c.relnamespace = current_schema()::regnamespace
 GROUP BY 1 ORDER BY 1$$) r;

-- Watermarks (push and pull with since) are written under one session's settings and read back under
-- another's: the range of the next run is still exact.
CREATE TABLE since_src (id int PRIMARY KEY, ts timestamp);
INSERT INTO since_src VALUES (1, '2024-03-04 05:06:07');
SET DateStyle = 'SQL, DMY';
SELECT carto.push('since_src', 'carto', 't25_since', mode => 'upsert', key => 'id', since => 'ts', cartodbfy => false, name => 't25 since') AS first_push;
RESET DateStyle;
INSERT INTO since_src VALUES (2, '2024-03-10 00:00:00');
SET DateStyle = 'Postgres, MDY';
SELECT carto.push('since_src', 'carto', 't25_since', mode => 'upsert', key => 'id', since => 'ts', cartodbfy => false, name => 't25 since') AS second_push;
RESET DateStyle;
SELECT * FROM carto.query('carto', 'SELECT count(*) AS n, max(ts)::text AS newest FROM t25_since');
CREATE TABLE since_back (id int PRIMARY KEY, ts timestamp);
SELECT carto.exec('carto', 'DELETE FROM t25_since WHERE id = 2') AS deleted;
SET DateStyle = 'SQL, DMY';
SELECT carto.pull('carto', 't25_since', 'since_back', mode => 'upsert', key => 'id', since => 'ts', name => 't25 pull since') AS first_pull;
RESET DateStyle;
SELECT carto.exec('carto', $$INSERT INTO t25_since VALUES (2, '2024-03-10 00:00:00')$$) AS inserted;
SET DateStyle = 'Postgres, MDY';
SELECT carto.pull('carto', 't25_since', 'since_back', mode => 'upsert', key => 'id', since => 'ts', name => 't25 pull since') AS second_pull;
RESET DateStyle;
SELECT * FROM since_back ORDER BY id;
-- The sync ledger this made on the shared account is not left for later files.
SELECT carto.exec('carto', 'DROP TABLE carto_sync_state') AS dropped;

-- A database whose default settings are hostile, as a pg_cron job runs with them: a session without
-- client-side settings writes through INSERT and carto.push; CARTO holds the exact values.
\c postgres
DROP DATABASE IF EXISTS e2e_25_dmy;
CREATE DATABASE e2e_25_dmy;
ALTER DATABASE e2e_25_dmy SET DateStyle = 'SQL, DMY';
ALTER DATABASE e2e_25_dmy SET extra_float_digits = -15;
ALTER DATABASE e2e_25_dmy SET IntervalStyle = 'sql_standard';
\! env -u PGDATESTYLE -u PGTZ psql -X -q -v ON_ERROR_STOP=1 -d e2e_25_dmy -f data/25_dmy_database.sql 2>&1
\c e2e_25_write_settings
SELECT r->>'exact' AS exact, r->>'rows' AS rows FROM carto.query('carto', $$
SELECT count(*) FILTER (WHERE f8 = float8 '0.1234567890123456789' AND d = date '2024-03-04' AND ts = timestamp '2024-03-04 05:06:07.123456'
  AND iv = interval '-1 year -2 mons +3 days -04:05:06.789') AS exact, count(*) AS rows FROM t25_dmy$$) r;
