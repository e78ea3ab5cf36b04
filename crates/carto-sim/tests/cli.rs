//! The binary: `setup`, `serve` (exact ready line on stdout, SIGTERM), `teardown`.
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn serve_prints_ready_line_and_stops_on_sigterm() {
    let Ok(admin) = std::env::var("CARTO_SIM_ADMIN_URL") else {
        panic!("CARTO_SIM_ADMIN_URL is not set (scripts/pg-cluster start /tmp/simpg 55500)");
    };
    let dir = std::env::temp_dir().join(format!("carto-sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("config.toml");
    let prefix = format!("cli{}", std::process::id());
    std::fs::write(
        &cfg,
        format!(
            "admin_url = \"{admin}\"\nprefix = \"{prefix}\"\nsecret = \"s\"\n[[users]]\nname = \"demo\"\nmaster_key = \"mk\"\n\
             setup_sql = \"CREATE TABLE t (a int); INSERT INTO t VALUES (42)\"\n"
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_carto-sim");
    // setup is idempotent
    for _ in 0..2 {
        let st = Command::new(bin).args(["setup", "--config"]).arg(&cfg).status().unwrap();
        assert!(st.success());
    }
    let mut child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&cfg)
        .args(["--listen", "127.0.0.1:0", "--setup"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("carto-sim listening on ").unwrap_or_else(|| panic!("ready line: {line:?}")).to_string();
    assert!(url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"), "{url}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let body = rt.block_on(async {
        reqwest::get(format!("{url}/user/demo/api/v2/sql?q=select+a+from+t&api_key=mk")).await.unwrap().text().await.unwrap()
    });
    assert!(body.starts_with(r#"{"rows":[{"a":42}]"#), "{body}");
    let st = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(st.success());
    let code = child.wait().unwrap();
    assert!(code.success(), "{code:?}");
    let st = Command::new(bin).args(["teardown", "--config"]).arg(&cfg).status().unwrap();
    assert!(st.success());
    let _ = std::fs::remove_dir_all(&dir);
    // bad usage
    let out = Command::new(bin).arg("serve").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
