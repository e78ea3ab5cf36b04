//! carto-sim: a local server that behaves like CARTO's SQL API v2 (queries, COPY, Batch API, rate
//! limits, errors) on top of a real PostgreSQL + PostGIS. See docs/carto-sim.md.
pub mod accounts;
pub mod admin;
pub mod auth;
pub mod batch;
pub mod config;
pub mod copy_from;
pub mod copy_to;
pub mod errors;
pub mod faults;
pub mod jobs;
pub mod json_values;
pub mod linger;
pub mod open_copies;
pub mod outer_routes;
pub mod pool;
pub mod rate_limit;
pub mod request_log;
pub mod server;
pub mod setup;
pub mod sql_api;
pub mod sql_split;
pub mod state;
pub mod testkit;
pub mod tls;
pub mod upload_race;

pub use config::Config;
pub use testkit::TestSim;
