//! Client configuration: the account's base URL, the API key, timeouts, retries, compression and TLS.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::error::{Error, Result};

/// A CARTO API key. It prints as `ApiKey(***)` in both `Debug` and `Display`; the only way to read it is
/// [`ApiKey::expose`], which the client uses to build the `Authorization` header and nothing else.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }

    /// The key itself. Only for building the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl From<&str> for ApiKey {
    fn from(s: &str) -> Self {
        ApiKey(s.to_string())
    }
}

impl From<String> for ApiKey {
    fn from(s: String) -> Self {
        ApiKey(s)
    }
}

/// Default roll-over threshold of a COPY FROM request, on compressed bytes: CARTO refuses bodies over 2 GB;
/// 128 MiB of margin covers what the compressor still holds and what is in flight.
pub const DEFAULT_COPYFROM_MAX_BYTES: u64 = 2 * 1024 * 1024 * 1024 - 128 * 1024 * 1024;

/// How to reach one CARTO account.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The account's base URL, without `/api/v2/sql` and without a trailing slash:
    /// `https://alice.carto.com` or `https://team.carto.com/user/alice`.
    pub base_url: Url,
    /// No key means CARTO's public access (default_public).
    pub api_key: Option<ApiKey>,
    /// TCP + TLS connect timeout. Default 10 s.
    pub connect_timeout: Duration,
    /// Whole-request timeout of `/sql` and Batch requests, time to the response head of COPY requests, and the
    /// idle-read timeout of COPY streams (no byte for this long). Default 300 s.
    pub request_timeout: Duration,
    /// Retries of a retryable failure (see the crate documentation). Default 3.
    pub max_retries: u32,
    /// The longest single wait between retries; a `Retry-After` above it is not waited for (the error is
    /// returned at once). Default 60 s.
    pub max_retry_wait: Duration,
    /// gzip level of COPY FROM bodies while the upload waits for CARTO, 0..=9; while it waits for rows, a level
    /// above 1 drops to 1 (copy_in.rs `adapt`). 0 still sends a gzip container
    /// (stored blocks), so keep-alive blocks work at every level. Default 2: with zlib-rs, smaller output than
    /// level 1 (zlib-rs level 1 is zlib-ng's quick mode, about 25 % larger) at about the speed miniz_oxide had
    /// at level 1.
    pub compression_level: u32,
    /// An extra PEM file of CA certificates, trusted besides the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate (on-premises test installations only).
    pub insecure: bool,
    /// Roll-over threshold of one COPY FROM request, on compressed bytes sent; see [`crate::CopyIn::needs_rollover`].
    pub copyfrom_max_bytes: u64,
    /// While a COPY FROM is open and the caller sends nothing for this long, an empty gzip block is sent so
    /// CARTO's slow-input guard and idle socket timeout do not cut the upload. Default 5 s.
    pub keepalive_interval: Duration,
    /// The largest `/sql` answer [`crate::Client::query_with`] reads (its rows are all kept). Default 1 GiB.
    /// [`crate::Client::query_rows`] streams and has no total limit.
    pub max_response_bytes: u64,
    /// The largest single row an answer may hold: a `/sql` row's JSON text, a COPY text line. A larger one is a
    /// Protocol error before it is buffered. Default 1 GiB - 1 ([`crate::DEFAULT_MAX_ROW_BYTES`], PostgreSQL's
    /// largest value).
    pub max_row_bytes: usize,
    /// Capacity, in chunks, of the channels between the caller and a stream's network task. Default 8.
    pub channel_capacity: usize,
}

impl ClientConfig {
    fn with_url(base_url: Url) -> Self {
        ClientConfig {
            base_url,
            api_key: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(300),
            max_retries: 3,
            max_retry_wait: Duration::from_secs(60),
            compression_level: 2,
            ca_file: None,
            insecure: false,
            copyfrom_max_bytes: DEFAULT_COPYFROM_MAX_BYTES,
            keepalive_interval: Duration::from_secs(5),
            max_response_bytes: 1 << 30,
            max_row_bytes: crate::DEFAULT_MAX_ROW_BYTES,
            channel_capacity: 8,
        }
    }

    /// CARTO's cloud: `https://{username}.carto.com`.
    pub fn for_username(username: &str) -> Result<Self> {
        validate_username(username)?;
        let url = Url::parse(&format!("https://{username}.carto.com"))
            .map_err(|e| Error::config(format!("invalid username {username:?}: {e}")))?;
        Ok(Self::with_url(url))
    }

    /// Any base URL: `https://team.carto.com/user/alice`, `http://127.0.0.1:8080/user/demo`,
    /// `https://alice.carto.com`. A trailing slash and a trailing `/api/v2/sql` (or `/api/v1/sql`) are removed.
    /// Credentials, a query string or a fragment in the URL are refused (the key goes in `api_key`).
    pub fn for_base_url(url: &str) -> Result<Self> {
        Ok(Self::with_url(normalize_base_url(url)?))
    }

    pub fn with_api_key(mut self, key: impl Into<ApiKey>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// The account's user name: the `/user/{name}` path segment, else the first label of the host name.
    pub fn username(&self) -> Option<String> {
        username_of(&self.base_url)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.compression_level > 9 {
            return Err(Error::config(format!("compression_level must be 0..=9, not {}", self.compression_level)));
        }
        if self.channel_capacity == 0 {
            return Err(Error::config("channel_capacity must be at least 1"));
        }
        if self.keepalive_interval.is_zero() {
            return Err(Error::config("keepalive_interval must be positive"));
        }
        if self.max_row_bytes == 0 {
            return Err(Error::config("max_row_bytes must be positive"));
        }
        if self.copyfrom_max_bytes == 0 {
            return Err(Error::config("copyfrom_max_bytes must be positive"));
        }
        if self.api_key.is_some() && self.username().is_none() {
            return Err(Error::config(format!(
                "cannot tell the CARTO user name from base URL {}: use https://USER.carto.com or .../user/USER",
                self.base_url
            )));
        }
        Ok(())
    }

    /// The URL of an endpoint below `/api/v2/sql` (`""`, `"copyfrom"`, `"copyto"`, `"job"`).
    pub(crate) fn endpoint_url(&self, tail: &[&str]) -> Url {
        let mut u = self.base_url.clone();
        if let Ok(mut segs) = u.path_segments_mut() {
            segs.pop_if_empty();
            segs.extend(["api", "v2", "sql"]);
            segs.extend(tail.iter().copied());
        }
        u
    }
}

fn validate_username(u: &str) -> Result<()> {
    if u.is_empty() || u.len() > 63 || !u.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(Error::config(format!(
            "invalid CARTO user name {u:?}: letters, digits, '-' and '_' only"
        )));
    }
    Ok(())
}

pub(crate) fn normalize_base_url(input: &str) -> Result<Url> {
    let input = input.trim();
    let mut url = Url::parse(input).map_err(|e| Error::config(format!("invalid base_url: {e}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(Error::config(format!("base_url must be http or https, not {}", url.scheme())));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Never echo the URL: it holds credentials.
        return Err(Error::config(
            "base_url must not contain credentials: give the key as api_key (it is sent as Basic auth)",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::config("base_url must not have a query string or fragment (no api_key= in URLs)"));
    }
    if url.host_str().is_none_or(|h| h.is_empty()) {
        return Err(Error::config("base_url has no host"));
    }
    let mut segs: Vec<String> =
        url.path_segments().map(|s| s.filter(|p| !p.is_empty()).map(str::to_string).collect()).unwrap_or_default();
    if segs.len() >= 3 {
        let n = segs.len();
        if segs[n - 3] == "api" && (segs[n - 2] == "v2" || segs[n - 2] == "v1") && segs[n - 1] == "sql" {
            segs.truncate(n - 3);
        }
    }
    url.set_path("");
    if let Ok(mut p) = url.path_segments_mut() {
        p.clear();
        p.extend(segs.iter());
    }
    // Url always keeps a "/" path for http(s); endpoint_url() pops it.
    Ok(url)
}

pub(crate) fn username_of(url: &Url) -> Option<String> {
    if let Some(segs) = url.path_segments() {
        let segs: Vec<&str> = segs.collect();
        for w in segs.windows(2) {
            if w[0] == "user" && !w[1].is_empty() {
                return percent_decode(w[1]);
            }
        }
    }
    match url.host()? {
        url::Host::Domain(d) => {
            let first = d.split('.').next()?;
            // A bare host name (localhost) has no user label.
            if d.contains('.') && !first.is_empty() {
                Some(first.to_string())
            } else {
                None
            }
        }
        _ => None,
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let h = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        for (input, want, user) in [
            ("https://team.carto.com/user/alice", "https://team.carto.com/user/alice", Some("alice")),
            ("https://team.carto.com/user/alice/", "https://team.carto.com/user/alice", Some("alice")),
            ("https://team.carto.com/user/alice/api/v2/sql", "https://team.carto.com/user/alice", Some("alice")),
            ("https://team.carto.com/user/alice/api/v2/sql/", "https://team.carto.com/user/alice", Some("alice")),
            ("http://127.0.0.1:8080/user/demo", "http://127.0.0.1:8080/user/demo", Some("demo")),
            ("http://127.0.0.1:8080/user/demo/api/v1/sql", "http://127.0.0.1:8080/user/demo", Some("demo")),
            ("https://bob.carto.com", "https://bob.carto.com/", Some("bob")),
            ("https://bob.carto.com/api/v2/sql", "https://bob.carto.com/", Some("bob")),
            ("http://localhost:8080", "http://localhost:8080/", None),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/", None),
        ] {
            let c = ClientConfig::for_base_url(input).unwrap();
            assert_eq!(c.base_url.as_str(), want, "{input}");
            assert_eq!(c.username().as_deref(), user, "{input}");
        }
        let c = ClientConfig::for_base_url("http://127.0.0.1:8080/user/demo/").unwrap();
        assert_eq!(c.endpoint_url(&[]).as_str(), "http://127.0.0.1:8080/user/demo/api/v2/sql");
        assert_eq!(c.endpoint_url(&["copyfrom"]).as_str(), "http://127.0.0.1:8080/user/demo/api/v2/sql/copyfrom");
        assert_eq!(
            c.endpoint_url(&["job", "a/b?c"]).as_str(),
            "http://127.0.0.1:8080/user/demo/api/v2/sql/job/a%2Fb%3Fc"
        );
        let c = ClientConfig::for_base_url("https://bob.carto.com").unwrap();
        assert_eq!(c.endpoint_url(&["copyto"]).as_str(), "https://bob.carto.com/api/v2/sql/copyto");
    }

    #[test]
    fn bad_urls() {
        for bad in [
            "ftp://x.carto.com",
            "not a url",
            "https://x.carto.com/?api_key=SECRETKEY",
            "https://alice:SECRETKEY@x.carto.com/",
            "https://x.carto.com/#SECRETKEY",
        ] {
            let e = ClientConfig::for_base_url(bad).unwrap_err();
            assert_eq!(e.kind, crate::ErrorKind::Config);
            assert!(!e.to_string().contains("SECRETKEY"), "{e}");
        }
        assert!(ClientConfig::for_username("a.b").is_err());
        assert!(ClientConfig::for_username("").is_err());
        let c = ClientConfig::for_username("alice").unwrap();
        assert_eq!(c.base_url.as_str(), "https://alice.carto.com/");
        assert_eq!(c.username().as_deref(), Some("alice"));
        assert_eq!(c.connect_timeout, Duration::from_secs(10));
        assert_eq!(c.request_timeout, Duration::from_secs(300));
        assert_eq!(c.max_retries, 3);
        assert_eq!(c.compression_level, 2);
        // A key with no way to tell the user is a configuration error.
        let c = ClientConfig::for_base_url("http://127.0.0.1:1/").unwrap().with_api_key("k");
        assert_eq!(c.validate().unwrap_err().kind, crate::ErrorKind::Config);
    }

    #[test]
    fn key_masked() {
        let k = ApiKey::new("SECRETKEY");
        assert_eq!(format!("{k}"), "ApiKey(***)");
        assert_eq!(format!("{k:?}"), "ApiKey(***)");
        let c = ClientConfig::for_username("alice").unwrap().with_api_key("SECRETKEY");
        assert!(!format!("{c:?}").contains("SECRETKEY"));
    }
}
