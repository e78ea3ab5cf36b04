//! One error type for the extension, turned into a PostgreSQL error report in one place.
//!
//! Everything that can fail in a callback returns `Result<_, FdwError>`; the callback's outer layer
//! calls [`FdwError::report`], which raises an ERROR with a fitting SQLSTATE, CARTO's message,
//! detail and hint, and a hint of our own where we know better. No message ever holds the API key:
//! carto-client's errors never contain it, and [`mask_secrets`] is applied to everything CARTO
//! sends back as a last line of defence.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

use carto_client::{Error as ClientError, ErrorKind};

#[derive(Debug)]
pub enum FdwError {
    InvalidOption { message: String, hint: Option<String> },
    InvalidOptionValue { message: String },
    InsufficientPrivilege { message: String },
    /// Something the wrapper cannot do with this statement (RETURNING, ON CONFLICT, ...).
    NotSupported { message: String, hint: Option<String> },
    /// A value that does not convert into the local column type.
    Conversion { message: String, detail: Option<String> },
    /// The remote side failed; `context` says what we were doing ("reading foreign table \"t\"").
    /// Boxed: the client's error is large, and every `FdwResult` would carry its size.
    Remote { error: Box<ClientError>, context: String },
    /// Anything else that is our own logic's failure.
    Internal { message: String },
    /// An error with its own SQLSTATE, detail and hint (the carto.* functions).
    Custom { code: PgSqlErrorCode, message: String, detail: Option<String>, hint: Option<String> },
}

pub type FdwResult<T> = Result<T, FdwError>;

impl FdwError {
    pub fn remote(error: ClientError, context: impl Into<String>) -> Self {
        FdwError::Remote { error: Box::new(error), context: context.into() }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        FdwError::Internal { message: message.into() }
    }

    /// The SQLSTATE, message, detail and hint this error is reported with.
    pub fn parts(&self) -> (PgSqlErrorCode, String, Option<String>, Option<String>) {
        match self {
            FdwError::InvalidOption { message, hint } => {
                (PgSqlErrorCode::ERRCODE_FDW_INVALID_OPTION_NAME, message.clone(), None, hint.clone())
            }
            FdwError::InvalidOptionValue { message } => {
                (PgSqlErrorCode::ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE, message.clone(), None, None)
            }
            FdwError::InsufficientPrivilege { message } => {
                (PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE, message.clone(), None, None)
            }
            FdwError::NotSupported { message, hint } => {
                (PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED, message.clone(), None, hint.clone())
            }
            FdwError::Conversion { message, detail } => {
                (PgSqlErrorCode::ERRCODE_FDW_INVALID_DATA_TYPE, message.clone(), detail.clone(), None)
            }
            FdwError::Internal { message } => {
                (PgSqlErrorCode::ERRCODE_FDW_ERROR, message.clone(), None, None)
            }
            FdwError::Custom { code, message, detail, hint } => (*code, message.clone(), detail.clone(), hint.clone()),
            FdwError::Remote { error, context } => remote_parts(error, context),
        }
    }

    /// Raises this error as a PostgreSQL ERROR. Does not return.
    pub fn report(self) -> ! {
        let (code, message, detail, hint) = self.parts();
        let mut report = ErrorReport::new(code, for_database(mask_secrets(&message)), "carto_fdw");
        if let Some(d) = detail {
            report = report.set_detail(for_database(mask_secrets(&d)));
        }
        if let Some(h) = hint {
            report = report.set_hint(for_database(mask_secrets(&h)));
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("ERROR does not return")
    }
}

/// A message (UTF-8: ours, or CARTO's) as the text of an ERROR. PostgreSQL takes message text in the
/// database encoding, and pgrx only passes Rust (UTF-8) strings: in a database that is neither UTF8 nor
/// SQL_ASCII a non-ASCII character is written as its escape `\u{e9}` — never raw UTF-8 bytes, which
/// that encoding would misread (LATIN1) or refuse when the message is sent to the client (EUC_JP).
/// Values themselves never travel this way (crate::pg::encoding converts them).
pub fn for_database(message: String) -> String {
    if message.is_ascii() {
        return message;
    }
    // SAFETY: a read of a backend global, set at backend start.
    let db = unsafe { pgrx::pg_sys::GetDatabaseEncoding() };
    if db == pgrx::pg_sys::pg_enc::PG_UTF8 as i32 || db == pgrx::pg_sys::pg_enc::PG_SQL_ASCII as i32 {
        return message;
    }
    message.chars().map(|c| if c.is_ascii() { c.to_string() } else { c.escape_unicode().to_string() }).collect()
}

/// Unwraps a result or raises its error.
pub trait OrReport<T> {
    fn or_report(self) -> T;
}

impl<T> OrReport<T> for FdwResult<T> {
    fn or_report(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => e.report(),
        }
    }
}

fn remote_parts(
    e: &ClientError,
    context: &str,
) -> (PgSqlErrorCode, String, Option<String>, Option<String>) {
    use PgSqlErrorCode::*;
    let carto_msg = e.message.as_str();
    let message = if context.is_empty() {
        format!("CARTO: {carto_msg}")
    } else {
        format!("CARTO: {carto_msg} (while {context})")
    };
    let retries = e.retries;
    let (code, our_hint): (PgSqlErrorCode, Option<String>) = match e.kind() {
        ErrorKind::Unauthorized => (
            ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
            Some("CARTO did not accept the API key of this user mapping (option api_key): check the key, or remove it to use the account's public access.".into()),
        ),
        ErrorKind::Forbidden => (
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            Some("CARTO refused this with the user mapping's credentials (its api_key, or public access when it has none): a regular key needs a grant (SELECT, INSERT, UPDATE, DELETE) on the table; Batch SQL jobs need the master key.".into()),
        ),
        ErrorKind::UserNotFound => (
            ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION,
            Some("Check the server's username or base_url option.".into()),
        ),
        ErrorKind::RateLimited => (
            ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
            Some(format!(
                "CARTO rate-limited the request; retried {retries} time(s) (server options max_retries and max_retry_wait). COPY endpoints allow only a few requests a minute."
            )),
        ),
        // Not 57014 (query_canceled): that would look like a local cancel, and PL/pgSQL's
        // WHEN OTHERS does not catch it. CARTO calls it being over the platform's limits.
        ErrorKind::RemoteTimeout => (
            ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
            Some("The statement hit CARTO's own statement timeout (set by the account's plan); make the remote query cheaper, or run it as a Batch SQL job (carto.batch_submit).".into()),
        ),
        ErrorKind::Quota => (ERRCODE_DISK_FULL, None),
        ErrorKind::PayloadTooLarge => (ERRCODE_PROGRAM_LIMIT_EXCEEDED, None),
        ErrorKind::BadRequest => (sqlstate_from_message(carto_msg), None),
        ErrorKind::NotFound => (ERRCODE_UNDEFINED_OBJECT, None),
        ErrorKind::Transport => (
            ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION,
            Some("The connection to CARTO failed or was cut; nothing partial was kept.".into()),
        ),
        ErrorKind::Timeout => (
            ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION,
            Some("CARTO did not answer in time (server options connect_timeout and request_timeout).".into()),
        ),
        ErrorKind::Protocol => (ERRCODE_FDW_REPLY_HANDLE, None),
        ErrorKind::RowCountMismatch => (ERRCODE_DATA_EXCEPTION, None),
        // A buffer CARTO's answer asked for could not be had: an ERROR, never an abort of the backend.
        ErrorKind::OutOfMemory => (
            ERRCODE_OUT_OF_MEMORY,
            Some("A row or value from CARTO did not fit in this backend's memory; nothing was kept.".into()),
        ),
        _ => (ERRCODE_FDW_ERROR, None),
    };
    let detail = e.detail.clone();
    // The client's generic hint for a remote timeout is replaced by ours, not repeated.
    let their_hint = if e.kind() == ErrorKind::RemoteTimeout { None } else { e.hint.as_deref() };
    let hint = match (their_hint, our_hint) {
        (Some(theirs), Some(ours)) => Some(format!("{theirs}\n{ours}")),
        (Some(theirs), None) => Some(theirs.to_string()),
        (None, ours) => ours,
    };
    (code, message, detail, hint)
}

/// CARTO sends PostgreSQL's message but not its SQLSTATE: infer the SQLSTATE from the message
/// for the errors users act on, and fall back to the FDW family.
pub fn sqlstate_from_message(message: &str) -> PgSqlErrorCode {
    use PgSqlErrorCode::*;
    let m = message.to_ascii_lowercase();
    if m.starts_with("relation ") && m.contains("does not exist") {
        ERRCODE_UNDEFINED_TABLE
    } else if m.starts_with("column ") && m.contains("does not exist") {
        ERRCODE_UNDEFINED_COLUMN
    } else if (m.starts_with("function ") || m.starts_with("operator ")) && m.contains("does not exist") {
        ERRCODE_UNDEFINED_FUNCTION
    } else if m.starts_with("schema ") && m.contains("does not exist") {
        ERRCODE_INVALID_SCHEMA_NAME
    } else if m.contains("syntax error") {
        ERRCODE_SYNTAX_ERROR
    } else if m.contains("invalid input syntax") || m.contains("invalid input value") {
        ERRCODE_INVALID_TEXT_REPRESENTATION
    } else if m.contains("duplicate key value violates unique constraint") {
        ERRCODE_UNIQUE_VIOLATION
    } else if m.contains("violates not-null constraint") {
        ERRCODE_NOT_NULL_VIOLATION
    } else if m.contains("violates check constraint") {
        ERRCODE_CHECK_VIOLATION
    } else if m.contains("violates foreign key constraint") {
        ERRCODE_FOREIGN_KEY_VIOLATION
    } else if m.contains("permission denied") {
        ERRCODE_INSUFFICIENT_PRIVILEGE
    } else if m.contains("division by zero") {
        ERRCODE_DIVISION_BY_ZERO
    } else if m.contains("out of range") {
        ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE
    } else if m.contains("extra data after last expected column") || m.contains("missing data for column") {
        ERRCODE_BAD_COPY_FILE_FORMAT
    } else if m.contains("quota") {
        ERRCODE_DISK_FULL
    } else if m.contains("already exists") {
        ERRCODE_DUPLICATE_OBJECT
    } else {
        ERRCODE_FDW_ERROR
    }
}

/// Removes anything that looks like a credential from text that came from outside.
pub fn mask_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = find_key_param(rest) {
        let (head, tail) = rest.split_at(pos);
        out.push_str(head);
        let eq = tail.find('=').map(|i| i + 1).unwrap_or(tail.len());
        out.push_str(&tail[..eq]);
        out.push_str("***");
        let end = tail[eq..]
            .find(|c: char| c == '&' || c == '"' || c == '\'' || c.is_whitespace())
            .map(|i| eq + i)
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn find_key_param(s: &str) -> Option<usize> {
    ["api_key=", "map_key="].iter().filter_map(|p| s.find(p)).min()
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn masks_key_parameters() {
        assert_eq!(mask_secrets("GET /sql?q=1&api_key=abc123&x=1"), "GET /sql?q=1&api_key=***&x=1");
        assert_eq!(mask_secrets("map_key=zz"), "map_key=***");
        assert_eq!(mask_secrets("nothing here"), "nothing here");
    }

    #[test]
    fn sqlstates_from_messages() {
        assert_eq!(
            sqlstate_from_message("relation \"nope\" does not exist"),
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE
        );
        assert_eq!(
            sqlstate_from_message("column \"x\" does not exist"),
            PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN
        );
        assert_eq!(
            sqlstate_from_message("invalid input syntax for type integer: \"x\""),
            PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION
        );
        assert_eq!(sqlstate_from_message("weird"), PgSqlErrorCode::ERRCODE_FDW_ERROR);
    }
}
