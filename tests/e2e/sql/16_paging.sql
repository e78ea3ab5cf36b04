-- 16_paging: the /sql transport pages by keyset on the rowid column. Every row must come back
-- whatever the rowid column holds: a table without cartodb_id (a plain table, a view), a rowid_column
-- with duplicates and NULLs, text and bigint rowids, pages of every size.
CREATE EXTENSION carto_fdw;
\set SHOW_CONTEXT never
\! curl -sS -u "demo:$CARTO_SIM_API_KEY" "$CARTO_SIM_BASE_URL/api/v2/sql" --data-urlencode "q=DROP TABLE IF EXISTS t16 CASCADE; CREATE TABLE t16 AS SELECT g AS id, CASE WHEN g % 4 = 0 THEN NULL ELSE g % 6 END AS grp, 'v' || g AS v, (g * 1000000000000)::bigint AS big, lpad(g::text, 3, '0') AS code FROM generate_series(1, 20) g; CREATE VIEW t16_view AS SELECT * FROM t16" | sed -E 's/"time":[0-9.e+-]+/"time":T/'; echo
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
SET statement_timeout = '20s';

-- 1. No cartodb_id column on CARTO's side (a table that was never cartodbfied, a view): readable
-- with the default options.
CREATE FOREIGN TABLE t16 (id int, grp int, v text) SERVER carto;
CREATE FOREIGN TABLE t16_view (id int, grp int, v text) SERVER carto;
SELECT count(*), count(v), sum(id) FROM t16;
SELECT count(*), count(v), sum(id) FROM t16_view;
SELECT id, v FROM t16 WHERE id <= 3 ORDER BY id;

-- 2. rowid_column with duplicates and NULLs, small pages: still 20 rows, each once.
CREATE FOREIGN TABLE t16_grp (id int, grp int, v text) SERVER carto
  OPTIONS (table_name 't16', rowid_column 'grp', scan_method 'query', fetch_size '3');
SELECT count(*) AS rows, count(DISTINCT id) AS distinct_ids, sum(id) FROM t16_grp;
ALTER FOREIGN TABLE t16_grp OPTIONS (SET fetch_size '5');
SELECT count(*) AS rows, count(DISTINCT id) AS distinct_ids, sum(id) FROM t16_grp;

-- 3. Unique rowids of other types, pages of 1, 7, 20 and 21 rows.
CREATE FOREIGN TABLE t16_big (id int, big bigint, v text) SERVER carto
  OPTIONS (table_name 't16', rowid_column 'big', scan_method 'query', fetch_size '1');
CREATE FOREIGN TABLE t16_code (id int, code text, v text) SERVER carto
  OPTIONS (table_name 't16', rowid_column 'code', scan_method 'query', fetch_size '7');
CREATE FOREIGN TABLE t16_id (id int, v text) SERVER carto
  OPTIONS (table_name 't16', rowid_column 'id', scan_method 'query', fetch_size '20');
SELECT count(*), count(DISTINCT id), sum(id) FROM t16_big;
SELECT count(*), count(DISTINCT id), sum(id) FROM t16_code;
SELECT count(*), count(DISTINCT id), sum(id) FROM t16_id;
ALTER FOREIGN TABLE t16_id OPTIONS (SET fetch_size '21');
SELECT count(*), count(DISTINCT id), sum(id) FROM t16_id;
RESET statement_timeout;
