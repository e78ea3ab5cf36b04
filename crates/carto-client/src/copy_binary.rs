//! PostgreSQL's COPY binary format, as a plain byte stream: no knowledge of PostgreSQL types.
//!
//! The stream is a header (`PGCOPY\n\377\r\n\0`, an int32 of flags, an int32 length of a header extension
//! and the extension's bytes), then per tuple an int16 field count followed, per field, by an int32 length
//! (-1 for NULL) and that many bytes, and finally the trailer: an int16 of -1. All integers are big-endian.
//!
//! * [`Decoder`] takes the chunks of a [`crate::CopyOutStream`] opened with [`crate::Client::copy_to_binary`]
//!   as they come (any size, any cut: fields may straddle chunks) and yields tuples whose fields are slices
//!   straight into the chunk. Only a tuple cut by a chunk boundary is copied (into a small carry buffer), so
//!   memory stays at a chunk plus the largest tuple. CARTO appends its error JSON (`{"error":[...]}`) to a
//!   COPY body when the query fails after streaming began; at a tuple boundary that reads as the field count
//!   `{"` = 31522, more than PostgreSQL's 1664 columns, so it can never be a tuple: the decoder collects the
//!   rest of the body and [`Decoder::finish`] returns it as CARTO's error. It is never taken as data.
//! * [`Encoder`] writes the header, tuples and the trailer for uploads (`COPY t FROM STDIN (FORMAT binary)`).

use bytes::Bytes;

use crate::error::{parse_error_body, Endpoint, Error, ErrorKind, Result};

/// The 11-byte signature that starts every binary COPY stream.
pub const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// The header an encoder writes: signature, flags 0, no extension.
pub const HEADER: &[u8; 19] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The trailer: a field count of -1.
pub const TRAILER: &[u8; 2] = b"\xff\xff";
/// PostgreSQL's MaxTupleAttributeNumber: no tuple has more fields.
pub const MAX_FIELDS: usize = 1664;
/// Flag bit 16: every tuple carries an OID (servers before PostgreSQL 12, `WITH OIDS`).
const FLAG_OIDS: u32 = 1 << 16;
/// The largest field PostgreSQL can send (1 GB - 1).
const MAX_FIELD: usize = 0x3fff_ffff;
/// The most of CARTO's appended error kept.
const MAX_ERROR_TAIL: usize = 1024 * 1024;

fn protocol(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Protocol, Endpoint::CopyTo, format!("malformed binary COPY data: {}", message.into()))
}

/// What the carry buffer holds, for allocation errors.
const TUPLE: &str = "a binary COPY tuple";

fn too_large(max: usize, declared: u64) -> Error {
    protocol(format!("a tuple of at least {declared} bytes, more than the {max} accepted"))
        .with_hint("a field larger than PostgreSQL can hold, or a broken server")
}

/// What [`Decoder::next_tuple`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A tuple: read it with [`Decoder::len`] and [`Decoder::field`] before the next call.
    Tuple,
    /// The current chunk is used up: [`Decoder::push`] the next one (or call [`Decoder::finish`] at the end).
    NeedData,
    /// The trailer arrived: no more tuples (call [`Decoder::finish`] once the stream ended).
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Tuples,
    Trailer,
    /// CARTO's appended error: the rest of the body is collected.
    ErrorTail,
}

/// Where a parse over a contiguous buffer got.
enum Parse {
    /// The item is whole: this many bytes.
    Done(usize),
    /// At least this many more bytes are needed.
    More(usize),
}

/// Decodes a binary COPY stream chunk by chunk. See the module documentation.
#[derive(Debug)]
pub struct Decoder {
    state: State,
    expected: Option<usize>,
    chunk: Bytes,
    pos: usize,
    /// A header or tuple cut by a chunk boundary, assembled here.
    carry: Vec<u8>,
    /// The current tuple's fields are in `carry` (else in `chunk`).
    in_carry: bool,
    /// The current tuple's fields: (offset, length) in `chunk` or `carry`; None for NULL.
    fields: Vec<Option<(usize, usize)>>,
    tail: Vec<u8>,
    tuples: u64,
    /// The largest header or tuple accepted, checked on the declared lengths before any of it is buffered.
    max_tuple: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(None)
    }
}

fn be16(b: &[u8]) -> i16 {
    i16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Decoder {
    /// A decoder; with `expected` set, a tuple with another field count is an error.
    pub fn new(expected: Option<usize>) -> Self {
        Decoder {
            state: State::Header,
            expected,
            chunk: Bytes::new(),
            pos: 0,
            carry: Vec::new(),
            in_carry: false,
            fields: Vec::new(),
            tail: Vec::new(),
            tuples: 0,
            max_tuple: MAX_FIELD,
        }
    }

    /// The largest tuple (its field count, lengths and values; also the header) accepted; default 1 GiB - 1,
    /// PostgreSQL's largest value. A tuple declaring more is a Protocol error as soon as its lengths arrive,
    /// before any of it is buffered; a tuple that spans chunks is assembled in a buffer that grows fallibly
    /// (an allocation failure is [`ErrorKind::OutOfMemory`], never an abort).
    pub fn with_max_tuple_bytes(mut self, max: usize) -> Self {
        self.max_tuple = max.max(2);
        self
    }

    /// Hand over the next chunk of the stream. Only after [`Step::NeedData`] (what is left of the previous
    /// chunk is kept in the carry buffer by then).
    pub fn push(&mut self, chunk: Bytes) {
        debug_assert!(self.pos >= self.chunk.len());
        self.chunk = chunk;
        self.pos = 0;
    }

    /// Tuples decoded so far.
    pub fn tuples(&self) -> u64 {
        self.tuples
    }

    /// Fields of the current tuple.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Field `i` of the current tuple: None for NULL (or out of range).
    pub fn field(&self, i: usize) -> Option<&[u8]> {
        let (off, len) = (*self.fields.get(i)?)?;
        let buf = if self.in_carry { &self.carry[..] } else { &self.chunk[..] };
        Some(&buf[off..off + len])
    }

    /// The next tuple, or a request for more data, or the end.
    pub fn next_tuple(&mut self) -> Result<Step> {
        loop {
            match self.state {
                State::Trailer => {
                    if self.pos < self.chunk.len() {
                        return Err(protocol("data after the trailer"));
                    }
                    return Ok(Step::End);
                }
                State::ErrorTail => {
                    let rest = &self.chunk[self.pos..];
                    if self.tail.len() + rest.len() > MAX_ERROR_TAIL {
                        return Err(protocol("unexpected data instead of a tuple"));
                    }
                    self.tail.extend_from_slice(rest);
                    self.pos = self.chunk.len();
                    return Ok(Step::NeedData);
                }
                State::Header | State::Tuples => {}
            }
            // Start of a header or tuple. A carried-over start goes on in the carry buffer.
            if self.in_carry {
                self.in_carry = false;
                self.carry.clear();
            }
            if !self.carry.is_empty() {
                match self.continue_carry()? {
                    Some(Step::Tuple) => return Ok(Step::Tuple),
                    Some(s) => return Ok(s),
                    None => continue,
                }
            }
            if self.pos >= self.chunk.len() {
                return Ok(Step::NeedData);
            }
            let buf = &self.chunk[self.pos..];
            match parse_item(&mut self.state, self.expected, self.max_tuple, &mut self.fields, buf, self.pos)? {
                Parse::Done(n) => {
                    self.pos += n;
                    if let Some(s) = self.after_item(n)? {
                        return Ok(s);
                    }
                }
                Parse::More(need) => {
                    if self.state == State::ErrorTail {
                        continue;
                    }
                    let avail = self.chunk.len() - self.pos;
                    crate::buf::extend(&mut self.carry, &self.chunk[self.pos..], avail + need, Endpoint::CopyTo, TUPLE)?;
                    self.pos = self.chunk.len();
                    return Ok(Step::NeedData);
                }
            }
        }
    }

    /// Goes on with an item started in the carry buffer: takes just the bytes it needs from the chunk.
    /// Some(step) to return, None when the item (a header) is done and decoding goes on.
    fn continue_carry(&mut self) -> Result<Option<Step>> {
        loop {
            match parse_item(&mut self.state, self.expected, self.max_tuple, &mut self.fields, &self.carry, 0)? {
                Parse::Done(n) => {
                    debug_assert_eq!(n, self.carry.len());
                    let step = self.after_item(n)?;
                    if step == Some(Step::Tuple) {
                        self.in_carry = true;
                    } else {
                        self.carry.clear();
                    }
                    return Ok(step);
                }
                Parse::More(need) => {
                    if self.state == State::ErrorTail {
                        self.tail.extend_from_slice(&std::mem::take(&mut self.carry));
                        return Ok(None);
                    }
                    let avail = self.chunk.len() - self.pos;
                    if avail == 0 {
                        return Ok(Some(Step::NeedData));
                    }
                    let take = need.min(avail);
                    let ceiling = self.carry.len() + need;
                    crate::buf::extend(&mut self.carry, &self.chunk[self.pos..self.pos + take], ceiling, Endpoint::CopyTo, TUPLE)?;
                    self.pos += take;
                }
            }
        }
    }

    /// After a whole header or tuple of `n` bytes.
    fn after_item(&mut self, _n: usize) -> Result<Option<Step>> {
        match self.state {
            State::Header => {
                self.state = State::Tuples;
                Ok(None)
            }
            State::Tuples => {
                self.tuples += 1;
                Ok(Some(Step::Tuple))
            }
            State::Trailer => {
                self.fields.clear();
                Ok(None)
            }
            State::ErrorTail => Ok(None),
        }
    }

    /// The stream ended: fine after the trailer; CARTO's error when it appended one; otherwise the stream
    /// was cut.
    pub fn finish(&mut self) -> Result<()> {
        match self.state {
            State::Trailer if self.carry.is_empty() && self.pos >= self.chunk.len() => Ok(()),
            State::Trailer => Err(protocol("data after the trailer")),
            State::ErrorTail => match parse_error_body(&self.tail) {
                Some(p) => {
                    let mut e = Error::from_body_error(Endpoint::CopyTo, p);
                    e.hint.get_or_insert_with(|| "CARTO reported this error after the COPY stream had begun".into());
                    Err(e)
                }
                None => Err(protocol("unexpected data instead of a tuple")),
            },
            State::Header if self.carry.is_empty() && self.pos >= self.chunk.len() && self.tuples == 0 => {
                Err(protocol("the stream ended before the binary COPY header"))
            }
            State::Header => Err(protocol("the stream ended inside the header")),
            State::Tuples => Err(protocol("the stream ended before the trailer")),
        }
    }
}

/// Parses the header or one tuple (or the trailer) at the start of `buf`; field offsets are recorded
/// relative to `base` (the position of `buf` in the chunk, or 0 in the carry buffer).
fn parse_item(
    state: &mut State,
    expected: Option<usize>,
    max_tuple: usize,
    fields: &mut Vec<Option<(usize, usize)>>,
    buf: &[u8],
    base: usize,
) -> Result<Parse> {
    {
        if *state == State::Header {
            let n = buf.len().min(SIGNATURE.len());
            if buf[..n] != SIGNATURE[..n] {
                if buf.first() == Some(&b'{') {
                    *state = State::ErrorTail;
                    return Ok(Parse::More(0));
                }
                return Err(protocol("the stream does not start with the binary COPY signature"));
            }
            if buf.len() < 19 {
                return Ok(Parse::More(19 - buf.len()));
            }
            let flags = be32(&buf[11..15]) as u32;
            if flags & FLAG_OIDS != 0 {
                return Err(protocol("tuples with OIDs are not supported"));
            }
            if flags >> 16 != 0 {
                return Err(protocol(format!("unknown critical flags {flags:#x} in the header")));
            }
            let ext = be32(&buf[15..19]);
            if ext < 0 {
                return Err(protocol("negative header extension length"));
            }
            let total = 19 + ext as usize;
            if total > max_tuple {
                return Err(too_large(max_tuple, total as u64));
            }
            if buf.len() < total {
                return Ok(Parse::More(total - buf.len()));
            }
            return Ok(Parse::Done(total));
        }
        if buf.len() < 2 {
            return Ok(Parse::More(2 - buf.len()));
        }
        let count = be16(buf);
        if count == -1 {
            *state = State::Trailer;
            return Ok(Parse::Done(2));
        }
        if buf[0] == b'{' && buf[1] == b'"' {
            // `{"` as a field count (31522): CARTO's appended error, never a tuple.
            *state = State::ErrorTail;
            return Ok(Parse::More(0));
        }
        if count < 0 || count as usize > MAX_FIELDS {
            return Err(protocol(format!("invalid field count {count}")));
        }
        let count = count as usize;
        if let Some(e) = expected {
            if count != e {
                return Err(protocol(format!("a tuple with {count} fields, expected {e}")));
            }
        }
        fields.clear();
        let mut p = 2usize;
        for _ in 0..count {
            if buf.len() < p + 4 {
                return Ok(Parse::More(p + 4 - buf.len()));
            }
            let len = be32(&buf[p..]);
            p += 4;
            if len == -1 {
                fields.push(None);
                continue;
            }
            if len < 0 || len as usize > MAX_FIELD {
                return Err(protocol(format!("invalid field length {len}")));
            }
            let len = len as usize;
            if p + len > max_tuple {
                return Err(too_large(max_tuple, (p + len) as u64));
            }
            if buf.len() < p + len {
                return Ok(Parse::More(p + len - buf.len()));
            }
            fields.push(Some((base + p, len)));
            p += len;
        }
        Ok(Parse::Done(p))
    }

}

/// Writes a binary COPY stream: [`HEADER`], tuples, [`TRAILER`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Encoder;

impl Encoder {
    pub fn header(out: &mut Vec<u8>) {
        out.extend_from_slice(HEADER);
    }

    pub fn trailer(out: &mut Vec<u8>) {
        out.extend_from_slice(TRAILER);
    }

    /// Starts a tuple of `fields` fields (at most [`MAX_FIELDS`]).
    pub fn begin_tuple(out: &mut Vec<u8>, fields: usize) {
        debug_assert!(fields <= MAX_FIELDS);
        out.extend_from_slice(&(fields as i16).to_be_bytes());
    }

    pub fn field(out: &mut Vec<u8>, value: &[u8]) {
        out.extend_from_slice(&(value.len() as i32).to_be_bytes());
        out.extend_from_slice(value);
    }

    pub fn null(out: &mut Vec<u8>) {
        out.extend_from_slice(&(-1i32).to_be_bytes());
    }

    /// A whole tuple.
    pub fn tuple<'a>(out: &mut Vec<u8>, fields: impl ExactSizeIterator<Item = Option<&'a [u8]>>) {
        Self::begin_tuple(out, fields.len());
        for f in fields {
            match f {
                Some(v) => Self::field(out, v),
                None => Self::null(out),
            }
        }
    }
}

/// A binary COPY tuple that PostgreSQL always rejects for a COPY of `columns` columns: its field
/// count is one more than the column list (`row field count is N, expected M`), checked before any
/// value is read. Never the trailer (a field count of -1 would end the COPY successfully). The
/// binary counterpart of [`crate::copy_text::poison_line`], for `CopyIn::abort_gracefully`.
pub fn poison_tuple(columns: usize) -> Vec<u8> {
    // Any count but -1 and `columns` is refused; one more than the list (at most MAX_FIELDS + 1, far
    // from i16::MAX), every field NULL, keeps the tuple well formed.
    let fields = columns.min(MAX_FIELDS) + 1;
    let mut out = Vec::with_capacity(2 + 4 * fields);
    out.extend_from_slice(&(fields as i16).to_be_bytes());
    for _ in 0..fields {
        Encoder::null(&mut out);
    }
    out
}

/// True when `data` starts with a tuple header that is not the trailer (what a poison must be).
pub fn is_poison_tuple(data: &[u8]) -> bool {
    data.len() >= 2 && i16::from_be_bytes([data[0], data[1]]) >= 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn poison_tuple_has_one_field_more_and_is_never_the_trailer() {
        for cols in [0usize, 1, 2, 17, MAX_FIELDS] {
            let p = poison_tuple(cols);
            let n = i16::from_be_bytes([p[0], p[1]]);
            assert_eq!(n as usize, cols + 1);
            assert_ne!(&p[..2], &TRAILER[..]);
            assert_eq!(p.len(), 2 + 4 * (cols + 1));
            assert!(is_poison_tuple(&p));
        }
        assert!(!is_poison_tuple(TRAILER));
        assert!(!is_poison_tuple(b"\x00"));
    }

    use super::*;

    type Row = Vec<Option<Vec<u8>>>;

    fn encode(rows: &[Row]) -> Vec<u8> {
        let mut out = Vec::new();
        Encoder::header(&mut out);
        for r in rows {
            Encoder::tuple(&mut out, r.iter().map(|f| f.as_deref()));
        }
        Encoder::trailer(&mut out);
        out
    }

    /// Decodes `data` cut into the given chunk sizes (cycled).
    fn decode(data: &[u8], sizes: &[usize], expected: Option<usize>) -> Result<Vec<Row>> {
        let mut d = Decoder::new(expected);
        let mut rows = Vec::new();
        let (mut off, mut i) = (0, 0);
        loop {
            match d.next_tuple()? {
                Step::Tuple => rows.push((0..d.len()).map(|k| d.field(k).map(<[u8]>::to_vec)).collect()),
                Step::End | Step::NeedData => {
                    if off >= data.len() {
                        d.finish()?;
                        return Ok(rows);
                    }
                    let n = sizes[i % sizes.len()].max(1).min(data.len() - off);
                    i += 1;
                    d.push(Bytes::copy_from_slice(&data[off..off + n]));
                    off += n;
                }
            }
        }
    }

    fn sample() -> Vec<Row> {
        vec![
            vec![Some(vec![0, 0, 0, 1]), None, Some(b"hello".to_vec()), Some(vec![])],
            vec![Some(vec![0, 0, 0, 2]), Some(vec![b'\n'; 300]), None, Some(b"{\"error\":".to_vec())],
            vec![None, None, None, None],
        ]
    }

    #[test]
    fn round_trip_any_cut() {
        let rows = sample();
        let data = encode(&rows);
        for sizes in [&[usize::MAX][..], &[1], &[2], &[3], &[7], &[19], &[20], &[1, 5, 2, 300], &[64]] {
            assert_eq!(decode(&data, sizes, Some(4)).unwrap(), rows, "sizes {sizes:?}");
        }
        // Zero tuples.
        assert_eq!(decode(&encode(&[]), &[5], None).unwrap(), Vec::<Row>::new());
    }

    #[test]
    fn header_extension_and_flags() {
        let mut data = SIGNATURE.to_vec();
        data.extend_from_slice(&1u32.to_be_bytes()); // non-critical flag bit: ignored
        data.extend_from_slice(&3u32.to_be_bytes());
        data.extend_from_slice(b"abc");
        Encoder::tuple(&mut data, [Some(&b"x"[..])].into_iter());
        Encoder::trailer(&mut data);
        for s in [1, 4, 100] {
            assert_eq!(decode(&data, &[s], Some(1)).unwrap(), vec![vec![Some(b"x".to_vec())]]);
        }
        let mut oids = HEADER.to_vec();
        oids[11..15].copy_from_slice(&FLAG_OIDS.to_be_bytes());
        oids.extend_from_slice(TRAILER);
        assert!(decode(&oids, &[100], None).unwrap_err().message.contains("OIDs"));
        let mut crit = HEADER.to_vec();
        crit[11..15].copy_from_slice(&(1u32 << 20).to_be_bytes());
        assert!(decode(&crit, &[100], None).unwrap_err().message.contains("critical"));
        assert!(decode(b"1\tabc\n", &[100], None).unwrap_err().message.contains("signature"));
    }

    #[test]
    fn carto_error_tail_is_an_error_never_data() {
        let rows = sample();
        let mut data = encode(&rows);
        data.truncate(data.len() - 2); // no trailer: the error ends the body
        let json = br#"{"error":["division by zero"],"detail":"d"}"#;
        data.extend_from_slice(json);
        for sizes in [&[usize::MAX][..], &[1], &[3], &[50]] {
            let e = decode(&data, sizes, Some(4)).unwrap_err();
            assert_eq!(e.message, "division by zero", "{sizes:?}");
            assert_eq!(e.detail.as_deref(), Some("d"));
            assert_ne!(e.kind, ErrorKind::Protocol);
        }
        // The error before any tuple (even before the header).
        let e = decode(json, &[4], Some(4)).unwrap_err();
        assert_eq!(e.message, "division by zero");
        let mut h = HEADER.to_vec();
        h.extend_from_slice(json);
        assert_eq!(decode(&h, &[7], Some(4)).unwrap_err().message, "division by zero");
        // A tail that is not CARTO's error: a protocol error.
        let mut bad = HEADER.to_vec();
        bad.extend_from_slice(b"{\"rows\":1}");
        assert_eq!(decode(&bad, &[100], None).unwrap_err().kind, ErrorKind::Protocol);
    }

    #[test]
    fn cuts_and_garbage_are_errors() {
        let data = encode(&sample());
        for cut in [0, 5, 19, 20, 25, data.len() - 1] {
            let e = decode(&data[..cut], &[3], Some(4)).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Protocol, "cut at {cut}: {e}");
        }
        // Another field count than expected.
        assert!(decode(&data, &[100], Some(3)).unwrap_err().message.contains("expected 3"));
        // Data after the trailer.
        let mut more = data.clone();
        more.push(0);
        assert_eq!(decode(&more, &[100], None).unwrap_err().kind, ErrorKind::Protocol);
        // Negative lengths other than -1, absurd counts.
        let mut neg = HEADER.to_vec();
        neg.extend_from_slice(&1i16.to_be_bytes());
        neg.extend_from_slice(&(-2i32).to_be_bytes());
        assert!(decode(&neg, &[100], None).unwrap_err().message.contains("field length"));
        let mut wide = HEADER.to_vec();
        wide.extend_from_slice(&2000i16.to_be_bytes());
        assert!(decode(&wide, &[100], None).unwrap_err().message.contains("field count"));
    }

    #[test]
    fn huge_declared_fields_are_refused_before_buffering() {
        // A field of 1 GiB - 1 declared (PostgreSQL's largest value): with its length word the tuple is over the
        // default limit, refused as soon as the length arrives, whatever the cut, with next to nothing buffered.
        let mut data = HEADER.to_vec();
        data.extend_from_slice(&1i16.to_be_bytes());
        data.extend_from_slice(&(MAX_FIELD as i32).to_be_bytes());
        data.extend_from_slice(&[b'x'; 100]);
        for cut in [1, 3, 20, 22, 25, 200] {
            let mut d = Decoder::new(Some(1));
            let mut err = None;
            for c in data.chunks(cut) {
                d.push(Bytes::copy_from_slice(c));
                match d.next_tuple() {
                    Ok(Step::NeedData) => {}
                    Ok(s) => panic!("{s:?}"),
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                }
            }
            let e = err.expect("refused");
            assert_eq!(e.kind, ErrorKind::Protocol);
            assert!(e.message.contains("more than the 1073741823 accepted"), "{e}");
            assert!(d.carry.capacity() < 4096, "carry grew to {}", d.carry.capacity());
        }
        // A smaller limit: tuples up to it pass, across chunks; one byte more does not.
        let rows = vec![vec![Some(vec![7u8; 994])]];
        let data = encode(&rows);
        let mut d = Decoder::new(Some(1)).with_max_tuple_bytes(1000);
        let mut got = Vec::new();
        for c in data.chunks(100) {
            d.push(Bytes::copy_from_slice(c));
            while let Step::Tuple = d.next_tuple().unwrap() {
                got.push(d.field(0).unwrap().to_vec());
            }
        }
        d.finish().unwrap();
        assert_eq!(got, [vec![7u8; 994]]);
        assert!(d.carry.capacity() <= 1000, "carry grew to {}", d.carry.capacity());
        let data = encode(&[vec![Some(vec![7u8; 995])]]);
        assert!(decode(&data, &[100], Some(1)).is_ok());
        let mut d = Decoder::new(Some(1)).with_max_tuple_bytes(1000);
        d.push(Bytes::from(data));
        assert!(d.next_tuple().unwrap_err().message.contains("1001 bytes"));
        // A header extension over the limit.
        let mut h = SIGNATURE.to_vec();
        h.extend_from_slice(&0u32.to_be_bytes());
        h.extend_from_slice(&(i32::MAX as u32).to_be_bytes());
        let mut d = Decoder::new(None);
        d.push(Bytes::from(h));
        assert_eq!(d.next_tuple().unwrap_err().kind, ErrorKind::Protocol);
    }

    #[test]
    fn fields_in_one_chunk_are_not_copied() {
        let rows = sample();
        let data = Bytes::from(encode(&rows));
        let mut d = Decoder::new(Some(4));
        d.push(data.clone());
        assert_eq!(d.next_tuple().unwrap(), Step::Tuple);
        let f = d.field(2).unwrap();
        let range = data.as_ptr_range();
        assert!(range.contains(&f.as_ptr()), "field not a slice of the chunk");
        assert_eq!(d.next_tuple().unwrap(), Step::Tuple);
        assert_eq!(d.next_tuple().unwrap(), Step::Tuple);
        assert_eq!(d.next_tuple().unwrap(), Step::End);
        d.finish().unwrap();
        assert_eq!(d.tuples(), 3);
    }

    proptest::proptest! {
        #[test]
        fn any_rows_any_cuts(
            rows in proptest::collection::vec(
                proptest::collection::vec(proptest::option::of(proptest::collection::vec(proptest::num::u8::ANY, 0..40)), 3),
                0..30),
            sizes in proptest::collection::vec(1usize..50, 1..8),
        ) {
            let data = encode(&rows);
            proptest::prop_assert_eq!(decode(&data, &sizes, Some(3)).unwrap(), rows);
        }
    }
}
