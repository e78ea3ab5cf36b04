-- Run by 25_write_settings without client-side settings in database e2e_25_dmy, whose defaults are
-- DateStyle 'SQL, DMY', IntervalStyle sql_standard and extra_float_digits -15 (as a pg_cron job would run).
\set QUIET on
SHOW DateStyle;
SHOW extra_float_digits;
CREATE EXTENSION carto_fdw;
\getenv base_url CARTO_SIM_BASE_URL
\getenv api_key CARTO_SIM_API_KEY
CREATE SERVER carto FOREIGN DATA WRAPPER carto_fdw OPTIONS (base_url :'base_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER carto OPTIONS (api_key :'api_key');
SELECT carto.exec('carto', 'DROP TABLE IF EXISTS t25_dmy; CREATE TABLE t25_dmy (id int PRIMARY KEY, f8 float8, d date, ts timestamp, iv interval)') AS created;
CREATE FOREIGN TABLE ft_dmy (id int, f8 float8, d date, ts timestamp, iv interval) SERVER carto OPTIONS (table_name 't25_dmy');
-- Literals in this database's own style: 04/03/2024 is the 4th of March here.
INSERT INTO ft_dmy VALUES (1, 0.1234567890123456789, '04/03/2024', '04/03/2024 05:06:07.123456', '-1 year -2 mons +3 days -04:05:06.789');
CREATE TABLE src (id int, f8 float8, d date, ts timestamp, iv interval);
INSERT INTO src VALUES (2, 0.1234567890123456789, '04/03/2024', '04/03/2024 05:06:07.123456', '-1 year -2 mons +3 days -04:05:06.789');
SELECT carto.push('src', 'carto', 't25_dmy', mode => 'append', create_table => false) AS pushed;
