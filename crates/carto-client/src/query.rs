//! `/api/v2/sql` queries (format json).

use serde_json::{Map, Value};

use crate::client::{Client, Retry};
use crate::error::{parse_error_object, Endpoint, Error, ErrorKind, Result};
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
    /// The rows as text, for queries that cast every column to text: one `Vec` per row with the values of
    /// `columns` in that order (`None` for NULL). A value that is neither a string nor null, or a missing
    /// column, is an error.
    pub fn text_rows(&self, columns: &[&str]) -> Result<Vec<Vec<Option<String>>>> {
        let mut out = Vec::with_capacity(self.rows.len());
        for (rn, row) in self.rows.iter().enumerate() {
            let mut r = Vec::with_capacity(columns.len());
            for c in columns {
                match row.get(*c) {
                    Some(Value::String(s)) => r.push(Some(s.clone())),
                    Some(Value::Null) => r.push(None),
                    None => {
                        return Err(Error::new(
                            ErrorKind::Protocol,
                            Endpoint::Sql,
                            format!("row {} has no column {c:?}", rn + 1),
                        ))
                    }
                    Some(other) => {
                        return Err(Error::new(
                            ErrorKind::Protocol,
                            Endpoint::Sql,
                            format!(
                                "column {c:?} of row {} is a JSON {} where text was expected (cast it to text)",
                                rn + 1,
                                json_kind(other)
                            ),
                        ))
                    }
                }
            }
            out.push(r);
        }
        Ok(out)
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

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => s.clone(),
                o => o.to_string(),
            })
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Parse a 200 body of `/sql`. An `error` member is an Err, whatever else the body holds.
pub(crate) fn parse_query_body(body: &[u8]) -> Result<QueryResponse> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        let mut err = Error::new(
            ErrorKind::Protocol,
            Endpoint::Sql,
            format!("malformed JSON from /sql: {e} (body starts {:?})", crate::error::body_excerpt(body)),
        );
        // A JSON body cut by an error that the server appended after streaming began.
        if let Some(i) = body.windows(9).rposition(|w| w == b"\"error\":[") {
            if let Some(start) = body[..i].iter().rposition(|&b| b == b'{') {
                if let Ok(Value::Object(o)) = serde_json::from_slice::<Value>(&body[start..]) {
                    if let Some(p) = parse_error_object(&o) {
                        err = Error::from_body_error(Endpoint::Sql, p);
                    }
                }
            }
        }
        err
    })?;
    let Value::Object(mut obj) = v else {
        return Err(Error::new(ErrorKind::Protocol, Endpoint::Sql, "the /sql answer is not a JSON object"));
    };
    if let Some(p) = parse_error_object(&obj) {
        return Err(Error::from_body_error(Endpoint::Sql, p));
    }
    let rows = match obj.remove("rows") {
        Some(Value::Array(a)) => {
            let mut rows = Vec::with_capacity(a.len());
            for r in a {
                match r {
                    Value::Object(m) => rows.push(m),
                    _ => return Err(Error::new(ErrorKind::Protocol, Endpoint::Sql, "a row is not a JSON object")),
                }
            }
            rows
        }
        None | Some(Value::Null) => Vec::new(),
        Some(_) => return Err(Error::new(ErrorKind::Protocol, Endpoint::Sql, "`rows` is not an array")),
    };
    let mut fields = Vec::new();
    if let Some(Value::Object(f)) = obj.get("fields") {
        for (name, info) in f {
            let fi = FieldInfo {
                r#type: match info.get("type") {
                    Some(Value::String(s)) => s.clone(),
                    Some(o) => o.to_string(),
                    None => String::new(),
                },
                pgtype: info.get("pgtype").and_then(Value::as_str).map(str::to_string),
                wkbtype: info.get("wkbtype").and_then(Value::as_str).map(str::to_string),
                dims: info.get("dims").and_then(Value::as_i64),
                srid: info.get("srid").and_then(Value::as_i64),
                raw: info.clone(),
            };
            fields.push((name.clone(), fi));
        }
    }
    let total_rows = obj.get("total_rows").and_then(Value::as_u64).unwrap_or(rows.len() as u64);
    let time = obj.get("time").and_then(Value::as_f64).unwrap_or(0.0);
    Ok(QueryResponse {
        rows,
        fields,
        total_rows,
        time,
        notices: strings(obj.get("notices")),
        warnings: strings(obj.get("warnings")),
        stats: RequestStats::default(),
    })
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

    /// [`Client::query`] or [`Client::query_readonly`] by a flag.
    pub async fn query_with(&self, sql: &str, read_only: bool) -> Result<QueryResponse> {
        let url = self.inner.cfg.endpoint_url(&[]);
        let policy = if read_only { Retry::Read } else { Retry::RateLimitOnly };
        let mut stats = RequestStats::default();
        let form = [("q", sql), ("format", "json")];
        let (_, body) = self
            .send_buffered(Endpoint::Sql, policy, &mut stats, || {
                self.request(reqwest::Method::POST, url.clone()).form(&form)
            })
            .await?;
        stats.bytes_sent += sql.len() as u64;
        let mut r = parse_query_body(&body).map_err(|mut e| {
            e.retries = stats.retries as u32;
            self.redact(e)
        })?;
        r.stats = stats;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
