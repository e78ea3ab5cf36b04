//! carto-client: a client of CARTO's SQL API v2 (`/api/v2/sql`, `/copyfrom`, `/copyto`, the Batch API).
//!
//! It knows nothing of PostgreSQL internals. Every operation is an `async fn` (or a future) that is cancel-safe
//! by drop: dropping a query future drops its HTTP request; dropping a [`CopyOutStream`] or a
//! [`QueryRowStream`] closes its connection (CARTO cancels the query); dropping a [`CopyIn`] breaks its
//! connection (CARTO rolls the COPY back).
//! Streams run their network side on a task spawned on the current tokio runtime and talk to the caller
//! through bounded channels, so memory stays bounded and network and caller work overlap. Every buffer whose
//! size CARTO's answer decides is bounded before it grows and grows fallibly ([`ErrorKind::OutOfMemory`]).
//!
//! See docs/architecture.md, section "carto-client", for the design and the retry rules.

#![allow(clippy::result_large_err)]

mod batch;
mod buf;
mod client;
mod config;
pub mod copy_binary;
mod copy_in;
mod copy_out;
pub mod copy_text;
mod error;
mod gzip;
mod query;
mod sql_stream;
mod stats;

pub use batch::{BatchJob, BatchJobRequest, BatchQuery, JobStatus};
pub use client::Client;
pub use config::{ApiKey, ClientConfig, DEFAULT_COPYFROM_MAX_BYTES};
pub use copy_in::{AbortOutcome, CopyIn, CopyInSummary};
pub use copy_out::CopyOutStream;
pub use error::{Endpoint, Error, ErrorKind, RateLimit, Result};
pub use query::{FieldInfo, QueryResponse};
pub use sql_stream::{QueryRowStream, QuerySummary, RawRow, DEFAULT_MAX_ROW_BYTES, MAX_ERROR_TAIL, MAX_MEMBERS_BYTES};
pub use stats::{RequestStats, StatsHandle};

pub use bytes::Bytes;
