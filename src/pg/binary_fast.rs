//! Built-in types whose binary COPY form carto_fdw converts itself, without the type's receive or send
//! function: integers, floats, booleans, dates, timestamps, uuid, and text, varchar and bytea; and, for a
//! column read as text inside a binary COPY (its local type is not CARTO's), the plainest decimal text of
//! int2/int4/int8/float8, converted as their input functions would.
//!
//! Why: on a binary read most of the backend's time went into calling receive functions through fmgr for
//! values that are a big-endian integer or a run of bytes, and a scan's rows are made on the backend thread
//! alone. The conversions here are plain data (no PostgreSQL call), so the scan runs them on the I/O thread
//! beside the backend (src/fdw/binary_scan.rs), and the backend only hands the finished values to the slot.
//!
//! Exactness: each conversion gives the very Datum the type's receive function would (the same bits, the
//! same range checks), and only for the type itself with no typmod to apply. Anything else — a value out of
//! range, a field of the wrong length, text that is not valid in the database encoding or holds a NUL —
//! is [`Wire::Recv`]: it goes to the type's own receive function on the backend, which accepts it or raises
//! PostgreSQL's own error (named after the column by the scan). Domains, other typmods and every other type
//! always go through their receive and send functions. `#[pg_test]`s in binary.rs (which may import this
//! file, not the reverse) compare every conversion with the type's own functions, edges included.

use pgrx::pg_sys;

/// The types converted here. Their binary forms are PostgreSQL's `*send` / `*recv`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FastType {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Date,
    /// timestamp and timestamptz: the same int64 of microseconds and the same range.
    Timestamp,
    Uuid,
    /// text, varchar without a length, bytea: a varlena holding the bytes.
    Varlena { checks_encoding: bool },
    /// A column read as text inside a binary COPY (its local type is not CARTO's): the text CARTO printed,
    /// for int2/int4/int8/float8 in their plainest decimal spelling only; anything else goes to the type's
    /// input function, as [`Wire::Recv`] says.
    TextInt { min: i64, max: i64 },
    TextFloat8,
    /// CARTO's numeric in its binary form, read into a local float8 as the text path would make it
    /// (float8in of numeric_out's exact decimal): the same double, found without printing the value on
    /// either side. Specials and what float8in refuses are left to numeric_recv + numeric_float8.
    NumericFloat8,
}

// Ranges of date_recv and timestamp_recv (datatype/timestamp.h): IS_VALID_DATE, MIN_/END_TIMESTAMP; the
// infinities (the int's extremes) are accepted too.
const DATE_MIN: i32 = pg_sys::DATETIME_MIN_JULIAN as i32 - pg_sys::POSTGRES_EPOCH_JDATE as i32;
pub(crate) const DATE_END: i32 = pg_sys::DATE_END_JULIAN as i32 - pg_sys::POSTGRES_EPOCH_JDATE as i32;
const TIMESTAMP_MIN: i64 = -211_813_488_000_000_000;
pub(crate) const TIMESTAMP_END: i64 = 9_223_371_331_200_000_000;
/// varlena header size (VARHDRSZ).
const VARHDRSZ: usize = 4;
/// The largest varlena, header included (1 GB - 1: the 30 bits of a 4-byte header's length).
const MAX_VARLENA: usize = 0x3fff_ffff;

impl FastType {
    /// The conversion a column of `type_oid` and `typmod` can take on a read, if any. Only the type itself
    /// (a domain has constraints to check) and only typmods the receive function would not apply.
    pub fn for_recv(type_oid: pg_sys::Oid, typmod: i32) -> Option<FastType> {
        use pg_sys::BuiltinOid as B;
        let t = Self::for_base(type_oid)?;
        let typmod_free = match type_oid {
            o if o == B::VARCHAROID.value() => typmod < 0,
            // AdjustTimestampForTypmod leaves -1 and the full precision (6) alone.
            o if o == B::TIMESTAMPOID.value() || o == B::TIMESTAMPTZOID.value() => typmod < 0 || typmod == 6,
            _ => true,
        };
        typmod_free.then_some(t)
    }

    /// The conversion of a column read as text (its input function and typmod applying otherwise), if any:
    /// int2, int4, int8 and float8 themselves (no domain; their input functions ignore typmods).
    pub fn for_text_input(type_oid: pg_sys::Oid) -> Option<FastType> {
        use pg_sys::BuiltinOid as B;
        let o = type_oid;
        Some(match () {
            _ if o == B::INT2OID.value() => FastType::TextInt { min: i16::MIN.into(), max: i16::MAX.into() },
            _ if o == B::INT4OID.value() => FastType::TextInt { min: i32::MIN.into(), max: i32::MAX.into() },
            _ if o == B::INT8OID.value() => FastType::TextInt { min: i64::MIN, max: i64::MAX },
            _ if o == B::FLOAT8OID.value() => FastType::TextFloat8,
            _ => return None,
        })
    }

    /// The conversion of a value of `base_type` on a write (send functions ignore typmods; a domain's
    /// values are its base type's).
    pub fn for_send(base_type: pg_sys::Oid) -> Option<FastType> {
        Self::for_base(base_type)
    }

    fn for_base(type_oid: pg_sys::Oid) -> Option<FastType> {
        use pg_sys::BuiltinOid as B;
        let o = type_oid;
        Some(match () {
            _ if o == B::BOOLOID.value() => FastType::Bool,
            _ if o == B::INT2OID.value() => FastType::Int2,
            _ if o == B::INT4OID.value() => FastType::Int4,
            _ if o == B::INT8OID.value() => FastType::Int8,
            _ if o == B::FLOAT4OID.value() => FastType::Float4,
            _ if o == B::FLOAT8OID.value() => FastType::Float8,
            _ if o == B::DATEOID.value() => FastType::Date,
            _ if o == B::TIMESTAMPOID.value() || o == B::TIMESTAMPTZOID.value() => FastType::Timestamp,
            _ if o == B::UUIDOID.value() => FastType::Uuid,
            // text and varchar are checked against the encoding (pq_getmsgtext); bytea is bytes.
            _ if o == B::TEXTOID.value() || o == B::VARCHAROID.value() => FastType::Varlena { checks_encoding: true },
            _ if o == B::BYTEAOID.value() => FastType::Varlena { checks_encoding: false },
            _ => return None,
        })
    }
}

/// How one received field becomes a Datum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// A pass-by-value Datum, as the receive function returns it.
    Value(usize),
    /// A pass-by-reference value of this many bytes, laid out by [`write_by_ref`].
    ByRef(usize),
    /// For the type's receive function on the backend.
    Recv,
}

/// The text rule of the database: UTF8 (valid UTF-8, no NUL) or SQL_ASCII (no NUL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextRule {
    Utf8,
    SqlAscii,
}

fn text_ok(bytes: &[u8], rule: TextRule) -> bool {
    // pg_verify_mbstr refuses NUL in every encoding; UTF-8 validity is RFC 3629's in both Rust and
    // PostgreSQL (no surrogates, nothing above U+10FFFF, no overlong forms).
    memchr::memchr(0, bytes).is_none() && (rule == TextRule::SqlAscii || std::str::from_utf8(bytes).is_ok())
}

/// `-?[0-9]{1,19}` as an i64: what int2in/int4in/int8in read the same way (they also take spaces and `+`,
/// left to them).
fn plain_int(bytes: &[u8]) -> Option<i64> {
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // ASCII digits: valid UTF-8; an i64 overflow (20 digits are refused above, 19 may still overflow) is None.
    std::str::from_utf8(bytes).ok()?.parse::<i64>().ok()
}

/// `-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?` as the f64 float8in makes of it: both round correctly to the
/// nearest double. Not what float8in refuses (a result out of range: infinite, or zero from non-zero digits)
/// nor its other spellings (NaN, Infinity, spaces): those are left to it.
fn plain_float(bytes: &[u8]) -> Option<f64> {
    let (mantissa, exponent) = match bytes.iter().position(|b| *b == b'e' || *b == b'E') {
        Some(i) => (&bytes[..i], Some(&bytes[i + 1..])),
        None => (bytes, None),
    };
    let unsigned = mantissa.strip_prefix(b"-").unwrap_or(mantissa);
    let (int, frac) = match unsigned.iter().position(|b| *b == b'.') {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let digits = |d: &[u8]| !d.is_empty() && d.iter().all(u8::is_ascii_digit);
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return None;
    }
    if let Some(e) = exponent {
        let e = e.strip_prefix(b"-").or_else(|| e.strip_prefix(b"+")).unwrap_or(e);
        if !digits(e) {
            return None;
        }
    }
    let v = std::str::from_utf8(bytes).ok()?.parse::<f64>().ok()?;
    let nonzero = unsigned.iter().any(|b| (b'1'..=b'9').contains(b));
    (v.is_finite() && (v != 0.0 || !nonzero)).then_some(v)
}

/// numeric_send's form (ndigits, weight, sign, dscale, then base-10000 digits, all big-endian int16) as
/// the double float8in makes of numeric_out's text: numeric_out prints the value exactly, and any exact
/// decimal spelling of a value rounds to the same double. None for NaN and the infinities, a malformed
/// field, more than 32 digit groups, and what float8in refuses (out of range: infinite, or zero from non-zero
/// digits).
fn numeric_to_f64(bytes: &[u8]) -> Option<f64> {
    /// Digit groups of 4 decimal digits converted here (128 digits, far more than a double tells apart);
    /// longer values go to numeric_recv and the cast.
    const MAX_NUMERIC_GROUPS: usize = 32;
    let word = |i: usize| bytes.get(2 * i..2 * i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let ndigits = usize::from(word(0)?);
    let weight = i64::from(word(1)? as i16);
    let negative = match word(2)? {
        0x0000 => false,
        0x4000 => true,
        _ => return None,
    };
    if bytes.len() != 8 + 2 * ndigits || ndigits > MAX_NUMERIC_GROUPS {
        return None;
    }
    if ndigits == 0 {
        return Some(0.0);
    }
    // "-", the digits, "e" and the exponent, written in place: no allocation on this per-value path.
    let mut buf = [0u8; 1 + 4 * MAX_NUMERIC_GROUPS + 16];
    let mut len = 0;
    if negative {
        buf[0] = b'-';
        len = 1;
    }
    let mut nonzero = false;
    for i in 0..ndigits {
        let d = word(4 + i)?;
        if d > 9999 {
            return None;
        }
        nonzero |= d != 0;
        for (k, div) in [1000, 100, 10, 1].into_iter().enumerate() {
            buf[len + k] = b'0' + (d / div % 10) as u8;
        }
        len += 4;
    }
    // The last group's weight, in powers of ten.
    let exponent = 4 * (weight - (ndigits as i64 - 1));
    let mut rest = &mut buf[len..];
    let room = rest.len();
    std::io::Write::write_fmt(&mut rest, format_args!("e{exponent}")).ok()?;
    len += room - rest.len();
    let text = std::str::from_utf8(&buf[..len]).ok()?;
    let v = text.parse::<f64>().ok()?;
    (v.is_finite() && (v != 0.0 || !nonzero)).then_some(v)
}

/// Sign-extends like C's `(Datum) (int32) x`: Int32GetDatum and friends.
fn datum_i64(v: i64) -> usize {
    v as usize
}

impl FastType {
    /// What the receive function would make of `bytes`. Plain data: callable on any thread.
    pub fn decode(self, bytes: &[u8], rule: TextRule) -> Wire {
        match self {
            FastType::Bool => match bytes {
                [b] => Wire::Value(usize::from(*b != 0)),
                _ => Wire::Recv,
            },
            FastType::Int2 => match <[u8; 2]>::try_from(bytes) {
                Ok(b) => Wire::Value(datum_i64(i16::from_be_bytes(b).into())),
                Err(_) => Wire::Recv,
            },
            FastType::Int4 | FastType::Float4 => match <[u8; 4]>::try_from(bytes) {
                // Float4GetDatum is Int32GetDatum of the float's bits.
                Ok(b) => Wire::Value(datum_i64(i32::from_be_bytes(b).into())),
                Err(_) => Wire::Recv,
            },
            FastType::Int8 | FastType::Float8 => match <[u8; 8]>::try_from(bytes) {
                Ok(b) => Wire::Value(datum_i64(i64::from_be_bytes(b))),
                Err(_) => Wire::Recv,
            },
            FastType::Date => match <[u8; 4]>::try_from(bytes).map(i32::from_be_bytes) {
                Ok(d) if d == i32::MIN || d == i32::MAX || (DATE_MIN..DATE_END).contains(&d) => Wire::Value(datum_i64(d.into())),
                _ => Wire::Recv,
            },
            FastType::Timestamp => match <[u8; 8]>::try_from(bytes).map(i64::from_be_bytes) {
                Ok(t) if t == i64::MIN || t == i64::MAX || (TIMESTAMP_MIN..TIMESTAMP_END).contains(&t) => Wire::Value(datum_i64(t)),
                _ => Wire::Recv,
            },
            FastType::TextInt { min, max } => match plain_int(bytes) {
                Some(v) if (min..=max).contains(&v) => Wire::Value(datum_i64(v)),
                _ => Wire::Recv,
            },
            FastType::TextFloat8 => match plain_float(bytes) {
                Some(v) => Wire::Value(datum_i64(v.to_bits() as i64)),
                None => Wire::Recv,
            },
            FastType::NumericFloat8 => match numeric_to_f64(bytes) {
                Some(v) => Wire::Value(datum_i64(v.to_bits() as i64)),
                None => Wire::Recv,
            },
            FastType::Uuid if bytes.len() == 16 => Wire::ByRef(16),
            FastType::Uuid => Wire::Recv,
            FastType::Varlena { checks_encoding } => {
                // A value too long for a varlena is the receive function's to refuse.
                let fits = bytes.len() <= MAX_VARLENA - VARHDRSZ;
                if cfg!(target_endian = "little") && fits && (!checks_encoding || text_ok(bytes, rule)) {
                    Wire::ByRef(VARHDRSZ + bytes.len())
                } else {
                    Wire::Recv
                }
            }
        }
    }

    /// Lays out the by-reference value of `bytes` (after [`FastType::decode`] said [`Wire::ByRef`]) in
    /// `out`, which must be 4-byte aligned and exactly as long as ByRef said.
    pub fn write_by_ref(self, bytes: &[u8], out: &mut [u8]) {
        match self {
            FastType::Varlena { .. } => {
                // SET_VARSIZE_4B on a little-endian machine: the total size shifted left by two.
                let header = ((VARHDRSZ + bytes.len()) as u32) << 2;
                out[..VARHDRSZ].copy_from_slice(&header.to_ne_bytes());
                out[VARHDRSZ..].copy_from_slice(bytes);
            }
            _ => out.copy_from_slice(bytes),
        }
    }

    /// Appends the binary form of a non-NULL `value` to `out` as its send function would (without the
    /// field's length word); false when the value is left to the send function.
    ///
    /// # Safety
    /// Backend thread; `value` a Datum of this type (a varlena may be toasted: it is detoasted here).
    pub unsafe fn encode(self, value: pg_sys::Datum, out: &mut Vec<u8>) -> bool {
        // SAFETY: the caller upholds this function's contract (# Safety above).
        unsafe {
            let v = value.value();
            match self {
                FastType::Bool => out.push(u8::from(v != 0)),
                FastType::Int2 => out.extend_from_slice(&(v as i16).to_be_bytes()),
                FastType::Int4 | FastType::Float4 | FastType::Date => out.extend_from_slice(&(v as i32).to_be_bytes()),
                FastType::Int8 | FastType::Float8 | FastType::Timestamp => out.extend_from_slice(&(v as i64).to_be_bytes()),
                FastType::Uuid => out.extend_from_slice(std::slice::from_raw_parts(value.cast_mut_ptr::<u8>(), 16)),
                // Read-only conversions (for_text_input): never chosen for a write.
                FastType::TextInt { .. } | FastType::TextFloat8 | FastType::NumericFloat8 => return false,
                FastType::Varlena { .. } => {
                    // Short or plain headers are read in place; compressed or external values are detoasted
                    // (in the current memory context). Same encodings on both sides: textsend does not convert.
                    let v = pg_sys::pg_detoast_datum_packed(value.cast_mut_ptr());
                    let len = pgrx::varlena::varsize_any_exhdr(v);
                    let data = pgrx::varlena::vardata_any(v);
                    out.extend_from_slice(std::slice::from_raw_parts(data.cast::<u8>(), len));
                }
            }
            true
        }
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::*;
    use pgrx::prelude::*;
    use std::ffi::CString;

    fn oid(t: &str) -> pg_sys::Oid {
        Spi::get_one::<pg_sys::Oid>(&format!("SELECT '{t}'::regtype::oid")).unwrap().unwrap()
    }

    /// The text conversions give float8in's and intNin's very values, and leave to them what they refuse.
    #[pg_test]
    fn text_conversions_are_the_input_functions() {
        let floats = ["0", "-0", "0.1", "1.5", "123456.789", "-2.5e-3", "1e308", "1.7976931348623157e308",
            "4.9e-324", "2.2250738585072014e-308", "0.30000000000000004", "9007199254740993", "1E+10", "00012.50"];
        for v in floats {
            let want = Spi::get_one::<f64>(&format!("SELECT '{v}'::float8")).unwrap().unwrap();
            match FastType::TextFloat8.decode(v.as_bytes(), TextRule::Utf8) {
                Wire::Value(bits) => assert_eq!(bits as u64, want.to_bits(), "{v}"),
                other => panic!("{v}: {other:?}"),
            }
        }
        // Out of range for float8in (an ERROR there), or spelled otherwise: its own.
        for v in ["1e400", "-1e400", "1e-400", "NaN", "Infinity", " 1", "1.", ".5", "1e", "+1", "1_0", ""] {
            assert_eq!(FastType::TextFloat8.decode(v.as_bytes(), TextRule::Utf8), Wire::Recv, "{v}");
        }
        let int4 = FastType::for_text_input(oid("int4")).unwrap();
        for v in ["0", "-1", "2147483647", "-2147483648", "0012"] {
            let want = Spi::get_one::<i32>(&format!("SELECT '{v}'::int4")).unwrap().unwrap();
            assert_eq!(int4.decode(v.as_bytes(), TextRule::Utf8), Wire::Value(datum_i64(want.into())), "{v}");
        }
        for v in ["2147483648", "-2147483649", "3000000000", " 1", "+1", "1.0", "", "-"] {
            assert_eq!(int4.decode(v.as_bytes(), TextRule::Utf8), Wire::Recv, "{v}");
        }
        let int8 = FastType::for_text_input(oid("int8")).unwrap();
        assert_eq!(int8.decode(b"-9223372036854775808", TextRule::Utf8), Wire::Value(datum_i64(i64::MIN)));
        assert_eq!(int8.decode(b"9223372036854775808", TextRule::Utf8), Wire::Recv);
        let int2 = FastType::for_text_input(oid("int2")).unwrap();
        assert_eq!(int2.decode(b"-32768", TextRule::Utf8), Wire::Value(datum_i64(-32768)));
        assert_eq!(int2.decode(b"32768", TextRule::Utf8), Wire::Recv);
        assert_eq!(FastType::for_text_input(oid("numeric")), None);
    }

    /// numeric's binary form into float8 is numeric_float8 (float8in of numeric_out), edges included.
    #[pg_test]
    fn numeric_into_float8_is_numeric_float8() {
        let values = ["0", "0.000", "1", "-1", "0.1", "123456.789", "-2.5e-3", "9007199254740993", "1e308",
            "1.7976931348623157e308", "4.9e-324", "2.2250738585072014e-308", "0.30000000000000004",
            "3.14159265358979323846264338327950288419716939937510", "100000000", "0.0001", "12345678901234567890.5"];
        for v in values {
            let bytes = Spi::get_one::<Vec<u8>>(&format!("SELECT numeric_send('{v}'::numeric)")).unwrap().unwrap();
            let want = Spi::get_one::<f64>(&format!("SELECT '{v}'::numeric::float8")).unwrap().unwrap();
            match FastType::NumericFloat8.decode(&bytes, TextRule::Utf8) {
                Wire::Value(bits) => assert_eq!(bits as u64, want.to_bits(), "{v}"),
                other => panic!("{v}: {other:?}"),
            }
        }
        // Left to numeric_recv + numeric_float8: specials, and what float8in refuses (an ERROR there).
        for v in ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400"] {
            let bytes = Spi::get_one::<Vec<u8>>(&format!("SELECT numeric_send('{v}'::numeric)")).unwrap().unwrap();
            assert_eq!(FastType::NumericFloat8.decode(&bytes, TextRule::Utf8), Wire::Recv, "{v}");
        }
        assert_eq!(FastType::NumericFloat8.decode(&[0, 1, 0, 0, 0, 0, 0, 0], TextRule::Utf8), Wire::Recv);
    }

    /// A compressed text value (as a table scan hands it over) is detoasted before it is sent.
    #[pg_test]
    fn compressed_text_is_sent_whole() {
        let long = "abc".repeat(10_000);
        Spi::run(&format!("CREATE TABLE big (t text); INSERT INTO big VALUES ('{long}')")).unwrap();
        assert_eq!(Spi::get_one::<String>("SELECT pg_column_compression(t) FROM big").unwrap().as_deref(), Some("pglz"));
        // SAFETY: a #[pg_test] runs on the backend thread inside its test transaction; SPI is connected and finished
        // in this block, and the tuple is read while SPI still holds it.
        unsafe {
            pg_sys::SPI_connect();
            let q = CString::new("SELECT t FROM big").unwrap();
            // Not read-only: that would not see the row this transaction just inserted.
            assert_eq!(pg_sys::SPI_execute(q.as_ptr(), false, 0), pg_sys::SPI_OK_SELECT as i32);
            let processed = pg_sys::SPI_processed;
            assert_eq!(processed, 1);
            let tab = pg_sys::SPI_tuptable;
            let mut isnull = false;
            let d = pg_sys::SPI_getbinval(*(*tab).vals, (*tab).tupdesc, 1, &mut isnull);
            assert!(!isnull);
            assert_eq!(*d.cast_mut_ptr::<u8>() & 0x03, 0x02, "the value is compressed in place");
            let mut out = Vec::new();
            assert!(FastType::Varlena { checks_encoding: true }.encode(d, &mut out));
            pg_sys::SPI_finish();
            assert_eq!(out, long.as_bytes());
        }
    }

    /// What the receive function must judge goes to it: out of range, wrong length, bad text.
    #[pg_test]
    fn doubtful_fields_go_to_the_receive_function() {
        let t = |b: &[u8], f: FastType| f.decode(b, TextRule::Utf8);
        assert_eq!(t(&[0, 0, 1], FastType::Int4), Wire::Recv);
        assert_eq!(t(&[1, 2], FastType::Bool), Wire::Recv);
        assert_eq!(t(&(DATE_END).to_be_bytes(), FastType::Date), Wire::Recv);
        assert_eq!(t(&(DATE_MIN - 1).to_be_bytes(), FastType::Date), Wire::Recv);
        assert_eq!(t(&(DATE_END - 1).to_be_bytes(), FastType::Date), Wire::Value((DATE_END - 1) as usize));
        assert_eq!(t(&TIMESTAMP_END.to_be_bytes(), FastType::Timestamp), Wire::Recv);
        assert_eq!(t(&(TIMESTAMP_MIN - 1).to_be_bytes(), FastType::Timestamp), Wire::Recv);
        assert_eq!(t(&i64::MAX.to_be_bytes(), FastType::Timestamp), Wire::Value(i64::MAX as usize));
        let text = FastType::Varlena { checks_encoding: true };
        assert_eq!(t(b"a\0b", text), Wire::Recv);
        assert_eq!(t(b"\xed\xa0\x80", text), Wire::Recv, "a UTF-8 surrogate");
        assert_eq!(t(b"\xc0\xaf", text), Wire::Recv, "an overlong form");
        assert_eq!(FastType::Varlena { checks_encoding: true }.decode(b"\xe9", TextRule::SqlAscii), Wire::ByRef(5));
        assert_eq!(FastType::Varlena { checks_encoding: false }.decode(b"a\0b", TextRule::Utf8), Wire::ByRef(7));
        // The longest field a varlena holds, and one byte more (no allocation: a zeroed mapping).
        let big = vec![0u8; MAX_VARLENA - VARHDRSZ + 1];
        let bytea = FastType::Varlena { checks_encoding: false };
        assert_eq!(bytea.decode(&big[1..], TextRule::Utf8), Wire::ByRef(MAX_VARLENA));
        assert_eq!(bytea.decode(&big, TextRule::Utf8), Wire::Recv);
    }

    #[pg_test]
    fn only_the_types_themselves_without_typmods() {
        Spi::run("CREATE DOMAIN d_int AS int CHECK (VALUE > 0)").unwrap();
        assert_eq!(FastType::for_recv(oid("d_int"), -1), None, "a domain's constraints need its receive function");
        assert_eq!(FastType::for_send(oid("integer")), Some(FastType::Int4));
        assert_eq!(FastType::for_recv(pg_sys::VARCHAROID, 7), None, "varchar(3)");
        assert_eq!(FastType::for_recv(pg_sys::TIMESTAMPTZOID, 3), None, "timestamptz(3) rounds");
        assert_eq!(FastType::for_recv(pg_sys::TIMESTAMPTZOID, 6), Some(FastType::Timestamp));
        assert_eq!(FastType::for_recv(pg_sys::NUMERICOID, -1), None);
        assert_eq!(FastType::for_recv(pg_sys::BPCHAROID, -1), None);
    }
}
