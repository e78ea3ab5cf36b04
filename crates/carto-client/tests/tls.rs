//! TLS: system roots only (a private CA is refused), an extra CA file, and `insecure`, against `openssl s_server`
//! with a leaf certificate signed by a throwaway CA. Needs the openssl CLI (fails without it).

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_roots_ca_file_and_insecure() {
    let dir = std::env::temp_dir().join(format!("carto-client-tls-{}", std::process::id()));
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
