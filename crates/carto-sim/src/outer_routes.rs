//! The routes around the SQL API (carto-sql-api.md 11.7): CORS preflight (`OPTIONS`), `/api/v1/health`,
//! `/api/v1/version`, and Express's own 404 page for a route that does not exist.
use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;

/// The version the sim answers as (the CARTO SQL API server it was compared with).
pub const SQL_API_VERSION: &str = "6.0.0";

/// `GET /api/v1/health` or `/api/v1/version` (at the root or under `/user/{name}`), if `rest` is one.
pub fn info(method: &Method, rest: &str) -> Option<Response> {
    if method != Method::GET {
        return None;
    }
    let started = std::time::Instant::now();
    let text = match rest.trim_end_matches('/') {
        "/api/v1/health" => format!(r#"{{"enabled":true,"ok":true,"elapsed":{}}}"#, started.elapsed().as_millis()),
        "/api/v1/version" => format!(r#"{{"cartodb_sql_api":"{SQL_API_VERSION}"}}"#),
        _ => return None,
    };
    Some(crate::errors::json_response(StatusCode::OK, text))
}

/// The answer to a CORS preflight on an API route: 200, empty, no Content-Type.
pub fn preflight() -> Response {
    let mut r = Response::new(Body::empty());
    let h = r.headers_mut();
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    h.insert("access-control-allow-headers", HeaderValue::from_static("*"));
    h.insert("content-length", HeaderValue::from(0));
    r
}

/// Express's final handler for a route nobody serves: 404 with its HTML page, and the CORS headers that
/// CARTO's app sets before its routes (none of the SQL API's own: no Carto-User, no rate-limit headers).
pub fn not_found(method: &Method, path: &str) -> Response {
    let text = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Error</title>\n</head>\n<body>\n<pre>Cannot {} {}</pre>\n</body>\n</html>\n",
        method,
        escape_html(path)
    );
    let len = text.len();
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = StatusCode::NOT_FOUND;
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert("content-length", HeaderValue::from(len));
    h.insert("content-security-policy", HeaderValue::from_static("default-src 'none'"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    h.insert("access-control-allow-headers", HeaderValue::from_static("*"));
    h.insert("access-control-expose-headers", HeaderValue::from_static("*"));
    r
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_404_page_escapes_the_path() {
        let r = not_found(&Method::GET, "/a<b>");
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(escape_html("/a<b>&'\""), "/a&lt;b&gt;&amp;&#39;&quot;");
    }

    #[test]
    fn health_and_version_only_on_get() {
        assert!(info(&Method::GET, "/api/v1/version").is_some());
        assert!(info(&Method::GET, "/api/v1/health/").is_some());
        assert!(info(&Method::POST, "/api/v1/version").is_none());
        assert!(info(&Method::GET, "/api/v2/sql").is_none());
    }
}
