-- carto-sim: CARTO's database functions (cartodb-postgresql 0.37 behaviour), re-implemented.
--
-- Written for carto-sim from the behaviour documented in ../../../docs (carto-sql-api.md, section 9) and
-- observed in CARTO's extension; no code of the extension is copied. Everything lives in schema `cartodb`,
-- as in CARTO, and users call the functions unqualified (`SELECT CDB_CartodbfyTable('t')`).
--
-- WHAT THE SETUP MUST DO (carto-sim `setup`), per user database:
--   1. `CREATE EXTENSION IF NOT EXISTS postgis` in schema `public` (the default) BEFORE loading this file.
--      PostGIS objects are referenced as `public.*` here; the file refuses to load otherwise.
--   2. Load this file as a superuser (it is idempotent: loading it again replaces the functions and keeps
--      the cdb_tablemetadata rows). It creates schema `cartodb`, grants USAGE on it to PUBLIC, and adds
--      `cartodb` to the DATABASE's default search_path (`"$user", public, cartodb` when none was set).
--   3. Every role that runs user SQL (owner role, key roles, publicuser) must have `cartodb` in its
--      search_path. A role-level or per-session search_path overrides the database one, so when the sim
--      sets one it must include cartodb: single user `public, cartodb`; organisation member
--      `"<username>", public, cartodb` (CARTO itself uses `"<username>", cartodb, cdb_dataservices_client,
--      public`).
--   4. For every account, as a superuser: `SELECT cartodb.CDB_SetUserQuotaInBytes('<schema>', <bytes>)`
--      with schema = `public` for a single user and the user's name for an organisation member; bytes = the
--      account's DB quota, 0 = unlimited. This creates `<schema>._CDB_UserQuotaInBytes()`, which
--      CDB_CartodbfyTable requires ("Please set user quota before cartodbfying tables.") and the quota
--      triggers read. In an organisation database NEVER create it in `public`: that is what makes the
--      one-argument CDB_CartodbfyTable('t') (= schema 'public') fail for organisation members, as on CARTO.
--   5. The role that CDB_UserTables('public') checks is `publicuser` (CARTO's name); another name can be
--      given with `ALTER DATABASE db SET cartodb.public_role = 'name'`. If that role does not exist, the
--      PUBLIC pseudo-role is checked.
--
-- WHAT IS REPRODUCED (see tests/cdb_functions.sql for each case):
--   CDB_CartodbfyTable(reloid) = CDB_CartodbfyTable('public', reloid); CDB_CartodbfyTable(destschema, reloid)
--   returns the (possibly new) regclass and is idempotent. Steps, as in CARTO:
--   a. prerequisites: the schema exists ('Invalid schema name "x"'), `<destschema>._CDB_UserQuotaInBytes()`
--      exists, else 'Please set user quota before cartodbfying tables.'.
--   b. drops the four CARTO triggers (recreated at the end; re-enables them if they were disabled).
--   c. primary key: a column `cartodb_id` that is NOT NULL and in a unique/primary index is usable; one that
--      is not is tested by adding PRIMARY KEY + CHECK (cartodb_id::integer >= 0) and, when that fails, the
--      call fails with 'CDB(_CDB_Has_Usable_Primary_ID: Error: invalid cartodb_id, cartodb_id): <sql>'.
--      Without a cartodb_id column, an int2/int4/int8 primary-key column is renamed to cartodb_id.
--      The key "has a sequence" when pg_get_serial_sequence() finds one (serial, identity, OWNED BY).
--   d. geometry: every geometry column whose typmod SRID is 4326 is a candidate for the_geom and every 3857
--      one for the_geom_webmercator, in column order, the LAST one wins. When the winner is another column,
--      the existing the_geom (resp. the_geom_webmercator) is DROPPED and the winner renamed into its place.
--      A non-geometry column named the_geom / the_geom_webmercator is renamed out of the way (the_geom0, ...),
--      except a text the_geom whose values parse as geometry, which becomes the source of a rewrite.
--   e. no rewrite when cartodb_id is usable, has a sequence and both geometry columns exist: the OID stays,
--      column types stay (e.g. geometry(Point,4326), cartodb_id bigint), only a schema move is done.
--      Otherwise the table is REWRITTEN: CREATE TABLE <name>0 AS SELECT ..., then the old table is dropped
--      (without CASCADE: a dependent view makes cartodbfy fail) and the copy renamed: new OID, columns in
--      the order cartodb_id, the_geom, the_geom_webmercator, then the rest in their order; every constraint,
--      default, index, trigger and grant of the old table is gone (CHECK, NOT NULL, UNIQUE, FKs).
--      cartodb_id: an existing usable one is copied as `cartodb_id::integer` (bigint becomes integer);
--      otherwise numbered 1..n from a new sequence (then it is bigint). The sequence is
--      `<table>_cartodb_id_seq` (a free variant if taken), set to max(cartodb_id), OWNED BY the column.
--      the_geom/the_geom_webmercator: copied as they are when both were usable; else computed from the
--      FIRST geometry column in column order (or the text the_geom) as
--      ST_Transform(g,4326)::geometry(Geometry,4326) and CDB_TransformToWebmercator(g)::geometry(Geometry,3857)
--      (SRID 0 is taken as 4326), that source column is not copied; a table without geometry gets NULL ones.
--   f. indexes: a primary key on other columns is dropped, PRIMARY KEY (cartodb_id) added if missing, a GiST
--      index added on the_geom and on the_geom_webmercator when they have none (`<table>_the_geom_idx`, ...).
--   g. triggers (names as on CARTO): track_updates (AFTER INSERT/UPDATE/DELETE/TRUNCATE, per statement,
--      records the table in cartodb.cdb_tablemetadata), update_the_geom_webmercator_trigger (BEFORE INSERT
--      OR UPDATE OF the_geom, per row), test_quota (BEFORE INSERT OR UPDATE, per statement) and
--      test_quota_per_row (per row) raising 'Quota exceeded by NKB' when the schema's data size
--      (half the total relation size of its tables, as CARTO counts it) is over its quota.
-- DELIBERATE DIFFERENCES (documented so tests can rely on them):
--   * Determinism: CARTO's quota triggers check at random (10 % of statements, 0.1 % of rows); here every
--     statement checks, and the per-row trigger checks every 1000th row of a backend.
--   * Column candidates are visited in column (attnum) order; CARTO's order is by type only, in practice the
--     same. A column with both a btree and a GiST index is not given a second GiST index.
--   * The rewritten table keeps the calling role as owner (CARTO hands it to session_user when called from a
--     SECURITY DEFINER function; carto-sim may run requests with SET ROLE, where that would be wrong).
--   * Names are quoted everywhere (CARTO breaks on mixed-case table names in a few places).
--   * CDB_TransformToWebmercator takes a fast path (no GEOS call, no subtransaction) for 4326 geometries inside
--     the valid box; geometries lying entirely ON the box's edge are not sent through the clipping.
--   * No raster support (nor its helper _CDB_create_cartodb_id_column), no cache-invalidation
--     (cdb_invalidate_varnish) trigger on cdb_tablemetadata.
-- CHECKED AGAINST CARTO: cartodb-postgresql 0.37.1's own regression tests CDB_CartodbfyTableTest,
-- CDB_TransformToWebmercatorTest, CDB_UserTablesTest and CDB_QuotaTest, run against this file, give CARTO's
-- expected output except the raster-only helper and a last-bit difference in two webmercator coordinates
-- (PROJ version).

DO $load$
DECLARE
  nsp name;
BEGIN
  SELECT n.nspname INTO nsp FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
   WHERE e.extname = 'postgis';
  IF nsp IS NULL THEN
    RAISE EXCEPTION 'cdb_functions.sql: run CREATE EXTENSION postgis first';
  ELSIF nsp <> 'public' THEN
    RAISE EXCEPTION 'cdb_functions.sql: PostGIS must be installed in schema public, not %', nsp;
  END IF;
END
$load$;

CREATE SCHEMA IF NOT EXISTS cartodb;
GRANT USAGE ON SCHEMA cartodb TO PUBLIC;

-- Make unqualified calls work: append cartodb to the database's default search_path.
DO $load$
DECLARE
  cur text;
BEGIN
  SELECT substr(s, length('search_path=') + 1) INTO cur
    FROM pg_db_role_setting d, unnest(d.setconfig) s
   WHERE d.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
     AND d.setrole = 0 AND s LIKE 'search_path=%';
  IF cur IS NULL THEN
    EXECUTE format('ALTER DATABASE %I SET search_path = "$user", public, cartodb', current_database());
  ELSIF cur !~ '(^|[ ,"])cartodb($|[ ,"])' THEN
    EXECUTE format('ALTER DATABASE %I SET search_path = %s, cartodb', current_database(), cur);
  END IF;
END
$load$;

-------------------------------------------------------------------------------------------------------------
-- Small helpers
-------------------------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION cartodb.CDB_Version() RETURNS text
AS $$ SELECT '0.37.1'::text $$ LANGUAGE sql IMMUTABLE PARALLEL SAFE;

CREATE OR REPLACE FUNCTION cartodb.schema_exists(schema_name text) RETURNS boolean
AS $$ SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = schema_name) $$
LANGUAGE sql STABLE PARALLEL SAFE;

-- Cut a string to at most max_bytes bytes of UTF-8 without splitting a character.
CREATE OR REPLACE FUNCTION cartodb._CDB_Octet_Truncate(s text, max_bytes integer) RETURNS text
AS $$
DECLARE
  n integer;
BEGIN
  IF max_bytes <= 0 THEN
    RETURN '';
  END IF;
  n := least(char_length(s), max_bytes);
  WHILE octet_length(left(s, n)) > max_bytes LOOP
    n := n - 1;
  END LOOP;
  RETURN left(s, n);
END
$$ LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE;

-- A relation name prefix||name||suffix not used yet (in schema `schema`, or in any schema when NULL);
-- on a clash the digits 0, 1, 2... are appended. Fits PostgreSQL's 63-byte identifiers.
CREATE OR REPLACE FUNCTION cartodb._CDB_Unique_Identifier(prefix text, relname text, suffix text,
                                                          schema text DEFAULT NULL) RETURNS text
AS $$
DECLARE
  base text;
  cand text;
  i integer := 0;
BEGIN
  base := coalesce(prefix, '')
          || cartodb._CDB_Octet_Truncate(relname, 63 - 4 - coalesce(octet_length(prefix), 0)
                                                  - coalesce(octet_length(suffix), 0))
          || coalesce(suffix, '');
  cand := base;
  WHILE EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relname = cand AND (schema IS NULL OR n.nspname = schema)) LOOP
    IF i >= 10000 THEN
      RAISE EXCEPTION 'CDB(_CDB_Unique_Identifier): looping too far';
    END IF;
    cand := base || i;
    i := i + 1;
  END LOOP;
  RETURN cand;
END
$$ LANGUAGE plpgsql VOLATILE;

-- Same for a column name inside a relation.
CREATE OR REPLACE FUNCTION cartodb._CDB_Unique_Column_Identifier(prefix text, colname text, suffix text,
                                                                 reloid regclass) RETURNS text
AS $$
DECLARE
  base text;
  cand text;
  i integer := 0;
BEGIN
  base := coalesce(prefix, '')
          || cartodb._CDB_Octet_Truncate(colname, 63 - 4 - coalesce(octet_length(prefix), 0)
                                                  - coalesce(octet_length(suffix), 0))
          || coalesce(suffix, '');
  cand := base;
  WHILE EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = reloid AND a.attnum > 0 AND NOT a.attisdropped AND a.attname = cand) LOOP
    IF i >= 10000 THEN
      RAISE EXCEPTION 'CDB(_CDB_Unique_Column_Identifier): looping too far';
    END IF;
    cand := base || i;
    i := i + 1;
  END LOOP;
  RETURN cand;
END
$$ LANGUAGE plpgsql VOLATILE;

CREATE OR REPLACE FUNCTION cartodb._CDB_Error(message text, funcname text DEFAULT '_CDB_Error') RETURNS void
AS $$
BEGIN
  RAISE EXCEPTION 'CDB(%): %', funcname, message;
END
$$ LANGUAGE plpgsql VOLATILE;

-- Run a statement; a failure is reported as CARTO does: 'CDB(func:SQLSTATE:message): statement'.
CREATE OR REPLACE FUNCTION cartodb._CDB_SQL(sql text, funcname text DEFAULT '_CDB_SQL') RETURNS void
AS $$
BEGIN
  EXECUTE sql;
EXCEPTION WHEN OTHERS THEN
  RAISE EXCEPTION 'CDB(%:%:%): %', funcname, SQLSTATE, SQLERRM, sql;
END
$$ LANGUAGE plpgsql VOLATILE;

-------------------------------------------------------------------------------------------------------------
-- Geometry helpers
-------------------------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION cartodb.CDB_LatLng(lat numeric, lng numeric) RETURNS public.geometry
AS $$ SELECT public.ST_SetSRID(public.ST_MakePoint(lng, lat), 4326) $$
LANGUAGE sql IMMUTABLE PARALLEL SAFE;

CREATE OR REPLACE FUNCTION cartodb.CDB_LatLng(lat float8, lng float8) RETURNS public.geometry
AS $$ SELECT public.ST_SetSRID(public.ST_MakePoint(lng, lat), 4326) $$
LANGUAGE sql IMMUTABLE PARALLEL SAFE;

-- To web mercator (EPSG:3857), which cannot represent the poles: geometries reaching beyond latitude
-- +-89 (or longitude +-180) are first clipped to that box; an empty result becomes NULL, a MULTI input
-- stays MULTI. A geometry already in 3857 is returned as is. NULL in, NULL out.
CREATE OR REPLACE FUNCTION cartodb.CDB_TransformToWebmercator(geom public.geometry) RETURNS public.geometry
AS $$
DECLARE
  box public.geometry;
  ll public.geometry;
  clipped public.geometry;
  dim integer;
BEGIN
  IF public.ST_SRID(geom) = 3857 THEN
    RETURN geom;
  END IF;
  -- Fast path (the common case, and a hot one: the row trigger runs it on every write): a 4326 geometry
  -- whose bounding box lies in the valid box needs no clipping. Same result as CARTO's ST_Within test except
  -- for geometries lying entirely ON the box's edge, which CARTO sends through the clipping below (same
  -- points, possibly reordered). No exception block here: they cost a subtransaction per call.
  -- (Compared as float8: PostgreSQL orders NaN above every number, so a NaN coordinate takes the slow path;
  -- PostGIS's bbox operators cannot be trusted with NaN.)
  IF public.ST_SRID(geom) = 4326
     AND public.ST_XMin(geom) >= -180 AND public.ST_XMax(geom) <= 180
     AND public.ST_YMin(geom) >= -89 AND public.ST_YMax(geom) <= 89 THEN
    RETURN public.ST_Transform(geom, 3857);
  END IF;
  box := public.ST_MakeEnvelope(-180, -89, 180, 89, 4326);
  ll := public.ST_Transform(geom, 4326);
  IF public.ST_Within(ll, box) THEN
    BEGIN
      RETURN public.ST_Transform(ll, 3857);
    EXCEPTION WHEN OTHERS THEN
      RETURN NULL;
    END;
  END IF;
  dim := public.ST_Dimension(geom);
  IF dim <> 0 AND public.GeometryType(geom) <> 'GEOMETRYCOLLECTION' THEN
    BEGIN
      ll := public.ST_MakeValid(ll);
    EXCEPTION WHEN OTHERS THEN
      RAISE WARNING 'Could not clean input geometry: %', SQLERRM;
      RETURN NULL;
    END;
    ll := public.ST_CollectionExtract(ll, dim + 1);
  END IF;
  clipped := public.ST_Transform(public.ST_Intersection(ll, box), 3857);
  IF public.ST_IsEmpty(clipped) THEN
    RETURN NULL;
  ELSIF public.GeometryType(geom) LIKE 'MULTI%' THEN
    RETURN public.ST_Multi(clipped);
  END IF;
  RETURN clipped;
END
$$ LANGUAGE plpgsql IMMUTABLE STRICT;

-------------------------------------------------------------------------------------------------------------
-- Catalogue helpers
-------------------------------------------------------------------------------------------------------------

-- Column names of a relation, in column order (no system or dropped columns).
CREATE OR REPLACE FUNCTION cartodb.CDB_ColumnNames(regclass) RETURNS SETOF information_schema.sql_identifier
AS $$
  SELECT a.attname::information_schema.sql_identifier
    FROM pg_catalog.pg_attribute a
   WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
   ORDER BY a.attnum
$$ LANGUAGE sql STABLE PARALLEL SAFE;

-- Type of a column, without typmod ('integer', 'text', 'geometry', 'character varying', ...); NULL when
-- there is no such column.
CREATE OR REPLACE FUNCTION cartodb.CDB_ColumnType(regclass, text) RETURNS information_schema.character_data
AS $$
  SELECT pg_catalog.format_type(a.atttypid, NULL)::information_schema.character_data
    FROM pg_catalog.pg_attribute a
   WHERE a.attrelid = $1 AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped
$$ LANGUAGE sql STABLE PARALLEL SAFE;

-- The role that stands for "no API key" (CARTO: publicuser); 'public' (the PUBLIC pseudo-role) when the
-- configured role does not exist.
CREATE OR REPLACE FUNCTION cartodb._CDB_PublicRole() RETURNS text
AS $$
  SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r.name) THEN r.name ELSE 'public' END
    FROM (SELECT coalesce(nullif(current_setting('cartodb.public_role', true), ''), 'publicuser') AS name) r
$$ LANGUAGE sql STABLE;

-- Names (no schema) of the plain tables a user sees, from every non-system schema:
--   'all'     readable by the current role or by the public role,
--   'public'  readable by the public role,
--   'private' readable by the current role but not by the public role;
-- any other value gives nothing. CARTO's own tables (cdb_tablemetadata, spatial_ref_sys, ...) and
-- schema cartodb are left out.
CREATE OR REPLACE FUNCTION cartodb.CDB_UserTables(perm text DEFAULT 'all') RETURNS SETOF name
AS $$
  WITH pr AS (SELECT cartodb._CDB_PublicRole() AS role)
  SELECT c.relname
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace, pr
   WHERE c.relkind = 'r'
     AND c.relname NOT IN ('cdb_tablemetadata', 'cdb_analysis_catalog', 'cdb_conf', 'spatial_ref_sys')
     AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'topology', 'cartodb')
     AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
     AND CASE perm
           WHEN 'public' THEN has_table_privilege(pr.role, c.oid, 'SELECT')
           WHEN 'private' THEN has_table_privilege(current_user, c.oid, 'SELECT')
                               AND NOT has_table_privilege(pr.role, c.oid, 'SELECT')
           WHEN 'all' THEN has_table_privilege(current_user, c.oid, 'SELECT')
                           OR has_table_privilege(pr.role, c.oid, 'SELECT')
           ELSE false
         END
$$ LANGUAGE sql STABLE;

-------------------------------------------------------------------------------------------------------------
-- Table metadata (last update of each cartodbfied table)
-------------------------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS cartodb.cdb_tablemetadata (
  tabname regclass NOT NULL PRIMARY KEY,
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE VIEW cartodb.cdb_tablemetadata_text AS
  SELECT format('%I.%I', n.nspname, c.relname) AS tabname, m.updated_at
    FROM cartodb.cdb_tablemetadata m
    JOIN pg_catalog.pg_class c ON c.oid = m.tabname::oid
    LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace;

-- Statement trigger "track_updates": upsert (table, now()); forgets tables that no longer exist.
-- SECURITY DEFINER: users cannot write cdb_tablemetadata themselves.
CREATE OR REPLACE FUNCTION cartodb.CDB_TableMetadata_Trigger() RETURNS trigger
AS $$
BEGIN
  IF TG_RELID = 'cartodb.cdb_tablemetadata'::regclass THEN
    RETURN NULL;
  END IF;
  DELETE FROM cartodb.cdb_tablemetadata m
   WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = m.tabname::oid);
  INSERT INTO cartodb.cdb_tablemetadata AS m (tabname, updated_at) VALUES (TG_RELID, now())
    ON CONFLICT (tabname) DO UPDATE SET updated_at = excluded.updated_at;
  RETURN NULL;
END
$$ LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION cartodb.CDB_TableMetadataTouch(tablename regclass) RETURNS void
AS $$
  INSERT INTO cartodb.cdb_tablemetadata AS m (tabname, updated_at) VALUES (tablename, now())
    ON CONFLICT (tabname) DO UPDATE SET updated_at = excluded.updated_at
$$ LANGUAGE sql VOLATILE STRICT;

-------------------------------------------------------------------------------------------------------------
-- Quota
-------------------------------------------------------------------------------------------------------------

-- Creates <schema>._CDB_UserQuotaInBytes() returning `bytes` (0 = no limit). Returns bytes.
CREATE OR REPLACE FUNCTION cartodb.CDB_SetUserQuotaInBytes(schema_name text, bytes int8) RETURNS int8
AS $$
BEGIN
  IF NOT cartodb.schema_exists(schema_name) THEN
    RAISE EXCEPTION 'Invalid schema name "%"', schema_name;
  END IF;
  EXECUTE format('CREATE OR REPLACE FUNCTION %I._CDB_UserQuotaInBytes() RETURNS int8 '
                 'AS $q$ SELECT %s::int8 $q$ LANGUAGE sql IMMUTABLE', schema_name, bytes);
  RETURN bytes;
END
$$ LANGUAGE plpgsql VOLATILE STRICT;

CREATE OR REPLACE FUNCTION cartodb.CDB_SetUserQuotaInBytes(bytes int8) RETURNS int8
AS $$ SELECT cartodb.CDB_SetUserQuotaInBytes('public', bytes) $$ LANGUAGE sql VOLATILE STRICT;

-- Total relation size of schema.table; 0 (and a NOTICE) when it cannot be had, e.g. no such table.
CREATE OR REPLACE FUNCTION cartodb._CDB_total_relation_size(_schema_name text, _table_name text) RETURNS int8
AS $$
BEGIN
  RETURN pg_catalog.pg_total_relation_size(format('%I.%I', _schema_name, _table_name)::regclass);
EXCEPTION WHEN OTHERS THEN
  RAISE NOTICE 'cartodb._CDB_total_relation_size(''%'', ''%'') caught error: % (%)', _schema_name, _table_name,
    SQLERRM, SQLSTATE;
  RETURN 0;
END
$$ LANGUAGE plpgsql VOLATILE;

-- Data size of a schema as CARTO counts it: half (the_geom_webmercator is not charged) of the total
-- relation size of its user tables.
CREATE OR REPLACE FUNCTION cartodb.CDB_UserDataSize(schema_name text) RETURNS int8
AS $$
  SELECT coalesce((sum(pg_catalog.pg_total_relation_size(c.oid)) * 0.5)::int8, 0)
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = schema_name AND c.relkind = 'r'
     AND c.relname NOT IN ('cdb_tablemetadata', 'cdb_analysis_catalog', 'cdb_conf', 'spatial_ref_sys')
     AND c.relname NOT LIKE 'analysis\_%'
$$ LANGUAGE sql VOLATILE;

CREATE OR REPLACE FUNCTION cartodb.CDB_UserDataSize() RETURNS int8
AS $$ SELECT cartodb.CDB_UserDataSize('public') $$ LANGUAGE sql VOLATILE;

-- Trigger: CDB_CheckQuota(sampling, fallback_quota, schema). CARTO samples at random with probability
-- `sampling`; here: a statement trigger always checks, a row trigger every round(1/sampling)-th row of the
-- backend (deterministic).
CREATE OR REPLACE FUNCTION cartodb.CDB_CheckQuota() RETURNS trigger
AS $$
DECLARE
  schema_name text := 'public';
  qmax int8;
  used int8;
  every int8;
  n int8;
BEGIN
  IF TG_NARGS >= 3 THEN
    schema_name := TG_ARGV[2];
    IF NOT cartodb.schema_exists(schema_name) THEN
      RAISE EXCEPTION 'Invalid schema name "%"', schema_name;
    END IF;
  END IF;
  IF TG_LEVEL = 'ROW' THEN
    every := greatest(1, round(1.0 / greatest(TG_ARGV[0]::float8, 1e-9)))::int8;
    n := coalesce(nullif(current_setting('cartodb.quota_row_counter', true), '')::int8, 0) + 1;
    PERFORM set_config('cartodb.quota_row_counter', (n % every)::text, false);
    IF n % every <> 0 THEN
      RETURN NEW;
    END IF;
  END IF;
  BEGIN
    EXECUTE format('SELECT %I._CDB_UserQuotaInBytes()', schema_name) INTO qmax;
  EXCEPTION WHEN undefined_function THEN
    IF TG_NARGS >= 2 AND TG_ARGV[1] <> '-1' THEN
      qmax := TG_ARGV[1]::int8;
    ELSE
      RAISE EXCEPTION 'Missing "%"._CDB_UserQuotaInBytes()', schema_name;
    END IF;
  END;
  IF qmax = 0 THEN
    RETURN NEW;
  END IF;
  used := cartodb.CDB_UserDataSize(schema_name);
  IF used > qmax THEN
    RAISE EXCEPTION 'Quota exceeded by %KB', (used - qmax) / 1024.0;
  END IF;
  RETURN NEW;
END
$$ LANGUAGE plpgsql VOLATILE;

-------------------------------------------------------------------------------------------------------------
-- CDB_CartodbfyTable
-------------------------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION cartodb._CDB_check_prerequisites(schema_name text, reloid regclass) RETURNS void
AS $$
BEGIN
  IF NOT cartodb.schema_exists(schema_name) THEN
    RAISE EXCEPTION 'Invalid schema name "%"', schema_name;
  END IF;
  BEGIN
    EXECUTE format('SELECT %I._CDB_UserQuotaInBytes()', schema_name);
  EXCEPTION WHEN undefined_function THEN
    RAISE EXCEPTION 'Please set user quota before cartodbfying tables.';
  END;
END
$$ LANGUAGE plpgsql VOLATILE;

CREATE OR REPLACE FUNCTION cartodb._CDB_drop_triggers(reloid regclass) RETURNS void
AS $$
DECLARE
  t text;
BEGIN
  -- As cartodb-postgresql: DROP TRIGGER IF EXISTS, in this order, so a new table gets PostgreSQL's four
  -- 'trigger "..." for relation "..." does not exist, skipping' notices, as on CARTO (carto-sql-api.md 11.6).
  FOREACH t IN ARRAY ARRAY['track_updates', 'update_the_geom_webmercator_trigger', 'test_quota',
                           'test_quota_per_row'] LOOP
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', t, reloid);
  END LOOP;
END
$$ LANGUAGE plpgsql VOLATILE;

CREATE OR REPLACE FUNCTION cartodb._CDB_update_the_geom_webmercator() RETURNS trigger
AS $$
BEGIN
  NEW.the_geom_webmercator := cartodb.CDB_TransformToWebmercator(NEW.the_geom);
  RETURN NEW;
END
$$ LANGUAGE plpgsql VOLATILE;

CREATE OR REPLACE FUNCTION cartodb._CDB_create_triggers(schema_name text, reloid regclass) RETURNS void
AS $$
BEGIN
  EXECUTE format('CREATE TRIGGER track_updates AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s '
                 'FOR EACH STATEMENT EXECUTE FUNCTION cartodb.CDB_TableMetadata_Trigger()', reloid);
  EXECUTE format('CREATE TRIGGER update_the_geom_webmercator_trigger BEFORE INSERT OR UPDATE OF the_geom ON %s '
                 'FOR EACH ROW EXECUTE FUNCTION cartodb._CDB_update_the_geom_webmercator()', reloid);
  EXECUTE format('CREATE TRIGGER test_quota BEFORE UPDATE OR INSERT ON %s '
                 'FOR EACH STATEMENT EXECUTE FUNCTION cartodb.CDB_CheckQuota(0.1, %L, %L)',
                 reloid, '-1', schema_name);
  EXECUTE format('CREATE TRIGGER test_quota_per_row BEFORE UPDATE OR INSERT ON %s '
                 'FOR EACH ROW EXECUTE FUNCTION cartodb.CDB_CheckQuota(0.001, %L, %L)',
                 reloid, '-1', schema_name);
END
$$ LANGUAGE plpgsql VOLATILE;

-- Is there a usable cartodb_id (see the header, step c)? May rename an integer primary key to cartodb_id.
CREATE OR REPLACE FUNCTION cartodb._CDB_Has_Usable_Primary_ID(reloid regclass) RETURNS boolean
AS $$
DECLARE
  att record;
  other name;
  sql text;
BEGIN
  SELECT a.attnum, a.attnotnull INTO att
    FROM pg_catalog.pg_attribute a
   WHERE a.attrelid = reloid AND a.attname = 'cartodb_id' AND a.attnum > 0 AND NOT a.attisdropped;

  IF FOUND THEN
    IF att.attnotnull AND EXISTS (
         SELECT 1 FROM pg_catalog.pg_index i
          WHERE i.indrelid = reloid AND (i.indisprimary OR i.indisunique) AND att.attnum = ANY (i.indkey)) THEN
      RETURN true;
    END IF;
    -- Not declared unique: see whether it could be (unique, not null, integer, >= 0).
    sql := format('ALTER TABLE %s ADD CONSTRAINT cartodb_id_pk PRIMARY KEY (cartodb_id), '
                  'ADD CONSTRAINT cartodb_id_integer CHECK (cartodb_id::integer >=0);', reloid);
    BEGIN
      EXECUTE sql;
    EXCEPTION
      WHEN unique_violation OR not_null_violation OR invalid_text_representation THEN
        PERFORM cartodb._CDB_Error(sql, '_CDB_Has_Usable_Primary_ID: Error: invalid cartodb_id, cartodb_id');
      WHEN OTHERS THEN
        PERFORM cartodb._CDB_Error(sql, format('_CDB_Has_Usable_Primary_ID: %s', SQLERRM));
    END;
    PERFORM cartodb._CDB_SQL(format('ALTER TABLE %s DROP CONSTRAINT cartodb_id_pk', reloid));
    PERFORM cartodb._CDB_SQL(format('ALTER TABLE %s DROP CONSTRAINT cartodb_id_integer', reloid));
    RETURN true;
  END IF;

  -- No cartodb_id: adopt an integer primary-key column.
  SELECT a.attname INTO other
    FROM pg_catalog.pg_index i
    JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
   WHERE i.indrelid = reloid AND i.indisprimary AND i.indisunique AND a.attnotnull AND NOT a.attisdropped
     AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)
   ORDER BY a.attnum
   LIMIT 1;
  IF FOUND THEN
    PERFORM cartodb._CDB_SQL(format('ALTER TABLE %s RENAME COLUMN %I TO cartodb_id', reloid, other),
                             '_CDB_Has_Usable_Primary_ID');
    RETURN true;
  END IF;
  RETURN false;
END
$$ LANGUAGE plpgsql VOLATILE;

CREATE OR REPLACE FUNCTION cartodb._CDB_Has_Usable_PK_Sequence(reloid regclass) RETURNS boolean
AS $$ SELECT pg_catalog.pg_get_serial_sequence(reloid::text, 'cartodb_id') IS NOT NULL $$
LANGUAGE sql STABLE;

-- Geometry column research (header, step d). Renames misfit columns named the_geom / the_geom_webmercator.
CREATE OR REPLACE FUNCTION cartodb._CDB_Has_Usable_Geom(reloid regclass,
    OUT has_usable_geoms boolean, OUT text_geom_column boolean, OUT text_geom_column_name text,
    OUT text_geom_column_srid boolean, OUT has_geom boolean, OUT has_geom_name text,
    OUT has_mercgeom boolean, OUT has_mercgeom_name text)
AS $$
DECLARE
  r record;
  srid integer;
  newname text;
BEGIN
  text_geom_column := false;
  text_geom_column_name := '';
  text_geom_column_srid := true;
  has_geom := false;
  has_mercgeom := false;

  FOR r IN
    SELECT a.attname, t.typname,
           CASE WHEN t.typname = 'geometry' THEN public.postgis_typmod_srid(a.atttypmod) END AS srid,
           d.want_name, d.want_srid
      FROM pg_catalog.pg_attribute a
      JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
     CROSS JOIN (VALUES (1, 'the_geom', 4326), (2, 'the_geom_webmercator', 3857)) AS d(ord, want_name, want_srid)
     WHERE a.attrelid = reloid AND a.attnum > 0 AND NOT a.attisdropped
       AND public.postgis_typmod_srid(a.atttypmod) IN (4326, 3857, 0)
     ORDER BY a.attnum, d.ord
  LOOP
    IF r.typname <> 'geometry' AND r.attname = r.want_name THEN
      IF r.typname IN ('text', 'varchar', 'char') THEN
        BEGIN
          EXECUTE format('SELECT max(public.ST_SRID(%I::public.geometry)) FROM %s', r.attname, reloid) INTO srid;
          text_geom_column := true;
          text_geom_column_name := r.attname;
          IF srid = 0 THEN
            text_geom_column_srid := false;
          END IF;
        EXCEPTION WHEN OTHERS THEN
          IF SQLERRM = 'parse error - invalid geometry' THEN
            text_geom_column := false;
            newname := cartodb._CDB_Unique_Column_Identifier(NULL, r.attname, NULL, reloid);
            PERFORM cartodb._CDB_SQL(format('ALTER TABLE %s RENAME COLUMN %I TO %I', reloid, r.attname, newname),
                                     '_CDB_Has_Usable_Geom');
          ELSE
            RAISE EXCEPTION 'CDB(_CDB_Has_Usable_Geom) UNEXPECTED ERROR';
          END IF;
        END;
      ELSE
        newname := cartodb._CDB_Unique_Column_Identifier(NULL, r.attname, NULL, reloid);
        PERFORM cartodb._CDB_SQL(format('ALTER TABLE %s RENAME COLUMN %I TO %I', reloid, r.attname, newname),
                                 '_CDB_Has_Usable_Geom');
      END IF;
    ELSIF r.typname = 'geometry' AND r.srid = r.want_srid THEN
      IF r.want_name = 'the_geom' THEN
        has_geom := true;
        has_geom_name := r.attname;
      ELSE
        has_mercgeom := true;
        has_mercgeom_name := r.attname;
      END IF;
    END IF;
  END LOOP;
  has_usable_geoms := has_geom AND has_mercgeom;
END
$$ LANGUAGE plpgsql VOLATILE;

-- Rewrites the table when needed (header, step e). Returns true when it did.
CREATE OR REPLACE FUNCTION cartodb._CDB_Rewrite_Table(reloid regclass, destschema text DEFAULT NULL)
RETURNS boolean
AS $$
DECLARE
  relname text;
  relschema text;
  pk_ok boolean;
  seq_ok boolean := false;
  gc record;
  oldseq text;
  destseq text;
  copyname text;
  sel text;
  src text := '';
  srcexpr text;
  srid integer;
  others text;
  maxid int8;
BEGIN
  SELECT n.nspname, c.relname INTO STRICT relschema, relname
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
   WHERE c.oid = reloid;
  destschema := coalesce(destschema, relschema);

  pk_ok := cartodb._CDB_Has_Usable_Primary_ID(reloid);
  IF pk_ok THEN
    seq_ok := cartodb._CDB_Has_Usable_PK_Sequence(reloid);
  END IF;

  gc := cartodb._CDB_Has_Usable_Geom(reloid);

  IF gc.has_geom AND gc.has_geom_name <> 'the_geom' THEN
    PERFORM cartodb._CDB_SQL(format('ALTER TABLE %s DROP COLUMN IF EXISTS the_geom', reloid), '_CDB_Rewrite_Table');
    PERFORM cartodb._CDB_SQL(format('ALTER TABLE %s RENAME COLUMN %I TO the_geom', reloid, gc.has_geom_name),
                             '_CDB_Rewrite_Table');
  END IF;
  IF gc.has_mercgeom AND gc.has_mercgeom_name <> 'the_geom_webmercator' THEN
    PERFORM cartodb._CDB_SQL(format('ALTER TABLE %s DROP COLUMN IF EXISTS the_geom_webmercator', reloid),
                             '_CDB_Rewrite_Table');
    PERFORM cartodb._CDB_SQL(format('ALTER TABLE %s RENAME COLUMN %I TO the_geom_webmercator', reloid,
                                    gc.has_mercgeom_name), '_CDB_Rewrite_Table');
  END IF;

  IF pk_ok AND seq_ok AND gc.has_usable_geoms THEN
    IF destschema <> relschema THEN
      PERFORM cartodb._CDB_SQL(format('ALTER TABLE %s SET SCHEMA %I', reloid, destschema), '_CDB_Rewrite_Table');
    END IF;
    RETURN false;
  END IF;

  -- Rewrite. Keep the preferred sequence name free: the old sequence goes away with the old table.
  IF pk_ok AND seq_ok THEN
    oldseq := pg_catalog.pg_get_serial_sequence(reloid::text, 'cartodb_id');
    IF oldseq = format('%I.%I', destschema, relname || '_cartodb_id_seq') THEN
      PERFORM cartodb._CDB_SQL(format('ALTER SEQUENCE %s RENAME TO %I', oldseq, 'tmp_' || relname || '_cartodb_id_seq'),
                               '_CDB_Rewrite_Table');
    END IF;
  END IF;
  destseq := format('%I.%I', destschema,
                    cartodb._CDB_Unique_Identifier(NULL, relname, '_cartodb_id_seq', destschema));
  PERFORM cartodb._CDB_SQL(format('CREATE SEQUENCE %s', destseq), '_CDB_Rewrite_Table');

  IF destschema = relschema THEN
    copyname := format('%I.%I', destschema, cartodb._CDB_Unique_Identifier(NULL, relname, NULL));
  ELSE
    copyname := format('%I.%I', destschema, relname);
  END IF;

  IF pk_ok THEN
    sel := 'cartodb_id::integer';
  ELSE
    sel := format('nextval(%L) AS cartodb_id', destseq);
  END IF;

  IF gc.has_usable_geoms THEN
    sel := sel || ', the_geom, the_geom_webmercator';
  ELSE
    IF gc.text_geom_column THEN
      src := gc.text_geom_column_name;
      srcexpr := format('%I::public.geometry', src);
      IF NOT gc.text_geom_column_srid THEN
        srcexpr := format('public.ST_SetSRID(%s, 4326)', srcexpr);
      END IF;
    ELSE
      SELECT a.attname, public.postgis_typmod_srid(a.atttypmod) INTO src, srid
        FROM pg_catalog.pg_attribute a
       WHERE a.attrelid = reloid AND a.attnum > 0 AND NOT a.attisdropped AND a.atttypid = 'public.geometry'::regtype
       ORDER BY a.attnum LIMIT 1;
      IF src IS NOT NULL THEN
        srcexpr := format('%I', src);
        IF srid = 0 THEN
          -- Undeclared SRID: the first row tells; none at all is taken as 4326.
          EXECUTE format('SELECT public.ST_SRID(%I) FROM %s LIMIT 1', src, reloid) INTO srid;
          IF coalesce(srid, 0) = 0 THEN
            srcexpr := format('public.ST_SetSRID(%s, 4326)', srcexpr);
          END IF;
        END IF;
      END IF;
    END IF;
    IF srcexpr IS NULL THEN
      src := '';
      sel := sel || ', NULL::public.geometry(Geometry,4326) AS the_geom, '
                    'NULL::public.geometry(Geometry,3857) AS the_geom_webmercator';
    ELSE
      sel := sel || format(', public.ST_Transform(%1$s, 4326)::public.geometry(Geometry,4326) AS the_geom, '
                           'cartodb.CDB_TransformToWebmercator(%1$s)::public.geometry(Geometry,3857) AS the_geom_webmercator',
                           srcexpr);
    END IF;
  END IF;

  SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum) INTO others
    FROM pg_catalog.pg_attribute a
   WHERE a.attrelid = reloid AND a.attnum > 0 AND NOT a.attisdropped
     AND a.attname NOT IN ('cartodb_id', 'the_geom', 'the_geom_webmercator', src);
  IF others IS NOT NULL THEN
    sel := sel || ', ' || others;
  END IF;

  PERFORM cartodb._CDB_SQL(format('CREATE TABLE %s AS SELECT %s FROM %s', copyname, sel, reloid),
                           '_CDB_Rewrite_Table');

  EXECUTE format('SELECT max(cartodb_id) FROM %s', copyname) INTO maxid;
  IF maxid IS NOT NULL THEN
    PERFORM cartodb._CDB_SQL(format('SELECT setval(%L, %s)', destseq, maxid), '_CDB_Rewrite_Table');
  END IF;
  PERFORM cartodb._CDB_SQL(format('ALTER TABLE %s ALTER COLUMN cartodb_id SET DEFAULT nextval(%L)', copyname, destseq),
                           '_CDB_Rewrite_Table');
  PERFORM cartodb._CDB_SQL(format('ALTER SEQUENCE %s OWNED BY %s.cartodb_id', destseq, copyname),
                           '_CDB_Rewrite_Table');
  PERFORM cartodb._CDB_SQL(format('DROP TABLE %s', reloid), '_CDB_Rewrite_Table');
  IF destschema = relschema THEN
    PERFORM cartodb._CDB_SQL(format('ALTER TABLE %s RENAME TO %I', copyname, relname), '_CDB_Rewrite_Table');
  END IF;
  RETURN true;
END
$$ LANGUAGE plpgsql VOLATILE;

-- Primary key on cartodb_id and GiST indexes on the geometry columns (header, step f).
CREATE OR REPLACE FUNCTION cartodb._CDB_Add_Indexes(reloid regclass) RETURNS boolean
AS $$
DECLARE
  pk record;
  has_pk boolean;
  col text;
BEGIN
  SELECT con.conname,
         (SELECT array_agg(a.attname ORDER BY a.attname) FROM pg_catalog.pg_attribute a
           WHERE a.attrelid = reloid AND a.attnum = ANY (con.conkey)) AS cols
    INTO pk
    FROM pg_catalog.pg_constraint con
   WHERE con.conrelid = reloid AND con.contype = 'p';
  has_pk := FOUND;
  IF has_pk AND pk.cols <> ARRAY['cartodb_id']::name[] THEN
    PERFORM cartodb._CDB_SQL(format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I', reloid, pk.conname),
                             '_CDB_Add_Indexes');
    has_pk := false;
  END IF;
  IF NOT has_pk THEN
    PERFORM cartodb._CDB_SQL(format('ALTER TABLE %s ADD PRIMARY KEY (cartodb_id)', reloid), '_CDB_Add_Indexes');
  END IF;

  FOREACH col IN ARRAY ARRAY['the_geom', 'the_geom_webmercator'] LOOP
    IF NOT EXISTS (
         SELECT 1
           FROM pg_catalog.pg_index i
           JOIN pg_catalog.pg_class ci ON ci.oid = i.indexrelid
           JOIN pg_catalog.pg_am am ON am.oid = ci.relam
           JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
          WHERE i.indrelid = reloid AND a.attname = col AND am.amname = 'gist') THEN
      PERFORM cartodb._CDB_SQL(format('CREATE INDEX ON %s USING GIST (%I)', reloid, col), '_CDB_Add_Indexes');
    END IF;
  END LOOP;
  RETURN true;
END
$$ LANGUAGE plpgsql VOLATILE;

CREATE OR REPLACE FUNCTION cartodb.CDB_CartodbfyTable(destschema text, reloid regclass) RETURNS regclass
AS $$
DECLARE
  relschema text;
  relname text;
  destoid regclass;
BEGIN
  SELECT n.nspname, c.relname INTO STRICT relschema, relname
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
   WHERE c.oid = reloid;

  PERFORM cartodb._CDB_check_prerequisites(destschema, reloid);
  destschema := coalesce(destschema, relschema);

  PERFORM cartodb._CDB_drop_triggers(reloid);
  PERFORM cartodb._CDB_Rewrite_Table(reloid, destschema);

  destoid := format('%I.%I', destschema, relname)::regclass;
  PERFORM cartodb._CDB_Add_Indexes(destoid);
  PERFORM cartodb._CDB_create_triggers(destschema, destoid);
  RETURN destoid;
END
$$ LANGUAGE plpgsql VOLATILE;

CREATE OR REPLACE FUNCTION cartodb.CDB_CartodbfyTable(reloid regclass) RETURNS regclass
AS $$
BEGIN
  RETURN cartodb.CDB_CartodbfyTable('public', reloid);
END
$$ LANGUAGE plpgsql VOLATILE;
