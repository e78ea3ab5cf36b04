//! SQL the extension runs locally through SPI, handed to PostgreSQL in the database encoding.
//!
//! The extension's strings are UTF-8 (crate::pg::encoding), and pgrx passes a `&str` query to SPI as
//! its bytes: in a LATIN1 or EUC_JP database a name or literal outside ASCII would be misread. These
//! wrappers convert the statement first (PostgreSQL's ERROR for a character the database encoding
//! lacks) and run it as pgrx's `Spi` functions of the same names do. Text results that may hold
//! non-ASCII characters are read as [`crate::pg::encoding::DbText`], text parameters passed as one.

use std::ffi::CString;

use pgrx::datum::DatumWithOid;
use pgrx::{FromDatum, IntoDatum, PgSqlErrorCode, Spi};

use crate::pg::error::FdwError;

/// `sql` as a C string in the database encoding, for SPI (SpiClient's select/update/cursors take it).
/// A NUL cannot be part of a statement: an ERROR.
pub fn sql(sql: &str) -> CString {
    match crate::pg::encoding::server_cstring(sql) {
        Some(c) => c,
        None => FdwError::Custom {
            code: PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
            message: "a statement to run locally contains a NUL character".into(),
            detail: None,
            hint: None,
        }
        .report(),
    }
}

/// Runs a statement (read/write), as `Spi::run`.
pub fn run(query: &str) -> pgrx::spi::Result<()> {
    run_with_args(query, &[])
}

/// Runs a statement with parameters (read/write), as `Spi::run_with_args`.
pub fn run_with_args(query: &str, args: &[DatumWithOid<'_>]) -> pgrx::spi::Result<()> {
    let c = sql(query);
    Spi::connect_mut(|client| client.update(&c, None, args).map(|_| ()))
}

/// The first column of the first row, as `Spi::get_one`.
pub fn get_one<A: FromDatum + IntoDatum>(query: &str) -> pgrx::spi::Result<Option<A>> {
    get_one_with_args(query, &[])
}

/// The first column of the first row of a statement with parameters, as `Spi::get_one_with_args`.
pub fn get_one_with_args<A: FromDatum + IntoDatum>(query: &str, args: &[DatumWithOid<'_>]) -> pgrx::spi::Result<Option<A>> {
    let c = sql(query);
    Spi::connect_mut(|client| client.update(&c, Some(1), args)?.first().get_one())
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use crate::pg::encoding::DbText;
    use pgrx::prelude::*;

    #[pg_test]
    fn runs_non_ascii_statements() {
        super::run("CREATE TEMP TABLE \"café\" (\"naïve\" text)").unwrap();
        super::run_with_args("INSERT INTO \"café\" VALUES ($1)", &[DbText("Zürich".into()).into()]).unwrap();
        let got = super::get_one::<DbText>("SELECT \"naïve\" FROM \"café\" WHERE \"naïve\" = 'Zürich'").unwrap();
        assert_eq!(got.as_deref(), Some("Zürich"));
    }
}
