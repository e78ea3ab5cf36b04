-- 40_sync: carto.push / carto.pull in every mode, watermarks, exactly-once under faults, run records.
CREATE EXTENSION postgis;
CREATE EXTENSION carto_fdw;
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url', max_retries '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
\set QUIET on
SELECT carto.exec('carto', 'DROP TABLE IF EXISTS s40_app, s40_rep, s40_ups, s40_types, carto_sync_state CASCADE');
\set QUIET off

-- A source with awkward values.
CREATE TABLE src (id int PRIMARY KEY, name text, lng float8, lat float8, score numeric(12,4), updated_at timestamptz);
INSERT INTO src
SELECT i, CASE WHEN i % 7 = 0 THEN NULL WHEN i % 11 = 0 THEN '' ELSE format(E'n%s\t"q''\\ é 😀', i) END,
       (i % 360) - 180, (i % 170) - 85, i / 3.0, '2026-01-01'::timestamptz + i * interval '1 minute'
  FROM generate_series(1, 3000) i;

-- append into a table push creates: loaded plain, then cartodbfied; lnglat builds the points here.
SELECT carto.push('src', 'carto', 's40_app', lnglat => ARRAY['lng', 'lat']) AS pushed;
SELECT * FROM carto.query('carto', $$SELECT count(*) AS n, count(the_geom) AS geoms, count(the_geom_webmercator) AS merc,
  count(*) FILTER (WHERE name IS NULL) AS nulls, count(*) FILTER (WHERE name = '') AS empties,
  bool_and(ST_X(the_geom) = lng AND ST_Y(the_geom) = lat AND ST_SRID(the_geom) = 4326) AS points_ok,
  (SELECT count(*) FROM pg_attribute WHERE attrelid = 's40_app'::regclass AND attname = 'cartodb_id') AS has_cartodb_id
  FROM s40_app$$);
-- Values arrive exactly: compare through a foreign table.
CREATE FOREIGN TABLE s40_app (id int, name text, lng float8, lat float8, score numeric(12,4), updated_at timestamptz) SERVER carto;
SELECT count(*) AS differences FROM ((SELECT * FROM src EXCEPT ALL SELECT * FROM s40_app) UNION ALL (SELECT * FROM s40_app EXCEPT ALL SELECT * FROM src)) d;
-- A second append run appends again (that is what append without since means).
SELECT carto.push('src', 'carto', 's40_app') AS pushed_again;
SELECT * FROM carto.query('carto', 'SELECT count(*) AS n FROM s40_app');

-- replace: the remote table ends with exactly the source's rows, and keeps its identity
-- (same OID, a view on it survives), run after run.
SELECT carto.push('src', 'carto', 's40_rep', mode => 'replace') AS replaced;
SELECT carto.exec('carto', 'CREATE VIEW s40_rep_v AS SELECT id, name FROM s40_rep');
SELECT r->>'oid' AS oid_before INTO TEMP oid_before FROM carto.query('carto', $$SELECT 's40_rep'::regclass::oid AS oid$$) r;
DELETE FROM src WHERE id > 2900;
UPDATE src SET name = 'changed' WHERE id = 1;
SELECT carto.push('src', 'carto', 's40_rep', mode => 'replace') AS replaced;
SELECT (r->>'oid') = (SELECT oid_before FROM oid_before) AS same_table, r->>'n' AS n, r->>'v' AS via_view, r->>'first' AS first
  FROM carto.query('carto', $$SELECT 's40_rep'::regclass::oid AS oid, (SELECT count(*) FROM s40_rep) AS n,
                                     (SELECT count(*) FROM s40_rep_v) AS v, (SELECT name FROM s40_rep WHERE id = 1) AS first$$) r;

-- upsert with a watermark: only rows past it are sent; running it again changes nothing.
SELECT carto.push('src', 'carto', 's40_ups', mode => 'upsert', key => 'id', since => 'updated_at') AS upserted;
SELECT carto.push('src', 'carto', 's40_ups', mode => 'upsert', key => 'id', since => 'updated_at') AS upserted_again;
UPDATE src SET name = 'late change', updated_at = '2027-01-01' WHERE id = 2;
INSERT INTO src VALUES (9001, 'brand new', 1, 1, 1, '2027-01-02');
SELECT carto.push('src', 'carto', 's40_ups', mode => 'upsert', key => 'id', since => 'updated_at') AS upserted_new;
SELECT * FROM carto.query('carto', $$SELECT count(*) AS n, (SELECT name FROM s40_ups WHERE id = 2) AS id2, (SELECT name FROM s40_ups WHERE id = 9001) AS id9001 FROM s40_ups$$);
SELECT rows, status, watermark_from, watermark_to FROM carto.sync_runs WHERE target = 'carto.s40_ups' ORDER BY run_id;

-- A fault in the middle of a run: the upload is cut. The run is recorded as failed, the
-- watermark stays, CARTO's table is unchanged, no staging table is left, and the next run converges.
UPDATE src SET name = 'after fault', updated_at = '2027-02-01' WHERE id = 3;
\! curl -s -X POST "$CARTO_SIM_ADMIN/faults" -H 'Content-Type: application/json' -d '{"group":"copy_from","cut_upload_after":10}' >/dev/null
-- (the WARNING names the request; the run's record says the same)
SET client_min_messages = error;
SELECT carto.push('src', 'carto', 's40_ups', mode => 'upsert', key => 'id', since => 'updated_at') AS failed_run;
RESET client_min_messages;
SELECT status, rows, watermark_from, watermark_to, error LIKE 'CARTO:%' AS carto_error FROM carto.sync_runs WHERE target = 'carto.s40_ups' ORDER BY run_id DESC LIMIT 1;
SELECT * FROM carto.query('carto', $$SELECT (SELECT name FROM s40_ups WHERE id = 3) AS id3,
  (SELECT count(*) FROM pg_tables WHERE tablename LIKE 'carto_sync_stage%') AS staging_left$$);
\! curl -s -X POST "$CARTO_SIM_ADMIN/faults" -H 'Content-Type: application/json' -d '{"group":"query","status":500,"count":1}' >/dev/null
SELECT carto.push('src', 'carto', 's40_ups', mode => 'upsert', key => 'id', since => 'updated_at') AS failed_early;
\! curl -s -X DELETE "$CARTO_SIM_ADMIN/faults" >/dev/null
SELECT carto.push('src', 'carto', 's40_ups', mode => 'upsert', key => 'id', since => 'updated_at') AS converged;
SELECT * FROM carto.query('carto', $$SELECT count(*) AS n, (SELECT name FROM s40_ups WHERE id = 3) AS id3,
  (SELECT count(*) FROM pg_tables WHERE tablename LIKE 'carto_sync_stage%') AS staging_left FROM s40_ups$$);
SELECT status, count(*) FROM carto.sync_runs WHERE target = 'carto.s40_ups' GROUP BY status ORDER BY status;

-- Two runs of one sync never overlap: while another session holds the sync's lock, a run is skipped.
-- (The lock is a row of carto.sync_locks per role and sync, locked by the run: here a superuser takes it.)
INSERT INTO carto.sync_locks VALUES ((SELECT oid FROM pg_roles WHERE rolname = current_user), 'locked sync');
\! psql -X -q -d e2e_40_sync -c "SELECT 1 FROM carto.sync_locks WHERE name = 'locked sync' FOR UPDATE; SELECT pg_sleep(4)" >/dev/null 2>&1 &
SELECT pg_sleep(1.5);
SELECT carto.push('src', 'carto', 's40_ups', mode => 'upsert', key => 'id', name => 'locked sync') AS skipped;
SELECT status, error FROM carto.sync_runs WHERE name = 'locked sync';

-- pull: replace, append with a watermark, upsert.
CREATE TABLE back (id int PRIMARY KEY, name text, score numeric(12,4), updated_at timestamptz);
SELECT carto.pull('carto', 's40_rep', 'back') AS pulled;
CREATE FOREIGN TABLE s40_rep (id int, name text, score numeric(12,4), updated_at timestamptz) SERVER carto;
SELECT count(*) AS differences FROM ((SELECT * FROM s40_rep EXCEPT ALL SELECT * FROM back) UNION ALL (SELECT * FROM back EXCEPT ALL SELECT * FROM s40_rep)) d;
SELECT carto.pull('carto', 's40_rep', 'back') AS pulled_again;
SELECT count(*) FROM back;
CREATE TABLE back2 (id int, name text, updated_at timestamptz);
SELECT carto.pull('carto', 's40_ups', 'back2', mode => 'append', since => 'updated_at') AS first_pull;
SELECT carto.pull('carto', 's40_ups', 'back2', mode => 'append', since => 'updated_at') AS nothing_new;
SELECT carto.exec('carto', $$UPDATE s40_ups SET name = 'remote edit', updated_at = '2028-01-01' WHERE id = 4$$);
SELECT carto.pull('carto', 's40_ups', 'back2', mode => 'append', since => 'updated_at') AS one_new;
SELECT count(*), count(*) FILTER (WHERE name = 'remote edit') FROM back2;
SELECT carto.pull('carto', 's40_ups', 'back', mode => 'upsert', key => 'id') AS upserted;
SELECT name FROM back WHERE id IN (2, 4, 9001) ORDER BY id;
-- A pull that fails leaves the target as it was.
SELECT carto.pull('carto', 'no_such_table', 'back') AS failed_pull;
SELECT count(*) FROM back;

-- Bad arguments raise.
SELECT carto.push('src', 'carto', 's40_x', mode => 'merge');
SELECT carto.push('src', 'carto', 's40_x', mode => 'upsert');
SELECT carto.push('src', 'nope', 's40_x');
SELECT carto.push('src', 'carto', 's40_x', lnglat => ARRAY['lng']);
-- The latest state of every sync, for a pg_cron watcher.
SELECT name, direction, mode, last_status, last_rows FROM carto.sync_status ORDER BY name;
