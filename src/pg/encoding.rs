//! The one place where text crosses between the database encoding and UTF-8, the only encoding CARTO
//! speaks. Everything the extension handles as a Rust string is UTF-8: text leaving the backend (SQL
//! sent to CARTO with its constants, COPY rows, names, option values, function arguments) is
//! converted here from the database encoding with PostgreSQL's own conversion routines, and text
//! arriving from CARTO is converted back (here, and value by value in crate::pg::text, which also
//! names the column in its errors).
//!
//! - UTF8 databases: nothing to convert; ASCII text (almost all of it) takes a fast path everywhere.
//! - Other server encodings (LATIN1, WIN1252, EUC_JP, ...): every encoding PostgreSQL supports as a
//!   server encoding maps into Unicode, so text leaving always converts; a byte that is invalid in the
//!   database encoding is PostgreSQL's ERROR (22021). Text arriving with a character the database
//!   encoding lacks is PostgreSQL's ERROR (22P05), never a replacement character.
//! - SQL_ASCII databases: no encoding is known, so bytes are sent as they are. They must then be
//!   valid UTF-8 (CARTO refuses anything else): PostgreSQL's ERROR otherwise.
//!
//! Nothing here is lossy: there is no `to_string_lossy` on the way to CARTO.

use std::borrow::Cow;
use std::ffi::{c_char, CStr};

use pgrx::pg_sys;
use pgrx::pgrx_sql_entity_graph::metadata::{ArgumentError, Returns, ReturnsError, SqlMapping, SqlTranslatable};
use pgrx::{FromDatum, IntoDatum, PgSqlErrorCode};

use crate::pg::error::FdwError;

fn database_encoding() -> i32 {
    // SAFETY: a read of a backend global, set at backend start.
    unsafe { pg_sys::GetDatabaseEncoding() }
}

/// True when the database encoding is UTF8: Rust strings are the database's own bytes.
pub fn database_is_utf8() -> bool {
    database_encoding() == pg_sys::pg_enc::PG_UTF8 as i32
}

/// `bytes` (valid UTF-8 after a PostgreSQL conversion or check) as a str. PostgreSQL and Rust agree on
/// what valid UTF-8 is (RFC 3629); should they ever not, PostgreSQL's own check raises its ERROR, and
/// failing that ours (22021) — never a lossy string.
fn utf8_checked(bytes: &[u8]) -> &str {
    match std::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(_) => {
            if let Ok(len) = i32::try_from(bytes.len()) {
                // SAFETY: backend thread; `bytes` is readable for `len` bytes; noError = false raises
                // PostgreSQL's "invalid byte sequence for encoding "UTF8"" ERROR.
                unsafe { pg_sys::pg_verify_mbstr(pg_sys::pg_enc::PG_UTF8 as i32, bytes.as_ptr().cast(), len, false) };
            }
            FdwError::Custom {
                code: PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
                message: "text to send to CARTO is not valid UTF-8".into(),
                detail: None,
                hint: None,
            }
            .report()
        }
    }
}

/// Text in the database encoding (without a terminating NUL) as UTF-8, for CARTO. ASCII and a UTF8
/// database borrow; otherwise PostgreSQL converts (its ERROR for an invalid byte, also a NUL).
pub fn server_to_utf8(bytes: &[u8]) -> Cow<'_, str> {
    if bytes.is_ascii() {
        // ASCII is UTF-8 (a NUL among it is left to the consumer, as for any Rust string).
        return Cow::Borrowed(utf8_checked(bytes));
    }
    let db = database_encoding();
    if db == pg_sys::pg_enc::PG_UTF8 as i32 {
        // The database's own bytes, already valid UTF-8 (checked when they were stored).
        return Cow::Borrowed(utf8_checked(bytes));
    }
    let Ok(len) = i32::try_from(bytes.len()) else {
        FdwError::Custom {
            code: PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            message: "text to send to CARTO is too long to convert to UTF-8".into(),
            detail: None,
            hint: None,
        }
        .report()
    };
    // SAFETY: backend thread; `bytes` is readable for `len` bytes. pg_server_to_any returns its input
    // when nothing is converted (an SQL_ASCII database: the bytes are then checked as UTF-8, its
    // ERROR otherwise), else a palloc'd NUL-terminated conversion (its ERROR for an invalid byte).
    unsafe {
        let src: *const c_char = bytes.as_ptr().cast();
        let out = pg_sys::pg_server_to_any(src, len, pg_sys::pg_enc::PG_UTF8 as i32);
        if out.cast_const() == src {
            return Cow::Borrowed(utf8_checked(bytes));
        }
        let converted = utf8_checked(CStr::from_ptr(out).to_bytes()).to_owned();
        pg_sys::pfree(out.cast());
        Cow::Owned(converted)
    }
}

/// The NUL-terminated string at `p`, in the database encoding, as UTF-8; None for a null pointer.
/// What every name, output-function result and option value goes through on its way to a Rust string.
///
/// # Safety
/// Backend thread; `p` is null or points to a NUL-terminated string that stays valid during the call.
pub unsafe fn cstr_to_utf8(p: *const c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null, NUL-terminated and valid: this function's contract.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    Some(server_to_utf8(bytes).into_owned())
}

/// UTF-8 text (from CARTO, or a Rust string) in the database encoding: for text going back into
/// PostgreSQL other than a column's value (crate::pg::text does those, naming the column). A character
/// the database encoding lacks is PostgreSQL's ERROR (22P05); a NUL is refused (22021).
pub fn utf8_to_server(s: &str) -> Cow<'_, [u8]> {
    let db = database_encoding();
    if s.is_ascii() || db == pg_sys::pg_enc::PG_UTF8 as i32 || db == pg_sys::pg_enc::PG_SQL_ASCII as i32 {
        return Cow::Borrowed(s.as_bytes());
    }
    let Ok(len) = i32::try_from(s.len()) else {
        FdwError::Custom {
            code: PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            message: "text from CARTO is too long to convert to the database encoding".into(),
            detail: None,
            hint: None,
        }
        .report()
    };
    // SAFETY: backend thread; `s` is readable for `len` bytes. pg_any_to_server returns a palloc'd
    // NUL-terminated conversion (its ERROR for a character the database encoding lacks, or a NUL).
    unsafe {
        let src: *const c_char = s.as_ptr().cast();
        let out = pg_sys::pg_any_to_server(src, len, pg_sys::pg_enc::PG_UTF8 as i32);
        if out.cast_const() == src {
            return Cow::Borrowed(s.as_bytes());
        }
        let converted = CStr::from_ptr(out).to_bytes().to_vec();
        pg_sys::pfree(out.cast());
        Cow::Owned(converted)
    }
}

/// A Rust (UTF-8) string as a NUL-terminated C string in the database encoding, for PostgreSQL's C
/// functions (names to look up, SQL to parse, statements to run); None when it holds a NUL.
pub fn server_cstring(s: &str) -> Option<std::ffi::CString> {
    if s.contains('\0') {
        return None;
    }
    std::ffi::CString::new(utf8_to_server(s).into_owned()).ok()
}

/// A `text` value read as the database's bytes and converted to UTF-8 ([`server_to_utf8`]): what the
/// extension's SQL functions take for their text arguments, and what it reads text columns of its own
/// SPI queries as. (pgrx's `&str` and `String` assume the database is UTF-8 and refuse anything else.)
/// Turned back into a datum, it is converted to the database encoding ([`utf8_to_server`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbText(pub String);

impl DbText {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::ops::Deref for DbText {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DbText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// # Safety
/// `varlena` a valid (possibly toasted or packed) text datum; backend thread.
unsafe fn varlena_to_utf8(varlena: *mut pg_sys::varlena) -> String {
    // SAFETY: this function's contract; the detoasted copy lives in the current memory context while
    // its bytes are converted into a Rust string.
    unsafe {
        let detoasted = pg_sys::pg_detoast_datum_packed(varlena);
        let bytes = pgrx::varlena::varlena_to_byte_slice(detoasted);
        server_to_utf8(bytes).into_owned()
    }
}

impl FromDatum for DbText {
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _typoid: pg_sys::Oid) -> Option<Self> {
        if is_null || datum.is_null() {
            None
        } else {
            // SAFETY: FromDatum's contract: a non-null datum of a text-like type.
            Some(DbText(unsafe { varlena_to_utf8(datum.cast_mut_ptr()) }))
        }
    }
}

impl IntoDatum for DbText {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        let bytes = utf8_to_server(&self.0);
        let len = i32::try_from(bytes.len()).ok()?;
        // SAFETY: backend thread; the bytes are readable for `len`; the text is palloc'd.
        Some(pg_sys::Datum::from(unsafe { pg_sys::cstring_to_text_with_len(bytes.as_ptr().cast(), len) }))
    }
    fn type_oid() -> pg_sys::Oid {
        pg_sys::TEXTOID
    }
    fn is_compatible_with(other: pg_sys::Oid) -> bool {
        other == pg_sys::TEXTOID || other == pg_sys::VARCHAROID || other == pg_sys::BPCHAROID
    }
}

// SAFETY: a text datum unboxes to its varlena; the conversion copies it into a Rust string.
unsafe impl pgrx::datum::UnboxDatum for DbText {
    type As<'src> = DbText;
    unsafe fn unbox<'src>(datum: pgrx::datum::Datum<'src>) -> Self::As<'src>
    where
        Self: 'src,
    {
        // SAFETY: UnboxDatum's contract: a non-null text datum.
        DbText(unsafe { varlena_to_utf8(datum.sans_lifetime().cast_mut_ptr()) })
    }
}

// SAFETY: a text argument's datum is a text varlena, which from_datum reads.
unsafe impl<'fcx> pgrx::callconv::ArgAbi<'fcx> for DbText {
    unsafe fn unbox_arg_unchecked(arg: pgrx::callconv::Arg<'_, 'fcx>) -> Self {
        // SAFETY: ArgAbi's contract: the argument is text; a null one is refused below.
        match unsafe { arg.unbox_arg_using_from_datum::<DbText>() } {
            Some(t) => t,
            None => FdwError::Custom {
                code: PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                message: "a text argument must not be NULL".into(),
                detail: None,
                hint: None,
            }
            .report(),
        }
    }
    unsafe fn unbox_nullable_arg(arg: pgrx::callconv::Arg<'_, 'fcx>) -> pgrx::nullable::Nullable<Self> {
        // SAFETY: ArgAbi's contract: the argument is text (or null).
        unsafe { arg.unbox_arg_using_from_datum::<DbText>() }.into()
    }
}

// SAFETY: DbText is SQL text, both ways.
unsafe impl SqlTranslatable for DbText {
    fn argument_sql() -> Result<SqlMapping, ArgumentError> {
        Ok(SqlMapping::As("text".into()))
    }
    fn return_sql() -> Result<Returns, ReturnsError> {
        Ok(Returns::One(SqlMapping::As("text".into())))
    }
}

// SAFETY: returned as the function's text result, converted to the database encoding.
unsafe impl pgrx::callconv::BoxRet for DbText {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut pgrx::callconv::FcInfo<'fcx>) -> pgrx::datum::Datum<'fcx> {
        match self.into_datum() {
            // SAFETY: the datum goes straight back as this call's result.
            Some(d) => unsafe { fcinfo.return_raw_datum(d) },
            None => fcinfo.return_null(),
        }
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::*;
    use pgrx::prelude::*;

    #[pg_test]
    fn utf8_database_borrows_and_checks() {
        // pgrx's test database is UTF8.
        assert!(database_is_utf8());
        assert!(matches!(server_to_utf8(b"plain"), Cow::Borrowed("plain")));
        assert!(matches!(server_to_utf8("café ✓".as_bytes()), Cow::Borrowed("café ✓")));
        assert!(matches!(utf8_to_server("café ✓"), Cow::Borrowed(b) if b == "café ✓".as_bytes()));
        // SAFETY: a NUL-terminated literal.
        assert_eq!(unsafe { cstr_to_utf8(c"Zürich".as_ptr()) }.as_deref(), Some("Zürich"));
        // SAFETY: a null pointer is allowed.
        assert_eq!(unsafe { cstr_to_utf8(std::ptr::null()) }, None);
    }

    #[pg_test(error = "invalid byte sequence for encoding \"UTF8\": 0xe9 0x20 0x74")]
    fn invalid_utf8_is_postgresql_error() {
        server_to_utf8(b"caf\xe9 tout");
    }

    #[pg_test]
    fn dbtext_round_trips_through_spi() {
        let t = Spi::get_one::<DbText>("SELECT 'crème brûlée'::text").unwrap().unwrap();
        assert_eq!(t.as_str(), "crème brûlée");
        let v = Spi::get_one::<DbText>("SELECT 'x'::varchar").unwrap().unwrap();
        assert_eq!(&*v, "x");
        let back =
            Spi::get_one_with_args::<bool>("SELECT $1 = 'Zürich ✓'", &[DbText("Zürich ✓".into()).into()]).unwrap();
        assert_eq!(back, Some(true));
    }

    #[pg_test]
    fn converts_from_and_to_other_encodings() {
        // The conversion routines themselves, as the database would run them for a LATIN1 or EUC_JP
        // database (pgrx's test database is UTF8, so the database-encoding paths are e2e 37_encoding's).
        let latin1 = Spi::get_one::<Vec<u8>>("SELECT convert_to('Zürich café', 'LATIN1')").unwrap().unwrap();
        assert_eq!(latin1, b"Z\xfcrich caf\xe9");
        let euc = Spi::get_one::<Vec<u8>>("SELECT convert_to('東京', 'EUC_JP')").unwrap().unwrap();
        // SAFETY: backend thread; the bytes are readable for their length.
        let out = unsafe {
            let p = pg_sys::pg_do_encoding_conversion(
                euc.as_ptr().cast_mut(),
                euc.len() as i32,
                pg_sys::pg_enc::PG_EUC_JP as i32,
                pg_sys::pg_enc::PG_UTF8 as i32,
            );
            CStr::from_ptr(p.cast()).to_bytes().to_vec()
        };
        assert_eq!(out, "東京".as_bytes());
    }
}
