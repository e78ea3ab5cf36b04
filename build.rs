//! Compiles the tree's build id (scripts/build-id: a hash of the files the extension is built from) into the
//! library as CARTO_FDW_BUILD_ID: carto.build_id() reports it, and tests/e2e/run refuses to test an installed
//! extension whose id is not the tree's. A `cargo pgrx test` build (feature pg_test) gets `-pg_test` appended.
use std::process::Command;

fn build_id(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg("scripts/build-id")
        .args(args)
        .output()
        .expect("build.rs: cannot run bash scripts/build-id");
    assert!(
        out.status.success(),
        "build.rs: scripts/build-id {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("build.rs: scripts/build-id printed non-UTF-8")
}

fn main() {
    for input in build_id(&["--inputs"]).lines() {
        println!("cargo:rerun-if-changed={input}");
    }
    let mut id = build_id(&[]).trim().to_string();
    assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()), "build.rs: bad build id {id:?}");
    if std::env::var_os("CARGO_FEATURE_PG_TEST").is_some() {
        id.push_str("-pg_test");
    }
    println!("cargo:rustc-env=CARTO_FDW_BUILD_ID={id}");
}
