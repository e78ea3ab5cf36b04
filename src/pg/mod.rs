//! Small safe-ish wrappers over PostgreSQL that several modules share.
pub mod binary;
pub mod binary_fast;
pub mod bookkeeping;
pub mod error;
pub mod identity;
pub mod runtime;
pub mod text;
pub mod typeio;
