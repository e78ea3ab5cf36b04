//! Small safe-ish wrappers over PostgreSQL that several modules share.
pub mod binary;
pub mod binary_fast;
pub mod bookkeeping;
pub mod builtin;
pub mod compat;
pub mod cstr;
pub mod encoding;
pub mod error;
pub mod executor;
pub mod guc;
pub mod identity;
pub mod inval;
pub mod local_sql;
pub mod runtime;
pub mod sql_text;
pub mod text;
pub mod typeio;
