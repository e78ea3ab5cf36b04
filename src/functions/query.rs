//! `carto.query(server, sql) → setof jsonb` and `carto.exec(server, sql) → bigint`: any SQL through
//! CARTO's `/sql` endpoint.

use carto_client::{QueryRowStream, RawRow};
use pgrx::prelude::*;
use pgrx::pgrx_sql_entity_graph::metadata::{ArgumentError, Returns, ReturnsError, SqlMapping, SqlTranslatable};

use crate::functions::{relay_messages, relay_summary, remote};
use crate::pg::encoding::DbText;
use crate::pg::error::{FdwError, FdwResult, OrReport};
use crate::pg::runtime::block_on;

/// Runs `sql` on CARTO through `/sql` (one POST; several `;`-separated statements run in one
/// transaction there) and returns each row as a jsonb object, with CARTO's JSON values (geometries as
/// hex EWKB, numbers as numbers, dates as ISO-8601 UTC strings). An error, also one CARTO appends to a
/// 200 answer, is an ERROR with CARTO's message, detail and hint. Not retried (the SQL may write),
/// except after a 429 with Retry-After. STRICT, VOLATILE, PARALLEL UNSAFE.
///
/// The answer streams: each row goes from the network to jsonb's input function as its JSON text, one
/// at a time (value per call; in FROM, PostgreSQL keeps the rows in a tuplestore that spills to disk
/// past work_mem), so memory stays flat however many rows CARTO sends.
#[pg_extern(volatile, parallel_unsafe, strict)]
fn query(server: DbText, sql: DbText) -> SetOfIterator<'static, RowJson> {
    // Text arguments are read in the database encoding and converted to UTF-8 (crate::pg::encoding).
    crate::fdw::remote_catalog::forget_all();
    let rows = Rows::start(&server, &sql).or_report();
    SetOfIterator::new(rows)
}

/// The rows of a running carto.query.
struct Rows {
    stream: QueryRowStream,
    server: String,
    ended: bool,
}

impl Rows {
    fn start(server: &str, sql: &str) -> FdwResult<Rows> {
        let r = remote(server)?;
        let stream = block_on(r.client.query_rows(sql, false))?.map_err(|e| context_error(e, server))?;
        Ok(Rows { stream, server: server.to_string(), ended: false })
    }

    fn next_row(&mut self) -> FdwResult<Option<RawRow>> {
        if self.ended {
            return Ok(None);
        }
        // Rows already received need no wait (and no trip through the runtime).
        if let Some(row) = self.stream.next_ready() {
            return Ok(Some(row));
        }
        match block_on(self.stream.next_row())?.map_err(|e| context_error(e, &self.server))? {
            Some(row) => Ok(Some(row)),
            None => {
                self.ended = true;
                if let Some(summary) = self.stream.summary() {
                    relay_summary(summary);
                }
                Ok(None)
            }
        }
    }
}

impl Iterator for Rows {
    type Item = RowJson;
    fn next(&mut self) -> Option<RowJson> {
        self.next_row().or_report().map(|row| RowJson(row.into_bytes()))
    }
}

fn context_error(e: carto_client::Error, server: &str) -> FdwError {
    FdwError::remote(e, format!("running carto.query on server \"{server}\""))
}

/// One row of CARTO's answer as its JSON text, turned into jsonb by jsonb's own input function (after
/// conversion from UTF-8 to the database encoding): no JSON value tree in between.
pub struct RowJson(carto_client::Bytes);

impl RowJson {
    /// A JSON value (UTF-8, as CARTO's) returned as jsonb the same way: converted to the database encoding.
    pub fn from_value(v: &serde_json::Value) -> RowJson {
        RowJson(carto_client::Bytes::from(serde_json::to_vec(v).unwrap_or_default()))
    }
}

thread_local! {
    /// jsonb's input function, looked up once per backend (a built-in: never invalidated).
    static JSONB_IN: std::cell::RefCell<Option<Box<pg_sys::FmgrInfo>>> = const { std::cell::RefCell::new(None) };
}

impl RowJson {
    /// The row as a jsonb datum, through jsonb's own input function.
    fn to_jsonb(&self) -> pg_sys::Datum {
        let text = crate::pg::text::utf8_to_server_cstring(&self.0, "a row of carto.query").or_report();
        JSONB_IN.with(|cell| {
            let mut cell = cell.borrow_mut();
            let finfo = cell.get_or_insert_with(|| {
                // SAFETY: an all-zero FmgrInfo is what fmgr_info_cxt fills; a built-in function, its
                // lookup allocates in TopMemoryContext, which lives as long as the backend.
                unsafe {
                    let mut f: Box<pg_sys::FmgrInfo> = Box::new(std::mem::zeroed());
                    pg_sys::fmgr_info_cxt(pg_sys::Oid::from(pg_sys::F_JSONB_IN), f.as_mut(), pg_sys::TopMemoryContext);
                    f
                }
            });
            // SAFETY: backend thread; `text` is NUL-terminated in the database encoding; an invalid
            // JSON text raises an ERROR through the function manager.
            unsafe { pg_sys::InputFunctionCall(finfo.as_mut(), text.as_ptr().cast_mut(), pg_sys::JSONBOID, -1) }
        })
    }
}

// SAFETY: box_into returns the jsonb datum to the function being called, as BoxRet asks.
unsafe impl pgrx::callconv::BoxRet for RowJson {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut pgrx::callconv::FcInfo<'fcx>) -> pgrx::datum::Datum<'fcx> {
        // SAFETY: the datum goes straight back as this call's result.
        unsafe { fcinfo.return_raw_datum(self.to_jsonb()) }
    }
}

// SAFETY: RowJson is returned as jsonb, the type its into_datum makes.
unsafe impl SqlTranslatable for RowJson {
    fn argument_sql() -> Result<SqlMapping, ArgumentError> {
        Ok(SqlMapping::As("jsonb".into()))
    }
    fn return_sql() -> Result<Returns, ReturnsError> {
        Ok(Returns::One(SqlMapping::As("jsonb".into())))
    }
}

/// Runs `sql` on CARTO through `/sql` and returns CARTO's `total_rows`: the rows affected by a write
/// (of the last statement), or the rows a query returned. STRICT, VOLATILE, PARALLEL UNSAFE.
#[pg_extern(volatile, parallel_unsafe, strict)]
fn exec(server: DbText, sql: DbText) -> i64 {
    exec_sql(&server, &sql, "running carto.exec").or_report()
}

pub fn exec_sql(server: &str, sql: &str, what: &str) -> FdwResult<i64> {
    // The SQL may change any table: what this backend remembers of CARTO's catalogue is looked up again.
    crate::fdw::remote_catalog::forget_all();
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
