//! Small safe-ish wrappers over PostgreSQL that several modules share.
pub mod binary;
pub mod error;
pub mod runtime;
pub mod typeio;
