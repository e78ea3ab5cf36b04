//! Fault injection: canned statuses, HTML 502s, cut responses/uploads and latency for the next N
//! requests of an endpoint group (set through the admin API).
use crate::rate_limit::Group;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Endpoint group ("query", "job_create", "job_get", "job_delete", "copy_from", "copy_to");
    /// absent or "any" = every group.
    #[serde(default)]
    pub group: Option<String>,
    /// Only requests of this user.
    #[serde(default)]
    pub user: Option<String>,
    /// How many requests it applies to (default 1).
    #[serde(default = "one")]
    pub count: u32,
    /// Answer with this status instead of running the request.
    #[serde(default)]
    pub status: Option<u16>,
    /// Body text for `status` (default: CARTO-style error JSON).
    #[serde(default)]
    pub body: Option<String>,
    /// JSON body for `status`.
    #[serde(default)]
    pub json: Option<serde_json::Value>,
    /// Raw body bytes for `status`, in hex (e.g. a COPY stream with bytes that are not UTF-8, for a
    /// hostile answer to `/copyto`); sent as `application/octet-stream`.
    #[serde(default)]
    pub body_hex: Option<String>,
    /// Seconds for a `Retry-After` header on the `status` answer. With status 429 this makes it CARTO's
    /// rate-limit refusal (its JSON by default, plus the `Carto-Rate-Limit-*` headers); a 429 without it
    /// is the statement-timeout kind (no `Retry-After`).
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// Answer 502 with an HTML page, as nginx would.
    #[serde(default)]
    pub html_502: bool,
    /// Cut the response (close the connection) after this many body bytes.
    #[serde(default)]
    pub cut_response_after: Option<u64>,
    /// /copyfrom: stop reading and close the connection after this many request-body bytes.
    #[serde(default)]
    pub cut_upload_after: Option<u64>,
    /// Wait this long before handling the request.
    #[serde(default)]
    pub latency_ms: Option<u64>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub id: u64,
    pub remaining: u32,
    pub spec: FaultSpec,
}

/// What applies to one request.
#[derive(Debug, Default, Clone)]
pub struct Applied {
    pub latency_ms: u64,
    pub status: Option<InjectedStatus>,
    pub html_502: bool,
    pub cut_response_after: Option<u64>,
    pub cut_upload_after: Option<u64>,
}

/// An injected answer: status, optional body text or JSON, optional `Retry-After` seconds.
#[derive(Debug, Clone)]
pub struct InjectedStatus {
    pub status: u16,
    pub body: Option<String>,
    pub body_bytes: Option<Vec<u8>>,
    pub json: Option<serde_json::Value>,
    pub retry_after: Option<u64>,
}

#[derive(Default)]
pub struct Faults {
    list: Mutex<Vec<Fault>>,
    next: AtomicU64,
}

impl Faults {
    pub fn add(&self, spec: FaultSpec) -> Result<u64, String> {
        if let Some(g) = &spec.group {
            if g != "any" && Group::parse(g).is_none() {
                return Err(format!("unknown group {g:?}"));
            }
        }
        if spec.retry_after.is_some() && spec.status.is_none() {
            return Err("retry_after needs a status".into());
        }
        if let Some(h) = &spec.body_hex {
            if spec.status.is_none() {
                return Err("body_hex needs a status".into());
            }
            decode_hex(h)?;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        if let Ok(mut l) = self.list.lock() {
            l.push(Fault { id, remaining: spec.count, spec });
        }
        Ok(id)
    }
    pub fn list(&self) -> Vec<Fault> {
        self.list.lock().map(|l| l.clone()).unwrap_or_default()
    }
    pub fn clear(&self) {
        if let Ok(mut l) = self.list.lock() {
            l.clear();
        }
    }

    /// Consume the faults matching this request.
    pub fn take(&self, group: Group, user: &str) -> Applied {
        let mut a = Applied::default();
        let Ok(mut l) = self.list.lock() else { return a };
        for f in l.iter_mut() {
            let g_ok = match f.spec.group.as_deref() {
                None | Some("any") => true,
                Some(g) => Group::parse(g) == Some(group),
            };
            let u_ok = f.spec.user.as_deref().is_none_or(|u| u == user);
            if !g_ok || !u_ok || f.remaining == 0 {
                continue;
            }
            f.remaining -= 1;
            if let Some(ms) = f.spec.latency_ms {
                a.latency_ms += ms;
            }
            if a.status.is_none() && !a.html_502 {
                if f.spec.html_502 {
                    a.html_502 = true;
                } else if let Some(s) = f.spec.status {
                    a.status = Some(InjectedStatus {
                        status: s,
                        body: f.spec.body.clone(),
                        body_bytes: f.spec.body_hex.as_deref().and_then(|h| decode_hex(h).ok()),
                        json: f.spec.json.clone(),
                        retry_after: f.spec.retry_after,
                    });
                }
            }
            if let Some(n) = f.spec.cut_response_after {
                a.cut_response_after.get_or_insert(n);
            }
            if let Some(n) = f.spec.cut_upload_after {
                a.cut_upload_after.get_or_insert(n);
            }
        }
        l.retain(|f| f.remaining > 0);
        a
    }
}

/// Hex digits (whitespace ignored) to bytes.
fn decode_hex(h: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = h.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err("body_hex needs an even number of hex digits".into());
    }
    digits
        .chunks(2)
        .map(|p| {
            std::str::from_utf8(p)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
                .ok_or_else(|| "body_hex holds a character that is not a hex digit".to_string())
        })
        .collect()
}

pub const HTML_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

#[cfg(test)]
mod tests {
    use super::decode_hex;

    #[test]
    fn hex_bodies() {
        assert_eq!(decode_hex("ff fe 61\n0a").unwrap(), vec![0xff, 0xfe, 0x61, 0x0a]);
        assert!(decode_hex("f").is_err());
        assert!(decode_hex("zz").is_err());
    }
}
