//! TLS: system roots only (a private CA is refused), an extra CA file, and `insecure`, against `openssl s_server`
//! with a leaf certificate signed by a throwaway CA, then the whole protocol (/sql, COPY in and out) against
//! carto-sim's HTTPS listener with such a certificate. Needs the openssl CLI (fails without it); the second test
//! needs CARTO_SIM_ADMIN_URL, as every test that starts a carto-sim.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use carto_client::{Client, ClientConfig, ErrorKind};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn openssl(dir: &Path, args: &[&str]) -> bool {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A fresh directory holding `ca.pem` (a throwaway CA) and `leaf.pem` / `leaf.key` (a server certificate for
/// 127.0.0.1 and localhost signed by it).
fn make_certs(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("carto-client-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Never a silent pass: without the openssl CLI (scripts/bootstrap installs it) this test fails.
    assert!(openssl(&dir, &["version"]), "the openssl CLI is missing or broken: install the Debian package openssl (scripts/bootstrap does)");
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    assert!(openssl(&dir, &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=carto-client test CA", "-days", "2"]));
    assert!(openssl(&dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost"]));
    assert!(openssl(&dir, &["x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "leaf.pem", "-days", "2", "-extfile", "ext.cnf"]));
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_roots_ca_file_and_insecure() {
    let dir = make_certs("tls");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("openssl")
        .args(["s_server", "-accept", &format!("127.0.0.1:{port}"), "-cert", "leaf.pem", "-key", "leaf.key", "-www", "-quiet"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _server = Server(child);
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(10), "s_server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let base = format!("https://127.0.0.1:{port}/user/demo");
    let make = |f: &dyn Fn(&mut ClientConfig)| {
        let mut c = ClientConfig::for_base_url(&base).unwrap().with_api_key("tls-test-key-123");
        c.max_retries = 0;
        c.request_timeout = Duration::from_secs(10);
        f(&mut c);
        Client::new(c).unwrap()
    };
    // System roots only: the private CA is not trusted.
    let e = make(&|_| {}).batch_read("x").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transport, "{e}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    assert!(!e.to_string().contains("tls-test-key-123"));
    // With the CA file the handshake succeeds; s_server's HTML status page is then not a job (Protocol).
    let ca = dir.join("ca.pem");
    let e = make(&|c| c.ca_file = Some(ca.clone())).batch_read("x").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Protocol, "{e}");
    // insecure: any certificate.
    let e = make(&|c| c.insecure = true).batch_read("x").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Protocol, "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// carto-sim over HTTPS: with the CA in `ca_file`, /sql, COPY in and COPY out work; without it the handshake is
/// refused (a Transport error naming the certificate, no key in it); `insecure` works without the CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_over_tls() {
    use carto_sim::testkit::{default_config, TestSim, DEMO_MASTER_KEY};
    let dir = make_certs("tls-sim");
    let sim = TestSim::start_tls(default_config(), &dir.join("leaf.pem"), &dir.join("leaf.key"));
    assert!(sim.url().starts_with("https://127.0.0.1:"), "{}", sim.url());
    let make = |f: &dyn Fn(&mut ClientConfig)| {
        let mut c = ClientConfig::for_base_url(&sim.base_url("demo")).unwrap().with_api_key(DEMO_MASTER_KEY);
        c.max_retries = 0;
        c.request_timeout = Duration::from_secs(20);
        f(&mut c);
        Client::new(c).unwrap()
    };
    let ca = dir.join("ca.pem");
    let c = make(&|c| c.ca_file = Some(ca.clone()));
    c.query("CREATE TABLE tls_t (id int, t text)").await.unwrap();
    let mut up = c.copy_from("COPY tls_t (id, t) FROM STDIN");
    let rows: String = (1..=5000).map(|i| format!("{i}\trow {i} é\n")).collect();
    up.send(bytes::Bytes::from(rows), 5000).await.unwrap();
    let s = up.finish().await.unwrap();
    assert_eq!(s.total_rows, 5000);
    let r = c.query("SELECT count(*)::text AS n, sum(id)::text AS s FROM tls_t").await.unwrap();
    assert_eq!(r.rows[0]["n"], "5000");
    assert_eq!(r.rows[0]["s"], "12502500");
    let mut out = c.copy_to("COPY (SELECT t FROM tls_t WHERE id IN (1, 5000) ORDER BY id) TO STDOUT").await.unwrap();
    let mut text = Vec::new();
    while let Some(chunk) = out.next_chunk().await.unwrap() {
        text.extend_from_slice(&chunk);
    }
    assert_eq!(String::from_utf8(text).unwrap(), "row 1 é\nrow 5000 é\n");
    // System roots only: the sim's CA is not trusted.
    let e = make(&|_| {}).query("SELECT 1").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Transport, "{e}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    assert!(!format!("{e} {e:?}").contains(DEMO_MASTER_KEY));
    // insecure: any certificate.
    let r = make(&|c| c.insecure = true).query("SELECT 2 AS two").await.unwrap();
    assert_eq!(r.rows[0]["two"], 2);
    drop(sim);
    let _ = std::fs::remove_dir_all(&dir);
}
