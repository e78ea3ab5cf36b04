//! PostgreSQL's COPY text format: tab-separated fields, `\N` for NULL, backslash escapes, one row per line.
//!
//! * [`Decoder`] decodes one line into a reusable buffer in which every field is followed by a NUL byte, so a
//!   caller can hand `field_ptr(i)` (a `*const c_char`) straight to a C input function. A decoded NUL byte is
//!   refused (PostgreSQL text cannot hold one).
//! * [`encode_field`] / [`encode_null`] / [`encode_row`] write fields the way PostgreSQL's COPY TO does.
//! * [`lines`] iterates over the lines of a chunk of whole lines (what [`crate::CopyOutStream`] hands out), and
//!   [`LineSplitter`] turns arbitrary chunks into whole lines.

use std::ffi::{c_char, CStr};
use std::fmt;
use std::ops::Range;

use bytes::{Bytes, BytesMut};

/// A malformed COPY text line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError {
    pub message: String,
    /// Field number (0-based) where the problem is.
    pub field: usize,
    /// Not malformed data: the line's decoding buffer could not be allocated (see
    /// [`crate::ErrorKind::OutOfMemory`]).
    pub out_of_memory: bool,
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.out_of_memory {
            return f.write_str(&self.message);
        }
        write!(f, "invalid COPY text data in field {}: {}", self.field + 1, self.message)
    }
}

impl std::error::Error for CodecError {}

impl From<CodecError> for crate::Error {
    fn from(e: CodecError) -> Self {
        let kind = if e.out_of_memory { crate::ErrorKind::OutOfMemory } else { crate::ErrorKind::Protocol };
        crate::Error::new(kind, crate::Endpoint::None, e.to_string())
    }
}

/// Decodes COPY text lines into a reusable, NUL-separated buffer.
#[derive(Debug, Default, Clone)]
pub struct Decoder {
    buf: Vec<u8>,
    fields: Vec<Option<Range<usize>>>,
}

/// The byte a COPY text backslash escape stands for: `c` is the character after the backslash, `pos` the position
/// after it in `line` (moved past the octal or hex digits that belong to the escape), as PostgreSQL's COPY reads
/// it: `\b \f \n \r \t \v`, up to three octal digits, `\x` and up to two hex digits (`\x` without one is a
/// plain `x`), any other character itself.
fn escaped_byte(c: u8, line: &[u8], pos: &mut usize) -> u8 {
    match c {
        b'b' => 0x08,
        b'f' => 0x0c,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'v' => 0x0b,
        b'0'..=b'7' => {
            let mut v: u32 = (c - b'0') as u32;
            for _ in 0..2 {
                match line.get(*pos) {
                    Some(&d @ b'0'..=b'7') => {
                        v = v * 8 + (d - b'0') as u32;
                        *pos += 1;
                    }
                    _ => break,
                }
            }
            (v & 0xff) as u8
        }
        b'x' => {
            let mut v: u32 = 0;
            let mut digits = 0;
            while digits < 2 {
                match line.get(*pos).and_then(|d| (*d as char).to_digit(16)) {
                    Some(d) => {
                        v = v * 16 + d;
                        *pos += 1;
                        digits += 1;
                    }
                    None => break,
                }
            }
            if digits == 0 {
                b'x' // PostgreSQL: `\x` without hex digits is a plain x
            } else {
                v as u8
            }
        }
        other => other,
    }
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decode one line (a trailing `\n` is ignored). Afterwards [`Decoder::fields`] has one entry per field:
    /// `None` for `\N`, else the byte range of the decoded value in [`Decoder::buffer`]; the byte after each
    /// range is a NUL.
    pub fn decode(&mut self, line: &[u8]) -> Result<(), CodecError> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        self.buf.clear();
        self.fields.clear();
        // The line's size is CARTO's to decide (up to max_row_bytes): its buffer is allocated fallibly.
        let need = line.len() + 16;
        if self.buf.capacity() < need {
            self.buf.try_reserve(need).map_err(|_| CodecError {
                message: format!("out of memory: cannot allocate {need} bytes to decode a COPY text line"),
                field: 0,
                out_of_memory: true,
            })?;
        }
        let mut pos = 0usize;
        let n = line.len();
        loop {
            // One field, from pos to the next unescaped tab or the end of the line.
            let field_no = self.fields.len();
            let start = self.buf.len();
            // NULL: the raw field is exactly `\N`.
            if line[pos..].starts_with(b"\\N") && (pos + 2 == n || line[pos + 2] == b'\t') {
                self.fields.push(None);
                pos += 2;
                if pos == n {
                    break;
                }
                pos += 1; // the tab
                continue;
            }
            let mut ended_by_tab = false;
            loop {
                match memchr::memchr2(b'\\', b'\t', &line[pos..]) {
                    None => {
                        self.buf.extend_from_slice(&line[pos..]);
                        pos = n;
                        break;
                    }
                    Some(off) => {
                        self.buf.extend_from_slice(&line[pos..pos + off]);
                        pos += off;
                        if line[pos] == b'\t' {
                            pos += 1;
                            ended_by_tab = true;
                            break;
                        }
                        // A backslash escape.
                        pos += 1;
                        let Some(&c) = line.get(pos) else {
                            return Err(CodecError { out_of_memory: false, message: "backslash at end of line".into(), field: field_no });
                        };
                        pos += 1;
                        let b = escaped_byte(c, line, &mut pos);
                        if b == 0 {
                            return Err(CodecError {
                                message: "a backslash escape decodes to a NUL byte, which text cannot hold".into(),
                                field: field_no,
                                out_of_memory: false,
                            });
                        }
                        self.buf.push(b);
                    }
                }
            }
            let end = self.buf.len();
            if memchr::memchr(0, &self.buf[start..end]).is_some() {
                return Err(CodecError { out_of_memory: false, message: "NUL byte in data".into(), field: field_no });
            }
            self.buf.push(0);
            self.fields.push(Some(start..end));
            if !ended_by_tab {
                break;
            }
            if pos == n {
                // A trailing tab: one more, empty field.
                let s = self.buf.len();
                self.buf.push(0);
                self.fields.push(Some(s..s));
                break;
            }
        }
        Ok(())
    }

    /// The fields of the last decoded line.
    pub fn fields(&self) -> &[Option<Range<usize>>] {
        &self.fields
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The decoded bytes: each field's value followed by a NUL.
    pub fn buffer(&self) -> &[u8] {
        &self.buf
    }

    /// Field `i` without its NUL; `None` for NULL or out of range.
    pub fn field(&self, i: usize) -> Option<&[u8]> {
        let r = self.fields.get(i)?.as_ref()?;
        self.buf.get(r.clone())
    }

    /// Field `i` as a C string; `None` for NULL or out of range.
    pub fn field_cstr(&self, i: usize) -> Option<&CStr> {
        let r = self.fields.get(i)?.as_ref()?;
        let with_nul = self.buf.get(r.start..r.end + 1)?;
        // SAFETY: decode() ends every field with exactly one NUL and refuses NUL bytes inside a field.
        Some(unsafe { CStr::from_bytes_with_nul_unchecked(with_nul) })
    }

    /// Field `i` as a pointer to a NUL-terminated string, valid until the next `decode`; null for NULL.
    pub fn field_ptr(&self, i: usize) -> *const c_char {
        match self.field_cstr(i) {
            Some(c) => c.as_ptr(),
            None => std::ptr::null(),
        }
    }
}

/// Append `value` to `out` escaped for COPY text (backslash, BS, FF, LF, CR, TAB, VT).
pub fn encode_field(value: &[u8], out: &mut Vec<u8>) {
    out.reserve(value.len() + 2);
    let mut rest = value;
    loop {
        match rest.iter().position(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r' | 0x08 | 0x0b | 0x0c)) {
            None => {
                out.extend_from_slice(rest);
                return;
            }
            Some(i) => {
                out.extend_from_slice(&rest[..i]);
                out.push(b'\\');
                out.push(match rest[i] {
                    b'\\' => b'\\',
                    b'\t' => b't',
                    b'\n' => b'n',
                    b'\r' => b'r',
                    0x08 => b'b',
                    0x0b => b'v',
                    _ => b'f',
                });
                rest = &rest[i + 1..];
            }
        }
    }
}

/// Append the NULL marker `\N`.
pub fn encode_null(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\\N");
}

/// Append one whole row (fields separated by tabs, ending with `\n`).
pub fn encode_row<'a, I>(fields: I, out: &mut Vec<u8>)
where
    I: IntoIterator<Item = Option<&'a [u8]>>,
{
    for (i, f) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        match f {
            Some(v) => encode_field(v, out),
            None => encode_null(out),
        }
    }
    out.push(b'\n');
}

/// A COPY text line that PostgreSQL always rejects for a COPY of `columns` columns: one field more
/// than the column list (`extra data after last expected column`), checked before any value is read.
/// Used to end an upload that must not commit so that the server's COPY fails by itself (see
/// `CopyIn::abort_gracefully`).
pub fn poison_line(columns: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 * (columns + 1));
    encode_row(std::iter::repeat_n(None, columns + 1), &mut out);
    out
}

/// The lines of a chunk of whole lines, each without its `\n`. A last line without `\n` is yielded too.
pub fn lines(chunk: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = chunk;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match memchr::memchr(b'\n', rest) {
            Some(i) => {
                let l = &rest[..i];
                rest = &rest[i + 1..];
                Some(l)
            }
            None => {
                let l = rest;
                rest = &[];
                Some(l)
            }
        }
    })
}

/// Turns arbitrary chunks into chunks of whole lines, holding back at most one partial line.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: BytesMut,
}

impl LineSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a chunk; returns the whole lines now complete (possibly empty).
    pub fn push(&mut self, chunk: &[u8]) -> Bytes {
        match memchr::memrchr(b'\n', chunk) {
            None => {
                self.partial.extend_from_slice(chunk);
                Bytes::new()
            }
            Some(i) => {
                self.partial.extend_from_slice(&chunk[..=i]);
                let out = self.partial.split().freeze();
                self.partial.extend_from_slice(&chunk[i + 1..]);
                out
            }
        }
    }

    /// What is left without a final `\n`.
    pub fn remainder(&self) -> &[u8] {
        &self.partial
    }

    pub fn take_remainder(&mut self) -> Bytes {
        self.partial.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dec(line: &[u8]) -> Vec<Option<Vec<u8>>> {
        let mut d = Decoder::new();
        d.decode(line).unwrap();
        (0..d.len()).map(|i| d.field(i).map(|f| f.to_vec())).collect()
    }

    #[test]
    fn out_of_memory_is_its_own_kind() {
        let e = CodecError { message: "out of memory: x".into(), field: 0, out_of_memory: true };
        assert_eq!(e.to_string(), "out of memory: x");
        assert_eq!(crate::Error::from(e).kind, crate::ErrorKind::OutOfMemory);
        let e = CodecError { message: "bad".into(), field: 1, out_of_memory: false };
        assert_eq!(crate::Error::from(e).kind, crate::ErrorKind::Protocol);
    }

    #[test]
    fn decodes() {
        assert_eq!(dec(b"a\tb\n"), vec![Some(b"a".to_vec()), Some(b"b".to_vec())]);
        assert_eq!(dec(b"\\N\t\t\\N"), vec![None, Some(vec![]), None]);
        assert_eq!(dec(b""), vec![Some(vec![])]);
        assert_eq!(dec(b"\t"), vec![Some(vec![]), Some(vec![])]);
        assert_eq!(dec(b"x\\N"), vec![Some(b"xN".to_vec())]);
        assert_eq!(dec(b"\\\\N"), vec![Some(b"\\N".to_vec())]);
        assert_eq!(
            dec(b"\\b\\f\\n\\r\\t\\v\\\\\\q"),
            vec![Some(vec![8, 12, b'\n', b'\r', b'\t', 11, b'\\', b'q'])]
        );
        assert_eq!(dec(b"\\101\\7\\0101"), vec![Some(vec![b'A', 7, 8, b'1'])]);
        assert_eq!(dec(b"\\x41\\x4g\\xz\\x414"), vec![Some(vec![b'A', 4, b'g', b'x', b'z', b'A', b'4'])]);
        assert_eq!(dec("é\t€".as_bytes()), vec![Some("é".as_bytes().to_vec()), Some("€".as_bytes().to_vec())]);
        let mut d = Decoder::new();
        assert!(d.decode(b"a\\0").is_err());
        assert!(d.decode(b"a\\x00").is_err());
        assert!(d.decode(b"a\\000").is_err());
        assert!(d.decode(b"a\0b").is_err());
        let e = d.decode(b"a\tb\\").unwrap_err();
        assert_eq!(e.field, 1);
        d.decode(b"ab\t\\N\tcd").unwrap();
        assert_eq!(d.buffer(), b"ab\0cd\0");
        assert_eq!(d.field_cstr(0).unwrap().to_bytes(), b"ab");
        assert!(d.field_ptr(1).is_null());
        assert_eq!(unsafe { CStr::from_ptr(d.field_ptr(2)) }.to_bytes(), b"cd");
    }

    #[test]
    fn encodes() {
        let mut out = Vec::new();
        encode_row([Some(&b"a\tb\\c\nd\re"[..]), None, Some(&[8u8, 11, 12][..]), Some(&b"\\N"[..])], &mut out);
        assert_eq!(out, b"a\\tb\\\\c\\nd\\re\t\\N\t\\b\\v\\f\t\\\\N\n");
    }

    #[test]
    fn splits() {
        let mut s = LineSplitter::new();
        assert_eq!(&s.push(b"ab")[..], b"");
        assert_eq!(&s.push(b"c\nd")[..], b"abc\n");
        assert_eq!(&s.push(b"e\nf\ng")[..], b"de\nf\n");
        assert_eq!(s.remainder(), b"g");
        assert_eq!(lines(b"a\nb\n\nc").collect::<Vec<_>>(), vec![&b"a"[..], b"b", b"", b"c"]);
    }

    proptest! {
        #[test]
        fn round_trip(row in proptest::collection::vec(
            proptest::option::weighted(0.8, proptest::collection::vec(1u8..=255, 0..40)), 1..12)) {
            let mut out = Vec::new();
            encode_row(row.iter().map(|f| f.as_deref()), &mut out);
            prop_assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
            let mut d = Decoder::new();
            d.decode(&out).unwrap();
            let got: Vec<Option<Vec<u8>>> = (0..d.len()).map(|i| d.field(i).map(|f| f.to_vec())).collect();
            prop_assert_eq!(got, row);
        }

        #[test]
        fn round_trip_strings(row in proptest::collection::vec(proptest::option::of("[^\u{0}]{0,30}"), 1..8)) {
            let mut out = Vec::new();
            encode_row(row.iter().map(|f| f.as_deref().map(str::as_bytes)), &mut out);
            let mut d = Decoder::new();
            d.decode(&out).unwrap();
            prop_assert_eq!(d.len(), row.len());
            for (i, f) in row.iter().enumerate() {
                prop_assert_eq!(d.field_cstr(i).map(|c| c.to_str().unwrap().to_string()), f.clone());
            }
        }

        #[test]
        fn decoder_never_panics(line in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut d = Decoder::new();
            if d.decode(&line).is_ok() {
                for i in 0..d.len() {
                    if let Some(f) = d.field(i) { prop_assert!(!f.contains(&0)); }
                }
            }
        }
    }
}
