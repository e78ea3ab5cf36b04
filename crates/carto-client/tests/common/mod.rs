//! Helpers shared by the client's integration tests (each test file is its own crate: `mod common;`).

use std::time::{Duration, Instant};

use carto_sim::testkit::TestSim;

/// COPYs still running on the sim's database for `table`, once the sim's backends have settled:
/// CARTO's answer to a failed COPY can reach the client a moment before its backend leaves the
/// COPY state, so a count above zero is re-checked for up to 3 s before it is returned.
pub fn open_copies(sim: &TestSim, table: &str) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let n = open_copies_now(sim, table);
        if n == 0 || Instant::now() >= deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// COPYs running on the sim's database for `table` right now, as pg_stat_activity shows them.
fn open_copies_now(sim: &TestSim, table: &str) -> i64 {
    sim.psql_admin(
        "demo",
        &format!("select count(*) from pg_stat_activity where query ilike 'COPY {table} %' and state <> 'idle' and pid <> pg_backend_pid()"),
    )
    .unwrap()[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap()
}
