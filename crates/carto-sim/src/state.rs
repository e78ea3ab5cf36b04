//! The state the handlers share (`AppState`: configuration, accounts, pool, limits, rate limiter, faults, request
//! log, jobs, open COPYs) and what a handler gets about one authorized request (`Ctx`). Below the handlers and
//! the router (`server`), which both use it.
use crate::accounts::Account;
use crate::auth::Authorized;
use crate::config::{Config, Limits, Plan};
use crate::faults::{Applied, Faults};
use crate::jobs::Batch;
use crate::open_copies::OpenCopies;
use crate::pool::Pool;
use crate::rate_limit::{plan_limit, plan_statement_timeout_ms, Group, RateLimiter, RateSpec};
use crate::request_log::{Record, RequestLog};
use axum::http::{HeaderMap, Method};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

/// Plan and limits of one user, changeable at run time.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct UserRuntime {
    pub plan: Plan,
    /// Overrides the plan's /sql statement timeout (ms, 0 = none).
    pub statement_timeout_ms: Option<u64>,
    /// Per-group rate-limit overrides; `null` disables the group's limit.
    #[serde(default)]
    pub rate_limits: HashMap<String, Option<RateSpec>>,
}

pub struct AppState {
    pub config: Config,
    pub accounts: HashMap<String, Arc<Account>>,
    pub limits: RwLock<Limits>,
    pub users: RwLock<HashMap<String, UserRuntime>>,
    pub unlimited_timeout_ms: u64,
    pub pool: Arc<Pool>,
    pub pg_base: tokio_postgres::Config,
    pub rate: RateLimiter,
    pub faults: Faults,
    pub log: RequestLog,
    pub batch: Arc<Batch>,
    /// TCP connections that get no answer any more (CARTO's bad-gzip bug, when reproduced).
    pub poisoned: Mutex<std::collections::HashSet<SocketAddr>>,
    /// COPYs left open by the upload race.
    pub open_copies: OpenCopies,
}

impl AppState {
    pub fn new(config: Config) -> Result<Arc<AppState>, String> {
        let pg_base: tokio_postgres::Config = config.admin_url.parse().map_err(|e| format!("admin_url: {e}"))?;
        let accounts: HashMap<String, Arc<Account>> =
            crate::accounts::accounts(&config).into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
        let users = accounts
            .values()
            .map(|a| (a.name.clone(), UserRuntime { plan: a.plan, statement_timeout_ms: a.statement_timeout_ms, rate_limits: HashMap::new() }))
            .collect();
        let pool = Pool::new(pg_base.clone(), config.secret.clone(), config.limits.pool_max_idle);
        let log = RequestLog::default();
        log.echo.store(config.log_requests, std::sync::atomic::Ordering::Relaxed);
        Ok(Arc::new(AppState {
            limits: RwLock::new(config.limits.clone()),
            unlimited_timeout_ms: config.plans.unlimited_statement_timeout_ms,
            config,
            accounts,
            users: RwLock::new(users),
            pool,
            pg_base,
            rate: RateLimiter::default(),
            faults: Faults::default(),
            log,
            batch: Batch::new(),
            poisoned: Mutex::new(Default::default()),
            open_copies: Default::default(),
        }))
    }

    pub fn limits(&self) -> Limits {
        self.limits.read().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn user_runtime(&self, user: &str) -> Option<UserRuntime> {
        self.users.read().ok().and_then(|m| m.get(user).cloned())
    }

    /// /sql statement timeout of a user, ms (0 = none).
    pub fn statement_timeout_ms(&self, user: &str) -> u64 {
        match self.user_runtime(user) {
            Some(r) => r.statement_timeout_ms.unwrap_or_else(|| plan_statement_timeout_ms(r.plan, self.unlimited_timeout_ms)),
            None => 0,
        }
    }

    /// The rate limit of a user's group: the user's override, else the plan's (None = unlimited).
    pub fn rate_spec(&self, user: &str, g: Group) -> Option<RateSpec> {
        let r = self.user_runtime(user)?;
        if let Some(o) = r.rate_limits.get(g.name()) {
            return *o;
        }
        plan_limit(r.plan, g)
    }
}

/// Everything a handler needs about an authorized request.
pub struct Ctx {
    pub state: Arc<AppState>,
    pub account: Arc<Account>,
    pub auth: Authorized,
    pub method: Method,
    pub headers: HeaderMap,
    /// Query-string parameters.
    pub query: HashMap<String, String>,
    /// Query string merged with the body's parameters (the body wins).
    pub params: HashMap<String, String>,
    /// The body when it was JSON (the Batch API needs its structure).
    pub json_body: Option<serde_json::Value>,
    /// Raw body length (for the Batch API's payload limit).
    pub record: Arc<Record>,
    pub faults: Applied,
    /// `/job/{id}` id.
    pub job_id: Option<String>,
    /// The client's address (identifies its TCP connection).
    pub peer: Option<SocketAddr>,
    /// Turns true when the client closes its connection (see `PeerGone`).
    pub peer_gone: Option<PeerGone>,
}

/// Whether the client closed its TCP connection, watched from the socket itself: hyper does not read
/// the socket while a handler is still working on the answer, so without this a client that leaves
/// before the first byte of the answer goes unnoticed, and its query runs on. CARTO's server sees the
/// socket close at once and cancels the query.
#[derive(Clone)]
pub struct PeerGone(pub tokio::sync::watch::Receiver<bool>);

impl PeerGone {
    /// Resolves when the client has gone (never, if the watcher could not start).
    pub async fn wait(mut self) {
        if self.0.wait_for(|gone| *gone).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
