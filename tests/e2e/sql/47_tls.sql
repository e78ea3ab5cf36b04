-- 47_tls: carto_fdw over HTTPS, against carto-sim's TLS listener (a certificate for 127.0.0.1 signed by a
-- throwaway CA, made by scripts/carto-sim-up --tls; :'tls_base_url' and :'tls_ca_file'). With ca_file the CA is
-- trusted: reads, writes and carto.query work exactly. Without it the certificate is refused (the system's roots
-- do not know the CA) with a clear error that carries no API key; insecure accepts any certificate; a ca_file
-- that is missing or holds no certificate is a clear error. ca_file and insecure are superuser-only.
-- Needs no PostGIS, so it also runs on PostgreSQL 18.
CREATE EXTENSION carto_fdw;
-- Errors whose text may carry the sim's port: the port is masked, and the key's absence checked.
CREATE FUNCTION err_of(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE sql;
  RETURN 'no error';
EXCEPTION WHEN others THEN
  RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, '127\.0\.0\.1:[0-9]+', '127.0.0.1:PORT', 'g');
END $$;
-- 1. Trusted through ca_file.
CREATE SERVER tls_ca FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'tls_base_url', ca_file :'tls_ca_file');
CREATE USER MAPPING FOR CURRENT_USER SERVER tls_ca OPTIONS (api_key :'api_key');
SELECT carto.exec('tls_ca', $$DROP TABLE IF EXISTS tls47;
  CREATE TABLE tls47 (cartodb_id serial PRIMARY KEY, n int NOT NULL, t text, ts timestamptz)$$) AS created;
CREATE FOREIGN TABLE tls47 (cartodb_id int, n int, t text, ts timestamptz) SERVER tls_ca OPTIONS (table_name 'tls47');
INSERT INTO tls47 (n, t, ts)
SELECT g, 'row ' || g || CASE WHEN g % 7 = 0 THEN E' tab\there, quote '' and é' ELSE '' END,
       timestamptz '2026-03-01 00:00:00+00' + g * interval '1 minute'
  FROM generate_series(1, 5000) g;
BEGIN;
INSERT INTO tls47 (n, t) VALUES (-1, 'rolled back');
ROLLBACK;
UPDATE tls47 SET t = t || '!' WHERE n <= 3;
DELETE FROM tls47 WHERE n > 4990;
-- What CARTO holds, computed by CARTO, and the same read back through the foreign table.
SELECT * FROM carto.query('tls_ca', $$SELECT count(*) AS n, sum(n) AS total, md5(string_agg(n || '|' || t || '|' || ts, ',' ORDER BY n)) AS digest FROM tls47$$);
SELECT count(*) AS n, sum(n) AS total, md5(string_agg(n || '|' || t || '|' || ts, ',' ORDER BY n)) AS digest FROM tls47;
SELECT n, t, ts FROM tls47 WHERE n <= 3 OR n = 7 ORDER BY n;
-- 2. Without ca_file: the certificate is not trusted.
CREATE SERVER tls_plain FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'tls_base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER tls_plain OPTIONS (api_key :'api_key');
CREATE FOREIGN TABLE tls47_plain (n int) SERVER tls_plain OPTIONS (table_name 'tls47');
SELECT err_of('SELECT count(*) FROM tls47_plain') AS untrusted_read;
-- An INSERT's upload fails when its connection does, seen at COMMIT (outside any plpgsql block): its own
-- session, the port and the upload's tag masked, the SQLSTATE shown.
\setenv DB :DBNAME
\! psql -X -d "$DB" -v VERBOSITY=verbose -c "INSERT INTO tls47_plain VALUES (1)" 2>&1 | grep -v '^LOCATION' | sed -E 's/127\.0\.0\.1:[0-9]+/127.0.0.1:PORT/g; s/upload[+ ][0-9%A-F:]+/upload TAG/g'
SELECT err_of($$SELECT * FROM carto.query('tls_plain', 'SELECT 1')$$) AS untrusted_query;
SELECT count(*) AS rows_from_untrusted_insert FROM tls47 WHERE n = 1 AND t IS NULL;
SELECT position(:'api_key' IN err_of('SELECT count(*) FROM tls47_plain')) AS key_in_message;
-- 3. insecure: any certificate.
CREATE SERVER tls_insecure FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'tls_base_url', insecure 'true');
CREATE USER MAPPING FOR CURRENT_USER SERVER tls_insecure OPTIONS (api_key :'api_key');
CREATE FOREIGN TABLE tls47_insecure (n int, t text) SERVER tls_insecure OPTIONS (table_name 'tls47');
SELECT count(*), sum(n) FROM tls47_insecure;
INSERT INTO tls47_insecure VALUES (100000, 'insecure');
SELECT n, t FROM tls47_insecure WHERE n = 100000;
-- 4. A ca_file that does not exist, or holds no certificate.
CREATE SERVER tls_missing FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'tls_base_url', ca_file '/nonexistent/carto_fdw_e2e/ca.pem');
CREATE USER MAPPING FOR CURRENT_USER SERVER tls_missing OPTIONS (api_key :'api_key');
CREATE FOREIGN TABLE tls47_missing (n int) SERVER tls_missing OPTIONS (table_name 'tls47');
SELECT err_of('SELECT count(*) FROM tls47_missing') AS missing_ca_file;
CREATE SERVER tls_empty FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'tls_base_url', ca_file '/dev/null');
CREATE USER MAPPING FOR CURRENT_USER SERVER tls_empty OPTIONS (api_key :'api_key');
CREATE FOREIGN TABLE tls47_empty (n int) SERVER tls_empty OPTIONS (table_name 'tls47');
SELECT err_of('SELECT count(*) FROM tls47_empty') AS empty_ca_file;
CREATE SERVER tls_garbage FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'tls_base_url', ca_file '/etc/passwd');
CREATE USER MAPPING FOR CURRENT_USER SERVER tls_garbage OPTIONS (api_key :'api_key');
CREATE FOREIGN TABLE tls47_garbage (n int) SERVER tls_garbage OPTIONS (table_name 'tls47');
SELECT err_of('SELECT count(*) FROM tls47_garbage') AS garbage_ca_file;
-- 5. Only a superuser sets ca_file or insecure, even on a server of its own.
CREATE ROLE tls47_user;
GRANT USAGE ON FOREIGN DATA WRAPPER carto_fdw TO tls47_user;
SET ROLE tls47_user;
CREATE SERVER tls_user_ca FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'tls_base_url', ca_file :'tls_ca_file');
CREATE SERVER tls_user_insecure FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'tls_base_url', insecure 'true');
CREATE SERVER tls_user FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'tls_base_url');
ALTER SERVER tls_user OPTIONS (ADD insecure 'true');
DROP SERVER tls_user;
RESET ROLE;
DROP OWNED BY tls47_user;
DROP ROLE tls47_user;
SELECT carto.exec('tls_ca', 'DROP TABLE tls47') AS dropped;
