-- 10_options: every server, user-mapping, foreign-table and column option is accepted with valid
-- values and rejected with invalid ones (range, Boolean, enum, empty), unknown names get a hint,
-- username xor base_url, query xor table_name/schema_name, ca_file/insecure are superuser-only,
-- and the API key is never echoed back.
CREATE EXTENSION postgis;
CREATE EXTENSION carto_fdw;
\set SHOW_CONTEXT never
-- Keys are built from two halves, so that the echoed SQL never holds a whole key and the grep at
-- the end finds one only if carto_fdw echoed it.
\set k1 'sEcReT-' 'KeY-0123456789'
\set k2 'bObS-' 'sEcReT-kEy'
\set url_with_key 'https://x/user/a?api_key=' 'SeCrEt1234'

-- ---------------------------------------------------------------------------------------------
-- Server: every option with a valid value.
CREATE SERVER s_all FOREIGN DATA WRAPPER carto_fdw OPTIONS (
  base_url 'https://team.carto.com/user/alice',
  extensions 'postgis, h3',
  scan_method 'auto', copy_threshold '0', fetch_size '1000000', compression_level '9',
  connect_timeout '1', request_timeout '86400', max_retries '100', max_retry_wait '0',
  use_remote_estimate 'on', fdw_startup_cost '0', fdw_tuple_cost '0.5',
  updatable 'false', truncatable 'yes', ca_file '/etc/ssl/certs/ca-certificates.crt', insecure 'off');
CREATE SERVER s_cloud FOREIGN DATA WRAPPER carto_fdw OPTIONS (username 'alice');
SELECT srvname, array_to_string(srvoptions, E'\n') AS options FROM pg_foreign_server ORDER BY srvname;
-- The other scan methods, and changes by ALTER.
ALTER SERVER s_all OPTIONS (SET scan_method 'copy');
ALTER SERVER s_all OPTIONS (SET scan_method 'query');
ALTER SERVER s_cloud OPTIONS (ADD compression_level '0', ADD max_retries '0', ADD fdw_startup_cost '1e3');

-- Rejected values: out of range, not a number, not a Boolean, not in the enum, empty.
ALTER SERVER s_cloud OPTIONS (SET compression_level '10');
ALTER SERVER s_cloud OPTIONS (SET compression_level '-1');
ALTER SERVER s_cloud OPTIONS (SET compression_level 'fast');
ALTER SERVER s_cloud OPTIONS (ADD fetch_size '0');
ALTER SERVER s_cloud OPTIONS (ADD fetch_size '1000001');
ALTER SERVER s_cloud OPTIONS (ADD connect_timeout '0');
ALTER SERVER s_cloud OPTIONS (ADD request_timeout '86401');
ALTER SERVER s_cloud OPTIONS (SET max_retries '101');
ALTER SERVER s_cloud OPTIONS (ADD max_retry_wait '3601');
ALTER SERVER s_cloud OPTIONS (ADD copy_threshold '-1');
ALTER SERVER s_cloud OPTIONS (SET fdw_startup_cost '-1');
ALTER SERVER s_cloud OPTIONS (ADD fdw_tuple_cost 'NaN');
ALTER SERVER s_cloud OPTIONS (ADD fdw_tuple_cost 'Infinity');
ALTER SERVER s_cloud OPTIONS (ADD use_remote_estimate 'maybe');
ALTER SERVER s_cloud OPTIONS (ADD updatable '2');
ALTER SERVER s_cloud OPTIONS (ADD truncatable '');
ALTER SERVER s_cloud OPTIONS (ADD scan_method 'fast');
ALTER SERVER s_cloud OPTIONS (ADD scan_method 'COPY');
ALTER SERVER s_cloud OPTIONS (ADD extensions 'postgis;drop table x');
-- extensions '' is valid: it turns off the default (postgis).
ALTER SERVER s_cloud OPTIONS (ADD extensions '');
ALTER SERVER s_cloud OPTIONS (DROP extensions);
ALTER SERVER s_cloud OPTIONS (SET username '');
-- Unknown options: the hint lists the valid ones (per object kind).
ALTER SERVER s_cloud OPTIONS (ADD usernme 'bob');
ALTER SERVER s_cloud OPTIONS (ADD api_key 'k');
ALTER SERVER s_cloud OPTIONS (ADD table_name 't');
-- base_url: a URL, never with a key in it (and the key is not echoed).
CREATE SERVER s_bad FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url 'ftp://x/user/a');
CREATE SERVER s_bad FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url 'team.carto.com/user/alice');
CREATE SERVER s_bad FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'url_with_key');
-- username xor base_url.
CREATE SERVER s_bad FOREIGN DATA WRAPPER carto_fdw OPTIONS (username 'alice', base_url 'https://team.carto.com/user/alice');
ALTER SERVER s_cloud OPTIONS (ADD base_url 'https://team.carto.com/user/alice');
-- Neither: refused when the server is created (a server names exactly one account).
CREATE SERVER s_none FOREIGN DATA WRAPPER carto_fdw;
ALTER SERVER s_cloud OPTIONS (DROP username);
-- An option given twice.
CREATE SERVER s_bad FOREIGN DATA WRAPPER carto_fdw OPTIONS (username 'a', fetch_size '1', fetch_size '2');
-- The wrapper itself takes no options.
ALTER FOREIGN DATA WRAPPER carto_fdw OPTIONS (ADD fetch_size '10');

-- ---------------------------------------------------------------------------------------------
-- User mapping: api_key only, never echoed.
CREATE USER MAPPING FOR CURRENT_USER SERVER s_cloud OPTIONS (api_key :'k1');
ALTER USER MAPPING FOR CURRENT_USER SERVER s_cloud OPTIONS (SET api_key '');
ALTER USER MAPPING FOR CURRENT_USER SERVER s_cloud OPTIONS (ADD apikey :'k1');
ALTER USER MAPPING FOR CURRENT_USER SERVER s_cloud OPTIONS (ADD username 'x');
CREATE USER MAPPING FOR PUBLIC SERVER s_cloud;
-- No key at all is CARTO's public access: accepted.
CREATE USER MAPPING FOR PUBLIC SERVER s_all;

-- ---------------------------------------------------------------------------------------------
-- Foreign table and column options.
CREATE FOREIGN TABLE ft_all (id int OPTIONS (column_name 'cartodb_id'), name text)
  SERVER s_cloud OPTIONS (schema_name 'alice', table_name 'places', rowid_column 'cartodb_id',
  updatable 'true', truncatable 'false', scan_method 'copy', copy_threshold '5000', fetch_size '10',
  use_remote_estimate 'false');
CREATE FOREIGN TABLE ft_q (n int) SERVER s_cloud OPTIONS (query 'select 1 as n', scan_method 'query');
SELECT c.relname, array_to_string(t.ftoptions, ', ') AS options
  FROM pg_foreign_table t JOIN pg_class c ON c.oid = t.ftrelid ORDER BY c.relname;
SELECT attname, attfdwoptions FROM pg_attribute WHERE attrelid = 'ft_all'::regclass AND attnum > 0 ORDER BY attnum;
ALTER FOREIGN TABLE ft_all OPTIONS (SET scan_method 'auto');
ALTER FOREIGN TABLE ft_all OPTIONS (SET scan_method 'query');
ALTER FOREIGN TABLE ft_all OPTIONS (SET scan_method 'stream');
ALTER FOREIGN TABLE ft_all OPTIONS (SET fetch_size '0');
ALTER FOREIGN TABLE ft_all OPTIONS (SET copy_threshold 'lots');
ALTER FOREIGN TABLE ft_all OPTIONS (SET updatable 'sometimes');
ALTER FOREIGN TABLE ft_all OPTIONS (SET truncatable 'x');
ALTER FOREIGN TABLE ft_all OPTIONS (SET use_remote_estimate '');
ALTER FOREIGN TABLE ft_all OPTIONS (SET rowid_column '');
ALTER FOREIGN TABLE ft_all OPTIONS (SET table_name '');
-- Server-only options are not table options (and the reverse).
ALTER FOREIGN TABLE ft_all OPTIONS (ADD compression_level '1');
ALTER FOREIGN TABLE ft_all OPTIONS (ADD extensions 'postgis');
ALTER FOREIGN TABLE ft_all OPTIONS (ADD column_name 'x');
ALTER SERVER s_cloud OPTIONS (ADD rowid_column 'x');
-- query xor table_name / schema_name.
ALTER FOREIGN TABLE ft_all OPTIONS (ADD query 'select 1');
ALTER FOREIGN TABLE ft_q OPTIONS (ADD schema_name 'public');
CREATE FOREIGN TABLE ft_bad (n int) SERVER s_cloud OPTIONS (query '');
-- Column options.
ALTER FOREIGN TABLE ft_all ALTER COLUMN name OPTIONS (ADD column_name 'the name');
ALTER FOREIGN TABLE ft_all ALTER COLUMN name OPTIONS (SET column_name '');
ALTER FOREIGN TABLE ft_all ALTER COLUMN name OPTIONS (ADD colum_name 'x');
ALTER FOREIGN TABLE ft_all ALTER COLUMN name OPTIONS (ADD scan_method 'copy');

-- ---------------------------------------------------------------------------------------------
-- ca_file and insecure: superuser only.
DROP ROLE IF EXISTS e2e_10_user;
CREATE ROLE e2e_10_user LOGIN;
GRANT USAGE ON FOREIGN DATA WRAPPER carto_fdw TO e2e_10_user;
GRANT CREATE ON SCHEMA public TO e2e_10_user;
SET ROLE e2e_10_user;
CREATE SERVER s_user FOREIGN DATA WRAPPER carto_fdw OPTIONS (username 'bob', insecure 'true');
CREATE SERVER s_user FOREIGN DATA WRAPPER carto_fdw OPTIONS (username 'bob', ca_file '/tmp/ca.pem');
CREATE SERVER s_user FOREIGN DATA WRAPPER carto_fdw OPTIONS (username 'bob', fetch_size '50');
ALTER SERVER s_user OPTIONS (ADD insecure 'false');
ALTER SERVER s_user OPTIONS (ADD ca_file '/tmp/ca.pem');
CREATE USER MAPPING FOR CURRENT_USER SERVER s_user OPTIONS (api_key :'k2');
-- A non-superuser sees no other user's key.
SELECT srvname, umuser::regrole, umoptions FROM pg_user_mappings WHERE srvname = 's_cloud' ORDER BY 2::text;
RESET ROLE;
-- ... while a superuser may set both.
ALTER SERVER s_user OPTIONS (ADD insecure 'true', ADD ca_file '/tmp/ca.pem');
SELECT srvname, array_to_string(srvoptions, ', ') AS options FROM pg_foreign_server WHERE srvname = 's_user';

-- ---------------------------------------------------------------------------------------------
-- The key never shows up in EXPLAIN or in an error (ft_none's server is unusable; s_all points at
-- a host that does not exist but EXPLAIN only plans).
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ft_q;
-- SQLSTATEs of the validator's errors (caught, so no file/line of the reporting code shows).
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE s text; m text;
BEGIN
  EXECUTE q; RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, m = MESSAGE_TEXT;
  RETURN s || ' ' || m;
END $$;
SELECT pg_temp.try(q) FROM (VALUES
  ('ALTER SERVER s_cloud OPTIONS (SET compression_level ''10'')'),
  ('ALTER SERVER s_cloud OPTIONS (ADD usernme ''x'')'),
  ('CREATE SERVER s_x FOREIGN DATA WRAPPER carto_fdw OPTIONS (username ''a'', base_url ''http://h/user/a'')'),
  ('ALTER FOREIGN TABLE ft_q OPTIONS (ADD table_name ''t'')'),
  ('SET ROLE e2e_10_user; ALTER SERVER s_user OPTIONS (SET insecure ''false'')'),
  ('SELECT * FROM ft_none')) AS v(q);
DROP SERVER s_user CASCADE;
DROP OWNED BY e2e_10_user;
DROP ROLE e2e_10_user;
-- Nothing of this file's keys reached its output (the runner's result file so far):
\! grep -c -e 'sEcReT-[K]eY' -e '=[S]eCrEt1234' -e 'bObS-[s]EcReT' results/10_options.out || true
