//! carto.push and carto.pull: syncs a pg_cron schedule runs, recorded in carto.sync_runs.
//!
//! A run never raises for a failure of its own work: it rolls that work back (subtransaction),
//! records the error in carto.sync_runs and says it as a WARNING, because raising would roll the
//! record back too. Bad arguments (an unknown mode, a missing server) do raise.

pub mod pull;
pub mod push;
pub mod push_binary;
pub mod runs;

use pgrx::prelude::*;
use pgrx::{pg_sys, Spi};

use crate::fdw::connection::{client_for, server_for_caller};
use crate::pg::encoding::DbText;
use crate::pg::error::{FdwError, FdwResult, OrReport};
use crate::sync::runs::RunInfo;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Append,
    Replace,
    Upsert,
}

impl Mode {
    /// The mode, checked together with the key it may need.
    fn parse(s: &str, key: Option<&str>) -> FdwResult<Self> {
        let mode = Self::from_name(s)?;
        if mode == Mode::Upsert && key.is_none() {
            return Err(FdwError::InvalidOptionValue { message: "mode upsert needs key => 'column'".into() });
        }
        Ok(mode)
    }

    fn from_name(s: &str) -> FdwResult<Self> {
        match s {
            "append" => Ok(Mode::Append),
            "replace" => Ok(Mode::Replace),
            "upsert" => Ok(Mode::Upsert),
            other => Err(FdwError::InvalidOptionValue {
                message: format!("mode must be one of append, replace, upsert; got \"{other}\""),
            }),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Mode::Append => "append",
            Mode::Replace => "replace",
            Mode::Upsert => "upsert",
        }
    }
}

pub struct SourceColumn {
    pub name: String,
    pub type_name: String,
    pub type_oid: pg_sys::Oid,
}

/// A SELECT over the source: a table (or view) name, or a query.
pub fn source_sql(source: &str) -> String {
    let s = source.trim();
    if s.contains(char::is_whitespace) || s.contains('(') {
        s.trim_end_matches(';').to_string()
    } else {
        format!("SELECT * FROM {s}")
    }
}

/// The source's columns with their types (typmods kept), through a temporary view.
pub fn source_columns(src: &str) -> FdwResult<Vec<SourceColumn>> {
    // SAFETY: MyProcPid is set once at backend start and only read here (backend thread).
    let view = format!("carto_push_cols_{}", unsafe { pg_sys::MyProcPid });
    crate::pg::local_sql::run(&format!("CREATE TEMP VIEW {view} AS SELECT * FROM ({src}) s"))
        .map_err(|e| FdwError::InvalidOptionValue { message: format!("the source is not a valid query or table: {e}") })?;
    let mut cols = Vec::new();
    Spi::connect(|c| -> FdwResult<()> {
        let t = c
            .select(
                &format!("SELECT attname::text, format_type(atttypid, atttypmod), atttypid FROM pg_attribute WHERE attrelid = 'pg_temp.{view}'::regclass AND attnum > 0 ORDER BY attnum"),
                None,
                &[],
            )
            .map_err(|e| FdwError::internal(format!("reading the source's columns: {e}")))?;
        for row in t {
            let name: Option<String> = row.get::<DbText>(1).ok().flatten().map(DbText::into_string);
            let ty: Option<String> = row.get::<DbText>(2).ok().flatten().map(DbText::into_string);
            let oid: Option<pg_sys::Oid> = row.get(3).ok().flatten();
            if let (Some(name), Some(ty), Some(oid)) = (name, ty, oid) {
                cols.push(SourceColumn { name, type_name: crate::pg::sql_text::strip_schema(&ty), type_oid: oid });
            }
        }
        Ok(())
    })?;
    Spi::run(&format!("DROP VIEW pg_temp.{view}")).map_err(|e| FdwError::internal(format!("{e}")))?;
    Ok(cols)
}

// The SQL function's arguments, one by one: pgrx maps each parameter to one.
#[allow(clippy::too_many_arguments)]
#[pg_extern(name = "_push", volatile, parallel_unsafe)]
fn push_impl(
    source: DbText,
    server: DbText,
    remote_table: DbText,
    mode: DbText,
    key: Option<DbText>,
    since: Option<DbText>,
    create_table: bool,
    cartodbfy: bool,
    lnglat: Option<Vec<Option<DbText>>>,
    name: Option<DbText>,
    wait: bool,
) -> Option<i64> {
    // Text arguments are read in the database encoding and converted to UTF-8 (crate::pg::encoding).
    let (source, server, remote_table, mode) = (source.as_str(), server.as_str(), remote_table.as_str(), mode.as_str());
    let (key, since, name) = (key.as_deref(), since.as_deref(), name.as_deref());
    let lnglat: Option<Vec<Option<String>>> = lnglat.map(|v| v.into_iter().map(|x| x.map(DbText::into_string)).collect());
    let mode = Mode::parse(mode, key).or_report();
    let lnglat = match lnglat {
        None => None,
        Some(v) => match v.as_slice() {
            [Some(lng), Some(lat)] => Some((lng.clone(), lat.clone())),
            _ => FdwError::InvalidOptionValue { message: "lnglat must be two column names: ARRAY['lng', 'lat']".into() }.report(),
        },
    };
    // The privilege rule of every entry point: USAGE on the server, the caller's own or PUBLIC mapping.
    let access = server_for_caller(server).or_report();
    let client = client_for(&access).or_report();
    let name = name.map(str::to_string).unwrap_or_else(|| format!("push {source} -> {server}.{remote_table}"));
    let args = push::PushArgs {
        source: source.to_string(),
        remote_table: remote_table.to_string(),
        mode,
        key: key.map(str::to_string),
        since: since.map(str::to_string),
        create: create_table,
        cartodbfy,
        lnglat,
        name: name.clone(),
        binary_allowed: access.options.copy_format != crate::fdw::options::CopyFormat::Text,
    };
    let started = runs::now_text();
    let target = format!("{server}.{remote_table}");
    let mut info = RunInfo { name: &name, direction: "push", mode: mode.as_str(), server, source, target: &target, watermark_from: None };
    if !runs::lock_or_skip(&info, &started, wait).or_report() {
        return Some(0);
    }
    let prev = if since.is_some() { push::remote_watermark(&client, &name) } else { Ok(None) };
    let prev = match prev {
        Ok(p) => p,
        Err(e) => {
            let (_, m, _, _) = e.parts();
            runs::report_failure(&info, &started, &m).or_report();
            return None;
        }
    };
    info.watermark_from = prev.as_deref();
    push::drop_leftover_stages(&client, &name);
    let stage = format!("{}{:08x}", push::stage_prefix(&name), rand_u32());
    match runs::in_subtransaction(|| push::run(&args, &client, prev.as_deref(), &stage)) {
        Ok(outcome) => {
            runs::record(&info, &started, "succeeded", Some(&outcome), None).or_report();
            Some(outcome.rows)
        }
        Err(msg) => {
            push::drop_leftover_stages(&client, &name);
            runs::report_failure(&info, &started, &msg).or_report();
            None
        }
    }
}

/// What a pull reads: a remote table, or — only when asked for explicitly — a query.
fn pull_source(remote: Option<&str>, query: Option<&str>) -> FdwResult<(String, Option<String>)> {
    match (remote, query) {
        (Some(r), None) => {
            // It used to be taken as SQL when it held whitespace; now a table name is only a table
            // name, and SQL in its place says how to pass it.
            let t = r.trim();
            if t.contains(char::is_whitespace) && crate::fdw::query_option::check(t).is_ok() {
                return Err(FdwError::InvalidOptionValue {
                    message: "carto.pull's remote argument is a table name ([schema.]table): to pull a query, pass remote => NULL, query => '...'".into(),
                });
            }
            Ok((r.to_string(), None))
        }
        (None, Some(q)) => Ok((String::new(), Some(q.to_string()))),
        (Some(_), Some(_)) => Err(FdwError::InvalidOptionValue {
            message: "carto.pull takes a remote table or a query, not both: pass remote => NULL with query".into(),
        }),
        (None, None) => Err(FdwError::InvalidOptionValue {
            message: "carto.pull needs a remote table (remote) or a query (query => '...')".into(),
        }),
    }
}

// The SQL function's arguments, one by one: pgrx maps each parameter to one.
#[allow(clippy::too_many_arguments)]
#[pg_extern(name = "_pull", volatile, parallel_unsafe)]
fn pull_impl(
    server: DbText,
    remote: Option<DbText>,
    target: DbText,
    mode: DbText,
    key: Option<DbText>,
    since: Option<DbText>,
    name: Option<DbText>,
    wait: bool,
    query: Option<DbText>,
) -> Option<i64> {
    // Text arguments are read in the database encoding and converted to UTF-8 (crate::pg::encoding).
    let (server, target, mode) = (server.as_str(), target.as_str(), mode.as_str());
    let (remote, key, since, name, query) = (remote.as_deref(), key.as_deref(), since.as_deref(), name.as_deref(), query.as_deref());
    let mode = Mode::parse(mode, key).or_report();
    let (remote, query) = pull_source(remote, query).or_report();
    // Checked before anything else, as push does (the transient foreign table would check it too).
    let _ = server_for_caller(server).or_report();
    let source = match &query {
        Some(q) => format!("{server}:({q})"),
        None => format!("{server}.{remote}"),
    };
    let name = name.map(str::to_string).unwrap_or_else(|| format!("pull {source} -> {target}"));
    let started = runs::now_text();
    let mut info = RunInfo { name: &name, direction: "pull", mode: mode.as_str(), server, source: &source, target, watermark_from: None };
    if !runs::lock_or_skip(&info, &started, wait).or_report() {
        return Some(0);
    }
    let prev = if since.is_some() { runs::last_watermark(&name).or_report() } else { None };
    info.watermark_from = prev.as_deref();
    let args = pull::PullArgs {
        server: server.to_string(),
        remote,
        query,
        target: target.to_string(),
        mode,
        key: key.map(str::to_string),
        since: since.map(str::to_string),
    };
    match runs::in_subtransaction(|| pull::run(&args, &name, prev.as_deref())) {
        Ok(outcome) => {
            runs::record(&info, &started, "succeeded", Some(&outcome), None).or_report();
            Some(outcome.rows)
        }
        Err(msg) => {
            runs::report_failure(&info, &started, &msg).or_report();
            None
        }
    }
}

fn rand_u32() -> u32 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    // SAFETY: MyProcPid is set once at backend start and only read here (backend thread).
    n ^ unsafe { pg_sys::MyProcPid as u32 }.rotate_left(16)
}

extension_sql!(
    r#"
CREATE TABLE carto.sync_runs (
    run_id          bigserial PRIMARY KEY,
    name            text NOT NULL,
    direction       text NOT NULL CHECK (direction IN ('push', 'pull')),
    mode            text NOT NULL,
    server          text NOT NULL,
    source          text NOT NULL,
    target          text NOT NULL,
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz,
    rows            bigint,
    status          text NOT NULL CHECK (status IN ('succeeded', 'failed', 'skipped')),
    error           text,
    watermark_from  text,
    watermark_to    text,
    run_by          name NOT NULL DEFAULT current_user,
    role_id         oid NOT NULL DEFAULT 0   -- the role that ran it: it alone (and its members) sees the row
);
CREATE INDEX sync_runs_name_idx ON carto.sync_runs (role_id, name, run_id DESC);
COMMENT ON TABLE carto.sync_runs IS 'One row per carto.push / carto.pull run';
SELECT pg_catalog.pg_extension_config_dump('carto.sync_runs', '');
SELECT pg_catalog.pg_extension_config_dump('carto.sync_runs_run_id_seq', '');
-- Each role sees its own runs; only carto.push / carto.pull write them (as the table's owner,
-- crate::pg::bookkeeping), so no role can forge a run or a watermark for another one.
ALTER TABLE carto.sync_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY sync_runs_own_rows ON carto.sync_runs FOR SELECT USING (pg_catalog.pg_has_role(role_id, 'USAGE'));

-- One row per (role, sync): the run holds a row lock on it (crate::sync::runs::lock). Nobody but
-- its owner may read, write or lock it.
CREATE TABLE carto.sync_locks (
    role_id oid NOT NULL,
    name    text NOT NULL,
    PRIMARY KEY (role_id, name)
);
COMMENT ON TABLE carto.sync_locks IS 'Row locks that keep two runs of one sync of one role apart (internal)';
ALTER TABLE carto.sync_locks ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON carto.sync_locks FROM PUBLIC;

CREATE VIEW carto.sync_status WITH (security_invoker = true) AS
SELECT DISTINCT ON (r.name, r.role_id)
       r.name, r.direction, r.mode, r.server, r.source, r.target,
       r.status AS last_status, r.started_at AS last_started_at, r.finished_at AS last_finished_at,
       r.rows AS last_rows, r.error AS last_error,
       (SELECT max(s.finished_at) FROM carto.sync_runs s WHERE s.role_id = r.role_id AND s.name = r.name AND s.status = 'succeeded') AS last_success_at,
       (SELECT s.watermark_to FROM carto.sync_runs s WHERE s.role_id = r.role_id AND s.name = r.name AND s.status = 'succeeded' ORDER BY s.run_id DESC LIMIT 1) AS watermark,
       r.run_by
FROM carto.sync_runs r
ORDER BY r.name, r.role_id, r.run_id DESC;
COMMENT ON VIEW carto.sync_status IS 'The latest state of every sync';

-- The SQL-facing signatures (named arguments; CREATE is a reserved word, hence create_table).
CREATE FUNCTION carto.push(
    source text, server text, remote_table text,
    mode text DEFAULT 'append', key text DEFAULT NULL, since text DEFAULT NULL,
    create_table boolean DEFAULT true, cartodbfy boolean DEFAULT true, lnglat text[] DEFAULT NULL,
    name text DEFAULT NULL, wait boolean DEFAULT false)
RETURNS bigint LANGUAGE sql VOLATILE PARALLEL UNSAFE
AS $$ SELECT carto._push($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) $$;

-- remote is a table name ([schema.]table); a query is pulled only when passed as query (remote NULL).
CREATE FUNCTION carto.pull(
    server text, remote text, target text,
    mode text DEFAULT 'replace', key text DEFAULT NULL, since text DEFAULT NULL,
    name text DEFAULT NULL, wait boolean DEFAULT false, query text DEFAULT NULL)
RETURNS bigint LANGUAGE sql VOLATILE PARALLEL UNSAFE
AS $$ SELECT carto._pull($1, $2, $3, $4, $5, $6, $7, $8, $9) $$;

REVOKE ALL ON FUNCTION carto.push(text, text, text, text, text, text, boolean, boolean, text[], text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION carto.pull(text, text, text, text, text, text, text, boolean, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION carto._push(text, text, text, text, text, text, boolean, boolean, text[], text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION carto._pull(text, text, text, text, text, text, text, boolean, text) FROM PUBLIC;
"#,
    name = "sync_objects",
    requires = [push_impl, pull_impl]
);
