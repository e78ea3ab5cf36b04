//! Values through the column types' binary I/O functions (typreceive / typsend), for COPY binary, and the
//! rule of which types may travel that way between two different databases.
//!
//! A binary form is only portable when it does not hold anything local to one database: arrays embed their
//! element type's OID (array_recv refuses another), composites their columns' OIDs, reg* types are OIDs.
//! Text-like receive functions convert from the session's client_encoding, and CARTO's binary text is UTF-8,
//! so binary needs client_encoding = the database encoding = UTF8 (or SQL_ASCII, which PostgreSQL checks for
//! NUL only, as the text transport does): then the receive functions validate the bytes themselves (invalid
//! UTF-8 and NUL refused) like crate::pg::text does on the text transports; in any other database encoding
//! the text transports convert from UTF-8 and binary is not used. See docs/reads.md "Transports".

use pgrx::pg_sys;
use pgrx::{PgLogLevel, PgSqlErrorCode};

use crate::pg::cstr::cstr_owned;

use crate::pg::sql_text::strip_schema;

/// How a local column's values can travel in binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinaryType {
    /// The type the remote SELECT casts the column to: the local type (a domain's base type) WITHOUT its
    /// typmod, so that the local receive function applies the typmod as the input function would (an
    /// explicit cast to varchar(3) or bit(4) would truncate silently, a geometry(Point) cast would fail on
    /// CARTO's side).
    pub cast: String,
    /// The type's name without typmod, to compare with the remote column's `format_type(atttypid, NULL)`.
    pub name: String,
}

/// Built-in types (crate::pg::builtin) have the same OID and binary form on CARTO.
fn builtin(oid: pg_sys::Oid) -> bool {
    crate::pg::builtin::is_builtin(oid)
}

fn has_io(type_oid: pg_sys::Oid, which: pg_sys::IOFuncSelector::Type) -> bool {
    let (mut typlen, mut byval, mut align, mut delim) = (0i16, false, 0 as std::ffi::c_char, 0 as std::ffi::c_char);
    let (mut ioparam, mut func) = (pg_sys::InvalidOid, pg_sys::InvalidOid);
    // SAFETY: backend thread in a transaction (callers plan or run a scan or upload); every out-pointer is a local.
    unsafe {
        pg_sys::get_type_io_data(type_oid, which, &mut typlen, &mut byval, &mut align, &mut delim, &mut ioparam, &mut func)
    };
    func != pg_sys::InvalidOid
}

/// Built-in types whose binary form is an OID (or otherwise local): never binary.
fn oid_valued(base: pg_sys::Oid) -> bool {
    use pg_sys::BuiltinOid as B;
    [
        B::REGPROCOID, B::REGPROCEDUREOID, B::REGOPEROID, B::REGOPERATOROID, B::REGCLASSOID, B::REGTYPEOID,
        B::REGROLEOID, B::REGNAMESPACEOID, B::REGCONFIGOID, B::REGDICTIONARYOID, B::REGCOLLATIONOID,
        // xml_recv re-encodes by the document's own declaration: keep the text path's exact behaviour.
        B::XMLOID,
    ]
    .iter()
    .any(|b| b.value() == base)
}

/// Whether a column of this type can be read and written in binary, and as what; the reason
/// when it cannot.
///
/// # Safety
/// Backend thread, in a transaction.
pub unsafe fn binary_type(type_oid: pg_sys::Oid) -> Result<BinaryType, String> {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        if !has_io(type_oid, pg_sys::IOFuncSelector::IOFunc_receive) || !has_io(type_oid, pg_sys::IOFuncSelector::IOFunc_send) {
            return Err("it has no binary send/receive functions".into());
        }
        let base = pg_sys::getBaseType(type_oid);
        // format_type_be, like SQL's format_type(oid, NULL), names CARTO's column types; the cast needs the
        // typmod-less spelling ("bpchar" and "bit" with quotes: plain "character" and "bit" mean length 1).
        let name = strip_schema(&cstr_owned(pg_sys::format_type_be(base)).unwrap_or_default());
        let cast = strip_schema(&cstr_owned(pg_sys::format_type_with_typemod(base, -1)).unwrap_or_default());
        let ok = BinaryType { cast, name };
        match pg_sys::get_typtype(base) as u8 {
            b'b' => {
                let elem = pg_sys::get_element_type(base);
                if elem != pg_sys::InvalidOid {
                    if !builtin(elem) {
                        return Err("its binary form holds the OID of a non-built-in element type".into());
                    }
                    return binary_type(elem).map(|_| ok);
                }
                if oid_valued(base) {
                    return Err("its binary form is local to the database".into());
                }
                Ok(ok)
            }
            // Enums travel as their label (enum_send / enum_recv), checked against the local labels.
            b'e' => Ok(ok),
            b'r' | b'm' if builtin(base) => Ok(ok),
            b'r' | b'm' => Err("it is a range over a non-built-in type".into()),
            b'c' => Err("composite values hold their columns' type OIDs".into()),
            _ => Err("it is a pseudo-type".into()),
        }
    }
}

/// Binary text-like values convert from client_encoding, and CARTO's are UTF-8: binary only when
/// client_encoding is the database encoding and that is UTF8 (or SQL_ASCII). A LATIN1 database would
/// otherwise take CARTO's UTF-8 bytes as LATIN1 unchecked, where the text transports convert them.
pub fn encodings_agree() -> bool {
    // SAFETY: plain reads of backend globals.
    let (db, client) = unsafe { (pg_sys::GetDatabaseEncoding(), pg_sys::pg_get_client_encoding()) };
    let utf8_like = db == pg_sys::pg_enc::PG_UTF8 as i32 || db == pg_sys::pg_enc::PG_SQL_ASCII as i32;
    db == client && utf8_like
}

/// A column's receive function, looked up once per scan.
pub struct ColumnRecv {
    pub attnum: i16,
    flinfo: Box<pg_sys::FmgrInfo>,
    ioparam: pg_sys::Oid,
    typmod: i32,
    /// The field's bytes plus the NUL that StringInfo's convention asks for.
    scratch: Vec<u8>,
}

/// A cast function (`source::target`) called on received values: the one PostgreSQL's explicit cast runs.
pub struct CastCall {
    flinfo: Box<pg_sys::FmgrInfo>,
}

impl CastCall {
    /// The cast's function, None when the cast is not a plain function call.
    ///
    /// # Safety
    /// Backend thread, in a transaction.
    pub unsafe fn new(source: pg_sys::Oid, target: pg_sys::Oid) -> Option<Self> {
        // SAFETY: the caller upholds this function's contract (# Safety above).
        unsafe {
            let mut func = pg_sys::InvalidOid;
            let path = pg_sys::find_coercion_pathway(target, source, pg_sys::CoercionContext::COERCION_EXPLICIT, &mut func);
            if path != pg_sys::CoercionPathType::COERCION_PATH_FUNC || func == pg_sys::InvalidOid {
                return None;
            }
            let mut flinfo: Box<pg_sys::FmgrInfo> = Box::new(std::mem::zeroed());
            pg_sys::fmgr_info(func, flinfo.as_mut());
            Some(CastCall { flinfo })
        }
    }

    /// The cast of a non-NULL `value`; may raise the cast's ERROR.
    ///
    /// # Safety
    /// Backend thread; `value` a Datum of the source type.
    pub unsafe fn call(&mut self, value: pg_sys::Datum) -> pg_sys::Datum {
        // SAFETY: the caller upholds this function's contract (# Safety above).
        unsafe { pg_sys::FunctionCall1Coll(self.flinfo.as_mut(), pg_sys::InvalidOid, value) }
    }
}

impl ColumnRecv {
    /// # Safety
    /// Backend thread, in a transaction; the type has a receive function ([`binary_type`] said so).
    pub unsafe fn new(attnum: i16, type_oid: pg_sys::Oid, typmod: i32) -> Self {
        // SAFETY: the caller upholds this function's contract (# Safety above).
        unsafe {
            let mut func = pg_sys::InvalidOid;
            let mut ioparam = pg_sys::InvalidOid;
            pg_sys::getTypeBinaryInputInfo(type_oid, &mut func, &mut ioparam);
            let mut flinfo: Box<pg_sys::FmgrInfo> = Box::new(std::mem::zeroed());
            pg_sys::fmgr_info(func, flinfo.as_mut());
            ColumnRecv { attnum, flinfo, ioparam, typmod, scratch: Vec::new() }
        }
    }

    /// The value of one field, through the type's receive function with the column's typmod. Raises an ERROR
    /// for data the function refuses or does not use up (as COPY FROM binary does).
    ///
    /// # Safety
    /// Backend thread.
    pub unsafe fn recv(&mut self, bytes: &[u8]) -> pg_sys::Datum {
        // SAFETY: the caller upholds this function's contract (# Safety above).
        unsafe {
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.clear();
            scratch.extend_from_slice(bytes);
            scratch.push(0);
            let d = self.recv_in_place(scratch.as_mut_ptr(), bytes.len());
            self.scratch = scratch;
            d
        }
    }

    /// [`ColumnRecv::recv`] of the `len` bytes at `data`, which are followed by a NUL (StringInfo's
    /// convention) and stay valid, unchanged by anyone else, during the call.
    ///
    /// # Safety
    /// Backend thread; `data` points to `len + 1` writable bytes.
    pub unsafe fn recv_in_place(&mut self, data: *mut u8, len: usize) -> pg_sys::Datum {
        // SAFETY: the caller upholds this function's contract (# Safety above).
        unsafe {
            let mut buf = pg_sys::StringInfoData { data: data.cast(), len: len as i32, maxlen: len as i32 + 1, cursor: 0 };
            let d = pg_sys::ReceiveFunctionCall(self.flinfo.as_mut(), &mut buf, self.ioparam, self.typmod);
            if buf.cursor != buf.len {
                pgrx::ereport!(
                    PgLogLevel::ERROR,
                    PgSqlErrorCode::ERRCODE_INVALID_BINARY_REPRESENTATION,
                    "incorrect binary data format"
                );
            }
            d
        }
    }

    /// NULL goes through the receive function too, so a domain's NOT NULL is checked.
    ///
    /// # Safety
    /// Backend thread.
    pub unsafe fn recv_null(&mut self) -> pg_sys::Datum {
        // SAFETY: the caller upholds this function's contract (# Safety above).
        unsafe {
            pg_sys::ReceiveFunctionCall(self.flinfo.as_mut(), std::ptr::null_mut(), self.ioparam, self.typmod)
        }
    }
}

/// A column's send function, for values uploaded in binary.
pub struct ColumnSend {
    flinfo: Box<pg_sys::FmgrInfo>,
    /// Set for the built-in types whose binary form carto_fdw writes itself (binary_fast.rs).
    fast: Option<crate::pg::binary_fast::FastType>,
}

impl ColumnSend {
    /// # Safety
    /// Backend thread, in a transaction; the type has a send function.
    pub unsafe fn new(type_oid: pg_sys::Oid) -> Self {
        // SAFETY: the caller upholds this function's contract (# Safety above).
        unsafe {
            let mut func = pg_sys::InvalidOid;
            let mut varlena = false;
            pg_sys::getTypeBinaryOutputInfo(type_oid, &mut func, &mut varlena);
            let mut flinfo: Box<pg_sys::FmgrInfo> = Box::new(std::mem::zeroed());
            pg_sys::fmgr_info(func, flinfo.as_mut());
            ColumnSend { flinfo, fast: crate::pg::binary_fast::FastType::for_send(pg_sys::getBaseType(type_oid)) }
        }
    }

    /// Appends the value as one field of a binary COPY tuple: its length word, then its binary form,
    /// written directly for built-in types (binary_fast.rs), else through the send function (which
    /// allocates in the current memory context).
    ///
    /// # Safety
    /// Backend thread; `value` a non-NULL datum of the column's type.
    pub unsafe fn send_field(&mut self, value: pg_sys::Datum, out: &mut Vec<u8>) {
        // SAFETY: the caller upholds this function's contract (# Safety above).
        unsafe {
            if let Some(fast) = self.fast {
                let at = out.len();
                out.extend_from_slice(&[0; 4]);
                if fast.encode(value, out) {
                    let len = (out.len() - at - 4) as i32;
                    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
                    return;
                }
                out.truncate(at);
            }
            carto_client::copy_binary::Encoder::field(out, self.send(value));
        }
    }

    /// The value's binary form, palloc'd in the current memory context (valid until it is reset).
    ///
    /// # Safety
    /// Backend thread; `value` a non-NULL datum of the column's type.
    pub unsafe fn send<'a>(&mut self, value: pg_sys::Datum) -> &'a [u8] {
        // SAFETY: the caller upholds this function's contract (# Safety above).
        unsafe {
            let bytea = pg_sys::SendFunctionCall(self.flinfo.as_mut(), value);
            let len = pgrx::varlena::varsize_any_exhdr(bytea.cast());
            let data = pgrx::varlena::vardata_any(bytea.cast());
            std::slice::from_raw_parts(data.cast(), len)
        }
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::*;
    use crate::pg::binary_fast::{FastType, TextRule, Wire, DATE_END, TIMESTAMP_END};
    use pgrx::prelude::*;
    use std::ffi::CString;

    fn oid(t: &str) -> pg_sys::Oid {
        Spi::get_one::<pg_sys::Oid>(&format!("SELECT '{t}'::regtype::oid")).unwrap().unwrap()
    }

    fn typmod(t: &str) -> i32 {
        Spi::get_one::<i32>(&format!(
            "SELECT coalesce((SELECT atttypmod FROM pg_attribute WHERE attrelid = 'typmods'::regclass AND atttypid = '{t}'::regtype), -1)"
        ))
        .unwrap()
        .unwrap_or(-1)
    }

    #[pg_test]
    fn which_types_go_binary() {
        Spi::run("CREATE TYPE t_mood AS ENUM ('a', 'b'); CREATE DOMAIN t_pos AS int CHECK (VALUE > 0); CREATE TYPE t_pair AS (a int, b text); CREATE DOMAIN t_moods AS t_mood[]").unwrap();
        // SAFETY: a #[pg_test] runs on the backend thread inside its test transaction; binary_type's contract.
        let ty = |t: &str| unsafe { binary_type(oid(t)) };
        assert_eq!(ty("integer").unwrap(), BinaryType { cast: "integer".into(), name: "integer".into() });
        // Casts without typmod: bpchar and "bit", never character / bit (length 1); names as format_type(oid, NULL).
        assert_eq!(ty("character(5)").unwrap(), BinaryType { cast: "bpchar".into(), name: "character".into() });
        assert_eq!(ty("bit(4)").unwrap(), BinaryType { cast: "\"bit\"".into(), name: "bit".into() });
        assert_eq!(ty("varchar(3)").unwrap().cast, "character varying");
        assert_eq!(ty("t_pos").unwrap().name, "integer");
        for t in ["int4[]", "text[]", "tstzrange", "int4multirange", "t_mood", "jsonb", "numeric", "timestamptz", "bytea"] {
            assert!(ty(t).is_ok(), "{t} should go binary");
        }
        for t in ["xml", "regclass", "regtype[]", "t_pair", "t_mood[]", "t_moods", "aclitem"] {
            assert!(ty(t).is_err(), "{t} must not go binary");
        }
    }

    #[pg_test]
    fn send_then_receive_keeps_every_value() {
        Spi::run("CREATE TABLE typmods (a numeric(10,2), b varchar(3), c bit(4))").unwrap();
        for (t, v) in [
            ("numeric", "12345678.91"),
            ("double precision", "-0"),
            ("double precision", "NaN"),
            ("timestamp with time zone", "infinity"),
            ("date", "4713-01-01 BC"),
            ("text[]", "{a,NULL,\"b c\",\"\"}"),
            ("character varying", "abc"),
            ("bit", "1010"),
            ("jsonb", "{\"a\": [1, 2.50]}"),
            ("interval", "-178000000 years"),
        ] {
            // SAFETY: a #[pg_test] runs on the backend thread inside its test transaction; every Datum comes from the
            // type's own input function, for the receive/send functions of that type.
            unsafe {
                let ty = oid(t);
                let (mut input, mut ioparam) = (pg_sys::InvalidOid, pg_sys::InvalidOid);
                pg_sys::getTypeInputInfo(ty, &mut input, &mut ioparam);
                let cv = CString::new(v).unwrap();
                let tm = typmod(t);
                let d = pg_sys::OidInputFunctionCall(input, cv.as_ptr() as *mut _, ioparam, tm);
                let bytes = ColumnSend::new(ty).send(d).to_vec();
                let back = ColumnRecv::new(1, ty, tm).recv(&bytes);
                let (mut output, mut varlena) = (pg_sys::InvalidOid, false);
                pg_sys::getTypeOutputInfo(ty, &mut output, &mut varlena);
                let a = std::ffi::CStr::from_ptr(pg_sys::OidOutputFunctionCall(output, d)).to_string_lossy().into_owned();
                let b = std::ffi::CStr::from_ptr(pg_sys::OidOutputFunctionCall(output, back)).to_string_lossy().into_owned();
                assert_eq!(a, b, "{t} {v}");
            }
        }
    }

    #[pg_test(error = "incorrect binary data format")]
    fn trailing_bytes_are_an_error() {
        // SAFETY: a #[pg_test] runs on the backend thread inside its test transaction; ColumnRecv's contract (an
        // ERROR is what the test expects).
        unsafe { ColumnRecv::new(1, pg_sys::INT4OID, -1).recv(&[0, 0, 0, 1, 0]) };
    }

    #[pg_test(error = "value too long for type character varying(3)")]
    fn receive_applies_the_typmod() {
        // varchar(3) is typmod 7 (3 + VARHDRSZ).
        // SAFETY: a #[pg_test] runs on the backend thread inside its test transaction; ColumnRecv's contract (an
        // ERROR is what the test expects).
        unsafe { ColumnRecv::new(1, pg_sys::VARCHAROID, 7).recv(b"abcd") };
    }

    // binary_fast's conversions against the types' own send and receive functions (here, above it: binary_fast
    // does not import this file).

    unsafe fn input(ty: pg_sys::Oid, v: &str) -> pg_sys::Datum {
        // SAFETY: this function's contract: called on the backend thread, inside a transaction.
        unsafe {
            let (mut f, mut ioparam) = (pg_sys::InvalidOid, pg_sys::InvalidOid);
            pg_sys::getTypeInputInfo(ty, &mut f, &mut ioparam);
            let c = CString::new(v).unwrap();
            pg_sys::OidInputFunctionCall(f, c.as_ptr() as *mut _, ioparam, -1)
        }
    }

    /// The Datum `decode` gives, made real (by-ref values laid out in palloc'd memory).
    unsafe fn decoded(t: FastType, bytes: &[u8]) -> Option<pg_sys::Datum> {
        // SAFETY: this function's contract: called on the backend thread, inside a transaction.
        unsafe {
            match t.decode(bytes, TextRule::Utf8) {
                Wire::Value(v) => Some(pg_sys::Datum::from(v)),
                Wire::ByRef(n) => {
                    let p = pg_sys::palloc(n).cast::<u8>();
                    t.write_by_ref(bytes, std::slice::from_raw_parts_mut(p, n));
                    Some(pg_sys::Datum::from(p))
                }
                Wire::Recv => None,
            }
        }
    }

    /// A by-reference value's bytes: a varlena's whole (header included), else `len` bytes.
    unsafe fn by_ref_bytes(d: pg_sys::Datum, len: i16) -> Vec<u8> {
        // SAFETY: this function's contract: called on the backend thread, inside a transaction.
        unsafe {
            let p = d.cast_mut_ptr::<u8>();
            let n = if len == -1 { pgrx::varlena::varsize_any(p.cast()) } else { len as usize };
            std::slice::from_raw_parts(p, n).to_vec()
        }
    }

    /// Every value: the same bytes as the send function, and back the same Datum as the receive function
    /// (bit for bit for by-value types, datumIsEqual for the others).
    #[pg_test]
    fn conversions_equal_the_types_own_functions() {
        let cases: &[(&str, &[&str])] = &[
            ("boolean", &["true", "false"]),
            ("smallint", &["0", "-1", "32767", "-32768"]),
            ("integer", &["0", "-1", "2147483647", "-2147483648"]),
            ("bigint", &["0", "-1", "9223372036854775807", "-9223372036854775808"]),
            ("real", &["0", "-0", "1.5", "-3.4e38", "NaN", "Infinity", "-Infinity", "1e-45"]),
            ("double precision", &["0", "-0", "0.1", "1.7976931348623157e308", "NaN", "-Infinity", "5e-324"]),
            ("date", &["2000-01-01", "4713-01-01 BC", "5874897-12-31", "infinity", "-infinity", "1999-12-31"]),
            ("timestamp", &["2000-01-01 00:00:00", "4713-01-01 00:00:00 BC", "294276-12-31 23:59:59.999999", "infinity", "-infinity"]),
            ("timestamptz", &["2026-12-04 18:00:00.123456+00", "4713-01-01 00:00:00+00 BC", "294276-12-31 23:59:59.999999+00", "infinity"]),
            ("uuid", &["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "00000000-0000-0000-0000-000000000000"]),
            ("text", &["", "plain", "quote ' \" \\ tab\t newline\n", "ünïcödé 🌍", "\u{10FFFF}"]),
            ("character varying", &["", "abc", "日本"]),
            ("bytea", &["\\x", "\\x00ff00", "\\x5c0a0d"]),
        ];
        // SAFETY: a #[pg_test] runs on the backend thread inside its test transaction; every Datum comes from the
        // type's own input function, and decoded/by_ref_bytes are given that type's values.
        unsafe {
            for (t, values) in cases {
                let ty = oid(t);
                let fast = FastType::for_recv(ty, -1).unwrap_or_else(|| panic!("{t} has no fast path"));
                assert_eq!(FastType::for_send(ty), Some(fast));
                let (mut byval, mut len) = (false, 0i16);
                pg_sys::get_typlenbyval(ty, &mut len, &mut byval);
                for v in *values {
                    let d = input(ty, v);
                    let sent = ColumnSend::new(ty).send(d).to_vec();
                    let mut mine = Vec::new();
                    assert!(fast.encode(d, &mut mine));
                    assert_eq!(mine, sent, "send of {t} {v:?}");
                    let theirs = ColumnRecv::new(1, ty, -1).recv(&sent);
                    let ours = decoded(fast, &sent).unwrap_or_else(|| panic!("{t} {v:?} not converted"));
                    if byval {
                        assert_eq!(ours.value(), theirs.value(), "recv of {t} {v:?}");
                    } else {
                        assert_eq!(by_ref_bytes(ours, len), by_ref_bytes(theirs, len), "recv of {t} {v:?}");
                    }
                }
            }
        }
    }

    /// The fields binary_fast leaves to the receive functions (binary_fast's doubtful_fields_go_to_the_receive_function)
    /// are refused by them.
    #[pg_test]
    fn receive_functions_refuse_what_the_fast_path_leaves() {
        // SAFETY: a #[pg_test] runs on the backend thread inside its test transaction; the PgTryBuilder catches the
        // receive functions' ERRORs.
        unsafe {
            for (ty, bytes) in [
                (pg_sys::DATEOID, DATE_END.to_be_bytes().to_vec()),
                (pg_sys::TIMESTAMPTZOID, TIMESTAMP_END.to_be_bytes().to_vec()),
                (pg_sys::TEXTOID, b"a\0b".to_vec()),
            ] {
                let caught = PgTryBuilder::new(|| {
                    ColumnRecv::new(1, ty, -1).recv(&bytes);
                    false
                })
                .catch_others(|_| true)
                .execute();
                assert!(caught, "{ty:?} accepted {bytes:?}");
            }
        }
    }
}
