-- 20_insert: INSERT and COPY FROM into a CARTO foreign table: rows stream as COPY text into one
-- /copyfrom request per table and transaction; a NULL rowid lets CARTO assign cartodb_id;
-- the_geom_webmercator is never sent (CARTO's trigger fills it); what cannot be honoured is refused.
CREATE EXTENSION postgis;
CREATE EXTENSION carto_fdw;
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url', extensions 'postgis');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
-- Remote tables, created through the SQL API (cartodbfied like CARTO's own tables).
\! curl -sS -u "$CARTO_SIM_USER:$CARTO_SIM_API_KEY" --data-urlencode "q=DROP TABLE IF EXISTS t20; CREATE TABLE t20 (cartodb_id serial PRIMARY KEY, the_geom geometry(Geometry,4326), the_geom_webmercator geometry(Geometry,3857), name text, n numeric, CONSTRAINT n_positive CHECK (n > 0)); SELECT cdb_cartodbfytable('t20')" "$CARTO_SIM_BASE_URL/api/v2/sql" | grep -o '"total_rows":[0-9]*'
CREATE FOREIGN TABLE t20 (cartodb_id int, the_geom geometry(Geometry,4326), the_geom_webmercator geometry(Geometry,3857),
  name text, n numeric) SERVER carto;
\! curl -sS -X DELETE "$CARTO_SIM_ADMIN/log" >/dev/null
-- EXPLAIN shows the endpoint and the remote COPY statements (with and without the rowid column); nothing is sent.
EXPLAIN (VERBOSE, COSTS OFF) INSERT INTO t20 (name) VALUES ('x');
-- Plain INSERTs (autocommit): NULL cartodb_id → CARTO's sequence; an explicit one is kept.
INSERT INTO t20 (name, n, the_geom) VALUES ('a', 1.5, 'SRID=4326;POINT(1 2)'), ('b', NULL, NULL);
INSERT INTO t20 (cartodb_id, name, the_geom_webmercator) VALUES (100, 'explicit', 'SRID=3857;POINT(0 0)');
SELECT cartodb_id, name, n, ST_AsText(the_geom) AS geom, ST_AsText(ST_SnapToGrid(the_geom_webmercator, 1)) AS webmercator
  FROM t20 ORDER BY cartodb_id;
-- Mixed NULL and explicit rowids in one statement: two COPY column lists, both committed together.
INSERT INTO t20 (cartodb_id, name) VALUES (200, 'two hundred'), (NULL, 'auto'), (201, 'two hundred one');
SELECT cartodb_id, name FROM t20 WHERE cartodb_id >= 3 ORDER BY cartodb_id;
-- INSERT ... SELECT and COPY FROM STDIN.
INSERT INTO t20 (name, n) SELECT 'gen ' || i, i FROM generate_series(1, 5) i;
COPY t20 (name, n, the_geom) FROM STDIN;
copy 1	1	SRID=4326;POINT(10 20)
copy\ttab	\N	\N
\.
SELECT name, n, ST_AsText(the_geom) AS geom FROM t20 WHERE name LIKE 'gen%' OR name LIKE 'copy%' ORDER BY name;
-- One /copyfrom request per statement here (each autocommits), never an empty one.
\! curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c 'import json,sys; print("copyfrom requests:", sum(1 for e in json.load(sys.stdin) if e["group"] == "copy_from"))'
INSERT INTO t20 (name) SELECT 'none' WHERE false;
\! curl -sS "$CARTO_SIM_ADMIN/log" | python3 -c 'import json,sys; print("copyfrom requests:", sum(1 for e in json.load(sys.stdin) if e["group"] == "copy_from"))'
-- Refused before anything is sent: RETURNING, ON CONFLICT.
INSERT INTO t20 (name) VALUES ('r') RETURNING cartodb_id;
INSERT INTO t20 (name) VALUES ('c') ON CONFLICT DO NOTHING;
-- A value CARTO rejects: CARTO's message, and nothing of the statement stays.
INSERT INTO t20 (name, n) VALUES ('ok', 1), ('bad', -1);
SELECT count(*) FROM t20 WHERE name IN ('ok', 'bad');
-- updatable false (table or server) and a query table: PostgreSQL refuses.
ALTER FOREIGN TABLE t20 OPTIONS (ADD updatable 'false');
INSERT INTO t20 (name) VALUES ('no');
ALTER FOREIGN TABLE t20 OPTIONS (DROP updatable);
ALTER SERVER carto OPTIONS (ADD updatable 'false');
INSERT INTO t20 (name) VALUES ('no');
ALTER SERVER carto OPTIONS (DROP updatable);
CREATE FOREIGN TABLE t20q (name text) SERVER carto OPTIONS (query 'SELECT name FROM t20');
INSERT INTO t20q VALUES ('no');
-- Tuple routing into a foreign partition.
CREATE TABLE parted (cartodb_id int, the_geom geometry(Geometry,4326), the_geom_webmercator geometry(Geometry,3857),
  name text, n numeric) PARTITION BY LIST (name);
ALTER TABLE parted ATTACH PARTITION t20 FOR VALUES IN ('routed');
INSERT INTO parted (name, n) VALUES ('routed', 7);
SELECT name, n FROM t20 WHERE name = 'routed';
\! curl -sS -u "$CARTO_SIM_USER:$CARTO_SIM_API_KEY" --data-urlencode "q=SELECT count(*) AS remote_rows FROM t20" "$CARTO_SIM_BASE_URL/api/v2/sql" | grep -o '"rows":[^]]*]'; echo
