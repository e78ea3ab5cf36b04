//! `/api/v2/sql` answers (format json) read as they stream: the one reader of CARTO's JSON answers, used by
//! [`Client::query_rows`] (rows one at a time) and by [`Client::query_with`] (rows collected).
//!
//! CARTO answers `{"rows":[{...},...],"time":..,"fields":{...},"total_rows":N}` (rows first, then the rest;
//! `notices`, `warnings` and, after an error once streaming had begun, `error` may follow). [`Splitter`] is
//! an incremental byte-level splitter over that object: it tracks strings, escapes and nesting depth, hands
//! out each element of the top-level `rows` array as its raw JSON bytes (a [`RawRow`]: a slice of the network
//! chunk when the row lies in one, a copy only when it spans chunks), and keeps every other top-level member
//! (bounded by [`MAX_MEMBERS_BYTES`]) to parse once the body has ended. It does not depend on member order.
//!
//! CARTO's errors are never taken as rows:
//! * an `error` member at top level (anywhere: before, between or after rows) makes the body's end an Err
//!   ([`Error::from_body_error`]: kinds such as RemoteTimeout); rows after an `error` member are dropped;
//! * a body cut by an appended `{"error":[...]}` object (the connection's error written into a half-sent
//!   body): a row is handed out only once the `,` or `]` after it arrived, and any byte that cannot follow
//!   turns the splitter into collecting the rest of the body (at most [`MAX_ERROR_TAIL`]); at the end the
//!   last `{` before the last `"error":[` must start CARTO's error JSON, else the answer is malformed.
//!
//! Rows handed out before a late error are a prefix of the result (as with COPY): a consumer knows the answer
//! is whole only when the end arrives without an error.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt as _, StreamExt as _};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::client::{Client, Retry};
use crate::error::{body_excerpt, parse_error_object, Endpoint, Error, ErrorKind, Result};
use crate::query::{text_value, FieldInfo, QueryResponse};
use crate::stats::{AtomicStats, RequestStats, StatsHandle};

/// The most bytes of top-level members other than `rows` (`fields`, `notices`, ...) kept until the end.
pub const MAX_MEMBERS_BYTES: usize = 16 << 20;
/// The most bytes kept after the answer stopped being well-formed JSON, to find CARTO's appended error in.
pub const MAX_ERROR_TAIL: usize = 1 << 20;
/// Default [`crate::ClientConfig::max_row_bytes`]: PostgreSQL's largest value (1 GiB - 1).
pub const DEFAULT_MAX_ROW_BYTES: usize = (1 << 30) - 1;
/// The longest member name kept.
const MAX_KEY: usize = 64 * 1024;
/// Bytes of the body's start kept for messages.
const HEAD_KEEP: usize = 512;
/// Rows of this size or more are parsed only after a fallible allocation of twice their size succeeded.
const PROBE_FROM: usize = 1 << 20;
/// Rows go to the caller in batches of about this many bytes (fewer as soon as the channel has room).
const BATCH_TARGET: usize = 64 * 1024;

fn protocol(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Protocol, Endpoint::Sql, message).with_status(200)
}

/// One element of the answer's `rows` array: the raw JSON text of one row object, as CARTO sent it.
/// Its bytes are delimited, not validated: [`RawRow::to_map`] and [`RawRow::text_row`] parse them.
#[derive(Clone, PartialEq, Eq)]
pub struct RawRow {
    bytes: Bytes,
    index: u64,
}

impl std::fmt::Debug for RawRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawRow({}: {:?})", self.index, String::from_utf8_lossy(&self.bytes))
    }
}

impl RawRow {
    /// The row's JSON text (an object).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The row's JSON text, shared (no copy).
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// The row's number in the answer, from 1.
    pub fn index(&self) -> u64 {
        self.index
    }

    fn malformed(&self, e: serde_json::Error) -> Error {
        protocol(format!("malformed JSON in row {} of the /sql answer: {e}", self.index))
    }

    /// Values parsed from a large row are serde_json allocations, which cannot fail softly: first make sure
    /// that about twice the row's size can be allocated now (an OutOfMemory error if not).
    fn probe(&self) -> Result<()> {
        if self.bytes.len() >= PROBE_FROM {
            let n = self.bytes.len().saturating_mul(2);
            Vec::<u8>::new().try_reserve_exact(n).map_err(|_| Error::out_of_memory(Endpoint::Sql, "a parsed row", n))?;
        }
        Ok(())
    }

    /// The row parsed, as [`QueryResponse::rows`] holds it. For rows that may be very large, prefer
    /// [`RawRow::as_bytes`]: parsed values are allocations that cannot fail softly (a row of 1 MiB or more is
    /// refused with OutOfMemory when twice its size cannot be allocated first).
    pub fn to_map(&self) -> Result<Map<String, Value>> {
        self.probe()?;
        serde_json::from_slice(&self.bytes).map_err(|e| self.malformed(e))
    }

    /// The values of `columns`, in that order, for queries that cast every column to text (`None` for NULL).
    /// A value that is neither a string nor null, or a missing column, is a Protocol error, as for
    /// [`QueryResponse::text_rows`]. Only the named columns' values are built.
    pub fn text_row(&self, columns: &[&str]) -> Result<Vec<Option<String>>> {
        self.probe()?;
        let mut de = serde_json::Deserializer::from_slice(&self.bytes);
        let vals = TextRowSeed { columns }.deserialize(&mut de).and_then(|v| de.end().map(|_| v));
        let vals = vals.map_err(|e| self.malformed(e))?;
        let mut out = Vec::with_capacity(columns.len());
        for (c, v) in columns.iter().zip(vals) {
            out.push(text_value(v, c, self.index)?);
        }
        Ok(out)
    }
}

/// Deserializes a row object into the values of some columns (None: absent), skipping the others.
struct TextRowSeed<'c> {
    columns: &'c [&'c str],
}

/// A member name, borrowed from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> std::result::Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> DeserializeSeed<'de> for TextRowSeed<'_> {
    type Value = Vec<Option<Value>>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TextRowSeed<'_> {
    type Value = Vec<Option<Value>>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a row object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<Self::Value, A::Error> {
        let mut out: Vec<Option<Value>> = vec![None; self.columns.len()];
        while let Some(Key(k)) = m.next_key::<Key<'de>>()? {
            let mut hits = self.columns.iter().enumerate().filter(|(_, c)| **c == k).map(|(i, _)| i);
            match hits.next() {
                None => {
                    m.next_value::<IgnoredAny>()?;
                }
                Some(first) => {
                    // Like a Map: the last of duplicate names wins.
                    let v: Value = m.next_value()?;
                    for i in hits {
                        out[i] = Some(v.clone());
                    }
                    out[first] = Some(v);
                }
            }
        }
        Ok(out)
    }
}

/// What an answer says besides its rows, once it has ended well.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QuerySummary {
    /// In the order CARTO sent them.
    pub fields: Vec<(String, FieldInfo)>,
    /// Rows of the last statement, or rows affected by a write (the rows' count when CARTO did not say).
    pub total_rows: u64,
    /// Seconds, as CARTO measured.
    pub time: f64,
    pub notices: Vec<String>,
    pub warnings: Vec<String>,
    /// Requests, bytes received and retries of the whole stream.
    pub stats: RequestStats,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum St {
    /// Before the top-level `{`.
    Start,
    /// After `{`: a name or `}`.
    FirstKey,
    /// After `,`: a name.
    NextKey,
    /// Inside a member name.
    Key,
    Colon,
    /// After `:`.
    Value,
    /// Inside a member value other than the rows array.
    Member,
    AfterMember,
    /// After `[` of `rows`: a row or `]`.
    RowsFirst,
    /// After `,` in `rows`: a row.
    RowsNext,
    /// Inside a row.
    Row,
    /// A row is whole (held): `,` or `]` must follow.
    AfterRow,
    /// After the top-level `}`.
    Done,
    /// Not well-formed any more: the rest of the body is collected, for CARTO's appended error.
    Tail,
}

/// The incremental splitter; see the module documentation.
pub(crate) struct Splitter {
    st: St,
    max_row: usize,
    // The value scanner: nesting depth, inside a string, after a backslash, a scalar (ends at a delimiter).
    depth: u32,
    in_str: bool,
    esc: bool,
    scalar: bool,
    /// A row begun in an earlier chunk.
    partial: Vec<u8>,
    /// A whole row, handed out once the `,` or `]` after it arrived.
    held: Option<Bytes>,
    /// The member name being read, with its quotes.
    key: Vec<u8>,
    /// The other members, as the text of a JSON object without its closing brace.
    rest: Vec<u8>,
    /// Where the member being read (or the last one) starts in `rest`.
    member_start: usize,
    /// Where the value of the member being read starts in `rest`.
    value_start: usize,
    rows_seen: bool,
    error_member: bool,
    /// Rows handed out.
    rows: u64,
    /// The body's first bytes, for messages.
    head: Vec<u8>,
    /// Bytes of the body before the current chunk.
    offset: u64,
    /// Why the answer is not well-formed (state Tail) and the bytes kept since.
    fail: String,
    tail: Vec<u8>,
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

impl Splitter {
    pub(crate) fn new(max_row: usize) -> Self {
        Splitter {
            st: St::Start,
            max_row,
            depth: 0,
            in_str: false,
            esc: false,
            scalar: false,
            partial: Vec::new(),
            held: None,
            key: Vec::new(),
            rest: Vec::new(),
            member_start: 0,
            value_start: 0,
            rows_seen: false,
            error_member: false,
            rows: 0,
            head: Vec::new(),
            offset: 0,
            fail: String::new(),
            tail: Vec::new(),
        }
    }

    /// Bytes the splitter holds now (a row spanning chunks, the other members, an error tail).
    #[cfg(test)]
    pub(crate) fn retained(&self) -> usize {
        self.partial.capacity() + self.rest.capacity() + self.tail.capacity() + self.key.capacity()
    }

    /// Starts scanning a value whose first byte is `c`; returns how many bytes that consumed (0 for scalars).
    fn begin_value(&mut self, c: u8) -> usize {
        self.esc = false;
        self.scalar = false;
        self.in_str = false;
        self.depth = 0;
        match c {
            b'{' | b'[' => {
                self.depth = 1;
                1
            }
            b'"' => {
                self.in_str = true;
                1
            }
            _ => {
                self.scalar = true;
                0
            }
        }
    }

    /// Scans the value from `i`: Some(end) when it ends at `end` (exclusive), None when `b` is used up.
    fn scan(&mut self, b: &[u8], mut i: usize) -> Option<usize> {
        let n = b.len();
        if self.scalar {
            while i < n {
                if matches!(b[i], b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r') {
                    return Some(i);
                }
                i += 1;
            }
            return None;
        }
        loop {
            if self.in_str {
                if self.esc {
                    if i >= n {
                        return None;
                    }
                    self.esc = false;
                    i += 1;
                }
                match memchr::memchr2(b'"', b'\\', &b[i..]) {
                    None => return None,
                    Some(k) => {
                        i += k + 1;
                        if b[i - 1] == b'\\' {
                            self.esc = true;
                            continue;
                        }
                        self.in_str = false;
                        if self.depth == 0 {
                            return Some(i);
                        }
                    }
                }
            } else {
                loop {
                    if i >= n {
                        return None;
                    }
                    let c = b[i];
                    i += 1;
                    match c {
                        b'"' => {
                            self.in_str = true;
                            break;
                        }
                        b'{' | b'[' => self.depth += 1,
                        b'}' | b']' => {
                            self.depth -= 1;
                            if self.depth == 0 {
                                return Some(i);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    fn rest_push(&mut self, data: &[u8]) -> Result<()> {
        if self.rest.len() + data.len() > MAX_MEMBERS_BYTES {
            return Err(protocol(format!(
                "the members of the /sql answer other than its rows are larger than {MAX_MEMBERS_BYTES} bytes"
            )));
        }
        crate::buf::extend(&mut self.rest, data, MAX_MEMBERS_BYTES, Endpoint::Sql, "the /sql answer's fields")
    }

    fn partial_push(&mut self, data: &[u8]) -> Result<()> {
        if self.partial.len() + data.len() > self.max_row {
            return Err(self.too_large());
        }
        crate::buf::extend(&mut self.partial, data, self.max_row, Endpoint::Sql, "a row of the /sql answer")
    }

    fn too_large(&self) -> Error {
        let (row, max) = (self.rows + 1, self.max_row);
        protocol(format!("row {row} of the /sql answer is larger than max_row_bytes ({max} bytes)"))
            .with_hint("select fewer or smaller columns, or raise max_row_bytes")
    }

    /// The answer stopped being well-formed at `b[i]`: from now on the rest of the body is collected.
    fn fail_at(&mut self, b: &[u8], i: usize, why: &str) -> Result<usize> {
        let t = self.in_progress();
        self.fail = format!("{why} at byte {}", self.offset + i as u64);
        self.tail = t;
        self.partial = Vec::new();
        self.held = None;
        self.st = St::Tail;
        self.tail_push(&b[i..])?;
        Ok(b.len())
    }

    /// The last bytes (half the error tail at most) of the value being read (or held), for finding an appended
    /// error in.
    fn in_progress(&self) -> Vec<u8> {
        let src: &[u8] = match self.st {
            St::Row => &self.partial,
            St::AfterRow => self.held.as_deref().unwrap_or_default(),
            St::Member | St::AfterMember => &self.rest[self.member_start.min(self.rest.len())..],
            St::Key | St::Colon => &self.key,
            _ => &[],
        };
        src[src.len().saturating_sub(MAX_ERROR_TAIL / 2)..].to_vec()
    }

    fn tail_push(&mut self, data: &[u8]) -> Result<()> {
        if self.tail.len() + data.len() > MAX_ERROR_TAIL {
            return Err(self.malformed(&self.fail));
        }
        self.tail.extend_from_slice(data);
        Ok(())
    }

    fn malformed(&self, why: &str) -> Error {
        protocol(format!("malformed JSON from /sql: {why} (body starts {:?})", body_excerpt(&self.head)))
    }

    /// Feeds the next chunk of the body; whole rows are appended to `out`.
    pub(crate) fn push(&mut self, chunk: &Bytes, out: &mut Vec<RawRow>) -> Result<()> {
        let b: &[u8] = chunk;
        let n = b.len();
        if self.head.len() < HEAD_KEEP {
            let k = (HEAD_KEEP - self.head.len()).min(n);
            self.head.extend_from_slice(&b[..k]);
        }
        // Where the value being scanned starts in this chunk (0 when it began in an earlier one).
        let mut vstart = 0usize;
        let mut i = 0usize;
        while i < n {
            match self.st {
                St::Tail => {
                    self.tail_push(&b[i..])?;
                    i = n;
                }
                St::Start => {
                    i = ws(b, i);
                    if i == n {
                        break;
                    }
                    if b[i] == b'{' {
                        self.rest_push(b"{")?;
                        self.st = St::FirstKey;
                        i += 1;
                    } else {
                        i = self.fail_at(b, i, "the answer is not a JSON object")?;
                    }
                }
                St::FirstKey | St::NextKey => {
                    i = ws(b, i);
                    if i == n {
                        break;
                    }
                    match b[i] {
                        b'"' => {
                            self.key.clear();
                            self.key.push(b'"');
                            self.begin_value(b'"');
                            self.st = St::Key;
                            i += 1;
                        }
                        b'}' if self.st == St::FirstKey => {
                            self.st = St::Done;
                            i += 1;
                        }
                        _ => i = self.fail_at(b, i, "expected a member name")?,
                    }
                }
                St::Key => {
                    let start = i;
                    let end = self.scan(b, i);
                    let stop = end.unwrap_or(n);
                    if self.key.len() + stop - start > MAX_KEY {
                        return Err(self.malformed("a member name longer than 64 KiB"));
                    }
                    self.key.extend_from_slice(&b[start..stop]);
                    i = stop;
                    if end.is_some() {
                        self.st = St::Colon;
                    }
                }
                St::Colon => {
                    i = ws(b, i);
                    if i == n {
                        break;
                    }
                    if b[i] == b':' {
                        self.st = St::Value;
                        i += 1;
                    } else {
                        i = self.fail_at(b, i, "expected ':' after a member name")?;
                    }
                }
                St::Value => {
                    i = ws(b, i);
                    if i == n {
                        break;
                    }
                    if self.key == b"\"rows\"" && b[i] == b'[' {
                        if self.rows_seen {
                            i = self.fail_at(b, i, "a second rows member")?;
                            continue;
                        }
                        self.rows_seen = true;
                        self.st = St::RowsFirst;
                        i += 1;
                    } else {
                        let comma = self.rest.len() > 1;
                        self.member_start = self.rest.len();
                        if comma {
                            self.rest_push(b",")?;
                        }
                        let key = std::mem::take(&mut self.key);
                        self.rest_push(&key)?;
                        self.key = key;
                        self.rest_push(b":")?;
                        self.value_start = self.rest.len();
                        vstart = i;
                        i += self.begin_value(b[i]);
                        self.st = St::Member;
                        if i == n {
                            // The value's first byte ends the chunk: keep it.
                            self.rest_push(&b[vstart..])?;
                        }
                    }
                }
                St::Member => match self.scan(b, i) {
                    Some(end) => {
                        self.rest_push(&b[vstart..end])?;
                        if self.key == b"\"error\"" && &self.rest[self.value_start..] != b"null" {
                            self.error_member = true;
                        }
                        i = end;
                        self.st = St::AfterMember;
                    }
                    None => {
                        self.rest_push(&b[vstart..])?;
                        i = n;
                    }
                },
                St::AfterMember => {
                    i = ws(b, i);
                    if i == n {
                        break;
                    }
                    match b[i] {
                        b',' => {
                            self.st = St::NextKey;
                            i += 1;
                        }
                        b'}' => {
                            self.st = St::Done;
                            i += 1;
                        }
                        _ => i = self.fail_at(b, i, "expected ',' or '}' after a member")?,
                    }
                }
                St::RowsFirst | St::RowsNext => {
                    i = ws(b, i);
                    if i == n {
                        break;
                    }
                    match b[i] {
                        b']' if self.st == St::RowsFirst => {
                            self.st = St::AfterMember;
                            i += 1;
                        }
                        b'{' => {
                            vstart = i;
                            i += self.begin_value(b'{');
                            self.st = St::Row;
                            if i == n {
                                self.partial_push(&b[vstart..])?;
                            }
                        }
                        _ => i = self.fail_at(b, i, "a row is not a JSON object")?,
                    }
                }
                St::Row => match self.scan(b, i) {
                    Some(end) => {
                        let row = if self.partial.is_empty() {
                            if end - vstart > self.max_row {
                                return Err(self.too_large());
                            }
                            chunk.slice(vstart..end)
                        } else {
                            self.partial_push(&b[vstart..end])?;
                            Bytes::from(std::mem::take(&mut self.partial))
                        };
                        self.held = Some(row);
                        self.st = St::AfterRow;
                        i = end;
                    }
                    None => {
                        self.partial_push(&b[vstart..])?;
                        i = n;
                    }
                },
                St::AfterRow => {
                    i = ws(b, i);
                    if i == n {
                        break;
                    }
                    match b[i] {
                        c @ (b',' | b']') => {
                            if let Some(bytes) = self.held.take() {
                                if !self.error_member {
                                    self.rows += 1;
                                    out.push(RawRow { bytes, index: self.rows });
                                }
                            }
                            self.st = if c == b',' { St::RowsNext } else { St::AfterMember };
                            i += 1;
                        }
                        _ => i = self.fail_at(b, i, "expected ',' or ']' after a row")?,
                    }
                }
                St::Done => {
                    i = ws(b, i);
                    if i < n {
                        i = self.fail_at(b, i, "data after the answer's end")?;
                    }
                }
            }
        }
        self.offset += n as u64;
        Ok(())
    }

    /// The body ended: the summary, or CARTO's error, or why the answer is malformed.
    pub(crate) fn finish(&mut self) -> Result<QuerySummary> {
        match self.st {
            St::Done => {}
            St::Tail => {
                let e = recover_error(&self.tail).unwrap_or_else(|| self.malformed(&self.fail));
                return Err(e);
            }
            St::Start if self.offset == 0 => return Err(self.malformed("empty body")),
            _ => {
                let t = self.in_progress();
                let e = recover_error(&t)
                    .unwrap_or_else(|| self.malformed(&format!("the answer ended early, at byte {}", self.offset)));
                return Err(e);
            }
        }
        self.rest_push(b"}")?;
        let obj: Map<String, Value> =
            serde_json::from_slice(&self.rest).map_err(|e| self.malformed(&format!("{e}")))?;
        if let Some(p) = parse_error_object(&obj) {
            return Err(Error::from_body_error(Endpoint::Sql, p));
        }
        match obj.get("rows") {
            None | Some(Value::Null) => {}
            Some(_) => return Err(protocol("`rows` is not an array")),
        }
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
        Ok(QuerySummary {
            fields,
            total_rows: obj.get("total_rows").and_then(Value::as_u64).unwrap_or(self.rows),
            time: obj.get("time").and_then(Value::as_f64).unwrap_or(0.0),
            notices: strings(obj.get("notices")),
            warnings: strings(obj.get("warnings")),
            stats: RequestStats::default(),
        })
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

/// CARTO's error appended to a cut body: the last `{` before the last `"error":[` starts a JSON object that
/// runs to the end and holds CARTO's error.
fn recover_error(buf: &[u8]) -> Option<Error> {
    let i = memchr::memmem::rfind(buf, b"\"error\":[")?;
    let start = memchr::memrchr(b'{', &buf[..i])?;
    match serde_json::from_slice::<Value>(&buf[start..]) {
        Ok(Value::Object(o)) => parse_error_object(&o).map(|p| Error::from_body_error(Endpoint::Sql, p)),
        _ => None,
    }
}

type BodyStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// The body broke off before its end.
fn cut_error(e: &reqwest::Error) -> Error {
    let mut err = Error::transport(Endpoint::Sql, e);
    err.kind = if e.is_timeout() { ErrorKind::Timeout } else { ErrorKind::Transport };
    err.message = format!("connection cut while reading the response: {}", err.message);
    err.status = Some(200);
    err
}

fn idle_error(idle: Duration) -> Error {
    Error::new(
        ErrorKind::Timeout,
        Endpoint::Sql,
        format!("no data from /sql within request_timeout ({} s)", idle.as_secs_f64()),
    )
    .with_status(200)
}

/// What one try of [`Client::query_rows`] got before returning: the body up to its first row, or all of it.
struct Opened {
    body: Option<BodyStream>,
    sp: Splitter,
    rows: Vec<RawRow>,
    end: Option<QuerySummary>,
}

enum Msg {
    Rows(Vec<RawRow>),
    End(Box<QuerySummary>),
    Err(Error),
}

/// A `/sql` answer read as it streams: see [`Client::query_rows`]. Dropping it closes the connection at once
/// (CARTO cancels the query).
pub struct QueryRowStream {
    ready: std::vec::IntoIter<RawRow>,
    rx: Option<mpsc::Receiver<Msg>>,
    task: Option<AbortHandle>,
    /// The end, when the whole answer was read before the stream was returned.
    end: Option<QuerySummary>,
    summary: Option<QuerySummary>,
    failed: Option<Error>,
    stats: Arc<AtomicStats>,
    returned: u64,
}

impl std::fmt::Debug for QueryRowStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryRowStream")
            .field("returned", &self.returned)
            .field("stats", &self.stats())
            .field("done", &self.summary.is_some())
            .field("failed", &self.failed.is_some())
            .finish()
    }
}

impl Drop for QueryRowStream {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

impl QueryRowStream {
    /// The next row, `Ok(None)` at the end of a well-formed answer (then [`QueryRowStream::summary`] is set),
    /// or the error that ends the stream: CARTO's error in the body (an `error` member, or an error appended
    /// to a cut body; kinds as for any error in a 200 body: RemoteTimeout, BadRequest, Quota, Forbidden), a
    /// malformed answer or a row over `max_row_bytes` (Protocol), an allocation failure (OutOfMemory), a
    /// connection cut (Transport) or no byte for `request_timeout` (Timeout). Rows returned before an error
    /// are a prefix of the result: the answer is whole only once this returned `Ok(None)`. After the end or
    /// an error, it returns the same again.
    ///
    /// Cancel-safe: dropping the future before it completed loses nothing (the next call returns the same
    /// row), so it can be raced against a timer in `tokio::select!`.
    pub async fn next_row(&mut self) -> Result<Option<RawRow>> {
        loop {
            if let Some(r) = self.next_ready() {
                return Ok(Some(r));
            }
            if let Some(e) = &self.failed {
                return Err(e.clone());
            }
            if self.summary.is_some() {
                return Ok(None);
            }
            if let Some(mut s) = self.end.take() {
                s.stats = self.stats.snapshot();
                self.summary = Some(s);
                return Ok(None);
            }
            let Some(rx) = self.rx.as_mut() else {
                self.failed = Some(Error::new(ErrorKind::Transport, Endpoint::Sql, "the /sql stream has no source"));
                continue;
            };
            match rx.recv().await {
                Some(Msg::Rows(v)) => self.ready = v.into_iter(),
                Some(Msg::End(s)) => {
                    let mut s = *s;
                    s.stats = self.stats.snapshot();
                    self.summary = Some(s);
                }
                Some(Msg::Err(e)) => self.failed = Some(e),
                None => {
                    self.failed =
                        Some(Error::new(ErrorKind::Transport, Endpoint::Sql, "the /sql network task ended unexpectedly"))
                }
            }
        }
    }

    /// A row already received, without waiting (None: call [`QueryRowStream::next_row`]). For callers that
    /// take many rows per wake-up.
    pub fn next_ready(&mut self) -> Option<RawRow> {
        let r = self.ready.next()?;
        self.returned += 1;
        Some(r)
    }

    /// Rows returned so far.
    pub fn rows_returned(&self) -> u64 {
        self.returned
    }

    /// `fields`, `total_rows`, `time`, `notices`, `warnings` and the request statistics, once
    /// [`QueryRowStream::next_row`] returned `Ok(None)`; None before (CARTO sends them after the rows).
    pub fn summary(&self) -> Option<&QuerySummary> {
        self.summary.as_ref()
    }

    /// Requests, bytes received (after gzip decoding) and retries so far.
    pub fn stats(&self) -> RequestStats {
        self.stats.snapshot()
    }

    /// A handle on the same counters.
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(self.stats.clone())
    }
}

impl Client {
    pub(crate) fn sql_request(&self, sql: &str) -> reqwest::RequestBuilder {
        let url = self.inner.cfg.endpoint_url(&[]);
        self.request(reqwest::Method::POST, url).form(&[("q", sql), ("format", "json")])
    }

    /// Run SQL through `POST /api/v2/sql` (format json) and read the answer as it streams, a row at a time,
    /// never the whole body in memory (each row is at most `max_row_bytes`; the other members at most
    /// [`MAX_MEMBERS_BYTES`]). Returns once the first row (or the whole answer) arrived; errors before that
    /// (4xx, a 429, CARTO's error in a short answer) are returned here. Retried as [`Client::query_with`]
    /// (`read_only`: also transport failures, 502/503/504 and a body cut before the first row), but only up
    /// to that point, so never after a row was handed out. The network side runs on a task spawned on the
    /// current tokio runtime and reads ahead through a bounded channel; no byte for `request_timeout` is a
    /// Timeout.
    pub async fn query_rows(&self, sql: &str, read_only: bool) -> Result<QueryRowStream> {
        let policy = if read_only { Retry::Read } else { Retry::RateLimitOnly };
        let idle = self.inner.cfg.request_timeout;
        let mut stats = RequestStats::default();
        let opened = self
            .retry_loop(policy, &mut stats, || {
                let rb = self.sql_request(sql);
                async move {
                    let mut st = RequestStats::default();
                    let r = self.open_once(rb, idle, &mut st).await;
                    (r, st)
                }
            })
            .await?;
        stats.bytes_sent += sql.len() as u64;
        let shared = Arc::new(AtomicStats::default());
        shared.add_requests(stats.requests);
        shared.add_received(stats.bytes_received);
        shared.add_sent(stats.bytes_sent);
        shared.add_retries(stats.retries);
        let Opened { body, sp, rows, end } = opened;
        let mut s = QueryRowStream {
            ready: rows.into_iter(),
            rx: None,
            task: None,
            end,
            summary: None,
            failed: None,
            stats: shared.clone(),
            returned: 0,
        };
        if let Some(body) = body {
            let handle = tokio::runtime::Handle::try_current()
                .map_err(|_| Error::config("query_rows must run inside a tokio runtime"))?;
            let (tx, rx) = mpsc::channel(self.inner.cfg.channel_capacity);
            let client = self.clone();
            let task = handle.spawn(async move {
                match pump(body, sp, &tx, &shared, idle).await {
                    Ok(Some(summary)) => {
                        let _ = tx.send(Msg::End(Box::new(summary))).await;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let _ = tx.send(Msg::Err(client.redact(e))).await;
                    }
                }
            });
            s.rx = Some(rx);
            s.task = Some(task.abort_handle());
        }
        Ok(s)
    }

    /// One try of query_rows: the head, then the body until its first row or its end.
    async fn open_once(&self, rb: reqwest::RequestBuilder, idle: Duration, st: &mut RequestStats) -> Result<Opened> {
        let resp = self.head_once(Endpoint::Sql, rb, st).await?;
        let mut body: BodyStream = Box::pin(resp.bytes_stream());
        let mut sp = Splitter::new(self.inner.cfg.max_row_bytes);
        let mut rows = Vec::new();
        loop {
            match tokio::time::timeout(idle, body.next()).await {
                Err(_) => return Err(idle_error(idle)),
                Ok(Some(Err(e))) => return Err(cut_error(&e)),
                Ok(Some(Ok(c))) => {
                    st.bytes_received += c.len() as u64;
                    sp.push(&c, &mut rows)?;
                    if !rows.is_empty() {
                        return Ok(Opened { body: Some(body), sp, rows, end: None });
                    }
                }
                Ok(None) => {
                    let end = sp.finish()?;
                    return Ok(Opened { body: None, sp, rows, end: Some(end) });
                }
            }
        }
    }

    /// One try of query_with: the whole answer before `deadline`, its rows parsed as they come.
    pub(crate) async fn collect_once(
        &self,
        rb: reqwest::RequestBuilder,
        timeout: Duration,
        st: &mut RequestStats,
    ) -> Result<QueryResponse> {
        let deadline = Instant::now() + timeout;
        let limit = self.inner.cfg.max_response_bytes;
        let resp = self.head_once(Endpoint::Sql, rb, st).await?;
        let mut body = resp.bytes_stream();
        let mut sp = Splitter::new(self.inner.cfg.max_row_bytes);
        let mut raw = Vec::new();
        let mut rows = Vec::new();
        loop {
            let next = tokio::time::timeout_at(deadline, body.next()).await.map_err(|_| {
                Error::new(ErrorKind::Timeout, Endpoint::Sql, "response body not complete within request_timeout")
            })?;
            match next {
                Some(Err(e)) => return Err(cut_error(&e)),
                Some(Ok(c)) => {
                    st.bytes_received += c.len() as u64;
                    if st.bytes_received > limit {
                        return Err(protocol(format!("response body larger than max_response_bytes ({limit} bytes)"))
                            .with_hint("fetch fewer rows per request, or stream them (query_rows)"));
                    }
                    sp.push(&c, &mut raw)?;
                    for r in raw.drain(..) {
                        rows.push(r.to_map()?);
                    }
                }
                None => {
                    let s = sp.finish()?;
                    return Ok(QueryResponse::from_summary(rows, s));
                }
            }
        }
    }
}

/// The network side of a [`QueryRowStream`]: reads the body, splits it, hands out rows in batches. Ok(None)
/// when the caller went away.
async fn pump(
    mut body: BodyStream,
    mut sp: Splitter,
    tx: &mpsc::Sender<Msg>,
    stats: &AtomicStats,
    idle: Duration,
) -> Result<Option<QuerySummary>> {
    let mut batch: Vec<RawRow> = Vec::new();
    let mut batch_bytes = 0usize;
    let idle_timer = tokio::time::sleep(idle);
    tokio::pin!(idle_timer);
    let push = |sp: &mut Splitter, c: &Bytes, batch: &mut Vec<RawRow>, batch_bytes: &mut usize| -> Result<()> {
        stats.add_received(c.len() as u64);
        let before = batch.len();
        sp.push(c, batch)?;
        *batch_bytes += batch[before..].iter().map(|r| r.bytes.len()).sum::<usize>();
        Ok(())
    };
    loop {
        if batch_bytes >= BATCH_TARGET {
            if tx.send(Msg::Rows(std::mem::take(&mut batch))).await.is_err() {
                return Ok(None);
            }
            batch_bytes = 0;
            // Time spent waiting for the caller is not idle time of the connection.
            idle_timer.as_mut().reset(Instant::now() + idle);
            continue;
        }
        tokio::select! {
            permit = tx.reserve(), if !batch.is_empty() => match permit {
                Ok(p) => {
                    p.send(Msg::Rows(std::mem::take(&mut batch)));
                    batch_bytes = 0;
                }
                Err(_) => return Ok(None),
            },
            next = body.next() => match next {
                Some(Ok(c)) => {
                    push(&mut sp, &c, &mut batch, &mut batch_bytes)?;
                    // CARTO writes small HTTP chunks: take what hyper already holds before handing rows out.
                    while batch_bytes < BATCH_TARGET {
                        match body.next().now_or_never() {
                            Some(Some(Ok(more))) => push(&mut sp, &more, &mut batch, &mut batch_bytes)?,
                            Some(Some(Err(e))) => return Err(cut_error(&e)),
                            Some(None) => return finish(&mut sp, batch, tx).await,
                            None => break,
                        }
                    }
                    idle_timer.as_mut().reset(Instant::now() + idle);
                }
                Some(Err(e)) => return Err(cut_error(&e)),
                None => return finish(&mut sp, batch, tx).await,
            },
            _ = &mut idle_timer => return Err(idle_error(idle)),
        }
    }
}

/// The body ended: the summary (after the last rows), or the error; rows not yet handed out before an error
/// are dropped.
async fn finish(sp: &mut Splitter, batch: Vec<RawRow>, tx: &mpsc::Sender<Msg>) -> Result<Option<QuerySummary>> {
    let s = sp.finish()?;
    if !batch.is_empty() && tx.send(Msg::Rows(batch)).await.is_err() {
        return Ok(None);
    }
    Ok(Some(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits `body` at the given cut points; the rows' text and the end.
    fn split_at(body: &[u8], cuts: &[usize], max_row: usize) -> (Vec<String>, Result<QuerySummary>) {
        let mut sp = Splitter::new(max_row);
        let mut out = Vec::new();
        let mut prev = 0;
        for &c in cuts.iter().chain(std::iter::once(&body.len())) {
            let c = c.clamp(prev, body.len());
            if let Err(e) = sp.push(&Bytes::copy_from_slice(&body[prev..c]), &mut out) {
                return (texts(&out), Err(e));
            }
            prev = c;
        }
        let end = sp.finish();
        (texts(&out), end)
    }

    fn texts(rows: &[RawRow]) -> Vec<String> {
        rows.iter().map(|r| String::from_utf8(r.as_bytes().to_vec()).unwrap()).collect()
    }

    fn whole(body: &str) -> (Vec<String>, Result<QuerySummary>) {
        split_at(body.as_bytes(), &[], DEFAULT_MAX_ROW_BYTES)
    }

    const SAMPLE: &str = r#"{"rows":[{"a":"x\"y\\","b":null},{"a":"}]{[\u00e9\"","n":[1,{"z":[]}],"o":{"k":"]"}},{}],"time":0.5,"fields":{"a":{"type":"string","pgtype":"text"},"n":{"type":"number"}},"total_rows":3,"notices":["hé"],"warnings":["w"]}"#;

    #[test]
    fn splits_rows_and_keeps_the_rest() {
        let (rows, end) = whole(SAMPLE);
        assert_eq!(rows, [r#"{"a":"x\"y\\","b":null}"#, r#"{"a":"}]{[\u00e9\"","n":[1,{"z":[]}],"o":{"k":"]"}}"#, "{}"]);
        let s = end.unwrap();
        assert_eq!(s.total_rows, 3);
        assert_eq!(s.time, 0.5);
        assert_eq!(s.fields.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(), ["a", "n"]);
        assert_eq!(s.fields[0].1.pgtype.as_deref(), Some("text"));
        assert_eq!(s.notices, ["hé"]);
        assert_eq!(s.warnings, ["w"]);
    }

    /// Every split point of the sample (and every pair of nearby ones) gives the same rows and end.
    #[test]
    fn any_split_point() {
        let want = whole(SAMPLE);
        let b = SAMPLE.as_bytes();
        for i in 0..=b.len() {
            let got = split_at(b, &[i], DEFAULT_MAX_ROW_BYTES);
            assert_eq!(got.0, want.0, "cut at {i}");
            assert_eq!(got.1, want.1, "cut at {i}");
            for j in [i + 1, i + 2, i + 7] {
                let got = split_at(b, &[i, j], DEFAULT_MAX_ROW_BYTES);
                assert_eq!(got.0, want.0, "cuts at {i}, {j}");
            }
        }
        // One byte at a time.
        let cuts: Vec<usize> = (1..b.len()).collect();
        assert_eq!(split_at(b, &cuts, DEFAULT_MAX_ROW_BYTES).0, want.0);
    }

    #[test]
    fn member_order_and_whitespace() {
        for body in [
            r#"{"fields":{"a":{"type":"number"}},"total_rows":2,"rows":[{"a":1},{"a":2}],"time":1}"#,
            r#"{"time":1,"rows":[{"a":1},{"a":2}],"fields":{"a":{"type":"number"}},"total_rows":2}"#,
            " \r\n{ \"rows\" : [ {\"a\":1} ,\n {\"a\":2} ] , \"time\" : 1 , \"fields\":{\"a\":{\"type\":\"number\"}}, \"total_rows\":2 }\n",
        ] {
            let (rows, end) = whole(body);
            assert_eq!(rows.len(), 2, "{body}");
            let s = end.unwrap();
            assert_eq!((s.total_rows, s.time, s.fields.len()), (2, 1.0, 1), "{body}");
        }
        // Unknown members are kept and ignored; no total_rows: the rows' count.
        let (rows, end) = whole(r#"{"x":{"y":[1,"]"]},"rows":[{"a":1}],"z":true}"#);
        assert_eq!(rows.len(), 1);
        assert_eq!(end.unwrap().total_rows, 1);
    }

    #[test]
    fn empty_and_null_rows() {
        let (rows, end) = whole(r#"{"rows":[],"time":0,"fields":{},"total_rows":5}"#);
        assert!(rows.is_empty());
        assert_eq!(end.unwrap().total_rows, 5);
        let (rows, end) = whole(r#"{"rows":null,"total_rows":0}"#);
        assert!(rows.is_empty());
        end.unwrap();
        let (rows, end) = whole(r#"{}"#);
        assert!(rows.is_empty());
        end.unwrap();
        let (_, end) = whole(r#"{"rows":{"a":1}}"#);
        assert_eq!(end.unwrap_err().message, "`rows` is not an array");
    }

    #[test]
    fn carto_errors_are_never_rows() {
        // The error member after rows: the rows before it were handed out (a prefix), the end is the error.
        let (rows, end) = whole(r#"{"rows":[{"a":1},{"a":2}],"time":1,"fields":{},"total_rows":2,"error":["canceling statement due to statement timeout"]}"#);
        assert_eq!(rows.len(), 2);
        let e = end.unwrap_err();
        assert_eq!(e.kind, ErrorKind::RemoteTimeout);
        assert_eq!(e.status, Some(200));
        // Before rows: no row is handed out; detail and hint anywhere are kept.
        let (rows, end) = whole(r#"{"error":["division by zero"],"rows":[{"a":1}],"detail":"d","hint":"h"}"#);
        assert!(rows.is_empty());
        let e = end.unwrap_err();
        assert_eq!((e.kind, e.message.as_str(), e.detail.as_deref(), e.hint.as_deref()), (ErrorKind::BadRequest, "division by zero", Some("d"), Some("h")));
        // CARTO's own words for its statement timeout.
        let (_, end) = whole(r#"{"rows":[{"a":1}],"error":["You are over platform's limits: SQL query timeout error. Refactor your query before running again or contact CARTO support for more details."]}"#);
        assert_eq!(end.unwrap_err().kind, ErrorKind::RemoteTimeout);
        // "error": null is no error.
        whole(r#"{"rows":[{"a":1}],"error":null}"#).1.unwrap();
        // A body cut by an appended error, at every kind of place: never a row, always CARTO's error.
        let err = r#"{"error":["canceling statement due to statement timeout"]}"#;
        for prefix in [
            r#"{"rows":[{"a":1},"#,
            r#"{"rows":[{"a":1}"#,
            r#"{"rows":[{"a":1},{"b":"#,
            r#"{"rows":[{"a":1},{"b":"xy"#,
            r#"{"rows":[{"a":1},{"b":"x\"#,
            r#"{"rows":[{"a":1},{"b":[1,"#,
            r#"{"rows":["#,
            r#"{"rows":[{"a":1}],"fields":{"a":"#,
            r#"{"rows":[{"a":1}],"ti"#,
            r#"{"rows":[{"a":1}],"time":1}"#,
            r#"{"ro"#,
            "",
        ] {
            let body = format!("{prefix}{err}");
            let b = body.as_bytes();
            for cut in [0, 1, b.len() / 2, prefix.len(), prefix.len() + 3, b.len() - 1] {
                let (rows, end) = split_at(b, &[cut], DEFAULT_MAX_ROW_BYTES);
                assert!(rows.iter().all(|r| !r.contains("error")), "{body}: {rows:?}");
                let e = end.unwrap_err();
                assert_eq!(e.kind, ErrorKind::RemoteTimeout, "{body} cut at {cut}: {e}");
            }
        }
        // After a row larger than the error tail: only the row's end is kept, the error still found.
        let body = format!(r#"{{"rows":[{{"a":"{}"}}{err}"#, "q".repeat(MAX_ERROR_TAIL));
        let (rows, end) = split_at(body.as_bytes(), &[100, MAX_ERROR_TAIL + 12], DEFAULT_MAX_ROW_BYTES);
        assert!(rows.is_empty());
        assert_eq!(end.unwrap_err().kind, ErrorKind::RemoteTimeout);
        // A row holding a column named error is data.
        let (rows, end) = whole(r#"{"rows":[{"error":["x"]},{"a":1}],"total_rows":2}"#);
        assert_eq!(rows, [r#"{"error":["x"]}"#, r#"{"a":1}"#]);
        end.unwrap();
    }

    #[test]
    fn malformed_answers() {
        for body in [
            "<html>bad gateway</html>",
            "[1,2]",
            r#"{"rows":[1,2]}"#,
            r#"{"rows":[{"a":1}]"#,
            r#"{"rows":[{"a":1}],}"#,
            r#"{"rows":[{"a":1}]}x"#,
            r#"{"rows":[{"a":1}],"time":}"#,
            r#"{"rows":[{"a":1}],"rows":[{"a":2}]}"#,
            r#"{"rows":[{"a":1} {"a":2}]}"#,
            r#"{rows:[]}"#,
            "",
            "   ",
        ] {
            let (_, end) = whole(body);
            let e = end.unwrap_err();
            assert_eq!(e.kind, ErrorKind::Protocol, "{body:?}: {e}");
            assert!(e.message.starts_with("malformed JSON from /sql") || e.message.contains("rows"), "{e}");
        }
        // Garbage beyond the error tail's bound fails before the end.
        let mut sp = Splitter::new(DEFAULT_MAX_ROW_BYTES);
        let junk = Bytes::from(vec![b'x'; MAX_ERROR_TAIL / 2 + 1]);
        let mut out = Vec::new();
        sp.push(&junk, &mut out).unwrap();
        assert_eq!(sp.push(&junk, &mut out).unwrap_err().kind, ErrorKind::Protocol);
    }

    #[test]
    fn bounds() {
        // A row over max_row_bytes, in one chunk and across chunks: refused before it is copied.
        let body = format!(r#"{{"rows":[{{"a":"{}"}},{{"a":1}}]}}"#, "x".repeat(100));
        let (rows, end) = split_at(body.as_bytes(), &[], 50);
        assert!(rows.is_empty());
        let e = end.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Protocol);
        assert!(e.message.contains("max_row_bytes"), "{e}");
        let (_, end) = split_at(body.as_bytes(), &[20, 40, 60], 50);
        assert!(end.unwrap_err().message.contains("max_row_bytes"));
        let (rows, end) = split_at(body.as_bytes(), &[20, 40, 60], 200);
        assert_eq!(rows.len(), 2);
        end.unwrap();
        // The other members are bounded too.
        let mut sp = Splitter::new(DEFAULT_MAX_ROW_BYTES);
        let mut out = Vec::new();
        sp.push(&Bytes::from_static(b"{\"rows\":[],\"notices\":[\""), &mut out).unwrap();
        let big = Bytes::from(vec![b'n'; 1 << 20]);
        let e = (0..20).find_map(|_| sp.push(&big, &mut out).err()).unwrap();
        assert_eq!(e.kind, ErrorKind::Protocol);
        assert!(sp.retained() <= MAX_MEMBERS_BYTES + (1 << 20), "{}", sp.retained());
    }

    /// Many rows through the splitter: what it retains stays at about one row, whatever the answer's size.
    #[test]
    fn memory_stays_flat() {
        let mut sp = Splitter::new(DEFAULT_MAX_ROW_BYTES);
        let mut out = Vec::new();
        sp.push(&Bytes::from_static(b"{\"rows\":["), &mut out).unwrap();
        let mut chunk = Vec::new();
        let mut n = 0u64;
        let mut max_retained = 0;
        for k in 0..200_000u64 {
            chunk.extend_from_slice(format!(r#"{}{{"x":{k},"h":"{:032x}"}}"#, if k > 0 { "," } else { "" }, k * 7919).as_bytes());
            if chunk.len() > 8000 {
                // Cut in the middle of a row.
                let tail = chunk.split_off(chunk.len() - 13);
                sp.push(&Bytes::from(std::mem::replace(&mut chunk, tail)), &mut out).unwrap();
                n += out.len() as u64;
                out.clear();
                max_retained = max_retained.max(sp.retained());
            }
        }
        chunk.extend_from_slice(br#"],"time":1,"fields":{"x":{"type":"number"},"h":{"type":"string"}},"total_rows":200000}"#);
        sp.push(&Bytes::from(chunk), &mut out).unwrap();
        n += out.len() as u64;
        assert_eq!(n, 200_000);
        assert_eq!(sp.finish().unwrap().total_rows, 200_000);
        assert!(max_retained < 4096, "retained {max_retained} bytes");
    }

    proptest::proptest! {
        /// Rows of arbitrary strings (quotes, backslashes, braces, any unicode), serialized by serde_json and
        /// cut anywhere: the same rows, parsed back to the same values.
        #[test]
        fn any_rows_any_cuts(
            vals in proptest::collection::vec(proptest::collection::vec(proptest::option::of(".*"), 1..4), 0..12),
            cuts in proptest::collection::vec(0usize..600, 0..6),
        ) {
            let rows: Vec<Value> = vals
                .iter()
                .map(|r| Value::Object(r.iter().enumerate().map(|(i, v)| (format!("c{i}\"}}"), v.clone().map_or(Value::Null, Value::String))).collect()))
                .collect();
            let body = serde_json::json!({"rows": rows, "time": 0.1, "fields": {}, "total_rows": rows.len()}).to_string();
            let mut cuts = cuts;
            cuts.sort_unstable();
            let (got, end) = split_at(body.as_bytes(), &cuts, DEFAULT_MAX_ROW_BYTES);
            proptest::prop_assert_eq!(end.unwrap().total_rows, rows.len() as u64);
            let parsed: Vec<Value> = got.iter().map(|t| serde_json::from_str(t).unwrap()).collect();
            proptest::prop_assert_eq!(parsed, rows);
        }
    }

    /// The extension keeps a stream in its scan state and may hand it to another task.
    #[test]
    fn streams_and_rows_are_send() {
        fn send<T: Send + 'static>() {}
        send::<QueryRowStream>();
        send::<RawRow>();
        send::<QuerySummary>();
    }

    #[test]
    fn rows_are_slices_of_the_chunk() {
        let chunk = Bytes::from_static(br#"{"rows":[{"a":"b"},{"c":1}],"total_rows":2}"#);
        let mut sp = Splitter::new(DEFAULT_MAX_ROW_BYTES);
        let mut out = Vec::new();
        sp.push(&chunk, &mut out).unwrap();
        assert!(chunk.as_ptr_range().contains(&out[0].as_bytes().as_ptr()));
        assert_eq!(out[1].index(), 2);
    }

    #[test]
    fn text_rows_of_raw_rows() {
        let r = RawRow { bytes: Bytes::from_static(br#"{"b":"x","a":null,"n":1,"e":"\u00e9\n","a2":"y"}"#), index: 7 };
        assert_eq!(r.text_row(&["a", "b", "e", "b"]).unwrap(), vec![None, Some("x".into()), Some("é\n".into()), Some("x".into())]);
        let e = r.text_row(&["zz"]).unwrap_err();
        assert_eq!((e.kind, e.message.as_str()), (ErrorKind::Protocol, "row 7 has no column \"zz\""));
        let e = r.text_row(&["n"]).unwrap_err();
        assert!(e.message.contains("column \"n\" of row 7 is a JSON number"), "{e}");
        assert_eq!(r.to_map().unwrap()["n"], serde_json::json!(1));
        // A row over PROBE_FROM parses after its probe.
        let big = RawRow { bytes: Bytes::from(format!(r#"{{"a":"{}"}}"#, "z".repeat(PROBE_FROM))), index: 1 };
        assert_eq!(big.text_row(&["a"]).unwrap()[0].as_ref().unwrap().len(), PROBE_FROM);
        let bad = RawRow { bytes: Bytes::from_static(br#"{"a":1]"#), index: 1 };
        assert_eq!(bad.text_row(&["a"]).unwrap_err().kind, ErrorKind::Protocol);
        assert_eq!(bad.to_map().unwrap_err().kind, ErrorKind::Protocol);
    }
}
