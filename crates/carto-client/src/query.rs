//! `/api/v2/sql` queries (format json).

use serde_json::{Map, Value};

use crate::client::{Client, Retry};
use crate::error::{Endpoint, Error, ErrorKind, Result};
use crate::stats::RequestStats;

/// One entry of CARTO's `fields` member.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldInfo {
    /// CARTO's type: `string`, `number`, `boolean`, `date`, `geometry`, or a PostgreSQL type name; `[]` for arrays.
    pub r#type: String,
    /// `pgtype` when CARTO sends it.
    pub pgtype: Option<String>,
    pub wkbtype: Option<String>,
    pub dims: Option<i64>,
    pub srid: Option<i64>,
    /// The whole entry as sent.
    pub raw: Value,
}

/// A `/sql` JSON answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueryResponse {
    pub rows: Vec<Map<String, Value>>,
    /// In the order CARTO sent them.
    pub fields: Vec<(String, FieldInfo)>,
    /// Rows of the last statement, or rows affected by a write.
    pub total_rows: u64,
    /// Seconds, as CARTO measured.
    pub time: f64,
    pub notices: Vec<String>,
    pub warnings: Vec<String>,
    pub stats: RequestStats,
}

impl QueryResponse {
    /// The rows of an answer and what it said besides them.
    pub(crate) fn from_summary(rows: Vec<Map<String, Value>>, s: crate::QuerySummary) -> Self {
        QueryResponse {
            rows,
            fields: s.fields,
            total_rows: s.total_rows,
            time: s.time,
            notices: s.notices,
            warnings: s.warnings,
            stats: s.stats,
        }
    }

    /// The rows as text, for queries that cast every column to text: one `Vec` per row with the values of
    /// `columns` in that order (`None` for NULL). A value that is neither a string nor null, or a missing
    /// column, is an error.
    pub fn text_rows(&self, columns: &[&str]) -> Result<Vec<Vec<Option<String>>>> {
        let mut out = Vec::with_capacity(self.rows.len());
        for (rn, row) in self.rows.iter().enumerate() {
            let mut r = Vec::with_capacity(columns.len());
            for c in columns {
                r.push(text_value(row.get(*c).cloned(), c, rn as u64 + 1)?);
            }
            out.push(r);
        }
        Ok(out)
    }
}

/// Parse a whole 200 body of `/sql` with the streaming reader. An `error` member is an Err, whatever else the
/// body holds.
/// One value of a text row: a string, NULL, or an error naming the row (1-based) and the column.
pub(crate) fn text_value(v: Option<Value>, column: &str, row: u64) -> Result<Option<String>> {
    match v {
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Null) => Ok(None),
        None => Err(Error::new(ErrorKind::Protocol, Endpoint::Sql, format!("row {row} has no column {column:?}"))),
        Some(other) => Err(Error::new(
            ErrorKind::Protocol,
            Endpoint::Sql,
            format!(
                "column {column:?} of row {row} is a JSON {} where text was expected (cast it to text)",
                json_kind(&other)
            ),
        )),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
pub(crate) fn parse_query_body(body: &[u8]) -> Result<QueryResponse> {
    let mut sp = crate::sql_stream::Splitter::new(crate::sql_stream::DEFAULT_MAX_ROW_BYTES);
    let mut raw = Vec::new();
    sp.push(&bytes::Bytes::copy_from_slice(body), &mut raw)?;
    let s = sp.finish()?;
    let rows = raw.iter().map(|r| r.to_map()).collect::<Result<Vec<_>>>()?;
    Ok(QueryResponse::from_summary(rows, s))
}

impl Client {
    /// Run SQL through `POST /api/v2/sql` (form body, format json). Not retried except for a 429 with
    /// `Retry-After` (CARTO refused it before running it): use [`Client::query_readonly`] for reads.
    pub async fn query(&self, sql: &str) -> Result<QueryResponse> {
        self.query_with(sql, false).await
    }

    /// Like [`Client::query`], for statements that change nothing: also retried after transport failures and
    /// 502/503/504, up to `max_retries`.
    pub async fn query_readonly(&self, sql: &str) -> Result<QueryResponse> {
        self.query_with(sql, true).await
    }

    /// [`Client::query`] or [`Client::query_readonly`] by a flag. The answer is read as it streams (the same
    /// reader as [`Client::query_rows`]) and its rows are parsed as they come, so the body itself is never
    /// held; at most `max_response_bytes` of it are read (a Protocol error beyond), within `request_timeout`.
    /// For reads, a body cut anywhere is retried (no row was handed out yet).
    pub async fn query_with(&self, sql: &str, read_only: bool) -> Result<QueryResponse> {
        let policy = if read_only { Retry::Read } else { Retry::RateLimitOnly };
        let timeout = self.inner.cfg.request_timeout;
        let mut stats = RequestStats::default();
        let mut r = self
            .retry_loop(policy, &mut stats, || {
                let rb = self.sql_request(sql);
                async move {
                    let mut st = RequestStats::default();
                    let r = self.collect_once(rb, timeout, &mut st).await;
                    (r, st)
                }
            })
            .await?;
        stats.bytes_sent += sql.len() as u64;
        r.stats = stats;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn parses() {
        let r = parse_query_body(
            br#"{"rows":[{"b":"x","a":null}],"time":0.5,"fields":{"b":{"type":"string","pgtype":"text"},"a":{"type":"geometry","wkbtype":"Point","dims":2,"srid":4326}},"total_rows":1,"warnings":["w"],"notices":["n"]}"#,
        )
        .unwrap();
        assert_eq!(r.fields.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(r.fields[1].1.srid, Some(4326));
        assert_eq!(r.fields[0].1.pgtype.as_deref(), Some("text"));
        assert_eq!(r.total_rows, 1);
        assert_eq!(r.warnings, ["w"]);
        assert_eq!(r.notices, ["n"]);
        assert_eq!(r.text_rows(&["a", "b"]).unwrap(), vec![vec![None, Some("x".to_string())]]);
        assert!(r.text_rows(&["zz"]).is_err());
        let r = parse_query_body(br#"{"rows":[{"n":1}],"fields":{},"total_rows":1}"#).unwrap();
        assert_eq!(r.text_rows(&["n"]).unwrap_err().kind, ErrorKind::Protocol);
    }

    #[test]
    fn error_in_200() {
        let e = parse_query_body(br#"{"rows":[{"a":1}],"time":1,"error":["division by zero"]}"#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadRequest);
        assert_eq!(e.message, "division by zero");
        assert_eq!(e.status, Some(200));
        // A body cut by an appended error.
        let e = parse_query_body(br#"{"rows":[{"a":1},{"error":["canceling statement due to statement timeout"]}"#)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::RemoteTimeout);
        let e = parse_query_body(b"<html>bad gateway</html>").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Protocol);
    }
}
