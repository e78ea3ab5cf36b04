-- 41_cron: a push that pg_cron runs every minute, watched from SQL (pg_cron 1.4: minute granularity).
-- The runner's cluster preloads pg_cron with cron.database_name = e2e_41_cron (this database).
CREATE EXTENSION pg_cron;
CREATE EXTENSION postgis;
CREATE EXTENSION carto_fdw;
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
\set QUIET on
SELECT carto.exec('carto', 'DROP TABLE IF EXISTS c41_sites');
\set QUIET off
CREATE TABLE sites (id int PRIMARY KEY, name text, lng float8, lat float8, updated_at timestamptz NOT NULL DEFAULT now());
INSERT INTO sites (id, name, lng, lat) SELECT i, 'site ' || i, i, i / 2.0 FROM generate_series(1, 100) i;

SELECT cron.schedule('carto sites', '* * * * *',
  $$SELECT carto.push('sites', 'carto', 'c41_sites', mode => 'upsert', key => 'id', since => 'updated_at',
                      lnglat => ARRAY['lng', 'lat'], name => 'sites to carto')$$) > 0 AS scheduled;

-- Wait for the first run (at the next minute), then change the source, then wait for the second.
DO $$BEGIN
  FOR i IN 1..90 LOOP
    EXIT WHEN (SELECT count(*) FROM carto.sync_runs WHERE name = 'sites to carto') >= 1;
    PERFORM pg_sleep(1);
  END LOOP;
END$$;
SELECT status, rows FROM carto.sync_runs WHERE name = 'sites to carto' ORDER BY run_id;
UPDATE sites SET name = 'renamed', updated_at = now() WHERE id = 7;
INSERT INTO sites (id, name, lng, lat) VALUES (101, 'new site', 10, 20);
DO $$BEGIN
  FOR i IN 1..90 LOOP
    EXIT WHEN (SELECT count(*) FROM carto.sync_runs WHERE name = 'sites to carto') >= 2;
    PERFORM pg_sleep(1);
  END LOOP;
END$$;
SELECT cron.unschedule('carto sites');
-- pg_cron marks a job run finished just after its transaction commits: wait for that too.
DO $$BEGIN
  FOR i IN 1..30 LOOP
    EXIT WHEN (SELECT count(*) FROM cron.job_run_details WHERE status NOT IN ('starting', 'running')) >= 2;
    PERFORM pg_sleep(0.5);
  END LOOP;
END$$;
SELECT status, rows FROM carto.sync_runs WHERE name = 'sites to carto' ORDER BY run_id;
SELECT name, last_status, last_rows, watermark IS NOT NULL AS has_watermark FROM carto.sync_status;
SELECT status, count(*) FROM cron.job_run_details GROUP BY status;
SELECT * FROM carto.query('carto', $$SELECT count(*) AS n, count(the_geom_webmercator) AS merc,
  (SELECT name FROM c41_sites WHERE id = 7) AS id7, (SELECT ST_AsText(the_geom) FROM c41_sites WHERE id = 101) AS id101 FROM c41_sites$$);
