//! The TOML configuration: who the users are, their keys and grants, plans and limits.
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on, e.g. "127.0.0.1:8080" (port 0 = any free port).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// libpq-style connection string of a PostgreSQL superuser (setup + cancel + teardown).
    pub admin_url: String,
    /// Prefix of every database and role this sim creates (lets several sims share one cluster).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Secret from which the roles' passwords are derived.
    #[serde(default = "default_secret")]
    pub secret: String,
    /// One line per request on stderr (method, path without query string, status, bytes, time; never keys).
    #[serde(default = "yes")]
    pub log_requests: bool,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub plans: PlanOverrides,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    #[serde(default)]
    pub organizations: Vec<OrgConfig>,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn yes() -> bool {
    true
}
fn default_prefix() -> String {
    "cartosim".into()
}
fn default_secret() -> String {
    "carto-sim-secret".into()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// The `/_sim/` admin API answers only when enabled.
    #[serde(default)]
    pub enabled: bool,
    /// When set, admin requests need `Authorization: Bearer <token>`.
    #[serde(default)]
    pub token: Option<String>,
}

/// Server-wide limits. Every one can be changed at run time through the admin API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Maximum bytes received per /copyfrom request (compressed bytes when gzip).
    pub copyfrom_max_bytes: u64,
    /// How the limit is written in the error message ("2 GB" for the default).
    pub copyfrom_max_pretty: Option<String>,
    /// Slow-input guard: at least this many bytes must arrive per check interval (0 = off).
    pub copyfrom_min_bytes_per_interval: u64,
    /// Slow-input guard check interval, seconds.
    pub copyfrom_check_interval_secs: f64,
    /// A request body that sends nothing for this long is cut (Node's socket timeout), seconds.
    pub idle_timeout_secs: f64,
    /// Statement timeout of COPY statements (5 h on CARTO), milliseconds.
    pub copy_statement_timeout_ms: u64,
    /// Finished batch jobs are forgotten after this many seconds.
    pub batch_ttl_secs: f64,
    /// Maximum pending jobs per user.
    pub batch_max_queued: usize,
    /// Statement timeout of batch queries, milliseconds (12 h on CARTO).
    pub batch_statement_timeout_ms: u64,
    /// Maximum size of a job creation payload (JSON text of the body), bytes.
    pub batch_max_payload: usize,
    /// Simulate CARTO's nginx: gzip /copyto answers when the client accepts gzip.
    pub copyto_gzip: bool,
    /// JSON /sql: rows stay buffered until this many bytes; an error before that is a 4xx.
    /// CARTO writes the head of the body with the first row, so 0 (= switch at the first row) is faithful.
    pub sql_stream_threshold_bytes: usize,
    /// Maximum pooled idle connections per (database, role).
    pub pool_max_idle: usize,
    /// Reproduce CARTO's bad-gzip bug (carto-sql-api.md section 4): after a /copyfrom rejected with
    /// "Error while gunzipping", later requests on the same keep-alive connection get no answer (until
    /// `idle_timeout_secs`), and the COPY stays open on the database for `copy_statement_timeout_ms`.
    pub copyfrom_bad_gzip_bug: bool,
    /// Node's request timeout: an upload still running after this many seconds is cut (0 = off; Node's
    /// default was 300 s, CARTO's cloud documents 5 h).
    pub copyfrom_request_timeout_secs: f64,
    /// /copyto keeps this many trailing bytes (whole rows) unsent until more data or the end arrives.
    /// An error inside the first window is then a 4xx JSON answer, and a later error drops the held rows
    /// before the appended error JSON: both as seen on CARTO (PostgreSQL/Node buffering).
    pub copyto_holdback_bytes: usize,
    /// Reproduce CARTO's upload race (carto-sql-api.md section 11.1): a /copyfrom client that leaves before
    /// the server listens (the COPY started, and at least `copyfrom_upload_race_window_ms` after the request
    /// head) is never noticed; its COPY stays open until `copy_statement_timeout_ms`. On by default.
    pub copyfrom_upload_race: bool,
    /// The race window after the request head, milliseconds.
    pub copyfrom_upload_race_window_ms: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            copyfrom_max_bytes: 2 * 1024 * 1024 * 1024,
            copyfrom_max_pretty: None,
            copyfrom_min_bytes_per_interval: 0,
            copyfrom_check_interval_secs: 15.0,
            idle_timeout_secs: 600.0,
            copy_statement_timeout_ms: 5 * 3600 * 1000,
            batch_ttl_secs: 7200.0,
            batch_max_queued: 64,
            batch_statement_timeout_ms: 12 * 3600 * 1000,
            batch_max_payload: 16384,
            copyto_gzip: false,
            sql_stream_threshold_bytes: 0,
            pool_max_idle: 4,
            copyfrom_bad_gzip_bug: false,
            copyfrom_request_timeout_secs: 0.0,
            copyto_holdback_bytes: 8192,
            copyfrom_upload_race: true,
            copyfrom_upload_race_window_ms: 5.0,
        }
    }
}

impl Limits {
    /// The size as CARTO prints it in "COPY FROM maximum POST size of 2 GB exceeded".
    pub fn copyfrom_pretty(&self) -> String {
        if let Some(p) = &self.copyfrom_max_pretty {
            return p.clone();
        }
        let b = self.copyfrom_max_bytes;
        const G: u64 = 1024 * 1024 * 1024;
        const M: u64 = 1024 * 1024;
        const K: u64 = 1024;
        if b.is_multiple_of(G) {
            format!("{} GB", b / G)
        } else if b.is_multiple_of(M) {
            format!("{} MB", b / M)
        } else if b.is_multiple_of(K) {
            format!("{} KB", b / K)
        } else {
            format!("{} bytes", b)
        }
    }
}

/// Statement timeout of the `unlimited` plan (others are fixed by CARTO: 5/15/25 s).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlanOverrides {
    /// /sql statement timeout of the unlimited plan in ms; 0 = none.
    pub unlimited_statement_timeout_ms: u64,
}

/// Seconds from the config/admin API as a Duration, clamped to [min, 10 years] (never panics on
/// odd values such as NaN, negative or huge numbers).
pub fn secs(f: f64, min: f64) -> std::time::Duration {
    let f = if f.is_nan() { min } else { f.clamp(min, 3.2e8) };
    std::time::Duration::from_secs_f64(f)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    Free,
    Individual,
    Enterprise,
    #[default]
    Unlimited,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    #[serde(default)]
    pub plan: Plan,
    pub master_key: String,
    /// Overrides the plan's /sql statement timeout (ms, 0 = none).
    #[serde(default)]
    pub statement_timeout_ms: Option<u64>,
    /// SQL run as the user's owner role in its schema during setup, before grants are applied
    /// (lets a config create the tables its keys are granted on).
    #[serde(default)]
    pub setup_sql: Option<String>,
    /// Database quota in bytes (`CDB_SetUserQuotaInBytes`); 0 or absent = unlimited.
    #[serde(default)]
    pub quota_bytes: Option<u64>,
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Key name (CARTO shows it in the dashboard); used in the role name.
    pub name: String,
    /// The API key token itself.
    pub token: String,
    #[serde(default)]
    pub grants: Vec<GrantConfig>,
    /// Grant CREATE on the user's schema (CARTO's "schema create" permission).
    #[serde(default)]
    pub schema_create: bool,
    /// The key's SQL grant (CARTO's `apis: ["sql"]`). A key without it (a maps-only key) gets 403
    /// `{"error":["forbidden"]}` on every SQL API request.
    #[serde(default = "yes")]
    pub sql: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantConfig {
    /// Table name, optionally schema-qualified (default: the user's schema).
    pub table: String,
    /// Any of "select", "insert", "update", "delete".
    pub privileges: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgConfig {
    pub name: String,
    #[serde(default)]
    pub members: Vec<UserConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {0}: {1}")]
    Io(String, std::io::Error),
    #[error("invalid configuration: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io(path.display().to_string(), e))?;
        Config::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let c: Config = toml::from_str(text)?;
        c.validate()?;
        Ok(c)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Names end up in identifiers: keep them to a safe alphabet so quoting is never an issue.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ok = |s: &str| !s.is_empty() && s.len() <= 40 && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !ok(&self.prefix) {
            return Err(ConfigError::Invalid(format!("prefix {:?}: use a-z 0-9 _ -", self.prefix)));
        }
        let mut seen = std::collections::HashSet::new();
        let mut tokens = std::collections::HashSet::new();
        let all = self.users.iter().chain(self.organizations.iter().flat_map(|o| o.members.iter()));
        for u in all {
            if !ok(&u.name) {
                return Err(ConfigError::Invalid(format!("user name {:?}: use a-z 0-9 _ -", u.name)));
            }
            if !seen.insert(u.name.clone()) {
                return Err(ConfigError::Invalid(format!("user {:?} defined twice", u.name)));
            }
            if !tokens.insert(u.master_key.clone()) {
                return Err(ConfigError::Invalid(format!("user {:?}: key token used twice", u.name)));
            }
            for k in &u.keys {
                if !ok(&k.name) {
                    return Err(ConfigError::Invalid(format!("key name {:?}: use a-z 0-9 _ -", k.name)));
                }
                if !tokens.insert(k.token.clone()) {
                    return Err(ConfigError::Invalid(format!("key {:?}: token used twice", k.name)));
                }
                for g in &k.grants {
                    for p in &g.privileges {
                        if !["select", "insert", "update", "delete"].contains(&p.to_ascii_lowercase().as_str()) {
                            return Err(ConfigError::Invalid(format!("key {:?}: unknown privilege {:?}", k.name, p)));
                        }
                    }
                }
            }
        }
        for o in &self.organizations {
            if !ok(&o.name) {
                return Err(ConfigError::Invalid(format!("organization name {:?}: use a-z 0-9 _ -", o.name)));
            }
        }
        Ok(())
    }
}
