//! The foreign-data wrapper: its handler (the callback table) and one module per concern,
//! after postgres_fdw's split.

pub mod analyze;
pub mod binary_scan;
pub mod connection;
pub mod deparse;
pub mod import;
pub mod join;
pub mod modify;
pub mod options;
pub mod plan;
pub mod pushed;
pub mod query_option;
pub mod remote_catalog;
pub mod scan;
pub mod scan_plan;
pub mod settings;
pub mod table;
pub mod transport;
pub mod uploads;
pub mod upper;
pub mod xact;

use pgrx::prelude::*;
use pgrx::{pg_sys, AllocatedByRust, PgBox};

/// Every slot of PostgreSQL's FdwRoutine; the ones left None say why.
#[pg_extern(create_or_replace)]
fn carto_fdw_handler() -> PgBox<pg_sys::FdwRoutine, AllocatedByRust> {
    // SAFETY: the handler runs on the backend thread; alloc_node pallocs a zeroed FdwRoutine in the current context.
    let mut r = unsafe { PgBox::<pg_sys::FdwRoutine, AllocatedByRust>::alloc_node(pg_sys::NodeTag::T_FdwRoutine) };

    // Scans (scan.rs, plan.rs).
    r.GetForeignRelSize = Some(plan::get_foreign_rel_size);
    r.GetForeignPaths = Some(plan::get_foreign_paths);
    r.GetForeignPlan = Some(plan::get_foreign_plan);
    r.BeginForeignScan = Some(scan::begin_foreign_scan);
    r.IterateForeignScan = Some(scan::iterate_foreign_scan);
    r.ReScanForeignScan = Some(scan::rescan_foreign_scan);
    r.EndForeignScan = Some(scan::end_foreign_scan);
    r.ExplainForeignScan = Some(scan::explain_foreign_scan);
    r.ImportForeignSchema = Some(import::import_foreign_schema); // import.rs
    r.AnalyzeForeignTable = Some(analyze::analyze_foreign_table);

    // Joins, aggregates, DISTINCT, ORDER BY and LIMIT computed by CARTO (join.rs, upper.rs;
    // their statement and plan in pushed.rs).
    r.GetForeignJoinPaths = Some(join::get_foreign_join_paths);
    r.GetForeignUpperPaths = Some(upper::get_foreign_upper_paths);
    // No parallel scans: one HTTP stream per scan, and COPY requests are rate-limited.
    r.IsForeignScanParallelSafe = None;
    // Row locking (SELECT FOR UPDATE) has no meaning over CARTO's SQL API.
    r.GetForeignRowMarkType = None;
    r.RefetchForeignRow = None;
    r.RecheckForeignScan = None;
    // Asynchronous execution (Append over several servers) is not supported.
    r.IsForeignPathAsyncCapable = None;

    // Writes (modify.rs; transactions in xact.rs).
    modify::assign_slots(&mut r);
    r
}
