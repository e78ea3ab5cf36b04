//! Helpers the benchmark examples share (`mod common;`; a folder without main.rs is no example of its own).

use std::process::Command;
use std::time::{Duration, Instant};

/// Runs curl with `args`; its standard output and how long it took. Panics when curl fails.
pub fn curl(args: &[&str]) -> (String, Duration) {
    let t = Instant::now();
    let out = Command::new("curl").args(args).output().expect("curl");
    let d = t.elapsed();
    if !out.status.success() {
        panic!("curl failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    (String::from_utf8_lossy(&out.stdout).to_string(), d)
}
