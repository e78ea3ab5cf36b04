//! `carto.cleanup_uploads(server)`: the on-demand cleanup of uploads left running on CARTO
//! (crate::fdw::uploads), sparing this backend's own open ones (crate::fdw::xact).

use crate::fdw::uploads::cleanup;
use crate::fdw::xact::open_tags;
use crate::functions::remote;
use crate::pg::error::OrReport;

/// `carto.cleanup_uploads(server)`: cancels on CARTO the uploads of this cluster that were left
/// running (by killed backends, or by this one); returns how many were cancelled.
#[pgrx::pg_extern(volatile, parallel_unsafe, strict)]
fn cleanup_uploads(server: crate::pg::encoding::DbText) -> i64 {
    let r = remote(&server).or_report();
    cleanup(&r.client, &open_tags(), None).or_report()
}

pgrx::extension_sql!(
    r#"
REVOKE EXECUTE ON FUNCTION carto.cleanup_uploads(text) FROM PUBLIC;
COMMENT ON FUNCTION carto.cleanup_uploads(text) IS 'Cancel on CARTO the uploads (COPY) this cluster left running; returns how many';
"#,
    name = "carto_cleanup_uploads_grants",
    requires = [cleanup_uploads]
);
