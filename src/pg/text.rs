//! Text that CARTO sends is checked before it reaches a type's input function: it must be valid in
//! the database's encoding (CARTO sends UTF-8) and hold no NUL byte. A value that fails is an ERROR
//! naming the column, never a value stored as invalid text (a later dump would not reload) nor one
//! silently cut at the NUL. ASCII values (almost all of them) take a fast path with no call into
//! PostgreSQL.

use std::ffi::{c_char, CString};

use pgrx::pg_sys::panic::CaughtError;
use pgrx::{pg_sys, PgSqlErrorCode, PgTryBuilder};

use crate::pg::error::FdwError;

/// Why a value from CARTO was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum BadText {
    Nul,
    Encoding,
    /// PostgreSQL's conversion ERROR (a character the database encoding lacks: 22P05), caught so that
    /// it can name the column.
    Unconvertible { code: PgSqlErrorCode, message: String },
}

impl BadText {
    /// The error for column `column` of foreign table `table`.
    pub fn error(&self, column: &str, table: &str) -> FdwError {
        match self {
            BadText::Nul => FdwError::Custom {
                code: PgSqlErrorCode::ERRCODE_UNTRANSLATABLE_CHARACTER,
                message: format!("CARTO sent a NUL character in column \"{column}\" of foreign table \"{table}\""),
                detail: Some("PostgreSQL text cannot hold a NUL (\\u0000) character; the value was not stored.".into()),
                hint: None,
            },
            BadText::Unconvertible { code, message } => FdwError::Custom {
                code: *code,
                message: message.clone(),
                detail: Some(format!("While converting column \"{column}\" of foreign table \"{table}\" from UTF-8.")),
                hint: None,
            },
            BadText::Encoding => {
                // SAFETY: backend thread; GetDatabaseEncodingName returns a static, NUL-terminated name.
                let enc = unsafe { crate::pg::cstr::cstr_owned(pg_sys::GetDatabaseEncodingName()) }.unwrap_or_default();
                FdwError::Custom {
                    code: PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
                    message: format!(
                        "CARTO sent text that is not valid {enc} in column \"{column}\" of foreign table \"{table}\""
                    ),
                    detail: Some("CARTO sends UTF-8; the value was not stored.".into()),
                    hint: None,
                }
            }
        }
    }
}

/// Checks one value (without its terminating NUL). Returns the value to hand to the input function:
/// None when `bytes` can be used as they are, Some(converted) when the database is not in UTF8 and
/// the value had to be converted from UTF-8.
///
/// # Safety
/// Backend thread.
pub unsafe fn check(bytes: &[u8]) -> Result<Option<CString>, BadText> {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        if memchr::memchr(0, bytes).is_some() {
            return Err(BadText::Nul);
        }
        if bytes.is_ascii() {
            return Ok(None);
        }
        let db = pg_sys::GetDatabaseEncoding();
        if db == pg_sys::pg_enc::PG_SQL_ASCII as i32 {
            // No encoding to check against, as PostgreSQL itself does for such a database.
            return Ok(None);
        }
        let len = i32::try_from(bytes.len()).map_err(|_| BadText::Encoding)?;
        // CARTO's text is UTF-8: check it as such (noError = true: our own error names the column).
        if !pg_sys::pg_verify_mbstr(pg_sys::pg_enc::PG_UTF8 as i32, bytes.as_ptr().cast(), len, true) {
            return Err(BadText::Encoding);
        }
        if db == pg_sys::pg_enc::PG_UTF8 as i32 {
            return Ok(None);
        }
        // Another database encoding: convert. PostgreSQL's own error for a character it lacks is
        // caught (nothing but the conversion's memory to clean up) and raised again naming the column.
        let c = CString::new(bytes).map_err(|_| BadText::Nul)?;
        let out: *mut c_char = PgTryBuilder::new(|| Ok(pg_sys::pg_any_to_server(c.as_ptr(), len, pg_sys::pg_enc::PG_UTF8 as i32)))
            .catch_others(|e| {
                let r = match &e {
                    CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
                    CaughtError::RustPanic { ereport, .. } => ereport,
                };
                Err(BadText::Unconvertible { code: r.sql_error_code(), message: r.message().to_string() })
            })
            .execute()?;
        if out.cast_const() == c.as_ptr() {
            return Ok(Some(c));
        }
        let converted = std::ffi::CStr::from_ptr(out).to_owned();
        Ok(Some(converted))
    }
}

/// A JSON string value from CARTO as a C string, checked as [`check`] does.
///
/// # Safety
/// Backend thread.
pub unsafe fn checked_cstring(s: String) -> Result<CString, BadText> {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        match check(s.as_bytes())? {
            Some(converted) => Ok(converted),
            // No NUL inside: checked above.
            None => CString::new(s).map_err(|_| BadText::Nul),
        }
    }
}

/// Text CARTO sent (UTF-8) that is not one column's value — a whole row of a `/sql` answer as JSON —
/// as a C string in the database encoding, checked as [`check`] does: a NUL or invalid byte is an
/// ERROR (22P05, 22021), a character the database encoding lacks PostgreSQL's conversion ERROR.
pub fn utf8_to_server_cstring(bytes: &[u8], what: &str) -> Result<CString, FdwError> {
    // SAFETY: called on the backend thread (an extension function's body).
    match unsafe { check(bytes) } {
        Ok(Some(converted)) => Ok(converted),
        Ok(None) => CString::new(bytes).map_err(|_| nul_error(what)),
        Err(BadText::Nul) => Err(nul_error(what)),
        Err(BadText::Unconvertible { code, message }) => Err(FdwError::Custom {
            code,
            message,
            detail: Some(format!("While converting {what} from UTF-8.")),
            hint: None,
        }),
        Err(BadText::Encoding) => Err(FdwError::Custom {
            code: PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
            message: format!("CARTO sent text that is not valid UTF-8 in {what}"),
            detail: None,
            hint: None,
        }),
    }
}

fn nul_error(what: &str) -> FdwError {
    FdwError::Custom {
        code: PgSqlErrorCode::ERRCODE_UNTRANSLATABLE_CHARACTER,
        message: format!("CARTO sent a NUL character in {what}"),
        detail: Some("PostgreSQL text cannot hold a NUL (\\u0000) character; the value was not stored.".into()),
        hint: None,
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::*;
    use pgrx::prelude::*;

    #[pg_test]
    fn checks_text_from_carto() {
        // SAFETY: a #[pg_test] runs on the backend thread inside its test transaction; check only reads the given
        // bytes and the database encoding.
        unsafe {
            assert_eq!(check(b"plain ascii"), Ok(None));
            assert_eq!(check("été ✓".as_bytes()), Ok(None));
            assert_eq!(check(b"\xff\xfeabc"), Err(BadText::Encoding));
            assert_eq!(check(b"\xc3"), Err(BadText::Encoding));
            assert_eq!(check(b"abc\0def"), Err(BadText::Nul));
            assert_eq!(checked_cstring("abc\u{0}def".into()), Err(BadText::Nul));
            assert_eq!(checked_cstring("ok".into()).unwrap().as_bytes(), b"ok");
        }
    }
}
