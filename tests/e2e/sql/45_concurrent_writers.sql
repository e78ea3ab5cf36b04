-- 45_concurrent_writers: 8 sessions INSERT 100000 rows each into one CARTO table at the same time, each under a
-- different hostile DateStyle / IntervalStyle / TimeZone / extra_float_digits; CARTO's own counts and digests
-- (computed remotely over time-zone-free forms of the values) equal the digests of the rows as generated here,
-- and no upload is left running on CARTO.
CREATE EXTENSION postgis;
CREATE EXTENSION carto_fdw;
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
SELECT carto.exec('carto', 'DROP TABLE IF EXISTS t45');
SELECT carto.exec('carto', 'CREATE TABLE t45 (cartodb_id serial PRIMARY KEY, sess int NOT NULL, n int NOT NULL, d date, ts timestamptz, iv interval, f float8, t text)');
CREATE FOREIGN TABLE w (sess int, n int, d date, ts timestamptz, iv interval, f float8, t text)
  SERVER carto OPTIONS (table_name 't45');
-- The rows of session s, as every session generates them.
CREATE FUNCTION rows45(s int) RETURNS TABLE (sess int, n int, d date, ts timestamptz, iv interval, f float8, t text)
LANGUAGE sql IMMUTABLE AS $$
  SELECT s, g, date '2026-01-01' + (g * 7 + s) % 3000 - 1500,
         timestamptz '2026-03-29 00:30:00+00' + make_interval(secs => (g * 97 + s) % 200000 * 3.5),
         make_interval(days => g % 40, secs => (g % 1000) / 8.0), (g * s) / 7.0,
         CASE WHEN g % 11 = 0 THEN NULL ELSE s || ':' || md5(g::text) || E'\t\\' END
    FROM generate_series(1, 100000) g $$;
-- A digest per session over forms that no session setting changes.
\set digest 'count(*) AS n_rows, count(DISTINCT n) AS n_distinct, sum(n) AS n_sum, md5(string_agg(concat_ws(''|'', n, d - date ''2000-01-01'', extract(epoch FROM ts), extract(epoch FROM iv), float8send(f), t), '','' ORDER BY n)) AS digest'

\setenv DB :DBNAME
\! rm -f /tmp/e2e_45_*.out; for s in 1 2 3 4 5 6 7 8; do case $s in 1) o='-c DateStyle=SQL,DMY -c TimeZone=Pacific/Chatham' ;; 2) o='-c DateStyle=German -c TimeZone=America/St_Johns' ;; 3) o='-c DateStyle=Postgres,YMD -c IntervalStyle=sql_standard -c TimeZone=Asia/Kathmandu' ;; 4) o='-c DateStyle=ISO,DMY -c IntervalStyle=iso_8601 -c extra_float_digits=-15' ;; 5) o='-c DateStyle=SQL,MDY -c IntervalStyle=postgres_verbose -c TimeZone=Europe/Madrid' ;; 6) o='-c TimeZone=Australia/Lord_Howe -c extra_float_digits=0' ;; 7) o='-c DateStyle=Postgres,DMY -c TimeZone=UTC-14' ;; 8) o='-c IntervalStyle=sql_standard -c TimeZone=America/Caracas' ;; esac; PGOPTIONS="-c lc_messages=C $o" psql -X -d "$DB" -v ON_ERROR_STOP=1 -c "INSERT INTO w SELECT * FROM rows45($s)" </dev/null >/tmp/e2e_45_$s.out 2>&1 & done; wait; cat /tmp/e2e_45_*.out | sort | uniq -c; rm -f /tmp/e2e_45_*.out

-- CARTO's counts and digests, then the same over the rows generated here: equal.
CREATE TEMP TABLE remote AS
  SELECT (r->>'sess')::int AS sess, (r->>'n_rows')::bigint AS n_rows, (r->>'n_distinct')::bigint AS n_distinct,
         (r->>'n_sum')::bigint AS n_sum, r->>'digest' AS digest
    FROM carto.query('carto', 'SELECT sess, ' || :'digest' || ' FROM t45 GROUP BY sess') r;
CREATE TEMP TABLE here AS SELECT s AS sess, x.* FROM generate_series(1, 8) s,
  LATERAL (SELECT :digest FROM rows45(s)) x;
SELECT sess, n_rows, n_distinct, n_sum, r.digest = h.digest AS same_digest
  FROM remote r JOIN here h USING (sess, n_rows, n_distinct, n_sum) ORDER BY sess;
SELECT (SELECT count(*) FROM remote) AS sessions_on_carto, (SELECT sum(n_rows) FROM remote) AS rows_on_carto;
SELECT * FROM carto.query('carto', 'SELECT count(*) AS rows, count(DISTINCT cartodb_id) AS ids, min(cartodb_id), max(cartodb_id) FROM t45');
-- No upload left running on CARTO.
\! psql "$CARTO_SIM_PG" -XAtc "SELECT count(*) AS uploads_left FROM pg_stat_activity WHERE query LIKE 'COPY%t45%' AND state <> 'idle' AND pid <> pg_backend_pid()"
