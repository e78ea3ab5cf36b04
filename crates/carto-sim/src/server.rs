//! The HTTP front: user routing (Host name or `/user/{name}/`), endpoint groups, faults, rate limits,
//! credentials, CARTO's common headers and the request log; the connections (`serve`). The state it hands to
//! the handlers is in `state`.
use crate::accounts::Account;
use crate::auth;
use crate::errors::{json_response, ApiError};
use crate::faults::{InjectedStatus, HTML_502};
use crate::rate_limit::{Decision, Group};
use crate::request_log::Record;
use crate::state::{AppState, Ctx, PeerGone};
use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Starts the watcher of one connection: a duplicate of the socket, peeked for the client's FIN. It stops
/// (and closes the duplicate) when `stop` resolves, so it never keeps a finished connection's socket open.
fn watch_peer(stream: &tokio::net::TcpStream, stop: tokio::sync::oneshot::Receiver<()>) -> Option<PeerGone> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: dup of a valid open descriptor; the new descriptor is owned by the std TcpStream below.
    let fd = unsafe { libc::dup(stream.as_raw_fd()) };
    if fd < 0 {
        return None;
    }
    let std_stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    if std_stream.set_nonblocking(true).is_err() {
        return None;
    }
    let probe = tokio::net::TcpStream::from_std(std_stream).ok()?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut stop = stop;
        let mut buf = [0u8; 1];
        loop {
            tokio::select! {
                _ = &mut stop => break,
                r = probe.peek(&mut buf) => match r {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(true);
                        // Keep the duplicate only until the connection is done with.
                        let _ = (&mut stop).await;
                        break;
                    }
                    // Bytes hyper has not read yet (the next request): look again a little later.
                    Ok(_) => tokio::select! {
                        _ = &mut stop => break,
                        _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                    },
                },
            }
        }
        drop(probe);
    });
    Some(PeerGone(rx))
}

enum Route {
    Sql,
    CopyFrom,
    CopyTo,
    JobCreate,
    Job(String),
}

fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    let mut m = HashMap::new();
    if let Some(q) = q {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            m.insert(k.into_owned(), v.into_owned());
        }
    }
    m
}

/// User from the Host name (`demo.carto.com`, `demo.localhost:8080`), never from an IP address.
fn user_from_host(headers: &HeaderMap) -> Option<String> {
    let host = headers.get("host")?.to_str().ok()?;
    let host = host.rsplit_once(':').map(|(h, p)| if p.chars().all(|c| c.is_ascii_digit()) { h } else { host }).unwrap_or(host);
    if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
        return None;
    }
    let (first, rest) = host.split_once('.')?;
    if rest.is_empty() || first.is_empty() {
        return None;
    }
    Some(first.to_string())
}

fn route_of(rest: &str, method: &Method) -> Option<(Route, Group)> {
    let rest = rest.trim_end_matches('/');
    let tail = rest.strip_prefix("/api/v2/sql").or_else(|| rest.strip_prefix("/api/v1/sql"))?;
    Some(match (tail, method.clone()) {
        ("", Method::GET | Method::POST | Method::HEAD) => (Route::Sql, Group::Query),
        ("/copyfrom", Method::POST) => (Route::CopyFrom, Group::CopyFrom),
        ("/copyto", Method::GET | Method::POST) => (Route::CopyTo, Group::CopyTo),
        ("/job", Method::POST) => (Route::JobCreate, Group::JobCreate),
        (t, Method::GET) if t.starts_with("/job/") => (Route::Job(t[5..].to_string()), Group::JobGet),
        (t, Method::DELETE) if t.starts_with("/job/") => (Route::Job(t[5..].to_string()), Group::JobDelete),
        _ => return None,
    })
}

pub async fn handle(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if path.starts_with("/_sim/") || path == "/_sim" {
        return crate::admin::handle(state, req).await;
    }
    let method = req.method().clone();
    let peer = req.extensions().get::<axum::extract::ConnectInfo<SocketAddr>>().map(|c| c.0);
    if let Some(p) = peer {
        if state.poisoned.lock().map(|s| s.contains(&p)).unwrap_or(false) {
            // No answer on this connection; after the idle timeout it is closed, as Node would.
            let idle = state.limits().idle_timeout_secs;
            tokio::time::sleep(crate::config::secs(idle, 0.01)).await;
            if let Ok(mut s) = state.poisoned.lock() {
                s.remove(&p);
            }
            return crate::copy_from::cut_response();
        }
    }
    let record = Arc::new(state.log.start(method.as_str(), &path));
    // Node's idle socket timeout: a request that sends nothing back for that long is cut. /copyfrom
    // applies it to the upload itself instead (its answer only comes at the end).
    let is_upload = method == Method::POST && path.trim_end_matches('/').ends_with("/copyfrom");
    // An upload answered before its end is drained, not reset, so that the client reads the answer.
    let req = if is_upload { req.map(|b| Body::new(crate::linger::LingeringBody::new(b))) } else { req };
    let idle = crate::config::secs(state.limits().idle_timeout_secs, 0.01);
    let resp = if is_upload {
        handle_inner(&state, req, &record, peer).await
    } else {
        match tokio::time::timeout(idle, handle_inner(&state, req, &record, peer)).await {
            Ok(o) => o,
            Err(_) => {
                record.abort("idle socket timeout");
                Outcome { resp: crate::copy_from::cut_response(), account: None, rate: None, cut: None, bare: false }
            }
        }
    };
    finish(&state, resp, record)
}

struct Outcome {
    resp: Response,
    account: Option<Arc<Account>>,
    rate: Option<Decision>,
    cut: Option<u64>,
    /// Answered outside the SQL API's middleware (health, version, the 404 page): none of its headers.
    bare: bool,
}

async fn handle_inner(state: &Arc<AppState>, req: Request, record: &Arc<Record>, peer: Option<SocketAddr>) -> Outcome {
    let out = |resp: Response, account: Option<Arc<Account>>| Outcome { resp, account, rate: None, cut: None, bare: false };
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let (user, rest) = split_user(&path, req.headers());
    if let Some(r) = crate::outer_routes::info(&method, &rest) {
        return Outcome { resp: r, account: None, rate: None, cut: None, bare: true };
    }
    if method == Method::OPTIONS && [Method::GET, Method::POST, Method::DELETE].iter().any(|m| route_of(&rest, m).is_some()) {
        return out(crate::outer_routes::preflight(), None);
    }
    let Some((route, group)) = route_of(&rest, &method) else {
        return Outcome { resp: crate::outer_routes::not_found(&method, &path), account: None, rate: None, cut: None, bare: true };
    };
    Record::set(&record.group, Some(group.name().to_string()));
    Record::set(&record.user, user.clone());
    let user = user.unwrap_or_default();
    let Some(account) = state.accounts.get(&user).cloned() else {
        return out(unknown_user(&user), None);
    };

    // Faults first: they simulate what happens in front of (or instead of) the API.
    let faults = state.faults.take(group, &account.name);
    if faults.latency_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(faults.latency_ms)).await;
    }
    if faults.html_502 {
        let mut r = Response::new(Body::from(HTML_502));
        *r.status_mut() = StatusCode::BAD_GATEWAY;
        r.headers_mut().insert("content-type", HeaderValue::from_static("text/html"));
        return Outcome { resp: r, account: None, rate: None, cut: faults.cut_response_after, bare: false };
    }
    if let Some(inj) = &faults.status {
        let (resp, rate) = injected(state, inj, &account.name, group);
        return Outcome { resp, account: Some(account), rate, cut: faults.cut_response_after, bare: false };
    }

    let cut = faults.cut_response_after;
    let query = parse_query(req.uri().query());

    // The body: COPY data for /copyfrom, parameters otherwise.
    let (parts, body) = req.into_parts();
    let mut params = query.clone();
    let mut json_body = None;
    let mut copy_body = None;
    if matches!(route, Route::CopyFrom) {
        copy_body = Some(body);
    } else {
        match read_params(&parts.headers, body, record).await {
            Ok((p, j)) => {
                params.extend(p);
                json_body = j;
            }
            Err(e) => return Outcome { resp: e.into_response(), account: Some(account), rate: None, cut, bare: false },
        }
    }
    // CARTO refuses a job body that is too large before its rate limit.
    if matches!(route, Route::JobCreate) {
        if let Err(e) = crate::batch::check_payload(json_body.as_ref(), &params, &query, state.limits().batch_max_payload) {
            return Outcome { resp: e.into_response(), account: Some(account), rate: None, cut, bare: false };
        }
    }

    // Rate limit (CARTO checks it before the credentials).
    let mut rate = None;
    if let Some(spec) = state.rate_spec(&account.name, group) {
        let d = state.rate.check(&account.name, group, &spec);
        rate = Some(d);
        if !d.allowed {
            return Outcome { resp: ApiError::rate_limited(d.retry_after_secs).into_response(), account: Some(account), rate, cut: None, bare: false };
        }
    }
    let creds = auth::credentials(&parts.headers, &query, if copy_body.is_some() { None } else { Some(&params) });
    let master_only = matches!(route, Route::JobCreate | Route::Job(_));
    let auth = match auth::authorize(&account, &creds, master_only) {
        Ok(a) => a,
        Err(e) => return Outcome { resp: e.into_response(), account: Some(account), rate, cut, bare: false },
    };
    Record::set(&record.key_kind, Some(serde_json::to_value(auth.kind).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()));
    let job_id = if let Route::Job(id) = &route { Some(id.clone()) } else { None };
    let ctx = Ctx {
        state: state.clone(),
        account: account.clone(),
        auth,
        method: parts.method.clone(),
        headers: parts.headers.clone(),
        query,
        params,
        json_body,
        record: record.clone(),
        faults,
        job_id,
        peer,
        peer_gone: parts.extensions.get::<PeerGone>().cloned(),
    };
    let resp = dispatch(route, ctx, copy_body).await;
    Outcome { resp, account: Some(account), rate, cut, bare: false }
}

/// The handler of a route.
async fn dispatch(route: Route, ctx: Ctx, copy_body: Option<Body>) -> Response {
    match route {
        Route::Sql => crate::sql_api::handle(ctx).await,
        Route::CopyFrom => crate::copy_from::handle(ctx, copy_body.unwrap_or_default()).await,
        Route::CopyTo => crate::copy_to::handle(ctx).await,
        Route::JobCreate => crate::batch::create(ctx).await,
        Route::Job(_) if ctx.method == Method::DELETE => crate::batch::cancel(ctx).await,
        Route::Job(_) => crate::batch::get(ctx).await,
    }
}

/// CARTO's 404 for a user that does not exist, which names it in `Carto-User`.
fn unknown_user(user: &str) -> Response {
    let mut r = ApiError::unknown_user(user).into_response();
    if let Ok(v) = HeaderValue::from_str(user) {
        r.headers_mut().insert("carto-user", v);
    }
    r
}

/// The user named by a `/user/{name}` prefix (then the rest of the path) or by the Host name.
fn split_user(path: &str, headers: &HeaderMap) -> (Option<String>, String) {
    match path.strip_prefix("/user/") {
        Some(r) => match r.split_once('/') {
            Some((u, rest)) => (Some(u.to_string()), format!("/{rest}")),
            None => (Some(r.to_string()), String::new()),
        },
        None => (user_from_host(headers), path.to_string()),
    }
}

/// The answer of an injected status fault, and the rate-limit headers of an injected rate-limit refusal.
fn injected(state: &AppState, inj: &InjectedStatus, user: &str, group: Group) -> (Response, Option<Decision>) {
    let status = StatusCode::from_u16(inj.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let too_many = status == StatusCode::TOO_MANY_REQUESTS;
    let text = match (&inj.body, &inj.json) {
        (Some(b), _) => b.clone(),
        (None, Some(j)) => j.to_string(),
        // A 429 is one of CARTO's two kinds: rate limit (with Retry-After) or statement timeout.
        (None, None) if too_many => match inj.retry_after {
            Some(n) => ApiError::rate_limited(n).json_text(),
            None => ApiError::timeout().json_text(),
        },
        (None, None) => ApiError::new(status, "Injected fault").json_text(),
    };
    let mut r = json_response(status, text);
    if inj.body.is_some() {
        r.headers_mut().insert("content-type", HeaderValue::from_static("text/plain; charset=utf-8"));
    }
    if let Some(bytes) = &inj.body_bytes {
        let mut raw = Response::new(Body::from(bytes.clone()));
        *raw.status_mut() = status;
        raw.headers_mut().insert("content-type", HeaderValue::from_static("application/octet-stream"));
        r = raw;
    }
    let mut rate = None;
    if let Some(n) = inj.retry_after {
        r.headers_mut().insert("retry-after", HeaderValue::from(n));
        if too_many {
            // As a real refusal: the group's limit (1 when the user has none), nothing left.
            let limit = state.rate_spec(user, group).map(|s| s.capacity()).unwrap_or(1);
            rate = Some(Decision { allowed: false, limit, remaining: 0, reset_secs: n, retry_after_secs: n });
        }
    }
    (r, rate)
}

/// Parameters from a urlencoded, multipart or JSON body.
async fn read_params(
    headers: &HeaderMap,
    body: Body,
    record: &Arc<Record>,
) -> Result<(HashMap<String, String>, Option<serde_json::Value>), ApiError> {
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let mut out = HashMap::new();
    if ct.starts_with("multipart/form-data") {
        let mut req = Request::new(body);
        if let Some(v) = headers.get("content-type") {
            req.headers_mut().insert("content-type", v.clone());
        }
        let mut mp = axum::extract::Multipart::from_request(req, &()).await.map_err(|e| ApiError::bad_request(e.body_text()))?;
        while let Ok(Some(field)) = mp.next_field().await {
            let name = field.name().unwrap_or_default().to_string();
            let text = field.text().await.map_err(|e| ApiError::bad_request(e.body_text()))?;
            record.add_in(text.len() as u64);
            out.insert(name, text);
        }
        return Ok((out, None));
    }
    let bytes = axum::body::to_bytes(body, 256 * 1024 * 1024).await.map_err(|e| ApiError::bad_request(format!("request body: {e}")))?;
    record.add_in(bytes.len() as u64);
    if bytes.is_empty() {
        return Ok((out, None));
    }
    if ct.starts_with("application/json") {
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("Unexpected token in JSON: {e}")))?;
        if let serde_json::Value::Object(m) = &v {
            for (k, x) in m {
                let s = match x {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                out.insert(k.clone(), s);
            }
        }
        return Ok((out, Some(v)));
    }
    // urlencoded (also the default for a body without a content type)
    for (k, v) in form_urlencoded::parse(&bytes) {
        out.insert(k.into_owned(), v.into_owned());
    }
    Ok((out, None))
}

fn finish(state: &Arc<AppState>, o: Outcome, record: Arc<Record>) -> Response {
    let Outcome { resp, account, rate, cut, bare } = o;
    let (mut parts, body) = resp.into_parts();
    let h = &mut parts.headers;
    if bare {
        Record::set(&record.status, parts.status.as_u16());
        let idle = crate::config::secs(state.limits().idle_timeout_secs, 0.01);
        let body = LoggedBody { inner: body, record, state: state.clone(), cut, sent: 0, ended: false, idle, idle_timer: None, cut_timer: None };
        return Response::from_parts(parts, Body::new(body));
    }
    // CARTO's JSON errors of the API routes (/sql, /copyfrom, /copyto and the Batch API) are shown inline.
    let routed = record.group.lock().ok().is_some_and(|g| g.is_some());
    let is_json = h.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
    if (parts.status.is_client_error() || parts.status.is_server_error()) && is_json && routed && !h.contains_key("content-disposition") {
        h.insert("content-disposition", HeaderValue::from_static("inline"));
    }
    if let Some(a) = &account {
        if let Ok(v) = HeaderValue::from_str(&a.name) {
            h.insert("carto-user", v);
        }
        if let Ok(v) = HeaderValue::from_str(&a.id) {
            h.insert("carto-user-id", v);
        }
    }
    h.insert("vary", HeaderValue::from_static("Authorization"));
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    if let Some(d) = rate {
        h.insert("carto-rate-limit-limit", HeaderValue::from(d.limit));
        h.insert("carto-rate-limit-remaining", HeaderValue::from(d.remaining));
        h.insert("carto-rate-limit-reset", HeaderValue::from(d.reset_secs));
    }
    Record::set(&record.status, parts.status.as_u16());
    let idle = crate::config::secs(state.limits().idle_timeout_secs, 0.01);
    let body = LoggedBody { inner: body, record, state: state.clone(), cut, sent: 0, ended: false, idle, idle_timer: None, cut_timer: None };
    Response::from_parts(parts, Body::new(body))
}

/// Counts response bytes, applies a "cut after N bytes" fault, and stores the log entry when the body
/// ends (or is dropped early: the client went away → aborted).
struct LoggedBody {
    inner: Body,
    record: Arc<Record>,
    state: Arc<AppState>,
    cut: Option<u64>,
    sent: u64,
    ended: bool,
    /// Idle socket timeout between body frames.
    idle: std::time::Duration,
    idle_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Started when a "cut after N bytes" fault has let its N bytes go: the cut comes when it fires.
    cut_timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// How long a cut response waits, after its last bytes, before it breaks the connection.
const CUT_FLUSH: std::time::Duration = std::time::Duration::from_millis(50);

impl HttpBody for LoggedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Some(limit) = this.cut {
            if this.sent >= limit {
                // The bytes before the cut must reach the client: hyper writes what it holds while the body
                // is pending, and would drop it if the error came at once.
                let timer = this.cut_timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(CUT_FLUSH)));
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.record.abort("response cut by fault injection");
                return Poll::Ready(Some(Err(axum::Error::new(std::io::Error::other("cut by fault injection")))));
            }
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(mut data) => {
                    this.idle_timer = None;
                    if let Some(limit) = this.cut {
                        let left = limit.saturating_sub(this.sent) as usize;
                        if data.len() > left {
                            data = data.slice(..left);
                        }
                    }
                    this.sent += data.len() as u64;
                    this.record.bytes_out.fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            Poll::Ready(None) => {
                this.ended = true;
                this.state.log.finish(&this.record);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.record.abort(&format!("response body error: {e}"));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Pending => {
                // Nothing to send: arm the idle timer (reset whenever a frame goes out).
                let idle = this.idle;
                let timer = this.idle_timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if timer.as_mut().poll(cx).is_ready() {
                    this.record.abort("idle socket timeout");
                    return Poll::Ready(Some(Err(axum::Error::new(std::io::Error::other("idle socket timeout")))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.cut.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.cut.is_some() {
            return SizeHint::default();
        }
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if !self.ended && !self.inner.is_end_stream() {
            self.record.abort("client closed the connection");
        }
        self.state.log.finish(&self.record);
    }
}

/// Serve on `listener` until `shutdown` resolves, then let open connections finish.
///
/// Each connection gets Node's idle socket timeout (`idle_timeout_secs`, as it is when the connection is
/// accepted) as hyper's header read timeout, which also runs while a keep-alive connection waits for its
/// next request: an idle keep-alive connection is closed after that long, as CARTO's Node server does.
pub async fn serve(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(state, listener, None, shutdown).await
}

/// As `serve`, over HTTPS: each connection's TLS handshake through `tls` first (a failed or silent handshake
/// just closes the connection, within the idle timeout).
pub async fn serve_tls(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(state, listener, Some(tls), shutdown).await
}

/// A connection's byte stream: the TCP socket itself or TLS over it.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

async fn serve_with(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    // Dropping `signal_rx` tells everyone to shut down; `close_rx` clones track the open connections.
    let (signal_tx, signal_rx) = tokio::sync::watch::channel(());
    let signal_tx = Arc::new(signal_tx);
    tokio::spawn(async move {
        shutdown.await;
        drop(signal_rx);
    });
    let (close_tx, close_rx) = tokio::sync::watch::channel(());
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Per-connection errors (reset before accept) are harmless; others (EMFILE): back off.
                    if !matches!(e.kind(), std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionRefused) {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                    continue;
                }
            },
            _ = signal_tx.closed() => break,
        };
        // As CARTO's front (nginx's tcp_nodelay, Node's http server): no Nagle delay. Without it a response
        // written as headers then body waited for the client's delayed ACK, about 40 ms a small answer.
        let _ = stream.set_nodelay(true);
        let idle = crate::config::secs(state.limits().idle_timeout_secs, 0.01);
        let st = state.clone();
        let (stop_watch, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let gone = watch_peer(&stream, stop_rx);
        let svc = hyper::service::service_fn(move |req: axum::http::Request<hyper::body::Incoming>| {
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            if let Some(g) = &gone {
                req.extensions_mut().insert(g.clone());
            }
            let st = st.clone();
            async move { Ok::<Response, std::convert::Infallible>(handle(State(st), req).await) }
        });
        let signal_tx = signal_tx.clone();
        let close_rx = close_rx.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let stream: Box<dyn Io> = match tls {
                None => Box::new(stream),
                Some(acceptor) => match tokio::time::timeout(idle, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => Box::new(s),
                    // A refused or silent handshake (a client that does not trust the certificate): no request.
                    _ => {
                        drop(stop_watch);
                        drop(close_rx);
                        return;
                    }
                },
            };
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(idle).keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            let mut conn = std::pin::pin!(conn);
            let mut signal_closed = std::pin::pin!(signal_tx.closed());
            let mut shutting_down = false;
            loop {
                tokio::select! {
                    _ = conn.as_mut() => break,
                    _ = &mut signal_closed, if !shutting_down => {
                        shutting_down = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(stop_watch);
            drop(close_rx);
        });
    }
    drop(close_rx);
    drop(listener);
    close_tx.closed().await;
    Ok(())
}
