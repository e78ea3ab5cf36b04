//! Helpers shared by the client's integration tests (each test file is its own crate: `mod common;`).

use std::time::{Duration, Instant};

use carto_sim::testkit::TestSim;

/// The process's peak resident set size (VmHWM), in bytes.
#[allow(dead_code)]
pub fn vm_hwm() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Waits up to 10 s until no active query on the sim's database starts with `prefix` (a dropped stream's
/// query, cancelled by the sim once it saw the connection close).
#[allow(dead_code)]
pub async fn wait_query_gone(sim: &TestSim, prefix: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let sql = format!("select count(*) from pg_stat_activity where query like '{prefix}%' and state = 'active'");
    loop {
        let n = sim.psql_admin("demo", &sql).unwrap()[0][0].clone().unwrap();
        if n == "0" {
            return;
        }
        assert!(Instant::now() < deadline, "remote query still running: {prefix}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// COPYs still running on the sim's database for `table`, once the sim's backends have settled:
/// CARTO's answer to a failed COPY can reach the client a moment before its backend leaves the
/// COPY state, so a count above zero is re-checked for up to 3 s before it is returned.
#[allow(dead_code)]
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
