//! Credentials, in CARTO's order: Basic header, then `api_key`/`map_key` in the query string, then
//! in the form/JSON body. The key decides the PostgreSQL role the request runs as.
use crate::accounts::{Account, KeyKind, PUBLIC_ROLE};
use crate::errors::ApiError;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct Credentials {
    pub token: Option<String>,
    /// User name given in Basic auth, if any.
    pub basic_user: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Authorized {
    pub kind: KeyKind,
    pub role: String,
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let (scheme, rest) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

pub fn credentials(headers: &HeaderMap, query: &HashMap<String, String>, body: Option<&HashMap<String, String>>) -> Credentials {
    if let Some((u, p)) = basic(headers) {
        return Credentials { token: Some(p), basic_user: Some(u) };
    }
    for src in [Some(query), body].into_iter().flatten() {
        for name in ["api_key", "map_key"] {
            if let Some(v) = src.get(name) {
                if !v.is_empty() {
                    return Credentials { token: Some(v.clone()), basic_user: None };
                }
            }
        }
    }
    Credentials { token: None, basic_user: None }
}

/// Map credentials to a role. `master_only` is the Batch API's rule.
pub fn authorize(account: &Account, creds: &Credentials, master_only: bool) -> Result<Authorized, ApiError> {
    if let Some(u) = &creds.basic_user {
        if u != &account.name {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "permission denied"));
        }
    }
    let auth = match &creds.token {
        None => Authorized { kind: KeyKind::DefaultPublic, role: PUBLIC_ROLE.to_string() },
        Some(t) => match account.key_for_token(t) {
            Some((kind, role, true)) => Authorized { kind, role },
            // A key without the SQL grant (CARTO's maps-only keys).
            Some((_, _, false)) => return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden")),
            None => return Err(ApiError::unauthorized()),
        },
    };
    if master_only && auth.kind != KeyKind::Master {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "permission denied"));
    }
    Ok(auth)
}
