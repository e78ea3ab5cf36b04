-- 48_writers_rate_limited: 8 sessions INSERT 5000 rows each into one CARTO table at once while CARTO's rate limit
-- of COPY uploads is hit. A refused upload is CARTO's 429 with Retry-After, answered before CARTO takes any of the
-- body (docs/writes.md, "Rate limits"): a wait longer than max_retry_wait fails the INSERT loudly, a shorter one
-- is waited and the upload replayed. Either way nothing is half-written: each session's rows are all on CARTO
-- (the count and digest CARTO computes equal those of the rows generated here) or none are, and no upload is
-- left open. Needs no PostGIS.
CREATE EXTENSION carto_fdw;
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
SELECT carto.exec('carto', 'DROP TABLE IF EXISTS t48');
SELECT carto.exec('carto', 'CREATE TABLE t48 (cartodb_id serial PRIMARY KEY, sess int NOT NULL, n int NOT NULL, ts timestamptz, f float8, t text)');
CREATE FOREIGN TABLE w (sess int, n int, ts timestamptz, f float8, t text) SERVER carto OPTIONS (table_name 't48');
CREATE FUNCTION rows48(s int) RETURNS TABLE (sess int, n int, ts timestamptz, f float8, t text)
LANGUAGE sql IMMUTABLE AS $$
  SELECT s, g, timestamptz '2026-03-29 00:30:00+00' + make_interval(secs => (g * 97 + s) % 200000 * 3.5), (g * s) / 7.0,
         CASE WHEN g % 11 = 0 THEN NULL ELSE s || ':' || md5(g::text) || E'\t\\' END
    FROM generate_series(1, 5000) g $$;
\set digest 'count(*) AS n_rows, sum(n) AS n_sum, md5(string_agg(concat_ws(''|'', n, extract(epoch FROM ts), float8send(f), t), '','' ORDER BY n)) AS digest'
-- Per session: rows and digest on CARTO (sessions with no row there are absent) against the rows generated here.
CREATE VIEW judged AS
  WITH remote AS (
    SELECT (r->>'sess')::int AS sess, (r->>'n_rows')::bigint AS n_rows, (r->>'n_sum')::bigint AS n_sum, r->>'digest' AS digest
      FROM carto.query('carto', 'SELECT sess, ' || :'digest' || ' FROM t48 GROUP BY sess') r),
  here AS (SELECT s AS sess, x.* FROM generate_series(1, 8) s, LATERAL (SELECT :digest FROM rows48(s)) x)
  SELECT h.sess, coalesce(r.n_rows, 0) AS rows_on_carto,
         CASE WHEN r.sess IS NULL THEN 'none' WHEN (r.n_rows, r.n_sum, r.digest) = (h.n_rows, h.n_sum, h.digest) THEN 'all' ELSE 'PARTIAL' END AS written
    FROM here h LEFT JOIN remote r USING (sess);
CREATE TABLE outcome (sess int, rc int);
\setenv DB :DBNAME
-- data/48_writers.sh starts the 8 writers at once and counts their outputs.

-- 1. CARTO allows 3 uploads an hour: 3 writers go through, the 5 others get a 429 whose Retry-After (about 20
-- minutes) is over max_retry_wait (60 s): their INSERT fails at once with a rate-limit ERROR.
\! curl -sS -X DELETE "$CARTO_SIM_ADMIN/log" >/dev/null; curl -sS -X POST "$CARTO_SIM_ADMIN/rate_limits/reset" >/dev/null; curl -sS -X POST "$CARTO_SIM_ADMIN/users/demo" -d '{"rate_limits": {"copy_from": {"count": 3, "period_secs": 3600}}}' >/dev/null
\! sh data/48_writers.sh
-- CARTO's log: 3 uploads taken, 5 refused once (not retried: the wait is too long).
\! curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c 'import json, sys, collections; c = collections.Counter(e["status"] for e in json.load(sys.stdin) if e.get("group") == "copy_from"); print("COPY requests answered 200:", c[200], "| 429:", c[429], "| other:", sum(c.values()) - c[200] - c[429])'
\copy outcome FROM 'results/48_status.txt' WITH (DELIMITER ' ')
SELECT count(*) FILTER (WHERE rc = 0) AS succeeded, count(*) FILTER (WHERE rc <> 0) AS failed FROM outcome;
-- Every session that succeeded has all its rows on CARTO, every one that failed none.
SELECT o.rc = 0 AS succeeded, j.written, j.rows_on_carto, count(*) AS sessions
  FROM judged j JOIN outcome o USING (sess) GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
\! psql "$CARTO_SIM_PG" -XAtc "SELECT count(*) AS uploads_left FROM pg_stat_activity WHERE query LIKE 'COPY%t48%' AND state <> 'idle' AND pid <> pg_backend_pid()"

-- 2. 2 uploads at once, then one a second: the 6 writers beyond the burst are refused with a Retry-After of a
-- second or two, wait, and replay their upload (max_retries raised for the 8 to queue up): all 8 go through,
-- each committed once.
SELECT carto.exec('carto', 'TRUNCATE t48');
TRUNCATE outcome;
ALTER SERVER carto OPTIONS (ADD max_retries '30');
\! curl -sS -X DELETE "$CARTO_SIM_ADMIN/log" >/dev/null; curl -sS -X POST "$CARTO_SIM_ADMIN/rate_limits/reset" >/dev/null; curl -sS -X POST "$CARTO_SIM_ADMIN/users/demo" -d '{"rate_limits": {"copy_from": {"count": 1, "period_secs": 1, "burst": 2}}}' >/dev/null
\! sh data/48_writers.sh
-- CARTO's log: 8 uploads taken, and at least the 6 that did not fit the burst refused first (how often each
-- was refused before its turn varies).
\! curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c 'import json, sys, collections; c = collections.Counter(e["status"] for e in json.load(sys.stdin) if e.get("group") == "copy_from"); print("COPY requests answered 200:", c[200], "| 429:", "at least 6" if c[429] >= 6 else c[429], "| other:", sum(c.values()) - c[200] - c[429])'
\copy outcome FROM 'results/48_status.txt' WITH (DELIMITER ' ')
SELECT count(*) FILTER (WHERE rc = 0) AS succeeded, count(*) FILTER (WHERE rc <> 0) AS failed FROM outcome;
SELECT written, rows_on_carto, count(*) AS sessions FROM judged GROUP BY 1, 2 ORDER BY 1, 2;
SELECT * FROM carto.query('carto', 'SELECT count(*) AS rows, count(DISTINCT cartodb_id) AS ids FROM t48');
\! psql "$CARTO_SIM_PG" -XAtc "SELECT count(*) AS uploads_left FROM pg_stat_activity WHERE query LIKE 'COPY%t48%' AND state <> 'idle' AND pid <> pg_backend_pid()"
\! curl -sS -X POST "$CARTO_SIM_ADMIN/users/demo" -d '{"reset_rate_limits": true}' >/dev/null; curl -sS -X POST "$CARTO_SIM_ADMIN/rate_limits/reset" >/dev/null
SELECT carto.exec('carto', 'DROP TABLE t48');
\! rm -f results/48_status.txt
