//! Who is who: users, their database/schema, and the PostgreSQL role behind each kind of key.
use crate::config::{Config, GrantConfig, Plan};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// The role CARTO uses for requests without a key (`publicuser`). It is cluster-wide, shared by all
/// sims on one cluster (it only ever receives grants inside a sim's own databases).
pub const PUBLIC_ROLE: &str = "publicuser";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    Master,
    Regular,
    DefaultPublic,
}

#[derive(Debug, Clone)]
pub struct KeyAccount {
    pub name: String,
    pub token: String,
    pub role: String,
    pub grants: Vec<GrantConfig>,
    pub schema_create: bool,
    /// The key may use the SQL API (a maps-only key may not).
    pub sql: bool,
}

#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    /// Stable uuid-like id sent as `Carto-User-Id`.
    pub id: String,
    pub org: Option<String>,
    pub database: String,
    /// `public` for single users, the user's name inside an organisation.
    pub schema: String,
    pub owner_role: String,
    pub master_key: String,
    pub keys: Vec<KeyAccount>,
    pub setup_sql: Option<String>,
    pub quota_bytes: u64,
    pub plan: Plan,
    pub statement_timeout_ms: Option<u64>,
}

impl Account {
    /// Which role a token maps to, if any.
    /// Kind, role and SQL grant of a token, if it is one of this account's keys.
    pub fn key_for_token(&self, token: &str) -> Option<(KeyKind, String, bool)> {
        if ct_eq(token, &self.master_key) {
            return Some((KeyKind::Master, self.owner_role.clone(), true));
        }
        self.keys
            .iter()
            .find(|k| ct_eq(token, &k.token))
            .map(|k| (KeyKind::Regular, k.role.clone(), k.sql))
    }
    pub fn search_path(&self) -> String {
        if self.schema == "public" {
            "public, cartodb".to_string()
        } else {
            format!("{}, public, cartodb", quote_ident(&self.schema))
        }
    }
}

/// A PostgreSQL identifier that fits in 63 bytes: long names get a hash suffix.
pub fn pg_name(full: &str) -> String {
    if full.len() <= 63 {
        return full.to_string();
    }
    let h = hex::encode(Sha256::digest(full.as_bytes()));
    format!("{}_{}", &full[..40], &h[..16])
}

pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Password of a role, derived from the config secret so `setup` and `serve` agree without storing it.
/// `publicuser` is shared by every sim on a cluster, so its password cannot depend on one sim's secret
/// (it only ever reads what is public anyway).
pub fn role_password(secret: &str, role: &str) -> String {
    let secret = if role == PUBLIC_ROLE { "carto-sim-publicuser" } else { secret };
    let h = Sha256::digest(format!("{secret}:{role}").as_bytes());
    hex::encode(h)[..32].to_string()
}

pub fn user_database(prefix: &str, user: &str) -> String {
    pg_name(&format!("{prefix}_{user}"))
}
pub fn org_database(prefix: &str, org: &str) -> String {
    pg_name(&format!("{prefix}_org_{org}"))
}
fn owner_role(prefix: &str, user: &str) -> String {
    pg_name(&format!("{prefix}_u_{user}"))
}
fn key_role(prefix: &str, user: &str, key: &str) -> String {
    pg_name(&format!("{prefix}_k_{user}_{key}"))
}

fn user_id(prefix: &str, user: &str) -> String {
    let h = hex::encode(Sha256::digest(format!("{prefix}/{user}").as_bytes()));
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Every account of a configuration, by user name.
pub fn accounts(config: &Config) -> HashMap<String, Account> {
    let mut out = HashMap::new();
    let p = &config.prefix;
    let mk = |u: &crate::config::UserConfig, org: Option<&str>| {
        let (database, schema) = match org {
            None => (user_database(p, &u.name), "public".to_string()),
            Some(o) => (org_database(p, o), u.name.clone()),
        };
        Account {
            name: u.name.clone(),
            id: user_id(p, &u.name),
            org: org.map(str::to_string),
            database,
            schema,
            owner_role: owner_role(p, &u.name),
            master_key: u.master_key.clone(),
            keys: u
                .keys
                .iter()
                .map(|k| KeyAccount {
                    name: k.name.clone(),
                    token: k.token.clone(),
                    role: key_role(p, &u.name, &k.name),
                    grants: k.grants.clone(),
                    schema_create: k.schema_create,
                    sql: k.sql,
                })
                .collect(),
            setup_sql: u.setup_sql.clone(),
            quota_bytes: u.quota_bytes.unwrap_or(0),
            plan: u.plan,
            statement_timeout_ms: u.statement_timeout_ms,
        }
    };
    for u in &config.users {
        out.insert(u.name.clone(), mk(u, None));
    }
    for o in &config.organizations {
        for u in &o.members {
            out.insert(u.name.clone(), mk(u, Some(&o.name)));
        }
    }
    out
}

/// Constant-time comparison, so key checks do not leak through timing.
pub fn ct_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
