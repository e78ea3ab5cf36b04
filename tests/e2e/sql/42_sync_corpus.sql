-- 42_sync_corpus: the type corpus through push and back through pull, exactly; a push killed
-- mid-run (pg_terminate_backend) leaves CARTO's table as it was and the next run converges.
CREATE EXTENSION postgis;
CREATE EXTENSION carto_fdw;
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
\set QUIET on
SELECT carto.exec('carto', 'DROP TABLE IF EXISTS s42_corpus, s42_corpus_u, s42_corpus_a, s42_kill');
\set QUIET off
CREATE TABLE corpus (
  id int PRIMARY KEY, t text, vc varchar(12), ch char(5), b boolean, i2 smallint, i8 bigint, n numeric,
  f4 real, f8 double precision, d date, ts timestamp, tz timestamptz, iv interval, u uuid, j json, jb jsonb,
  ta text[], ia int[], by bytea, ip inet, g geometry, gg geography(Point,4326));
INSERT INTO corpus VALUES
 (1, E'tab\there\nnew line\r\\back\\slash "q" ''s'' , \\N', 'varchar', 'ab', true, -32768, -9223372036854775808,
  1234567890123456789012345678901234567890.123456789, 1.5, 'NaN', '0001-01-01', '2026-11-21 12:00:00.123456',
  '2026-11-21 12:00:00.654321+05:30', '1 year 2 mons 3 days 04:05:06.789', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '{"a": [1, "x\"y"]}', '{"k": null, "z": "é😀"}', ARRAY['a,b', NULL, 'c"d', '', 'NULL'], ARRAY[1, NULL, 3],
  '\x00ff10', '10.0.0.1/8', 'SRID=4326;POINT ZM(1 2 3 4)', 'SRID=4326;POINT(-71.06 42.36)'),
 (2, '', NULL, NULL, false, 32767, 9223372036854775807, -0.000000000000000000001, '-Infinity', '-0', '9999-12-31',
  'infinity', '-infinity', '-1 day', NULL, 'null', '[]', '{}', '{}', '', NULL, 'SRID=4326;GEOMETRYCOLLECTION EMPTY', NULL),
 (3, '😀 4-byte', 'x', 'x', NULL, 0, 0, 'NaN', 'Infinity', 2.2250738585072014e-308, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, 'SRID=4326;MULTIPOLYGON(((0 0,1 0,1 1,0 0)),((5 5,6 5,6 6,5 5)))', NULL),
 (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, 'SRID=4326;LINESTRING M (0 0 1, 1 1 2)', NULL);
SET TimeZone = 'America/New_York';  -- differs from CARTO's
SELECT carto.push('corpus', 'carto', 's42_corpus', mode => 'replace', cartodbfy => false) AS pushed;
CREATE TABLE corpus_back (LIKE corpus);
SELECT carto.pull('carto', 's42_corpus', 'corpus_back') AS pulled;
-- Identical, value by value (compared as text: json has no equality operator).
SELECT count(*) AS differences FROM (
  (SELECT c::text FROM corpus c EXCEPT ALL SELECT c::text FROM corpus_back c)
  UNION ALL (SELECT c::text FROM corpus_back c EXCEPT ALL SELECT c::text FROM corpus c)) d;
SELECT id, t IS NULL AS t_null, t = '' AS t_empty, ta, ia, n, f8::text, tz, ST_AsEWKT(g) AS g FROM corpus_back ORDER BY id;
-- The corpus through the other modes both ways: upsert and append out, upsert and append back.
SELECT carto.push('corpus', 'carto', 's42_corpus_u', mode => 'upsert', key => 'id', cartodbfy => false) AS upserted;
SELECT carto.push('corpus', 'carto', 's42_corpus_a', mode => 'append', cartodbfy => false) AS appended;
CREATE TABLE corpus_u (LIKE corpus INCLUDING INDEXES);
CREATE TABLE corpus_a (LIKE corpus);
SELECT carto.pull('carto', 's42_corpus_u', 'corpus_u', mode => 'upsert', key => 'id') AS pulled_upsert;
SELECT carto.pull('carto', 's42_corpus_a', 'corpus_a', mode => 'append') AS pulled_append;
SELECT (SELECT count(*) FROM ((SELECT c::text FROM corpus c EXCEPT ALL SELECT c::text FROM corpus_u c)
          UNION ALL (SELECT c::text FROM corpus_u c EXCEPT ALL SELECT c::text FROM corpus c)) d) AS upsert_differences,
       (SELECT count(*) FROM ((SELECT c::text FROM corpus c EXCEPT ALL SELECT c::text FROM corpus_a c)
          UNION ALL (SELECT c::text FROM corpus_a c EXCEPT ALL SELECT c::text FROM corpus c)) d) AS append_differences;
RESET TimeZone;

-- A plain append cut mid-upload: CARTO rolls the COPY back (nothing appended), the run is recorded as failed,
-- and the next run appends the rows once.
\! curl -s -X POST "$CARTO_SIM_ADMIN/faults" -H 'Content-Type: application/json' -d '{"group":"copy_from","cut_upload_after":100}' >/dev/null
SET client_min_messages = error;
SELECT carto.push('corpus', 'carto', 's42_corpus_a', mode => 'append', name => 'append corpus') AS cut_run;
RESET client_min_messages;
\! curl -s -X DELETE "$CARTO_SIM_ADMIN/faults" >/dev/null
SELECT * FROM carto.query('carto', 'SELECT count(*) AS n FROM s42_corpus_a');
SELECT carto.push('corpus', 'carto', 's42_corpus_a', mode => 'append', name => 'append corpus') AS next_run;
SELECT * FROM carto.query('carto', 'SELECT count(*) AS n FROM s42_corpus_a');
SELECT status, count(*) FROM carto.sync_runs WHERE name = 'append corpus' GROUP BY status ORDER BY status;

-- A push killed while streaming: CARTO's target is unchanged, the staging table is dropped by the
-- next run, which converges. (The upload is slowed by an injected latency so the kill lands mid-run.)
CREATE TABLE big AS SELECT i AS id, md5(i::text) AS h FROM generate_series(1, 20000) i;
SELECT carto.push('big', 'carto', 's42_kill', mode => 'replace', cartodbfy => false, name => 'kill me') AS first_run;
UPDATE big SET h = 'second';
\! curl -s -X POST "$CARTO_SIM_ADMIN/faults" -H 'Content-Type: application/json' -d '{"group":"copy_from","latency_ms":6000}' >/dev/null
\! psql -X -q -d e2e_42_sync_corpus -c "SELECT carto.push('big', 'carto', 's42_kill', mode => 'replace', cartodbfy => false, name => 'kill me')" >/dev/null 2>&1 &
SELECT pg_sleep(2);
SELECT count(*) AS killed FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%kill me%' AND pid <> pg_backend_pid() AND query NOT LIKE '%pg_stat_activity%') k;
SELECT pg_sleep(1);
\! curl -s -X DELETE "$CARTO_SIM_ADMIN/faults" >/dev/null
SELECT status, count(*) FROM carto.sync_runs WHERE name = 'kill me' GROUP BY status;
SELECT * FROM carto.query('carto', $$SELECT count(*) AS n, count(*) FILTER (WHERE h = 'second') AS second FROM s42_kill$$);
SELECT carto.push('big', 'carto', 's42_kill', mode => 'replace', cartodbfy => false, name => 'kill me') AS next_run;
SELECT * FROM carto.query('carto', $$SELECT count(*) AS n, count(*) FILTER (WHERE h = 'second') AS second,
  (SELECT count(*) FROM pg_tables WHERE tablename LIKE 'carto_sync_stage%') AS staging_left FROM s42_kill$$);
