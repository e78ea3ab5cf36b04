//! `GET|POST /api/v2/sql`: run `q` as the request's role and answer in CARTO's json, geojson or csv.
//!
//! Each statement of `q` is prepared first (for column types and typmods) and then run with the simple
//! protocol (for PostgreSQL's text values, which is what node-postgres parses). Several statements run
//! as PostgreSQL runs them in one simple query (what CARTO sends): one implicit transaction, which a
//! client's BEGIN turns explicit, a COMMIT/ROLLBACK ends, and a new one starts after it. JSON is streamed: once the first row has been sent (configurable threshold), an
//! error can no longer change the status and is appended as `"error":[...]` in a 200 body, as CARTO does.
use crate::errors::ApiError;
use crate::json_values::{field_json, json_str, write_value, ColInfo};
use crate::pool::Pooled;
use crate::state::Ctx;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_postgres::{NoTls, SimpleQueryMessage};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    Json,
    GeoJson,
    Csv,
}

impl Format {
    fn ext(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::GeoJson => "geojson",
            Format::Csv => "csv",
        }
    }
    fn content_type(self) -> &'static str {
        match self {
            Format::Json | Format::GeoJson => "application/json; charset=utf-8",
            Format::Csv => "text/csv; charset=utf-8; header=present",
        }
    }
}

/// Column name used by the geojson wrapper for the GeoJSON text of the geometry.
const GEOJSON_COL: &str = "__carto_sim_geojson";

pub async fn handle(ctx: Ctx) -> Response {
    let q = ctx.params.get("q").map(|s| s.trim().to_string()).unwrap_or_default();
    if q.is_empty() {
        return ApiError::bad_request("You must indicate a sql query").into_response();
    }
    let format_param = ctx.params.get("format").map(|s| s.to_ascii_lowercase());
    let format = match format_param.as_deref().unwrap_or("json") {
        "json" | "" => Format::Json,
        "geojson" => Format::GeoJson,
        "csv" => Format::Csv,
        other => return ApiError::bad_request(format!("Invalid format: {other}")).into_response(),
    };
    let skipfields: Vec<String> = ctx
        .params
        .get("skipfields")
        .map(|s| s.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect())
        .unwrap_or_default();
    let mut stmts = crate::sql_split::split(&q);
    if stmts.is_empty() {
        stmts.push(q.clone());
    }
    // rows_per_page/page: CARTO wraps a single query in a LIMIT/OFFSET window (page is 0-based).
    if let (Some(rpp), 1) = (ctx.params.get("rows_per_page").and_then(|s| s.parse::<u64>().ok()), stmts.len()) {
        let page = ctx.params.get("page").and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        stmts[0] = format!("SELECT * FROM ({}) AS cdbq_1 LIMIT {} OFFSET {}", stmts[0], rpp, page * rpp);
    }
    let gn = ctx.params.get("gn").cloned().unwrap_or_else(|| "the_geom".into());
    if format == Format::GeoJson {
        let dp = ctx.params.get("dp").and_then(|s| s.parse::<u32>().ok()).unwrap_or(6);
        if let Some(last) = stmts.last_mut() {
            *last = format!(
                "SELECT *, ST_AsGeoJSON({}, {}) AS {} FROM ({}) AS cdbq",
                crate::accounts::quote_ident(&gn),
                dp,
                GEOJSON_COL,
                last
            );
        }
    }

    let state = ctx.state.clone();
    let mut conn = match state.pool.get(&ctx.account.database, &ctx.auth.role).await {
        Ok(c) => c,
        Err(e) => return ApiError::connect(&e).into_response(),
    };
    // CARTO sets the user's statement timeout on every query (so a plain SET of it does not survive).
    let timeout = state.statement_timeout_ms(&ctx.account.name);
    if let Err(e) = conn.client.batch_execute(&format!("SET statement_timeout = {timeout}")).await {
        return ApiError::from_pg(&e).into_response();
    }
    conn.drain_notices();

    let threshold = if format == Format::Json { state.limits().sql_stream_threshold_bytes } else { usize::MAX };
    let (tx, mut rx) = mpsc::channel::<Msg>(4);
    let job = Run { stmts, format, skipfields, gn, threshold, tx, record: ctx.record.clone() };
    tokio::spawn(job.run(conn));

    let filename = ctx.params.get("filename").cloned();
    // A client that leaves before the first byte: dropping `rx` makes the query's task cancel it.
    let gone = ctx.peer_gone.clone();
    let first = tokio::select! {
        m = rx.recv() => m,
        _ = async move { match gone { Some(g) => g.wait().await, None => std::future::pending::<()>().await } } => {
            drop(rx);
            return ApiError::new(StatusCode::BAD_REQUEST, "client closed the connection").into_response();
        }
    };
    let first = match first {
        Some(Msg::Data(b)) => b,
        Some(Msg::Fail(e)) => return e.into_response(),
        None => return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "query ended unexpectedly").into_response(),
    };
    let rest = futures_util::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Some(Msg::Data(b)) => Some((Ok::<Bytes, std::io::Error>(b), rx)),
            _ => None,
        }
    });
    let body = Body::from_stream(futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(first) }).chain(rest));
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static(format.content_type()));
    let inline = format_param.is_none() && filename.is_none();
    let disp = format!(
        "{}; filename={}.{}; modification-date=\"{}\";",
        if inline { "inline" } else { "attachment" },
        urlencode(filename.as_deref().unwrap_or("cartodb-query")),
        format.ext(),
        chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT")
    );
    if let Ok(v) = HeaderValue::from_str(&disp) {
        h.insert("content-disposition", v);
    }
    h.insert("cache-control", HeaderValue::from_static("no-cache,max-age=31536000,must-revalidate,public"));
    r
}

pub fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20")
}

enum Msg {
    Data(Bytes),
    Fail(ApiError),
}

struct Run {
    stmts: Vec<String>,
    format: Format,
    skipfields: Vec<String>,
    gn: String,
    threshold: usize,
    tx: mpsc::Sender<Msg>,
    record: std::sync::Arc<crate::request_log::Record>,
}

/// Output slots of a statement: duplicate names collapse onto the first position, skipped fields vanish.
struct Layout {
    cols: Vec<ColInfo>,
    /// For each column, its slot (None = skipped).
    slot_of: Vec<Option<usize>>,
    names: Vec<String>,
}

impl Layout {
    fn new(cols: Vec<ColInfo>, skip: &[String], drop_geo: Option<&str>) -> Layout {
        let mut names: Vec<String> = Vec::new();
        let mut slot_of = Vec::new();
        for c in &cols {
            if skip.contains(&c.name) || Some(c.name.as_str()) == drop_geo || c.name == GEOJSON_COL {
                slot_of.push(None);
                continue;
            }
            match names.iter().position(|n| n == &c.name) {
                Some(p) => slot_of.push(Some(p)),
                None => {
                    names.push(c.name.clone());
                    slot_of.push(Some(names.len() - 1));
                }
            }
        }
        Layout { cols, slot_of, names }
    }

    fn fields_json(&self) -> String {
        let mut per_slot: Vec<String> = vec![String::new(); self.names.len()];
        for (i, c) in self.cols.iter().enumerate() {
            if let Some(s) = self.slot_of[i] {
                per_slot[s] = field_json(c);
            }
        }
        let mut out = String::from("{");
        for (i, n) in self.names.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&json_str(n));
            out.push(':');
            out.push_str(&per_slot[i]);
        }
        out.push('}');
        out
    }

    fn row_object(&self, row: &tokio_postgres::SimpleQueryRow, out: &mut String) {
        let mut vals: Vec<String> = vec![String::new(); self.names.len()];
        for (i, c) in self.cols.iter().enumerate() {
            if let Some(s) = self.slot_of[i] {
                let mut v = String::new();
                write_value(&mut v, c, row.get(i));
                vals[s] = v;
            }
        }
        out.push('{');
        for (i, n) in self.names.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&json_str(n));
            out.push(':');
            out.push_str(&vals[i]);
        }
        out.push('}');
    }

    fn csv_header(&self, out: &mut String) {
        let cells: Vec<String> = self.names.iter().map(|n| csv_cell(n)).collect();
        out.push_str(&cells.join(","));
        // CARTO's csv (ogr2ogr's) ends every line, the header's too, with CRLF.
        out.push_str("\r\n");
    }

    fn csv_row(&self, row: &tokio_postgres::SimpleQueryRow, out: &mut String) {
        let mut vals: Vec<String> = vec![String::new(); self.names.len()];
        for (i, c) in self.cols.iter().enumerate() {
            if let Some(s) = self.slot_of[i] {
                // NULL and '' look the same (as in CARTO's ogr2ogr output).
                vals[s] = csv_cell(&as_text_cast(c.oid, row.get(i).unwrap_or("")));
            }
        }
        out.push_str(&vals.join(","));
        out.push_str("\r\n");
    }
}

/// A value as `column::text` prints it: CARTO's csv (ogr2ogr) selects every column cast to text, which differs
/// from PostgreSQL's output function for three types: boolean (`true`/`false`, not `t`/`f`), char(n) (its
/// padding dropped) and inet (the mask length always shown). Arrays keep their elements' output (`{t,f}`).
fn as_text_cast(oid: u32, v: &str) -> std::borrow::Cow<'_, str> {
    match (oid, v) {
        (16, "t") => "true".into(),
        (16, "f") => "false".into(),
        (1042, _) => v.trim_end_matches(' ').into(),
        (869, _) if !v.is_empty() && !v.contains('/') => format!("{v}/{}", if v.contains(':') { 128 } else { 32 }).into(),
        _ => v.into(),
    }
}

fn csv_cell(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) || v.starts_with(' ') || v.ends_with(' ') {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

/// Why a statement's run stopped early.
enum Stop {
    Failed(ApiError),
    ClientGone,
}

impl Run {
    async fn send(&self, m: Msg) -> bool {
        self.tx.send(m).await.is_ok()
    }

    async fn run(self, mut conn: Pooled) {
        let start = Instant::now();
        let multi = self.stmts.len() > 1;
        let mut answer = Answer::new(self.format);
        let mut layout = Layout::new(Vec::new(), &[], None);
        let mut last_count: Option<u64> = None;
        let mut error: Option<ApiError> = None;
        // Notices and warnings, in order (PostgreSQL's and those the emulated implicit block adds).
        let mut notes: Vec<(String, String)> = Vec::new();
        let mut block = Block::default();
        if multi {
            if let Err(e) = block.begin(&conn).await {
                let _ = self.send(Msg::Fail(e)).await;
                return;
            }
        }
        for (i, stmt) in self.stmts.iter().enumerate() {
            let kind = if multi { tx_kind(stmt) } else { TxKind::Other };
            // A BEGIN that takes over the implicit block is a statement without columns.
            let taken_over = block.taken_over_by(&kind);
            if taken_over {
                layout = Layout::new(Vec::new(), &[], None);
                last_count = None;
            }
            if let Err(e) = block.before(&kind, &conn).await {
                error = Some(e);
                break;
            }
            if taken_over {
                continue;
            }
            match self.statement(&conn, stmt, &mut layout, &mut last_count, &mut answer).await {
                Ok(()) => {}
                Err(Stop::Failed(e)) => {
                    error = Some(e);
                    break;
                }
                Err(Stop::ClientGone) => {
                    // CARTO cancels the query of a client that went away; the connection is not reused.
                    let _ = conn.cancel.cancel_query(NoTls).await;
                    self.record.abort("client closed the connection");
                    return;
                }
            }
            notes.extend(conn.drain_notices().iter().map(|n| (n.severity().to_string(), n.message().to_string())));
            if let Err(e) = block.after(&kind, i + 1 < self.stmts.len(), &conn, &mut notes).await {
                error = Some(e);
                break;
            }
        }
        block.close(&conn, &mut error).await;
        notes.extend(conn.drain_notices().iter().map(|n| (n.severity().to_string(), n.message().to_string())));
        // The connection is clean (statement ended, transaction closed): back to the pool.
        conn.release();

        if let Some(e) = &error {
            if !answer.started {
                let _ = self.send(Msg::Fail(e.clone())).await;
                return;
            }
        }
        let tail = answer.finish(&layout, error.as_ref(), last_count, start.elapsed(), notes);
        let _ = self.send(Msg::Data(tail)).await;
    }

    /// Run one statement and write its rows (sending them once due); `layout` and `last_count` become its own.
    async fn statement(&self, conn: &Pooled, stmt: &str, layout: &mut Layout, last_count: &mut Option<u64>, answer: &mut Answer) -> Result<(), Stop> {
        let failed = |e: tokio_postgres::Error| Stop::Failed(ApiError::from_pg(&e));
        let prepared = conn.client.prepare(stmt).await.map_err(failed)?;
        let cols = prepared.columns().iter().map(|c| ColInfo::from_column(c.name(), c.type_(), c.type_modifier())).collect();
        let drop_geo = if self.format == Format::GeoJson { Some(self.gn.as_str()) } else { None };
        *layout = Layout::new(cols, &self.skipfields, drop_geo);
        *last_count = None;
        let stream = conn.client.simple_query_raw(stmt).await.map_err(failed)?;
        futures_util::pin_mut!(stream);
        loop {
            // A client that goes away while PostgreSQL is still working gets its query cancelled
            // now, not when the first row would be sent (CARTO's server sees the socket close).
            let next = tokio::select! {
                m = stream.next() => m,
                _ = self.tx.closed() => return Err(Stop::ClientGone),
            };
            let Some(m) = next else { return Ok(()) };
            match m.map_err(failed)? {
                SimpleQueryMessage::Row(row) => {
                    if layout.cols.len() != row.len() {
                        // Should not happen; fall back to the row's own names, as text.
                        let cols = row
                            .columns()
                            .iter()
                            .map(|c| ColInfo { name: c.name().to_string(), oid: 25, elem: None, cname: Some("text".into()), typmod: -1 })
                            .collect();
                        *layout = Layout::new(cols, &self.skipfields, drop_geo);
                    }
                    answer.push_row(layout, &row);
                    if answer.due(self.threshold) && !self.send(Msg::Data(answer.take())).await {
                        return Err(Stop::ClientGone);
                    }
                }
                SimpleQueryMessage::CommandComplete(n) => *last_count = Some(n),
                _ => {}
            }
        }
    }
}

/// The answer as it is written: the format's framing and the rows; `out` holds what is not sent yet.
struct Answer {
    format: Format,
    out: String,
    /// Whether a part went out (the 200 is committed: an error can only be appended).
    started: bool,
    /// Rows written.
    total: u64,
    csv_header_done: bool,
}

impl Answer {
    fn new(format: Format) -> Answer {
        let out = match format {
            Format::Json => "{\"rows\":[".to_string(),
            Format::GeoJson => "{\"type\": \"FeatureCollection\", \"features\": [".to_string(),
            Format::Csv => String::new(),
        };
        Answer { format, out, started: false, total: 0, csv_header_done: false }
    }

    fn push_row(&mut self, layout: &Layout, row: &tokio_postgres::SimpleQueryRow) {
        let out = &mut self.out;
        match self.format {
            Format::Json => {
                if self.total > 0 {
                    out.push(',');
                }
                layout.row_object(row, out);
            }
            Format::GeoJson => {
                if self.total > 0 {
                    out.push(',');
                }
                let geo_idx = layout.cols.iter().position(|c| c.name == GEOJSON_COL);
                let geom = geo_idx.and_then(|i| row.get(i)).unwrap_or("null");
                out.push_str("{\"type\":\"Feature\",\"geometry\":");
                out.push_str(geom);
                out.push_str(",\"properties\":");
                layout.row_object(row, out);
                out.push('}');
            }
            Format::Csv => {
                if !self.csv_header_done {
                    layout.csv_header(out);
                    self.csv_header_done = true;
                }
                layout.csv_row(row, out);
            }
        }
        self.total += 1;
    }

    /// Whether the rows written are to go out: the first time at `threshold` bytes, then in chunks of 64 KB.
    fn due(&self, threshold: usize) -> bool {
        self.out.len() >= if self.started { 64 * 1024 } else { threshold }
    }

    fn take(&mut self) -> Bytes {
        self.started = true;
        Bytes::from(std::mem::take(&mut self.out))
    }

    /// The rest of the answer: csv's header when no row came; JSON's time, fields (of the last statement),
    /// total_rows, the error (appended after rows already sent) and the notices grouped by severity.
    fn finish(mut self, layout: &Layout, error: Option<&ApiError>, last_count: Option<u64>, elapsed: std::time::Duration, notes: Vec<(String, String)>) -> Bytes {
        let out = &mut self.out;
        match self.format {
            Format::Json => {
                let ms = elapsed.as_millis() as f64 / 1000.0;
                let total_rows = if error.is_some() { self.total } else { last_count.filter(|n| *n > 0).unwrap_or(self.total) };
                out.push_str(&format!(
                    "],\"time\":{},\"fields\":{},\"total_rows\":{}",
                    crate::json_values::js_number(ms),
                    layout.fields_json(),
                    total_rows
                ));
                if let Some(e) = error {
                    out.push_str(",\"error\":");
                    out.push_str(&serde_json::Value::Array(vec![serde_json::Value::String(e.message())]).to_string());
                }
                // Notices grouped by severity: "notices", "warnings", ...
                let mut groups: Vec<(String, Vec<String>)> = Vec::new();
                for (severity, message) in notes {
                    let key = format!("{}s", severity.to_ascii_lowercase());
                    match groups.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, v)) => v.push(message),
                        None => groups.push((key, vec![message])),
                    }
                }
                for (k, v) in groups {
                    out.push_str(&format!(",{}:{}", json_str(&k), serde_json::to_string(&v).unwrap_or_else(|_| "[]".into())));
                }
                out.push('}');
            }
            Format::GeoJson => out.push_str("]}"),
            Format::Csv if !self.csv_header_done => layout.csv_header(out),
            Format::Csv => {}
        }
        Bytes::from(self.out)
    }
}

/// PostgreSQL's implicit transaction block around a multi-statement `q` (the sim's own BEGIN), which a client's
/// BEGIN makes explicit and a COMMIT/ROLLBACK ends.
#[derive(Default)]
struct Block {
    /// A transaction is open.
    in_tx: bool,
    /// The client's BEGIN made it explicit.
    explicit: bool,
}

impl Block {
    async fn begin(&mut self, conn: &Pooled) -> Result<(), ApiError> {
        conn.client.batch_execute("BEGIN").await.map_err(|e| ApiError::from_pg(&e))?;
        self.in_tx = true;
        Ok(())
    }

    /// Whether a client's BEGIN takes over the implicit block (silently: it is not run).
    fn taken_over_by(&self, kind: &TxKind) -> bool {
        self.in_tx && !self.explicit && matches!(kind, TxKind::Begin(_))
    }

    /// Before a statement: a BEGIN taking over applies its transaction modes; inside an implicit block,
    /// `... AND CHAIN` and savepoints fail as PostgreSQL's do.
    async fn before(&mut self, kind: &TxKind, conn: &Pooled) -> Result<(), ApiError> {
        if !self.in_tx || self.explicit {
            return Ok(());
        }
        match kind {
            TxKind::Begin(modes) => {
                self.explicit = true;
                if !modes.is_empty() {
                    conn.client.batch_execute(&format!("SET TRANSACTION {modes}")).await.map_err(|e| ApiError::from_pg(&e))?;
                }
                Ok(())
            }
            TxKind::End { commit, chain: true } => {
                let what = if *commit { "COMMIT" } else { "ROLLBACK" };
                Err(ApiError::bad_request(format!("{what} AND CHAIN can only be used in transaction blocks")))
            }
            TxKind::Savepoint(what) => Err(ApiError::bad_request(format!("{what} can only be used in transaction blocks"))),
            _ => Ok(()),
        }
    }

    /// After a statement: a COMMIT/ROLLBACK ends the block (an implicit one with PostgreSQL's warning); the
    /// statements after it (`more`) run in a new implicit block.
    async fn after(&mut self, kind: &TxKind, more: bool, conn: &Pooled, notes: &mut Vec<(String, String)>) -> Result<(), ApiError> {
        let TxKind::End { chain, .. } = kind else { return Ok(()) };
        if !self.explicit {
            notes.push(("WARNING".into(), "there is no transaction in progress".into()));
        }
        self.in_tx = self.explicit && *chain;
        self.explicit = self.in_tx;
        if !self.in_tx && more {
            self.begin(conn).await?;
        }
        Ok(())
    }

    /// At the end: what is still open is committed, or rolled back after an error.
    async fn close(&self, conn: &Pooled, error: &mut Option<ApiError>) {
        if !self.in_tx {
            return;
        }
        let end = if error.is_some() { "ROLLBACK" } else { "COMMIT" };
        if let Err(e) = conn.client.batch_execute(end).await {
            error.get_or_insert(ApiError::from_pg(&e));
        }
    }
}

/// How a statement of a multi-statement `q` acts on the transaction (PostgreSQL's transaction commands).
#[derive(Debug, Clone, PartialEq, Eq)]
enum TxKind {
    Other,
    /// BEGIN / START TRANSACTION, with the transaction modes that follow (may be empty).
    Begin(String),
    /// COMMIT / END (commit) or ROLLBACK / ABORT, optionally AND CHAIN.
    End { commit: bool, chain: bool },
    /// SAVEPOINT / RELEASE / ROLLBACK TO: the command's name as PostgreSQL's error gives it.
    Savepoint(&'static str),
}

/// Byte offset after whitespace and comments starting at `i`.
fn skip_blank(b: &[u8], mut i: usize) -> usize {
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if b[i..].starts_with(b"--") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0usize;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth = depth.saturating_sub(1);
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else {
            return i;
        }
    }
}

/// The words of `stmt` (lowercased, with the offset after each), up to `max` of them.
fn words(stmt: &str, max: usize) -> Vec<(String, usize)> {
    let b = stmt.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while out.len() < max {
        i = skip_blank(b, i);
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        if i == start {
            // Not a word (punctuation or the end).
            if i < b.len() {
                // (its offset stays before it: always a char boundary)
                out.push((if b[i].is_ascii() { (b[i] as char).to_string() } else { "?".into() }, i));
            }
            break;
        }
        out.push((stmt[start..i].to_ascii_lowercase(), i));
    }
    out
}

fn tx_kind(stmt: &str) -> TxKind {
    let w = words(stmt, 6);
    let word = |k: usize| w.get(k).map(|(s, _)| s.as_str());
    let rest_after = |k: usize| w.get(k).map(|(_, end)| stmt[*end..].trim()).unwrap_or("");
    match word(0) {
        Some("begin") => {
            let k = if matches!(word(1), Some("work" | "transaction")) { 1 } else { 0 };
            TxKind::Begin(rest_after(k).trim_end_matches(';').trim().to_string())
        }
        Some("start") if word(1) == Some("transaction") => TxKind::Begin(rest_after(1).trim_end_matches(';').trim().to_string()),
        Some("savepoint") => TxKind::Savepoint("SAVEPOINT"),
        Some("release") => TxKind::Savepoint("RELEASE SAVEPOINT"),
        Some(first @ ("commit" | "end" | "rollback" | "abort")) => {
            let commit = matches!(first, "commit" | "end");
            let mut k = 1;
            if matches!(word(k), Some("work" | "transaction")) {
                k += 1;
            }
            match (word(k), word(k + 1), word(k + 2)) {
                (None, _, _) => TxKind::End { commit, chain: false },
                (Some("to"), _, _) if first == "rollback" => TxKind::Savepoint("ROLLBACK TO SAVEPOINT"),
                (Some("and"), Some("chain"), None) => TxKind::End { commit, chain: true },
                (Some("and"), Some("no"), Some("chain")) if word(k + 3).is_none() => TxKind::End { commit, chain: false },
                // COMMIT PREPARED, syntax errors, ...: PostgreSQL's business.
                _ => TxKind::Other,
            }
        }
        _ => TxKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_commands() {
        assert_eq!(tx_kind("BEGIN"), TxKind::Begin(String::new()));
        assert_eq!(tx_kind(" /* c */ begin work"), TxKind::Begin(String::new()));
        assert_eq!(tx_kind("BEGIN ISOLATION LEVEL SERIALIZABLE"), TxKind::Begin("ISOLATION LEVEL SERIALIZABLE".into()));
        assert_eq!(tx_kind("start transaction read only"), TxKind::Begin("read only".into()));
        assert_eq!(tx_kind("START"), TxKind::Other);
        assert_eq!(tx_kind("COMMIT"), TxKind::End { commit: true, chain: false });
        assert_eq!(tx_kind("end transaction"), TxKind::End { commit: true, chain: false });
        assert_eq!(tx_kind("-- x\nROLLBACK WORK"), TxKind::End { commit: false, chain: false });
        assert_eq!(tx_kind("abort"), TxKind::End { commit: false, chain: false });
        assert_eq!(tx_kind("COMMIT AND CHAIN"), TxKind::End { commit: true, chain: true });
        assert_eq!(tx_kind("rollback and no chain"), TxKind::End { commit: false, chain: false });
        assert_eq!(tx_kind("ROLLBACK TO SAVEPOINT a"), TxKind::Savepoint("ROLLBACK TO SAVEPOINT"));
        assert_eq!(tx_kind("rollback to a"), TxKind::Savepoint("ROLLBACK TO SAVEPOINT"));
        assert_eq!(tx_kind("SAVEPOINT a"), TxKind::Savepoint("SAVEPOINT"));
        assert_eq!(tx_kind("RELEASE SAVEPOINT a"), TxKind::Savepoint("RELEASE SAVEPOINT"));
        assert_eq!(tx_kind("COMMIT PREPARED 'x'"), TxKind::Other);
        assert_eq!(tx_kind("commit junk"), TxKind::Other);
        assert_eq!(tx_kind("SELECT 1"), TxKind::Other);
        assert_eq!(tx_kind("begin_x()"), TxKind::Other);
        assert_eq!(tx_kind(""), TxKind::Other);
        assert_eq!(tx_kind("/* unterminated"), TxKind::Other);
    }
}
