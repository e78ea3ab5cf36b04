-- 37_encoding: databases that are not UTF-8 (LATIN1, then the multibyte EUC_JP). CARTO speaks UTF-8 only: every
-- text sent (deparsed constants, parameters, COPY rows, UPDATE values, carto.query / carto.exec SQL, push rows and
-- watermarks, pull's query, option values, IMPORT's names) must arrive as the same characters in UTF-8, and every
-- text read must arrive converted. Judged by the UTF-8 bytes CARTO stores (hex computed on CARTO) and by exact local
-- comparison. psql speaks UTF-8 (\encoding UTF8 after each \c), so this file and its output are UTF-8.
\set SHOW_CONTEXT never
CREATE DATABASE e2e_37_latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
CREATE DATABASE e2e_37_eucjp ENCODING 'EUC_JP' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
CREATE DATABASE e2e_37_sqlascii ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;

-- ===================================================================== LATIN1
\c e2e_37_latin1
\encoding UTF8
SELECT pg_catalog.getdatabaseencoding() AS db, pg_catalog.current_setting('client_encoding') AS client;
CREATE EXTENSION carto_fdw;
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
-- The remote tables, made with ASCII-only SQL (U& escapes: the names and values below are café, Zürich, crème, Genève,
-- naïve, "enc37_café" ("crème", "année"), brûlée, fraîche, 東京), so that this setup does not depend on what is tested.
SELECT carto.exec('carto', $$DROP TABLE IF EXISTS enc37_places; DROP TABLE IF EXISTS U&"enc37_caf\00E9"; DROP TABLE IF EXISTS enc37_jp;
  DROP TABLE IF EXISTS enc37_pushed; DROP TABLE IF EXISTS U&"enc37_push\00E9";
  CREATE TABLE enc37_places (cartodb_id serial PRIMARY KEY, name text, city varchar(20));
  INSERT INTO enc37_places (name, city) VALUES (U&'caf\00E9', U&'Z\00FCrich'), (U&'cr\00E8me', U&'Gen\00E8ve'), (U&'na\00EFve', U&'Z\00FCrich'), ('plain', 'Oslo');
  CREATE TABLE U&"enc37_caf\00E9" (cartodb_id serial PRIMARY KEY, U&"cr\00E8me" text, U&"ann\00E9e" int);
  INSERT INTO U&"enc37_caf\00E9" VALUES (DEFAULT, U&'br\00FBl\00E9e', 1999), (DEFAULT, U&'fra\00EEche', 2024);
  CREATE TABLE enc37_jp (cartodb_id serial PRIMARY KEY, name text);
  INSERT INTO enc37_jp (name) VALUES ('ascii'), (U&'\6771\4EAC')$$) AS created;
-- carto.exec with non-ASCII literals and names: the SQL reaches CARTO as UTF-8.
SELECT carto.exec('carto', $$COMMENT ON TABLE "enc37_café" IS 'Ça coûte cher'$$) AS commented;
SELECT * FROM carto.query('carto', $$SELECT obj_description('"enc37_café"'::regclass) AS comment,
  encode(convert_to(obj_description('"enc37_café"'::regclass), 'UTF8'), 'hex') AS utf8_hex$$);
-- What CARTO holds, as UTF-8 bytes (hex computed there).
SELECT r->>'name' AS name, r->>'hex' AS utf8_hex FROM carto.query('carto',
  $$SELECT name, encode(convert_to(name, 'UTF8'), 'hex') AS hex FROM enc37_places ORDER BY cartodb_id$$) r;
-- IMPORT of a table whose name, columns and comment are not ASCII.
CREATE SCHEMA imp;
IMPORT FOREIGN SCHEMA public LIMIT TO (enc37_places, "enc37_café", enc37_jp) FROM SERVER carto INTO imp;
SELECT c.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
       (SELECT pg_catalog.array_to_string(ftoptions, ',') FROM pg_catalog.pg_foreign_table WHERE ftrelid = c.oid) AS options
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
 WHERE c.relnamespace = 'imp'::regnamespace ORDER BY c.relname, a.attnum;
-- Reads (/sql and /copyto), converted from UTF-8.
SELECT * FROM imp.enc37_places ORDER BY cartodb_id;
SELECT * FROM imp."enc37_café" ORDER BY cartodb_id;
ALTER FOREIGN TABLE imp.enc37_places OPTIONS (ADD scan_method 'copy');
SELECT * FROM imp.enc37_places ORDER BY cartodb_id;
-- Conditions with non-ASCII constants, shipped to CARTO.
EXPLAIN (VERBOSE, COSTS OFF) SELECT cartodb_id, name FROM imp.enc37_places WHERE name = 'café';
SELECT cartodb_id, name FROM imp.enc37_places WHERE name = 'café';
SELECT cartodb_id, name FROM imp.enc37_places WHERE city = 'Zürich' AND name LIKE 'na%ve' ORDER BY 1;
SELECT "crème", "année" FROM imp."enc37_café" WHERE "crème" IN ('brûlée', 'fraîche') ORDER BY 2;
ALTER FOREIGN TABLE imp.enc37_places OPTIONS (DROP scan_method);
-- A prepared statement's parameter (generic plan: the value is sent at execution).
SET plan_cache_mode = force_generic_plan;
PREPARE by_city(text) AS SELECT cartodb_id, name FROM imp.enc37_places WHERE city = $1 ORDER BY cartodb_id;
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE by_city('Zürich');
EXECUTE by_city('Zürich');
EXECUTE by_city('Genève');
RESET plan_cache_mode;
-- An aggregate and a join with non-ASCII constants, computed by CARTO.
EXPLAIN (VERBOSE, COSTS OFF) SELECT city, count(*) FROM imp.enc37_places WHERE city <> 'Genève' GROUP BY city HAVING city LIKE 'Z%h';
SELECT city, count(*) FROM imp.enc37_places WHERE city <> 'Genève' GROUP BY city HAVING city LIKE 'Z%h';
EXPLAIN (VERBOSE, COSTS OFF) SELECT p.name, c."crème" FROM imp.enc37_places p JOIN imp."enc37_café" c ON c.cartodb_id = p.cartodb_id
 WHERE c."crème" = 'fraîche' OR p.name = 'café';
SELECT p.name, c."crème" FROM imp.enc37_places p JOIN imp."enc37_café" c ON c.cartodb_id = p.cartodb_id
 WHERE c."crème" = 'fraîche' OR p.name = 'café' ORDER BY 1;
-- INSERT and COPY FROM (COPY text rows), as UTF-8 on CARTO.
INSERT INTO imp.enc37_places (name, city) VALUES ('Ærøskøbing', 'Ærø');
COPY imp.enc37_places (name, city) FROM stdin;
Größe	Köln
señor	Málaga
\.
-- UPDATE sent whole (SET and WHERE constants deparsed), then row by row (values through COPY / literals).
EXPLAIN (VERBOSE, COSTS OFF) UPDATE imp.enc37_places SET name = 'crème brûlée' WHERE name = 'crème';
UPDATE imp.enc37_places SET name = 'crème brûlée' WHERE name = 'crème';
UPDATE imp.enc37_places SET city = city || ' (ville)', name = 'Señor' WHERE name = 'señor' AND random() >= 0;
UPDATE imp.enc37_places SET name = name || '»' WHERE city = 'Köln' AND random() >= 0;
DELETE FROM imp.enc37_places WHERE name = 'naïve';
DELETE FROM imp.enc37_places WHERE city = 'Oslo' AND random() >= 0;
SELECT r->>'cartodb_id' AS id, r->>'name' AS name, r->>'hex' AS utf8_hex, r->>'city' AS city, r->>'chex' AS city_hex FROM carto.query('carto',
  $$SELECT cartodb_id, name, encode(convert_to(name, 'UTF8'), 'hex') AS hex, city, encode(convert_to(city, 'UTF8'), 'hex') AS chex
      FROM enc37_places ORDER BY cartodb_id$$) r;
-- Exact local comparison: what was meant is what is read back.
CREATE TABLE expected_places (cartodb_id int, name text, city text);
INSERT INTO expected_places VALUES (1, 'café', 'Zürich'), (2, 'crème brûlée', 'Genève'), (5, 'Ærøskøbing', 'Ærø'),
  (6, 'Größe»', 'Köln'), (7, 'Señor', 'Málaga (ville)');
SELECT count(*) AS differences FROM (
  (SELECT cartodb_id, name, city::text FROM imp.enc37_places EXCEPT SELECT * FROM expected_places)
  UNION ALL (SELECT * FROM expected_places EXCEPT SELECT cartodb_id, name, city::text FROM imp.enc37_places)) d;
-- carto.query and carto.exec with non-ASCII SQL; the rows come back converted.
SELECT * FROM carto.query('carto', $$SELECT 'Ça marche' AS v, length('Ça marche') AS chars, octet_length('Ça marche') AS utf8_bytes$$);
SELECT carto.exec('carto', $$UPDATE enc37_places SET city = 'Zürich' WHERE name = 'café'$$) AS updated;
-- A character LATIN1 lacks, arriving from CARTO: PostgreSQL's conversion ERROR (22P05), naming the column.
SELECT name FROM imp.enc37_jp ORDER BY cartodb_id;
\echo :LAST_ERROR_SQLSTATE
SELECT name FROM imp.enc37_jp WHERE name = 'ascii';
-- carto.push: rows and the watermark (a non-ASCII text column) as UTF-8; a source whose name is not ASCII.
CREATE TABLE "café_src" (id int PRIMARY KEY, name text, tag text);
INSERT INTO "café_src" VALUES (1, 'Ångström', 'a'), (2, 'Öl', 'b'), (3, 'ça', 'c');
SELECT carto.push('"café_src"', 'carto', 'enc37_pushed', mode => 'upsert', key => 'id', since => 'name') AS pushed;
SELECT name, last_status, watermark FROM carto.sync_status WHERE direction = 'push';
INSERT INTO "café_src" VALUES (4, 'ölig', 'd'), (5, 'Äpfel', 'e');
SELECT carto.push('"café_src"', 'carto', 'enc37_pushed', mode => 'upsert', key => 'id', since => 'name') AS pushed_since;
SELECT name, last_status, watermark FROM carto.sync_status WHERE direction = 'push';
SELECT carto.push($$SELECT id, name || ' ½' AS name FROM "café_src" WHERE tag <> 'é'$$, 'carto', 'enc37_pushé', mode => 'replace') AS pushed_query;
SELECT r->>'id' AS id, r->>'name' AS name, r->>'hex' AS utf8_hex FROM carto.query('carto',
  $$SELECT id, name, encode(convert_to(name, 'UTF8'), 'hex') AS hex FROM enc37_pushed ORDER BY id$$) r;
SELECT * FROM carto.query('carto', $$SELECT count(*) AS n, string_agg(name, ',' ORDER BY id) AS names FROM "enc37_pushé"$$);
-- carto.pull: a table, then a query with a non-ASCII constant, into a table whose name is not ASCII.
CREATE TABLE "pulled_é" (cartodb_id int PRIMARY KEY, name text, city text);
SELECT carto.pull('carto', 'enc37_places', '"pulled_é"') AS pulled;
SELECT * FROM "pulled_é" ORDER BY cartodb_id;
SELECT carto.pull('carto', NULL, '"pulled_é"', query => $$SELECT cartodb_id, name, city FROM enc37_places WHERE city = 'Zürich'$$) AS pulled_query;
SELECT * FROM "pulled_é" ORDER BY cartodb_id;
SELECT name, direction, source, target, last_status FROM carto.sync_status ORDER BY direction, name;
-- COPY binary is not used here (CARTO's binary text is UTF-8, the receive functions would take it as client_encoding):
-- with copy_format 'binary' the reads and writes still go as text and convert.
CREATE SERVER carto_bin FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url', scan_method 'copy', copy_format 'binary');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto_bin OPTIONS (api_key :'api_key');
CREATE FOREIGN TABLE bin_places (cartodb_id int, name text, city text) SERVER carto_bin OPTIONS (table_name 'enc37_places');
EXPLAIN (VERBOSE, COSTS OFF) INSERT INTO bin_places (name, city) VALUES ('Þórr', 'Brno');
INSERT INTO bin_places (name, city) VALUES ('Þórr', 'Brno');
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM bin_places WHERE cartodb_id > 6;
SELECT * FROM bin_places WHERE cartodb_id > 6 ORDER BY cartodb_id;
SELECT r->>'name' AS name, r->>'hex' AS utf8_hex FROM carto.query('carto',
  $$SELECT name, encode(convert_to(name, 'UTF8'), 'hex') AS hex FROM enc37_places WHERE city = 'Brno'$$) r;
-- The Batch SQL API: the queries as UTF-8, the job's JSON (status, queries) converted back, carto.batch_jobs in LATIN1.
SELECT carto.batch_submit('carto', ARRAY[$$INSERT INTO "enc37_café" ("crème", "année") VALUES ('à la française', 2025)$$],
  onsuccess => $$INSERT INTO "enc37_café" ("crème") VALUES ('réussi')$$) AS job \gset
SELECT j->>'status' AS status, j->'query'->'query'->0->>'query' AS query, j->'query'->'onsuccess' AS onsuccess
  FROM carto.batch_wait('carto', :'job') j;
SELECT j->>'status' AS status, j->'query'->'query'->0->>'query' AS query FROM carto.batch_status('carto', :'job') j;
SELECT queries, onsuccess, last_status, last_job->'query'->'query'->0->>'query' AS recorded FROM carto.batch_jobs WHERE job_id = :'job';
SELECT "crème", "année" FROM imp."enc37_café" WHERE "année" IS NULL OR "année" > 2024 ORDER BY 1;
-- carto.create_table / cartodbfy / drop_table with names that are not ASCII (the returned name converted back).
SET client_min_messages = warning;
SELECT carto.drop_table('carto', 'enc37_créé', if_exists => true);
RESET client_min_messages;
SELECT carto.create_table('carto', 'enc37_créé', 'libellé text', cartodbfy => false, local_schema => 'imp') AS created;
INSERT INTO imp."enc37_créé" ("libellé") VALUES ('déjà');
SELECT "libellé" FROM imp."enc37_créé";
SELECT carto.drop_table('carto', 'enc37_créé');
SELECT carto.exec('carto', $$DROP TABLE enc37_places; DROP TABLE "enc37_café"; DROP TABLE enc37_jp; DROP TABLE enc37_pushed; DROP TABLE "enc37_pushé";
  DROP TABLE carto_sync_state$$) AS dropped;

-- ===================================================================== EUC_JP (multibyte)
\c e2e_37_eucjp
\encoding UTF8
SELECT pg_catalog.getdatabaseencoding() AS db, pg_catalog.current_setting('client_encoding') AS client;
CREATE EXTENSION carto_fdw;
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
SELECT carto.exec('carto', $$DROP TABLE IF EXISTS "enc37_都市"; DROP TABLE IF EXISTS enc37_emoji; DROP TABLE IF EXISTS enc37_jpush;
  CREATE TABLE "enc37_都市" (cartodb_id serial PRIMARY KEY, "名前" text, pref text);
  COMMENT ON TABLE "enc37_都市" IS '日本の都市';
  INSERT INTO "enc37_都市" ("名前", pref) VALUES ('東京', '東京都'), ('大阪', '大阪府'), ('札幌', '北海道');
  CREATE TABLE enc37_emoji (cartodb_id serial PRIMARY KEY, name text);
  INSERT INTO enc37_emoji (name) VALUES (U&'\+01F600')$$) AS created;
CREATE SCHEMA imp;
IMPORT FOREIGN SCHEMA public LIMIT TO ("enc37_都市", enc37_emoji) FROM SERVER carto INTO imp;
SELECT c.relname, a.attname
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
 WHERE c.relnamespace = 'imp'::regnamespace ORDER BY c.relname, a.attnum;
SELECT * FROM imp."enc37_都市" ORDER BY cartodb_id;
EXPLAIN (VERBOSE, COSTS OFF) SELECT "名前" FROM imp."enc37_都市" WHERE pref = '大阪府';
SELECT "名前" FROM imp."enc37_都市" WHERE pref = '大阪府';
PREPARE by_pref(text) AS SELECT "名前" FROM imp."enc37_都市" WHERE pref = $1;
SET plan_cache_mode = force_generic_plan;
EXECUTE by_pref('北海道');
RESET plan_cache_mode;
SELECT pref, count(*) FROM imp."enc37_都市" WHERE "名前" <> '札幌' GROUP BY pref ORDER BY pref;
INSERT INTO imp."enc37_都市" ("名前", pref) VALUES ('京都', '京都府');
COPY imp."enc37_都市" ("名前", pref) FROM stdin;
那覇	沖縄県
\.
UPDATE imp."enc37_都市" SET pref = '大阪府（近畿）' WHERE "名前" = '大阪';
UPDATE imp."enc37_都市" SET "名前" = '那覇市' WHERE "名前" = '那覇' AND random() >= 0;
DELETE FROM imp."enc37_都市" WHERE "名前" = '札幌';
SELECT r->>'name' AS name, r->>'hex' AS utf8_hex, r->>'pref' AS pref FROM carto.query('carto',
  $$SELECT "名前" AS name, encode(convert_to("名前", 'UTF8'), 'hex') AS hex, pref FROM "enc37_都市" ORDER BY cartodb_id$$) r;
SELECT count(*) AS differences FROM (
  (SELECT "名前", pref FROM imp."enc37_都市" EXCEPT VALUES ('東京', '東京都'), ('大阪', '大阪府（近畿）'), ('京都', '京都府'), ('那覇市', '沖縄県'))
  UNION ALL
  (VALUES ('東京', '東京都'), ('大阪', '大阪府（近畿）'), ('京都', '京都府'), ('那覇市', '沖縄県') EXCEPT SELECT "名前", pref FROM imp."enc37_都市")) d;
SELECT * FROM carto.query('carto', $$SELECT '日本語' AS v, length('日本語') AS chars, octet_length('日本語') AS utf8_bytes$$);
CREATE TABLE "地点" (id int PRIMARY KEY, "名前" text);
INSERT INTO "地点" VALUES (1, '名古屋'), (2, '神戸');
SELECT carto.push('"地点"', 'carto', 'enc37_jpush', mode => 'replace') AS pushed;
SELECT r->>'name' AS name, r->>'hex' AS utf8_hex FROM carto.query('carto',
  $$SELECT "名前" AS name, encode(convert_to("名前", 'UTF8'), 'hex') AS hex FROM enc37_jpush ORDER BY id$$) r;
CREATE TABLE "取得" (cartodb_id int PRIMARY KEY, "名前" text, pref text);
SELECT carto.pull('carto', NULL, '"取得"', query => $$SELECT cartodb_id, "名前", pref FROM "enc37_都市" WHERE pref LIKE '%府%'$$) AS pulled;
SELECT * FROM "取得" ORDER BY cartodb_id;
-- A character EUC_JP lacks, from CARTO: PostgreSQL's conversion ERROR (22P05), naming the column.
SELECT name FROM imp.enc37_emoji;
\echo :LAST_ERROR_SQLSTATE
SELECT carto.exec('carto', $$DROP TABLE "enc37_都市"; DROP TABLE enc37_emoji; DROP TABLE enc37_jpush$$) AS dropped;

-- ===================================================================== SQL_ASCII
-- No encoding known: bytes go as they are (UTF-8 from this UTF-8 client arrives intact); bytes that are not
-- UTF-8 are PostgreSQL's ERROR before anything is sent.
\c e2e_37_sqlascii
\encoding UTF8
SELECT pg_catalog.getdatabaseencoding() AS db;
CREATE EXTENSION carto_fdw;
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
SELECT carto.exec('carto', $$CREATE TABLE enc37_ascii (cartodb_id serial PRIMARY KEY, name text)$$) AS created;
CREATE FOREIGN TABLE ascii_t (cartodb_id int, name text) SERVER carto OPTIONS (table_name 'enc37_ascii');
INSERT INTO ascii_t (name) VALUES ('café ✓');
SELECT name FROM ascii_t WHERE name = 'café ✓';
INSERT INTO ascii_t (name) VALUES (E'caf\xe9');
SELECT * FROM carto.query('carto', $$SELECT name, encode(convert_to(name, 'UTF8'), 'hex') AS hex FROM enc37_ascii$$);
SELECT carto.exec('carto', 'DROP TABLE enc37_ascii') AS dropped;

\c postgres
DROP DATABASE e2e_37_latin1;
DROP DATABASE e2e_37_eucjp;
DROP DATABASE e2e_37_sqlascii;
