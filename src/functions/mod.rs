//! The `carto.*` SQL functions: SQL and Batch SQL through a foreign server, and CARTO table management.
//!
//! Every function names its foreign server (a `carto_fdw` server) by name and uses the current user's
//! mapping for it, exactly as foreign tables do ([`crate::fdw::connection`]): the key never appears in
//! an argument, a message or a table. Every function that reaches the network is VOLATILE, PARALLEL
//! UNSAFE, waits only through [`crate::pg::runtime::block_on`] (so Ctrl-C and statement_timeout stop
//! it), and has EXECUTE revoked from PUBLIC (see the `grants` block below and docs/functions.md).
//!
//! NULL arguments: functions whose arguments are all required are STRICT (a NULL argument gives
//! NULL, nothing is sent); functions with optional arguments reject a NULL required argument with an
//! error saying which.

pub mod batch;
pub mod query;
pub mod tables;
pub mod uploads;

use std::cell::RefCell;
use std::collections::HashMap;

use carto_client::Client;
use pgrx::PgSqlErrorCode;

use crate::fdw::connection::{client_for, server_for_caller, ServerAccess};
use crate::pg::sql_text::quote_literal;
use crate::pg::error::{FdwError, FdwResult};
use crate::pg::runtime::block_on;

/// A server reached by a function: its options, the current user's key, and the client.
pub struct Remote {
    pub access: ServerAccess,
    pub client: Client,
}

/// Looks a `carto_fdw` server up by name and builds the client from the current user's mapping,
/// after the privilege check every entry point shares ([`server_for_caller`]).
pub fn remote(server: &str) -> FdwResult<Remote> {
    let access = server_for_caller(server)?;
    let client = client_for(&access)?;
    Ok(Remote { access, client })
}

/// An error for a NULL where a value is required (functions that are not STRICT because of
/// optional arguments).
pub fn required<T>(v: Option<T>, what: &str) -> FdwResult<T> {
    v.ok_or_else(|| FdwError::Custom {
        code: PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
        message: format!("argument \"{what}\" must not be NULL"),
        detail: None,
        hint: None,
    })
}

/// An argument error (22023).
pub fn bad_argument(message: impl Into<String>, hint: Option<&str>) -> FdwError {
    FdwError::Custom {
        code: PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        message: message.into(),
        detail: None,
        hint: hint.map(str::to_string),
    }
}

/// Relays CARTO's notices and warnings of a `/sql` answer.
pub fn relay_messages(r: &carto_client::QueryResponse) {
    relay(&r.notices, &r.warnings);
}

/// [`relay_messages`] for a streamed answer, once it ended.
pub fn relay_summary(s: &carto_client::QuerySummary) {
    relay(&s.notices, &s.warnings);
}

// CARTO's messages are UTF-8: written for the database encoding (crate::pg::error::for_database).
fn relay(notices: &[String], warnings: &[String]) {
    for n in notices {
        pgrx::notice!("CARTO: {}", crate::pg::error::for_database(crate::pg::error::mask_secrets(n)));
    }
    for w in warnings {
        pgrx::warning!("CARTO: {}", crate::pg::error::for_database(crate::pg::error::mask_secrets(w)));
    }
}

/// Like [`relay_messages`], for statements of our own whose notices are noise to the user
/// (CDB_CartodbfyTable's "trigger ... does not exist, skipping"): notices go to DEBUG1.
pub fn relay_warnings(r: &carto_client::QueryResponse) {
    for n in &r.notices {
        pgrx::debug1!("CARTO: {}", crate::pg::error::for_database(crate::pg::error::mask_secrets(n)));
    }
    for w in &r.warnings {
        pgrx::warning!("CARTO: {}", crate::pg::error::for_database(crate::pg::error::mask_secrets(w)));
    }
}

thread_local! {
    /// The account's schema per base URL (it never changes for an account).
    static SCHEMAS: RefCell<HashMap<String, String>> = RefCell::new(HashMap::new());
}

/// The account's own schema: `public` for single users, the username for organisation members.
/// Asked once per backend and account (`SELECT current_schema()` through `/sql`).
pub fn account_schema(r: &Remote) -> FdwResult<String> {
    let key = r.client.config().base_url.as_str().to_string();
    if let Some(s) = SCHEMAS.with(|m| m.borrow().get(&key).cloned()) {
        return Ok(s);
    }
    let resp = block_on(r.client.query_readonly("SELECT current_schema()::text AS s"))?
        .map_err(|e| FdwError::remote(e, "asking CARTO for the account's schema"))?;
    let s = resp
        .rows
        .first()
        .and_then(|row| row.get("s"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| FdwError::internal("CARTO did not return the account's schema"))?;
    SCHEMAS.with(|m| m.borrow_mut().insert(key, s.clone()));
    Ok(s)
}

/// `'schema.table'::regclass` for CARTO, both parts quoted.
pub fn regclass_literal(schema: &str, table: &str) -> String {
    use crate::pg::sql_text::quote_ident;
    format!("{}::regclass", quote_literal(&format!("{}.{}", quote_ident(schema), quote_ident(table))))
}
