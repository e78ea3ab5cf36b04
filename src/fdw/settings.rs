//! The extension's configuration parameters (GUCs), registered when the library is loaded.

use std::time::Duration;

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// `carto_fdw.upload_cleanup_interval`: the least time between two automatic cleanups of stale
/// uploads (crate::fdw::uploads) per account and backend, in seconds; 0 cleans up before every new
/// upload request.
static UPLOAD_CLEANUP_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(60);

/// Registers the parameters. From `_PG_init` only.
pub fn register() {
    GucRegistry::define_int_guc(
        c"carto_fdw.upload_cleanup_interval",
        c"Least time between two automatic cleanups of uploads left running on CARTO, per account and backend.",
        c"carto_fdw ends uploads that killed backends left open on CARTO before a backend's first write to an account, then at most once per this interval; 0 checks before every new upload request.",
        &UPLOAD_CLEANUP_INTERVAL,
        0,
        86_400,
        GucContext::Userset,
        GucFlags::UNIT_S,
    );
}

/// The current value of `carto_fdw.upload_cleanup_interval`.
pub fn upload_cleanup_interval() -> Duration {
    Duration::from_secs(u64::try_from(UPLOAD_CLEANUP_INTERVAL.get()).unwrap_or(60))
}
