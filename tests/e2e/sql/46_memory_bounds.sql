-- 46_memory_bounds: memory stays bounded whatever CARTO answers, and running out is an ERROR, never an abort
-- that restarts the cluster. In a backend whose address space is limited to 1 GB, carto.query streams a
-- 2M-row answer (about 105 MB of JSON; the buffered design needed over 1.3 GB) and a /sql scan reads a
-- 2M-row table; a binary COPY that declares a 1 GB field is refused without allocating it; another session's
-- open transaction lives through all of it.
CREATE EXTENSION carto_fdw;
CREATE EXTENSION dblink;
\set VERBOSITY terse
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url', max_retries '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
SELECT carto.exec('carto', 'DROP TABLE IF EXISTS big46; CREATE TABLE big46 AS SELECT x AS cartodb_id, md5(x::text) AS h FROM generate_series(1, 2000000) x; ALTER TABLE big46 ADD PRIMARY KEY (cartodb_id)') AS created;
CREATE FOREIGN TABLE big46 (cartodb_id int, h text) SERVER carto OPTIONS (scan_method 'query', fetch_size '200000');
SELECT pg_postmaster_start_time() AS started \gset
-- Another session with an open transaction, which must survive.
CREATE TABLE witness (n int);
SELECT dblink_connect('other', 'dbname=' || current_database() || ' host=127.0.0.1 port=' || current_setting('port') || ' user=postgres');
SELECT dblink_exec('other', 'BEGIN');
SELECT dblink_exec('other', 'INSERT INTO witness VALUES (1)');
-- This backend's address space: at most 1 GB from now on.
SELECT pg_backend_pid() AS pid \gset
\pset tuples_only on
\pset format unaligned
SELECT pg_backend_pid() \g /tmp/e2e_46.pid
\pset tuples_only off
\pset format aligned
\! p=$(cat /tmp/e2e_46.pid); rm -f /tmp/e2e_46.pid; if [ "$(id -u)" = 0 ]; then runuser -u postgres -- prlimit --pid "$p" --as=1073741824:1073741824; else prlimit --pid "$p" --as=1073741824:1073741824; fi
SELECT (regexp_match(pg_read_file('/proc/' || pg_backend_pid() || '/limits'), 'Max address space\s+(\d+)'))[1] AS address_space_limit;
SELECT count(*) AS n, count(DISTINCT q->>'h') AS distinct_h, min((q->>'x')::int) AS lo, max((q->>'x')::int) AS hi
  FROM carto.query('carto', 'SELECT x, md5(x::text) AS h FROM generate_series(1, 2000000) x') AS q;
-- A /sql scan of all 2M rows (keyset pages of 200000 rows; the local filter keeps the count from being pushed).
SELECT count(*) AS n, count(DISTINCT h) AS distinct_h, max(cartodb_id) AS hi FROM big46 WHERE random() >= 0;
SELECT carto.exec('carto', 'DROP TABLE big46') AS dropped;
-- A binary COPY whose one field declares 1,000,000,000 bytes (and sends 3): an ERROR, nothing allocated for it.
CREATE FOREIGN TABLE big_field (x text) SERVER carto OPTIONS (scan_method 'copy', copy_format 'binary', table_name 'places');
\! curl -sS -o /dev/null -X POST "$CARTO_SIM_ADMIN/faults" -d '{"group":"copy_to","status":200,"body_hex":"5047434f50590aff0d0a00000000000000000000013b9aca00616263"}'
SELECT x FROM big_field;
\! curl -sS -o /dev/null -X DELETE "$CARTO_SIM_ADMIN/faults"
-- Still the same backend (no crash), the same postmaster (no restart), and the other transaction commits.
SELECT pg_backend_pid() = :pid AS same_backend, pg_postmaster_start_time() = :'started' AS same_postmaster;
SELECT dblink_exec('other', 'COMMIT');
SELECT dblink_disconnect('other');
SELECT count(*) AS witness_rows FROM witness;
