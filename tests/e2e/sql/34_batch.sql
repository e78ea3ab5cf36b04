-- 34_batch: the Batch SQL API — submit, status, wait, cancel, fallbacks, limits, and carto.batch_jobs.
CREATE EXTENSION carto_fdw;
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url', max_retries '1', max_retry_wait '1');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
SELECT p.oid::regprocedure AS function, p.provolatile, p.proparallel, p.proisstrict,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute, pg_get_function_result(p.oid) AS result
  FROM pg_proc p WHERE p.pronamespace = 'carto'::regnamespace AND p.proname LIKE 'batch%' ORDER BY 1::text;
\d carto.batch_jobs
SET client_min_messages = warning;
SELECT carto.exec('carto', 'DROP TABLE IF EXISTS b34, b34_log');
RESET client_min_messages;
SELECT carto.exec('carto', 'CREATE TABLE b34 (x int PRIMARY KEY); CREATE TABLE b34_log (job text, msg text)');
-- Job ids and times vary: the tests keep them in psql variables and show only what is stable.
CREATE FUNCTION pg_temp.summary(j jsonb) RETURNS TABLE (status text, failed_reason text, query_statuses text, fallback_status text)
LANGUAGE sql AS $$
  SELECT j->>'status', j->>'failed_reason',
         (SELECT string_agg(coalesce(q->>'status', '?') || coalesce(' (' || (q->>'failed_reason') || ')', ''), ', ' ORDER BY n)
            FROM jsonb_array_elements(CASE jsonb_typeof(j->'query') WHEN 'array' THEN j->'query'
                                          WHEN 'object' THEN j->'query'->'query' ELSE '[]' END) WITH ORDINALITY AS e(q, n)),
         coalesce(j->>'fallback_status', j->'query'->>'fallback_status')
$$;
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; m text; h text;
BEGIN
  EXECUTE sql;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, m = MESSAGE_TEXT, h = PG_EXCEPTION_HINT;
  RETURN st || ': ' || regexp_replace(regexp_replace(m, '[0-9a-f]{8}-[0-9a-f-]{27}', '<job_id>', 'g'), '[0-9]+\.[0-9] s', 'N s')
         || coalesce(' HINT: ' || nullif(h, ''), '');
END $$;

-- A job that succeeds: its queries run in order.
SELECT carto.batch_submit('carto', ARRAY['INSERT INTO b34 VALUES (1)', 'INSERT INTO b34 VALUES (2)']) AS job \gset ok_
SELECT :'ok_job' ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' AS job_id_is_a_uuid;
SELECT * FROM pg_temp.summary(carto.batch_wait('carto', :'ok_job'));
SELECT * FROM pg_temp.summary(carto.batch_status('carto', :'ok_job'));
SELECT q->>'x' AS x FROM carto.query('carto', 'SELECT x FROM b34 ORDER BY x') q;

-- A job that fails: failed_reason, the failing query marked failed and the next one skipped.
SELECT carto.batch_submit('carto', ARRAY['INSERT INTO b34 VALUES (3)', 'INSERT INTO b34 VALUES (1)', 'INSERT INTO b34 VALUES (4)']) AS job \gset fail_
SELECT * FROM pg_temp.summary(carto.batch_wait('carto', :'fail_job'));
-- ... as an ERROR when asked to.
SELECT pg_temp.try(format('SELECT carto.batch_wait(%L, %L, raise_on_failure => true)', 'carto', :'fail_job'));

-- Fallbacks: onerror runs with the error message, onsuccess on success.
SELECT carto.batch_submit('carto', ARRAY['SELECT 1 / 0'],
  onerror => $$INSERT INTO b34_log VALUES ('<%= job_id %>', 'failed: <%= error_message %>')$$) AS job \gset fb1_
SELECT * FROM pg_temp.summary(carto.batch_wait('carto', :'fb1_job'));
SELECT carto.batch_submit('carto', ARRAY['INSERT INTO b34 VALUES (10)'],
  onsuccess => $$INSERT INTO b34_log VALUES ('<%= job_id %>', 'ok')$$,
  onerror => $$INSERT INTO b34_log VALUES ('<%= job_id %>', 'never')$$) AS job \gset fb2_
SELECT * FROM pg_temp.summary(carto.batch_wait('carto', :'fb2_job'));
SELECT CASE q->>'job' WHEN :'fb1_job' THEN 'job 1' WHEN :'fb2_job' THEN 'job 2' ELSE q->>'job' END AS job, q->>'msg' AS msg
  FROM carto.query('carto', 'SELECT * FROM b34_log ORDER BY msg') q;

-- Cancel a running job.
SELECT carto.batch_submit('carto', ARRAY['SELECT pg_sleep(30)', 'INSERT INTO b34 VALUES (99)']) AS job \gset slow_
-- Waiting times out (an ERROR; the job goes on).
SELECT pg_temp.try(format('SELECT carto.batch_wait(%L, %L, timeout => %L)', 'carto', :'slow_job', '1 second'));
SELECT status IN ('pending', 'running') AS still_going FROM pg_temp.summary(carto.batch_status('carto', :'slow_job'));
SELECT status FROM pg_temp.summary(carto.batch_cancel('carto', :'slow_job'));
SELECT * FROM pg_temp.summary(carto.batch_wait('carto', :'slow_job'));
SELECT pg_temp.try(format('SELECT carto.batch_wait(%L, %L, raise_on_failure => true)', 'carto', :'slow_job'));
-- A finished job cannot be cancelled.
SELECT pg_temp.try(format('SELECT carto.batch_cancel(%L, %L)', 'carto', :'ok_job'));
SELECT q->>'n' AS rows_99 FROM carto.query('carto', 'SELECT count(*) AS n FROM b34 WHERE x = 99') q;
-- Ctrl-C / statement_timeout interrupt a wait.
SELECT carto.batch_submit('carto', ARRAY['SELECT pg_sleep(30)']) AS job \gset slow2_
SET statement_timeout = '1s';
SELECT carto.batch_wait('carto', :'slow2_job');
RESET statement_timeout;
SELECT status FROM pg_temp.summary(carto.batch_cancel('carto', :'slow2_job'));

-- carto.batch_jobs remembers every job and its last known status (CARTO has no job listing).
SELECT CASE job_id WHEN :'ok_job' THEN 'ok' WHEN :'fail_job' THEN 'fail' WHEN :'fb1_job' THEN 'fb1' WHEN :'fb2_job' THEN 'fb2'
                   WHEN :'slow_job' THEN 'slow' WHEN :'slow2_job' THEN 'slow2' END AS job,
       server, submitted_by, status, finished, failed_reason, query_statuses, queries
  FROM carto.batch_jobs_latest ORDER BY submitted_at;
SELECT count(*) FILTER (WHERE last_checked_at >= submitted_at) AS checked, count(*) AS jobs,
       count(*) FILTER (WHERE onsuccess IS NOT NULL OR onerror IS NOT NULL) AS with_fallbacks FROM carto.batch_jobs;

-- A job CARTO forgot (finished jobs are kept 2 hours; here 1 second): its last known status.
\! curl -sS -o /dev/null -X POST "$CARTO_SIM_ADMIN/limits" -d '{"batch_ttl_secs": 1}'
SELECT pg_sleep(1.5);
SELECT * FROM pg_temp.summary(carto.batch_status('carto', :'ok_job'));
SELECT (carto.batch_wait('carto', :'fail_job'))->>'expired_on_carto' AS expired_on_carto;
-- A job id nobody knows.
SELECT pg_temp.try($$SELECT carto.batch_status('carto', '00000000-0000-0000-0000-000000000000')$$);
\! curl -sS -o /dev/null -X POST "$CARTO_SIM_ADMIN/limits" -d '{"batch_ttl_secs": 7200}'

-- Limits: a body over 16 KB is refused before anything is sent.
\! curl -sS -o /dev/null -X DELETE "$CARTO_SIM_ADMIN/log"
SELECT pg_temp.try(format('SELECT carto.batch_submit(%L, ARRAY[%L])', 'carto', 'SELECT ''' || repeat('x', 17000) || ''''));
\! curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c 'import json,sys; print("requests:", len(json.load(sys.stdin)))'
-- 403: the Batch API needs the master key.
CREATE SERVER carto_ro FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto_ro OPTIONS (api_key :'readonly_key');
SELECT pg_temp.try($$SELECT carto.batch_submit('carto_ro', ARRAY['SELECT 1'])$$);
-- 401.
CREATE SERVER carto_badkey FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto_badkey OPTIONS (api_key 'not-a-key');
SELECT pg_temp.try(format('SELECT carto.batch_status(%L, %L)', 'carto_badkey', :'ok_job'));
-- 429 without Retry-After, and 429 with Retry-After (rate limit on reading jobs).
\! curl -sS -o /dev/null -X POST "$CARTO_SIM_ADMIN/faults" -d '{"group": "job_create", "status": 429}'
-- (CARTO's statement-timeout kind: SQLSTATE 53400, like the rate-limit kind; the hint tells them apart.)
SELECT carto.batch_submit('carto', ARRAY['SELECT 1']);
SELECT carto.batch_submit('carto', ARRAY['SELECT 1']) AS job \gset rl_
\! curl -sS -o /dev/null -X POST "$CARTO_SIM_ADMIN/rate_limits/reset"
\! curl -sS -o /dev/null -X POST "$CARTO_SIM_ADMIN/users/demo" -d '{"rate_limits": {"job_get": {"count": 1, "period_secs": 60}}}'
SELECT status IS NOT NULL AS first_read_passes FROM pg_temp.summary(carto.batch_status('carto', :'rl_job'));
SELECT pg_temp.try(format('SELECT carto.batch_status(%L, %L)', 'carto', :'rl_job'));
\! curl -sS -o /dev/null -X POST "$CARTO_SIM_ADMIN/users/demo" -d '{"reset_rate_limits": true}'
\! curl -sS -o /dev/null -X POST "$CARTO_SIM_ADMIN/rate_limits/reset"
-- Arguments.
SELECT pg_temp.try($$SELECT carto.batch_submit('carto', ARRAY[]::text[])$$);
SELECT pg_temp.try($$SELECT carto.batch_submit('carto', ARRAY['SELECT 1', NULL])$$);
SELECT pg_temp.try($$SELECT carto.batch_submit(NULL, ARRAY['SELECT 1'])$$);
SELECT carto.batch_status('carto', NULL) IS NULL AS strict_null, carto.batch_wait(NULL, 'x') IS NULL AS strict_null_wait;
SELECT pg_temp.try(format('SELECT carto.batch_wait(%L, %L, timeout => %L)', 'carto', :'ok_job', '-1 second'));
-- A role needs no privilege on carto.batch_jobs: the function records the job itself (as the table's
-- owner); with SELECT granted the role sees its own jobs only (docs/security.md).
CREATE ROLE b34_user;
CREATE USER MAPPING FOR b34_user SERVER carto OPTIONS (api_key :'api_key');
GRANT USAGE ON SCHEMA carto TO b34_user;
GRANT USAGE ON FOREIGN SERVER carto TO b34_user;
GRANT EXECUTE ON FUNCTION carto.batch_submit(text, text[], text, text) TO b34_user;
SET ROLE b34_user;
SELECT length(carto.batch_submit('carto', ARRAY['SELECT 1'])) AS job_id_length;
SELECT pg_temp.try($$SELECT count(*) FROM carto.batch_jobs$$);
RESET ROLE;
GRANT SELECT ON carto.batch_jobs TO b34_user;
SET ROLE b34_user;
SELECT submitted_by, count(*) AS visible FROM carto.batch_jobs GROUP BY 1;
RESET ROLE;
SELECT submitted_by, status FROM carto.batch_jobs_latest WHERE submitted_by = 'b34_user';
DELETE FROM carto.batch_jobs WHERE submitted_by = 'b34_user';
DROP USER MAPPING FOR b34_user SERVER carto;
DROP OWNED BY b34_user;
DROP ROLE b34_user;
SELECT carto.exec('carto', 'DROP TABLE b34, b34_log');
