//! The client: one reqwest connection pool, authentication, retries, and the request/response plumbing the
//! operations share.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt as _;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use tokio::time::Instant;

use crate::config::ClientConfig;
use crate::error::{Endpoint, Error, ErrorKind, RateLimit, Result};
use crate::stats::RequestStats;

/// Which failures a request may retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads: a 429 with `Retry-After`, transport failures, 502/503/504.
    Read,
    /// Writes: only a 429 with `Retry-After` (a rate-limit refusal: CARTO did nothing).
    RateLimitOnly,
    /// Reads whose caller has a better plan than waiting for a rate limit: transport failures and
    /// 502/503/504 only; a 429 is returned at once.
    ReadNoRateLimit,
}

pub(crate) struct Inner {
    pub http: reqwest::Client,
    pub cfg: ClientConfig,
    auth: Option<HeaderValue>,
    secrets: Vec<String>,
}

/// A client of one CARTO account. Cheap to clone (one shared connection pool).
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base_url", &self.inner.cfg.base_url.as_str()).finish_non_exhaustive()
    }
}

impl Client {
    /// Build a client. Does no I/O (the CA file is read here).
    pub fn new(cfg: ClientConfig) -> Result<Client> {
        cfg.validate()?;
        let mut b = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .http1_only()
            .tcp_nodelay(true)
            .tcp_keepalive(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(50))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("carto-client/", env!("CARGO_PKG_VERSION")))
            .use_rustls_tls()
            .tls_built_in_native_certs(true)
            .tls_built_in_webpki_certs(true);
        if let Some(path) = &cfg.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| Error::config(format!("cannot read ca_file {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| Error::config(format!("invalid ca_file {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(Error::config(format!("ca_file {} holds no PEM certificate", path.display())));
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        if cfg.insecure {
            b = b.danger_accept_invalid_certs(true);
        }
        let http = b.build().map_err(|e| Error::config(format!("cannot build the HTTP client: {e}")))?;
        let mut secrets = Vec::new();
        let auth = match &cfg.api_key {
            None => None,
            Some(key) => {
                let user = cfg.username().unwrap_or_default();
                let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", key.expose()));
                let mut v = HeaderValue::from_str(&format!("Basic {token}"))
                    .map_err(|_| Error::config("the API key contains characters that cannot be sent"))?;
                v.set_sensitive(true);
                if !key.expose().is_empty() {
                    secrets.push(key.expose().to_string());
                }
                secrets.push(token);
                Some(v)
            }
        };
        Ok(Client { inner: Arc::new(Inner { http, cfg, auth, secrets }) })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
    }

    /// Scrub the key from an error.
    pub(crate) fn redact(&self, e: Error) -> Error {
        e.redact(&self.inner.secrets)
    }

    pub(crate) fn request(&self, method: reqwest::Method, url: url::Url) -> reqwest::RequestBuilder {
        let mut rb = self.inner.http.request(method, url);
        if let Some(a) = &self.inner.auth {
            rb = rb.header(AUTHORIZATION, a.clone());
        }
        rb
    }

    /// How long to wait before the next try, or None when the error must not be retried.
    pub(crate) fn backoff(&self, e: &Error, retries_done: u32, policy: Retry) -> Option<Duration> {
        let cfg = &self.inner.cfg;
        if retries_done >= cfg.max_retries {
            return None;
        }
        let ok = match policy {
            Retry::Read => e.is_retryable_read(),
            Retry::RateLimitOnly => e.is_retryable_write(),
            Retry::ReadNoRateLimit => e.kind == ErrorKind::Transport,
        };
        if !ok {
            return None;
        }
        match e.retry_after {
            Some(d) if d > cfg.max_retry_wait => None,
            Some(d) => Some(d),
            None => {
                let base = Duration::from_millis(500).saturating_mul(1u32 << retries_done.min(16));
                Some(base.min(cfg.max_retry_wait))
            }
        }
    }

    /// Send a request with retries and read its whole body, at most `limit` bytes (a Protocol error beyond).
    /// For reads, a body cut mid-way is retried too. Only for small answers (Batch jobs).
    pub(crate) async fn send_buffered<F>(
        &self,
        endpoint: Endpoint,
        policy: Retry,
        stats: &mut RequestStats,
        limit: u64,
        make: F,
    ) -> Result<(u16, Bytes)>
    where
        F: Fn() -> reqwest::RequestBuilder,
    {
        let timeout = self.inner.cfg.request_timeout;
        self.retry_loop(policy, stats, || {
            let rb = make();
            async move {
                let mut st = RequestStats::default();
                let deadline = Instant::now() + timeout;
                let r = match self.head_once(endpoint, rb, &mut st).await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        read_body(endpoint, resp, limit, false, deadline, &mut st).await.map(|b| (status, b))
                    }
                    Err(e) => Err(e),
                };
                (r, st)
            }
        })
        .await
    }

    pub(crate) async fn retry_loop<T, G, Fut>(&self, policy: Retry, stats: &mut RequestStats, mut attempt: G) -> Result<T>
    where
        G: FnMut() -> Fut,
        Fut: Future<Output = (Result<T>, RequestStats)>,
    {
        let mut retries = 0u32;
        loop {
            let (r, st) = attempt().await;
            stats.add(&st);
            match r {
                Ok(v) => return Ok(v),
                Err(e) => match self.backoff(&e, retries, policy) {
                    Some(wait) => {
                        tokio::time::sleep(wait).await;
                        retries += 1;
                        stats.retries += 1;
                    }
                    None => {
                        let mut e = e;
                        e.retries = retries;
                        return Err(self.redact(e));
                    }
                },
            }
        }
    }

    /// One try: send, wait for the head (bounded by request_timeout), and turn a non-2xx answer into an Error.
    pub(crate) async fn head_once(
        &self,
        endpoint: Endpoint,
        rb: reqwest::RequestBuilder,
        stats: &mut RequestStats,
    ) -> Result<reqwest::Response> {
        stats.requests += 1;
        let timeout = self.inner.cfg.request_timeout;
        let resp = match tokio::time::timeout(timeout, rb.send()).await {
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    endpoint,
                    format!("no response within request_timeout ({} s)", timeout.as_secs_f64()),
                ))
            }
            Ok(Err(e)) => return Err(Error::transport(endpoint, &e)),
            Ok(Ok(r)) => r,
        };
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(error_from_response(endpoint, resp, stats).await)
    }
}

/// The most of an error response's body read.
pub(crate) const MAX_ERROR_BODY: u64 = 64 * 1024;

/// Read an error response (the first 64 KiB of its body at most, for at most 10 s) into an Error.
pub(crate) async fn error_from_response(endpoint: Endpoint, resp: reqwest::Response, stats: &mut RequestStats) -> Error {
    let status = resp.status().as_u16();
    let (retry_after, rate_limit) = retry_info(resp.headers());
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = read_body(endpoint, resp, MAX_ERROR_BODY, true, deadline, stats).await.unwrap_or_default();
    Error::from_response(endpoint, status, retry_after, rate_limit, &body)
}

/// `Retry-After` (seconds; an HTTP date counts as 1 s) and CARTO's rate-limit headers.
pub(crate) fn retry_info(h: &HeaderMap) -> (Option<Duration>, Option<RateLimit>) {
    let num = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).and_then(|s| s.trim().parse::<u64>().ok());
    let retry_after = h.get(reqwest::header::RETRY_AFTER).map(|v| {
        let secs = v.to_str().ok().and_then(|s| s.trim().parse::<f64>().ok()).unwrap_or(1.0);
        Duration::from_secs_f64(secs.clamp(0.0, 86400.0))
    });
    let rl = RateLimit {
        limit: num("carto-rate-limit-limit"),
        remaining: num("carto-rate-limit-remaining"),
        reset: num("carto-rate-limit-reset"),
    };
    let rate_limit = if rl == RateLimit::default() { None } else { Some(rl) };
    (retry_after, rate_limit)
}

/// Read a whole body before `deadline`, at most `limit` bytes: beyond, a Protocol error, or with `truncate`
/// the first `limit` bytes (the rest is not read). The buffer grows fallibly.
pub(crate) async fn read_body(
    endpoint: Endpoint,
    resp: reqwest::Response,
    limit: u64,
    truncate: bool,
    deadline: Instant,
    stats: &mut RequestStats,
) -> Result<Bytes> {
    let mut buf: Vec<u8> = Vec::new();
    let mut stream = resp.bytes_stream();
    loop {
        let next = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => {
                return Err(Error::new(ErrorKind::Timeout, endpoint, "response body not complete within request_timeout"))
            }
            Ok(n) => n,
        };
        match next {
            None => return Ok(Bytes::from(buf)),
            Some(Err(e)) => {
                let mut err = Error::transport(endpoint, &e);
                err.message = format!("connection cut while reading the response: {}", err.message);
                return Err(err);
            }
            Some(Ok(chunk)) => {
                stats.bytes_received += chunk.len() as u64;
                if (buf.len() + chunk.len()) as u64 > limit {
                    if truncate {
                        let keep = limit as usize - buf.len();
                        buf.extend_from_slice(&chunk[..keep]);
                        return Ok(Bytes::from(buf));
                    }
                    return Err(Error::new(
                        ErrorKind::Protocol,
                        endpoint,
                        format!("response body larger than the {limit} bytes accepted from {endpoint}"),
                    ));
                }
                crate::buf::extend(&mut buf, &chunk, limit as usize, endpoint, "a response body")?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(max_retries: u32) -> Client {
        let mut cfg = ClientConfig::for_base_url("http://127.0.0.1:1/user/demo").unwrap().with_api_key("SECRETKEY");
        cfg.max_retries = max_retries;
        cfg.max_retry_wait = Duration::from_secs(10);
        Client::new(cfg).unwrap()
    }

    #[test]
    fn debug_and_redaction() {
        let c = client(3);
        assert!(!format!("{c:?}").contains("SECRETKEY"));
        assert!(!format!("{:?}", c.config()).contains("SECRETKEY"));
        let token = base64::engine::general_purpose::STANDARD.encode("demo:SECRETKEY");
        let e = Error::new(ErrorKind::BadRequest, Endpoint::Sql, format!("echo SECRETKEY and Basic {token}"));
        let e = c.redact(e);
        assert_eq!(e.message, "echo *** and Basic ***");
    }

    #[test]
    fn backoff_rules() {
        let c = client(2);
        let mut rl = Error::new(ErrorKind::RateLimited, Endpoint::Sql, "x");
        rl.retry_after = Some(Duration::from_secs(3));
        assert_eq!(c.backoff(&rl, 0, Retry::Read), Some(Duration::from_secs(3)));
        assert_eq!(c.backoff(&rl, 0, Retry::RateLimitOnly), Some(Duration::from_secs(3)));
        assert_eq!(c.backoff(&rl, 2, Retry::Read), None, "max_retries");
        rl.retry_after = Some(Duration::from_secs(11));
        assert_eq!(c.backoff(&rl, 0, Retry::Read), None, "Retry-After above max_retry_wait");
        let t = Error::new(ErrorKind::Transport, Endpoint::Sql, "x");
        assert_eq!(c.backoff(&t, 0, Retry::Read), Some(Duration::from_millis(500)));
        assert_eq!(c.backoff(&t, 1, Retry::Read), Some(Duration::from_millis(1000)));
        assert_eq!(c.backoff(&t, 0, Retry::RateLimitOnly), None, "writes are not retried on transport errors");
        assert_eq!(c.backoff(&t, 0, Retry::ReadNoRateLimit), Some(Duration::from_millis(500)));
        rl.retry_after = Some(Duration::from_secs(1));
        assert_eq!(c.backoff(&rl, 0, Retry::ReadNoRateLimit), None);
        for k in [ErrorKind::RemoteTimeout, ErrorKind::BadRequest, ErrorKind::Timeout, ErrorKind::Protocol] {
            assert_eq!(c.backoff(&Error::new(k, Endpoint::Sql, "x"), 0, Retry::Read), None, "{k:?}");
        }
    }

    #[test]
    fn retry_headers() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        h.insert("carto-rate-limit-limit", HeaderValue::from_static("2"));
        h.insert("carto-rate-limit-remaining", HeaderValue::from_static("0"));
        h.insert("carto-rate-limit-reset", HeaderValue::from_static("7"));
        let (ra, rl) = retry_info(&h);
        assert_eq!(ra, Some(Duration::from_secs(7)));
        assert_eq!(rl, Some(RateLimit { limit: Some(2), remaining: Some(0), reset: Some(7) }));
        let (ra, rl) = retry_info(&HeaderMap::new());
        assert_eq!((ra, rl), (None, None));
    }
}
