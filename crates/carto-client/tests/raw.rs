//! What goes on the wire, seen by a minimal HTTP/1.1 server: copyfrom requests carry `Connection: close` (a copy
//! connection is never reused), gzip, chunked encoding and Basic auth; the key is never in the request line.

use std::io::Read as _;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use carto_client::{Client, ClientConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Default)]
struct Seen {
    connections: usize,
    heads: Vec<String>,
    bodies: Vec<Vec<u8>>,
}

/// Read one request (head + chunked or Content-Length body); None at EOF.
async fn read_request(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut tmp = [0u8; 8192];
        let n = s.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    buf.drain(..head_end);
    let lower = head.to_ascii_lowercase();
    let mut body = Vec::new();
    if lower.contains("transfer-encoding: chunked") {
        loop {
            // chunk size line
            let line_end = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                let mut tmp = [0u8; 8192];
                let n = s.read(&mut tmp).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&tmp[..n]);
            };
            let size = usize::from_str_radix(String::from_utf8_lossy(&buf[..line_end]).trim(), 16).ok()?;
            buf.drain(..line_end + 2);
            while buf.len() < size + 2 {
                let mut tmp = [0u8; 8192];
                let n = s.read(&mut tmp).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&tmp[..n]);
            }
            body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
            if size == 0 {
                break;
            }
        }
    } else if let Some(cl) = lower.lines().find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0))) {
        while buf.len() < cl {
            let mut tmp = [0u8; 8192];
            let n = s.read(&mut tmp).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&tmp[..n]);
        }
        body = buf.drain(..cl).collect();
    }
    Some((head, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copyfrom_wire_format_and_no_connection_reuse() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let seen2 = seen.clone();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            seen2.lock().unwrap().connections += 1;
            let seen3 = seen2.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some((head, body)) = read_request(&mut s, &mut buf).await {
                    let is_copy = head.contains("/copyfrom");
                    let resp = if is_copy { r#"{"time":0.1,"total_rows":2}"# } else { r#"{"rows":[],"time":0.1,"fields":{},"total_rows":0}"# };
                    {
                        let mut g = seen3.lock().unwrap();
                        g.heads.push(head.clone());
                        g.bodies.push(body);
                    }
                    let close = head.to_ascii_lowercase().contains("connection: close");
                    let out = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n{}",
                        resp.len(),
                        if close { "Connection: close\r\n" } else { "" },
                        resp
                    );
                    if s.write_all(out.as_bytes()).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });

    let mut cfg = ClientConfig::for_base_url(&format!("http://{addr}/user/demo")).unwrap().with_api_key("raw-secret-key");
    cfg.keepalive_interval = std::time::Duration::from_millis(100);
    let c = Client::new(cfg).unwrap();
    for _ in 0..2 {
        let mut up = c.copy_from("COPY t (a, b) FROM STDIN");
        up.send(Bytes::from_static(b"1\tx\n"), 1).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(350)).await; // keep-alive blocks go out
        up.send(Bytes::from_static(b"2\t\\N\n"), 1).await.unwrap();
        let s = up.finish().await.unwrap();
        assert_eq!(s.total_rows, 2);
    }
    // Two queries go through the pool; whether the second reuses the first's connection depends on when
    // the pool gets it back (timing), so only the copies' own connections are exact.
    c.query("select 1").await.unwrap();
    c.query("select 2").await.unwrap();

    let g = seen.lock().unwrap();
    // Each copy on its own connection (closed after it: `connection: close`, checked below), never reused.
    assert!((3..=4).contains(&g.connections), "each copy on its own connection: {:?}", g.heads);
    let token = base64::engine::general_purpose::STANDARD.encode("demo:raw-secret-key");
    for (i, head) in g.heads.iter().enumerate() {
        let lower = head.to_ascii_lowercase();
        let request_line = head.lines().next().unwrap_or("");
        assert!(!request_line.contains("raw-secret-key"), "{head}");
        assert!(head.contains(&format!("Basic {token}")) || lower.contains(&format!("basic {}", token.to_ascii_lowercase())), "{head}");
        if i < 2 {
            assert!(request_line.starts_with("POST /user/demo/api/v2/sql/copyfrom?q=COPY"), "{head}");
            assert!(lower.contains("connection: close"), "{head}");
            assert!(lower.contains("content-encoding: gzip"), "{head}");
            assert!(lower.contains("transfer-encoding: chunked"), "{head}");
            assert!(lower.contains("content-type: application/octet-stream"), "{head}");
            let mut text = String::new();
            flate2::read::GzDecoder::new(&g.bodies[i][..]).read_to_string(&mut text).unwrap();
            assert_eq!(text, "1\tx\n2\t\\N\n");
            // keep-alive blocks (empty stored blocks) were sent while idle
            assert!(g.bodies[i].windows(5).any(|w| w == [0, 0, 0, 0xff, 0xff]), "no keep-alive block");
        } else {
            assert!(request_line.starts_with("POST /user/demo/api/v2/sql "), "{head}");
            assert!(!lower.contains("connection: close"), "{head}");
        }
    }
    server.abort();
}
