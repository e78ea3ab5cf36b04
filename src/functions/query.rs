//! `carto.query(server, sql) → setof jsonb` and `carto.exec(server, sql) → bigint`: any SQL through
//! CARTO's `/sql` endpoint.

use pgrx::prelude::*;
use pgrx::JsonB;

use crate::functions::{relay_messages, remote};
use crate::pg::error::{FdwError, FdwResult, OrReport};
use crate::pg::runtime::block_on;

/// Runs `sql` on CARTO through `/sql` (one POST; several `;`-separated statements run in one
/// transaction there) and returns each row as a jsonb object, with CARTO's JSON values (geometries as
/// hex EWKB, numbers as numbers, dates as ISO-8601 UTC strings). An error, also one CARTO appends to a
/// 200 answer, is an ERROR with CARTO's message, detail and hint. Not retried (the SQL may write),
/// except after a 429 with Retry-After. STRICT, VOLATILE, PARALLEL UNSAFE.
#[pg_extern(volatile, parallel_unsafe, strict)]
fn query(server: &str, sql: &str) -> SetOfIterator<'static, JsonB> {
    let rows = run(server, sql).or_report();
    SetOfIterator::new(rows.into_iter().map(|m| JsonB(serde_json::Value::Object(m))))
}

fn run(server: &str, sql: &str) -> FdwResult<Vec<serde_json::Map<String, serde_json::Value>>> {
    let r = remote(server)?;
    let resp = block_on(r.client.query(sql))?
        .map_err(|e| FdwError::remote(e, format!("running carto.query on server \"{server}\"")))?;
    relay_messages(&resp);
    Ok(resp.rows)
}

/// Runs `sql` on CARTO through `/sql` and returns CARTO's `total_rows`: the rows affected by a write
/// (of the last statement), or the rows a query returned. STRICT, VOLATILE, PARALLEL UNSAFE.
#[pg_extern(volatile, parallel_unsafe, strict)]
fn exec(server: &str, sql: &str) -> i64 {
    exec_sql(server, sql, "running carto.exec").or_report()
}

pub fn exec_sql(server: &str, sql: &str, what: &str) -> FdwResult<i64> {
    let r = remote(server)?;
    let resp = block_on(r.client.query(sql))?
        .map_err(|e| FdwError::remote(e, format!("{what} on server \"{server}\"")))?;
    relay_messages(&resp);
    Ok(i64::try_from(resp.total_rows).unwrap_or(i64::MAX))
}

extension_sql!(
    r#"
REVOKE EXECUTE ON FUNCTION carto.query(text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION carto.exec(text, text) FROM PUBLIC;
COMMENT ON FUNCTION carto.query(text, text) IS 'Run SQL on CARTO through a carto_fdw server; each row as a jsonb object';
COMMENT ON FUNCTION carto.exec(text, text) IS 'Run SQL on CARTO through a carto_fdw server; returns total_rows (affected rows)';
"#,
    name = "carto_query_grants",
    requires = [query, exec]
);
