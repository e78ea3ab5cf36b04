//! Run a carto-sim in-process for tests: `TestSim::start(config)` sets up a fresh, uniquely named set of
//! databases and roles on the PostgreSQL named by `CARTO_SIM_ADMIN_URL`, serves on 127.0.0.1:0 on its
//! own thread and runtime, and drops everything again when the `TestSim` is dropped.
//!
//! Every helper is synchronous and runs its work on the sim's own runtime, so it can be called from
//! plain `#[test]`s and from inside `#[tokio::test]`s alike.
use crate::config::{Config, GrantConfig, KeyConfig, Limits, OrgConfig, Plan, UserConfig};
use crate::faults::FaultSpec;
use crate::rate_limit::{Group, RateSpec};
use crate::request_log::Entry;
use crate::state::AppState;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const ADMIN_URL_ENV: &str = "CARTO_SIM_ADMIN_URL";

/// Keys of the default config.
pub const DEMO_MASTER_KEY: &str = "demo-master-key";
pub const DEMO_REGULAR_KEY: &str = "demo-regular-key";
/// A regular key of demo without the SQL grant (CARTO's maps-only keys): 403 `forbidden` everywhere.
pub const DEMO_MAPS_KEY: &str = "demo-maps-key";
pub const ALICE_MASTER_KEY: &str = "alice-master-key";
pub const BOB_MASTER_KEY: &str = "bob-master-key";

/// The default test configuration: user `demo` (plan unlimited) with a table `cities`
/// (cartodb_id, the_geom, the_geom_webmercator, name, 3 rows), a regular key `regular` with SELECT on
/// `cities`, a maps-only key `maps` (no SQL grant), and organisation `acme` with members `alice` and `bob` (plan unlimited). Admin API on.
pub fn default_config() -> Config {
    let user = |name: &str, key: &str| UserConfig {
        name: name.into(),
        plan: Plan::Unlimited,
        master_key: key.into(),
        statement_timeout_ms: None,
        setup_sql: None,
        quota_bytes: None,
        keys: vec![],
    };
    let mut demo = user("demo", DEMO_MASTER_KEY);
    demo.setup_sql = Some(
        "CREATE TABLE IF NOT EXISTS cities (cartodb_id serial PRIMARY KEY, the_geom geometry(Geometry,4326), \
         the_geom_webmercator geometry(Geometry,3857), name text); \
         INSERT INTO cities (the_geom, the_geom_webmercator, name) VALUES \
         (ST_SetSRID(ST_MakePoint(-3.7038, 40.4168), 4326), ST_Transform(ST_SetSRID(ST_MakePoint(-3.7038, 40.4168), 4326), 3857), 'Madrid'), \
         (ST_SetSRID(ST_MakePoint(2.1734, 41.3851), 4326), ST_Transform(ST_SetSRID(ST_MakePoint(2.1734, 41.3851), 4326), 3857), 'Barcelona'), \
         (NULL, NULL, 'Nowhere')"
            .into(),
    );
    demo.keys.push(KeyConfig {
        name: "regular".into(),
        token: DEMO_REGULAR_KEY.into(),
        grants: vec![GrantConfig { table: "cities".into(), privileges: vec!["select".into()] }],
        schema_create: false,
        sql: true,
    });
    demo.keys.push(KeyConfig { name: "maps".into(), token: DEMO_MAPS_KEY.into(), grants: vec![], schema_create: false, sql: false });
    Config {
        listen: "127.0.0.1:0".into(),
        admin_url: String::new(),
        prefix: "cartosim".into(),
        secret: "carto-sim-test-secret".into(),
        log_requests: false,
        admin: crate::config::AdminConfig { enabled: true, token: None },
        limits: Limits::default(),
        plans: Default::default(),
        users: vec![demo],
        organizations: vec![OrgConfig { name: "acme".into(), members: vec![user("alice", ALICE_MASTER_KEY), user("bob", BOB_MASTER_KEY)] }],
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique_prefix() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let r = uuid::Uuid::new_v4().simple().to_string();
    format!("t{}_{}_{}", std::process::id(), n, &r[..6])
}

pub struct TestSim {
    config: Config,
    url: String,
    state: Arc<AppState>,
    handle: tokio::runtime::Handle,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestSim {
    /// Start a sim with the default config.
    pub fn start_default() -> TestSim {
        TestSim::start(default_config())
    }

    /// Start a sim. `admin_url`, `prefix` and `listen` of `config` are replaced (env
    /// `CARTO_SIM_ADMIN_URL`, a unique prefix, 127.0.0.1:0); the admin API is switched on.
    pub fn start(config: Config) -> TestSim {
        TestSim::start_with(config, None)
    }

    /// Start a sim that serves HTTPS with the certificate chain `cert` and key `key` (PEM files); `url()` is then
    /// `https://127.0.0.1:PORT`. Otherwise as `start`.
    pub fn start_tls(config: Config, cert: &std::path::Path, key: &std::path::Path) -> TestSim {
        let acceptor = crate::tls::acceptor(cert, key).unwrap_or_else(|e| panic!("TestSim: {e}"));
        TestSim::start_with(config, Some(acceptor))
    }

    fn start_with(mut config: Config, tls: Option<tokio_rustls::TlsAcceptor>) -> TestSim {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let admin_url = std::env::var(ADMIN_URL_ENV).unwrap_or_else(|_| {
            panic!(
                "{ADMIN_URL_ENV} is not set. Start a throwaway PostgreSQL first:\n  scripts/pg-cluster start /tmp/simpg 55500\n  \
                 export {ADMIN_URL_ENV}='host=127.0.0.1 port=55500 user=postgres dbname=postgres'"
            )
        });
        config.admin_url = admin_url;
        config.prefix = unique_prefix();
        config.listen = "127.0.0.1:0".into();
        config.admin.enabled = true;
        // Test output stays readable unless asked for (CARTO_SIM_LOG=1).
        config.log_requests = std::env::var("CARTO_SIM_LOG").is_ok_and(|v| v == "1");
        if let Err(e) = config.validate() {
            panic!("TestSim: {e}");
        }
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let cfg = config.clone();
        let thread = std::thread::Builder::new()
            .name("carto-sim".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(async move {
                    if let Err(e) = crate::setup::setup(&cfg).await {
                        let _ = ready_tx.send(Err(format!("setup failed: {e}")));
                        return;
                    }
                    let state = match AppState::new(cfg) {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("bind: {e}")));
                            return;
                        }
                    };
                    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
                    let _ = ready_tx.send(Ok((addr, state.clone(), tokio::runtime::Handle::current())));
                    let stop = async move {
                        let _ = stop_rx.await;
                    };
                    let _ = match tls {
                        Some(acceptor) => crate::server::serve_tls(state, listener, acceptor, stop).await,
                        None => crate::server::serve(state, listener, stop).await,
                    };
                });
                // Streams still open are dropped with the runtime.
                rt.shutdown_timeout(Duration::from_secs(2));
            })
            .unwrap_or_else(|e| panic!("TestSim: cannot spawn the sim thread: {e}"));
        let (addr, state, handle) = match ready_rx.recv() {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                let _ = thread.join();
                let cfg = config.clone();
                let _ = std::thread::spawn(move || teardown_blocking(&cfg)).join();
                panic!("TestSim could not start: {e}")
            }
            Err(_) => panic!("TestSim: the sim thread died during start"),
        };
        TestSim { config, url: format!("{scheme}://{addr}"), state, handle, shutdown: Some(stop_tx), thread: Some(thread) }
    }

    /// `http://127.0.0.1:PORT` (`https://` when started by `start_tls`)
    pub fn url(&self) -> &str {
        &self.url
    }
    /// `http://127.0.0.1:PORT/user/{user}` (append `/api/v2/sql...`).
    pub fn base_url(&self, user: &str) -> String {
        format!("{}/user/{}", self.url, user)
    }
    /// `http://127.0.0.1:PORT/user/{user}/api/v2/sql`
    pub fn sql_url(&self, user: &str) -> String {
        format!("{}/api/v2/sql", self.base_url(user))
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The master key of a user (panics on an unknown user: a test bug).
    pub fn master_key(&self, user: &str) -> String {
        self.account(user).master_key.clone()
    }
    /// The token of a user's regular key by key name.
    pub fn key(&self, user: &str, key_name: &str) -> String {
        self.account(user)
            .keys
            .iter()
            .find(|k| k.name == key_name)
            .map(|k| k.token.clone())
            .unwrap_or_else(|| panic!("TestSim: user {user} has no key {key_name}"))
    }
    /// The database of a user.
    pub fn database(&self, user: &str) -> String {
        self.account(user).database.clone()
    }
    /// The schema of a user (`public`, or the user name inside an organisation).
    pub fn schema(&self, user: &str) -> String {
        self.account(user).schema.clone()
    }
    /// The PostgreSQL role behind a user's master key.
    pub fn owner_role(&self, user: &str) -> String {
        self.account(user).owner_role.clone()
    }

    fn account(&self, user: &str) -> &crate::accounts::Account {
        self.state.accounts.get(user).map(|a| a.as_ref()).unwrap_or_else(|| panic!("TestSim: no user {user}"))
    }

    /// Run a future on the sim's runtime and wait for it (usable inside and outside tokio).
    fn block<F, T>(&self, f: F) -> T
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        self.handle.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv().unwrap_or_else(|_| panic!("TestSim: the sim runtime is gone"))
    }

    /// Run SQL (one or more statements, simple protocol) as the user's owner role in its database, with
    /// its search_path. Returns the text values of every row of every statement.
    pub fn psql(&self, user: &str, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
        let a = self.account(user).clone();
        let base = self.state.pg_base.clone();
        let pw = crate::accounts::role_password(&self.config.secret, &a.owner_role);
        let sql = sql.to_string();
        self.block(async move {
            let c = crate::pool::connect(&base, &a.database, &a.owner_role, &pw).await.map_err(|e| e.to_string())?;
            run_simple(&c.client, &sql).await
        })
    }

    /// Run SQL as the PostgreSQL superuser in a user's database.
    pub fn psql_admin(&self, user: &str, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
        let db = self.account(user).database.clone();
        let base = self.state.pg_base.clone();
        let sql = sql.to_string();
        self.block(async move {
            let c = crate::pool::admin_connect(&base, Some(&db)).await.map_err(|e| e.to_string())?;
            run_simple(&c, &sql).await
        })
    }

    /// `psql` for async tests: does not block the caller's runtime.
    pub async fn psql_async(&self, user: &str, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
        let a = self.account(user).clone();
        let base = self.state.pg_base.clone();
        let pw = crate::accounts::role_password(&self.config.secret, &a.owner_role);
        let sql = sql.to_string();
        let h = self.handle.spawn(async move {
            let c = crate::pool::connect(&base, &a.database, &a.owner_role, &pw).await.map_err(|e| e.to_string())?;
            run_simple(&c.client, &sql).await
        });
        h.await.map_err(|e| e.to_string())?
    }

    /// `psql_admin` for async tests.
    pub async fn psql_admin_async(&self, user: &str, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
        let db = self.account(user).database.clone();
        let base = self.state.pg_base.clone();
        let sql = sql.to_string();
        let h = self.handle.spawn(async move {
            let c = crate::pool::admin_connect(&base, Some(&db)).await.map_err(|e| e.to_string())?;
            run_simple(&c, &sql).await
        });
        h.await.map_err(|e| e.to_string())?
    }

    /// The first column of the first row of `psql(user, sql)`, for quick assertions.
    pub fn psql_value(&self, user: &str, sql: &str) -> Option<String> {
        self.psql(user, sql).ok().and_then(|r| r.into_iter().next()).and_then(|r| r.into_iter().next()).flatten()
    }

    /// Fault injection, limits, plans and the request log.
    pub fn admin(&self) -> SimAdmin<'_> {
        SimAdmin { sim: self }
    }
}

async fn run_simple(c: &tokio_postgres::Client, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    let msgs = c.simple_query(sql).await.map_err(|e| match e.as_db_error() {
        Some(d) => d.message().to_string(),
        None => e.to_string(),
    })?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect()),
            _ => None,
        })
        .collect())
}

/// Admin operations on a running `TestSim` (the same as the HTTP admin API, without HTTP).
pub struct SimAdmin<'a> {
    sim: &'a TestSim,
}

impl SimAdmin<'_> {
    /// Add a fault; returns its id.
    pub fn fault(&self, spec: FaultSpec) -> u64 {
        self.sim.state.faults.add(spec).unwrap_or_else(|e| panic!("TestSim: bad fault: {e}"))
    }
    /// A fault answering `status` (with CARTO-style error JSON) for the next `count` requests of `group`.
    pub fn fail_next(&self, group: &str, status: u16, count: u32) -> u64 {
        self.fault(FaultSpec { group: Some(group.into()), count, status: Some(status), ..fault_spec() })
    }
    pub fn clear_faults(&self) {
        self.sim.state.faults.clear();
    }
    /// The request log, oldest first.
    pub fn log(&self) -> Vec<Entry> {
        self.sim.state.log.entries()
    }
    pub fn clear_log(&self) {
        self.sim.state.log.clear();
    }
    /// Wait until the log has an entry matching `f` (responses are logged when their body ends).
    pub fn wait_log(&self, timeout: Duration, f: impl Fn(&Entry) -> bool) -> Option<Entry> {
        let end = std::time::Instant::now() + timeout;
        loop {
            if let Some(e) = self.log().into_iter().find(|e| f(e)) {
                return Some(e);
            }
            if std::time::Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    pub fn limits(&self) -> Limits {
        self.sim.state.limits()
    }
    /// Change server-wide limits (copyfrom byte limit, slow-input guard, TTL, ...).
    pub fn set_limits(&self, f: impl FnOnce(&mut Limits)) {
        if let Ok(mut l) = self.sim.state.limits.write() {
            f(&mut l);
        }
    }
    pub fn set_plan(&self, user: &str, plan: Plan) {
        self.with_user(user, |r| r.plan = plan);
    }
    /// Override the /sql statement timeout of a user (ms; 0 = none; None = the plan's).
    pub fn set_statement_timeout(&self, user: &str, ms: Option<u64>) {
        self.with_user(user, |r| r.statement_timeout_ms = ms);
    }
    /// Override (Some) or disable (None) the rate limit of an endpoint group for a user.
    pub fn set_rate_limit(&self, user: &str, group: Group, spec: Option<RateSpec>) {
        self.with_user(user, |r| {
            r.rate_limits.insert(group.name().into(), spec);
        });
    }
    pub fn reset_rate_limits(&self) {
        self.sim.state.rate.reset();
    }
    /// Re-apply the config's key grants (after tests created the tables).
    pub fn apply_grants(&self) -> Vec<String> {
        let cfg = self.sim.config.clone();
        self.sim.block(async move { crate::setup::reapply_grants(&cfg).await.map_err(|e| e.to_string()) }).unwrap_or_else(|e| panic!("TestSim: grants: {e}"))
    }
    /// The COPYs left open by the upload race.
    pub fn open_copies(&self) -> Vec<crate::open_copies::OpenCopy> {
        self.sim.state.open_copies.list()
    }
    /// Roll back every COPY left open by the upload race; returns how many.
    pub fn end_open_copies(&self) -> usize {
        let st = self.sim.state.clone();
        self.sim.block(async move { st.open_copies.end(None, Duration::from_secs(10)).await })
    }
    fn with_user(&self, user: &str, f: impl FnOnce(&mut crate::state::UserRuntime)) {
        let mut m = match self.sim.state.users.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let r = m.get_mut(user).unwrap_or_else(|| panic!("TestSim: no user {user}"));
        f(r);
    }
}

/// An empty fault spec to fill with struct update syntax: `FaultSpec { status: Some(503), ..fault_spec() }`.
pub fn fault_spec() -> FaultSpec {
    FaultSpec {
        group: None,
        user: None,
        count: 1,
        status: None,
        body: None,
        json: None,
        body_hex: None,
        retry_after: None,
        html_502: false,
        cut_response_after: None,
        cut_upload_after: None,
        latency_ms: None,
    }
}

fn teardown_blocking(cfg: &Config) {
    if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
        let _ = rt.block_on(crate::setup::teardown(cfg));
    }
}

impl Drop for TestSim {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        self.state.pool.clear();
        if let Some(t) = self.thread.take() {
            // Graceful shutdown waits for open connections; do not hang a test on a stuck client.
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = t.join();
                let _ = tx.send(());
            });
            let _ = rx.recv_timeout(Duration::from_secs(5));
        }
        let cfg = self.config.clone();
        let _ = std::thread::spawn(move || teardown_blocking(&cfg)).join();
    }
}
