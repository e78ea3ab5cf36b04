//! `carto-sim setup`: prepare PostgreSQL from the config, idempotently. Per single user a database
//! `<prefix>_<user>` (schema public); per organisation a database `<prefix>_org_<org>` with one schema
//! per member; PostGIS and the CDB functions in each; a LOGIN role per user (owner of its tables), per
//! regular key (exactly its grants) and the shared `publicuser` (only what is granted to it).
use crate::accounts::{quote_ident as qi, quote_literal as ql, role_password, Account, PUBLIC_ROLE};
use crate::config::Config;
use crate::pool::admin_connect;
use std::collections::BTreeMap;
use tokio_postgres::Client;

/// The CARTO database functions (written separately; loaded into every user database).
pub const CDB_FUNCTIONS_SQL: &str = include_str!("../sql/cdb_functions.sql");

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("invalid admin_url: {0}")]
    Url(String),
    #[error("{what}: {source}")]
    Pg { what: String, source: tokio_postgres::Error },
}

fn pg(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> SetupError {
    let what = what.into();
    move |source| SetupError::Pg { what, source: source_with_detail(source) }
}

fn source_with_detail(e: tokio_postgres::Error) -> tokio_postgres::Error {
    e
}

/// Run a statement, retrying the races two sims setting up at once can hit on shared catalogs.
async fn exec_retry(c: &Client, sql: &str) -> Result<(), tokio_postgres::Error> {
    let mut tries = 0;
    loop {
        match c.batch_execute(sql).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                let code = e.code().map(|c| c.code().to_string()).unwrap_or_default();
                let racy = code == "XX000" || code == "23505" || code == "40001" || code == "40P01";
                tries += 1;
                if !racy || tries > 10 {
                    return Err(e);
                }
                tokio::time::sleep(std::time::Duration::from_millis(50 * tries)).await;
            }
        }
    }
}

async fn role_exists(c: &Client, role: &str) -> Result<bool, tokio_postgres::Error> {
    Ok(c.query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role]).await?.is_some())
}

async fn ensure_role(c: &Client, role: &str, password: &str) -> Result<(), SetupError> {
    if !role_exists(c, role).await.map_err(pg("check role"))? {
        let r = c.batch_execute(&format!("CREATE ROLE {} LOGIN PASSWORD {}", qi(role), ql(password))).await;
        if let Err(e) = r {
            // Another sim may have created it meanwhile (publicuser is shared).
            let dup = e.code().map(|c| c.code() == "42710" || c.code() == "23505").unwrap_or(false);
            if !dup {
                return Err(pg(format!("create role {role}"))(e));
            }
        }
    }
    exec_retry(c, &format!("ALTER ROLE {} LOGIN NOSUPERUSER PASSWORD {}", qi(role), ql(password)))
        .await
        .map_err(pg(format!("alter role {role}")))
}

pub async fn setup(config: &Config) -> Result<(), SetupError> {
    let base: tokio_postgres::Config = config.admin_url.parse().map_err(|e: tokio_postgres::Error| SetupError::Url(e.to_string()))?;
    let admin = admin_connect(&base, None).await.map_err(pg("connect as admin"))?;
    let accounts = crate::accounts::accounts(config);
    ensure_role(&admin, PUBLIC_ROLE, &role_password(&config.secret, PUBLIC_ROLE)).await?;

    // Group accounts by database (an organisation shares one).
    let mut by_db: BTreeMap<String, Vec<Account>> = BTreeMap::new();
    for a in accounts.into_values() {
        by_db.entry(a.database.clone()).or_default().push(a);
    }
    for (db, mut members) in by_db {
        members.sort_by(|a, b| a.name.cmp(&b.name));
        setup_database(&admin, &base, config, &db, &members).await?;
    }
    Ok(())
}

/// One database (a single user's, or an organisation's shared by its members): the roles, the database and
/// its grants, PostGIS and the CDB functions, then each account in it.
async fn setup_database(admin: &Client, base: &tokio_postgres::Config, config: &Config, db: &str, members: &[Account]) -> Result<(), SetupError> {
    for a in members {
        ensure_role(admin, &a.owner_role, &role_password(&config.secret, &a.owner_role)).await?;
        for k in &a.keys {
            ensure_role(admin, &k.role, &role_password(&config.secret, &k.role)).await?;
        }
    }
    let exists = admin.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db]).await.map_err(pg("check database"))?.is_some();
    let single = members.len() == 1 && members[0].org.is_none();
    if !exists {
        let owner = if single { format!(" OWNER {}", qi(&members[0].owner_role)) } else { String::new() };
        admin
            .batch_execute(&format!("CREATE DATABASE {}{} TEMPLATE template0 ENCODING 'UTF8'", qi(db), owner))
            .await
            .map_err(pg(format!("create database {db}")))?;
    }
    let mut grants = format!("ALTER DATABASE {0} SET timezone = 'UTC'; REVOKE CONNECT, TEMPORARY ON DATABASE {0} FROM PUBLIC; GRANT CONNECT ON DATABASE {0} TO {1};", qi(db), qi(PUBLIC_ROLE));
    for a in members {
        grants.push_str(&format!("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {};", qi(db), qi(&a.owner_role)));
        for k in &a.keys {
            grants.push_str(&format!("GRANT CONNECT ON DATABASE {} TO {};", qi(db), qi(&k.role)));
        }
    }
    exec_retry(admin, &grants).await.map_err(pg(format!("database grants on {db}")))?;

    let dbc = admin_connect(base, Some(db)).await.map_err(pg(format!("connect to {db}")))?;
    exec_retry(&dbc, "CREATE EXTENSION IF NOT EXISTS postgis; CREATE SCHEMA IF NOT EXISTS cartodb; GRANT USAGE ON SCHEMA cartodb TO PUBLIC; GRANT USAGE ON SCHEMA public TO PUBLIC; CREATE TABLE IF NOT EXISTS cartodb.carto_sim_setup (username text PRIMARY KEY);")
        .await
        .map_err(pg(format!("postgis in {db}")))?;
    if !CDB_FUNCTIONS_SQL.trim().is_empty() {
        dbc.batch_execute(CDB_FUNCTIONS_SQL).await.map_err(pg(format!("loading sql/cdb_functions.sql into {db}")))?;
    }
    exec_retry(&dbc, &format!("ALTER ROLE {} IN DATABASE {} SET search_path = public, cartodb", qi(PUBLIC_ROLE), qi(db)))
        .await
        .map_err(pg("publicuser search_path"))?;
    for a in members {
        setup_account(&dbc, db, a).await?;
    }
    Ok(())
}

/// One account in its database: its schema (inside an organisation), grants and search paths, DB quota,
/// `setup_sql` (once) and its keys' grants.
async fn setup_account(dbc: &Client, db: &str, a: &Account) -> Result<(), SetupError> {
    if a.org.is_some() {
        let has = dbc.query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&a.schema]).await.map_err(pg("check schema"))?.is_some();
        if !has {
            dbc.batch_execute(&format!("CREATE SCHEMA {} AUTHORIZATION {}", qi(&a.schema), qi(&a.owner_role)))
                .await
                .map_err(pg(format!("create schema {}", a.schema)))?;
        }
    }
    let mut sql = format!(
        "GRANT USAGE ON SCHEMA {s} TO {p}; ALTER ROLE {o} IN DATABASE {d} SET search_path = {sp};",
        s = qi(&a.schema),
        p = qi(PUBLIC_ROLE),
        o = qi(&a.owner_role),
        d = qi(db),
        sp = a.search_path()
    );
    for k in &a.keys {
        sql.push_str(&format!(
            "GRANT USAGE ON SCHEMA {s} TO {r}; ALTER ROLE {r} IN DATABASE {d} SET search_path = {sp};",
            s = qi(&a.schema),
            r = qi(&k.role),
            d = qi(db),
            sp = a.search_path()
        ));
    }
    exec_retry(dbc, &sql).await.map_err(pg(format!("schema grants for {}", a.name)))?;
    let has_quota_fn = dbc
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'cartodb' AND p.proname = 'cdb_setuserquotainbytes')", &[])
        .await
        .map_err(pg("check quota function"))?
        .get::<_, bool>(0);
    if has_quota_fn {
        let bytes = a.quota_bytes as i64;
        dbc.execute("SELECT cartodb.CDB_SetUserQuotaInBytes($1::text, $2::int8)", &[&a.schema, &bytes])
            .await
            .map_err(pg(format!("quota of {}", a.name)))?;
    }
    // setup_sql runs once per account: a marker row commits with it in one transaction.
    if let Some(s) = &a.setup_sql {
        let done = dbc
            .query_one("SELECT EXISTS (SELECT 1 FROM cartodb.carto_sim_setup WHERE username = $1)", &[&a.name])
            .await
            .map_err(pg("check setup marker"))?
            .get::<_, bool>(0);
        if !done {
            let wrapped = format!(
                "BEGIN; SET LOCAL ROLE {o}; SET LOCAL search_path = {sp}; {s}; RESET ROLE; INSERT INTO cartodb.carto_sim_setup VALUES ({u}); COMMIT;",
                o = qi(&a.owner_role),
                sp = a.search_path(),
                u = ql(&a.name)
            );
            if let Err(e) = dbc.batch_execute(&wrapped).await {
                let _ = dbc.batch_execute("ROLLBACK").await;
                return Err(pg(format!("setup_sql of {}", a.name))(e));
            }
        }
    }
    apply_grants(dbc, a).await?;
    Ok(())
}

/// Grant each regular key exactly its configured privileges. Tables that do not exist yet are skipped
/// with a warning (re-run through `POST /_sim/grants` once they do).
pub async fn apply_grants(dbc: &Client, a: &Account) -> Result<Vec<String>, SetupError> {
    let mut warnings = Vec::new();
    for k in &a.keys {
        for g in &k.grants {
            let (schema, table) = match g.table.split_once('.') {
                Some((s, t)) => (s.to_string(), t.to_string()),
                None => (a.schema.clone(), g.table.clone()),
            };
            let exists = dbc
                .query_opt("SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2", &[&schema, &table])
                .await
                .map_err(pg("check table"))?
                .is_some();
            if !exists {
                let w = format!("key {}: table {}.{} does not exist (yet); grant skipped", k.name, schema, table);
                eprintln!("carto-sim setup: {w}");
                warnings.push(w);
                continue;
            }
            let privs: Vec<String> = g.privileges.iter().map(|p| p.to_ascii_uppercase()).collect();
            let mut sql = format!("GRANT {} ON {}.{} TO {};", privs.join(", "), qi(&schema), qi(&table), qi(&k.role));
            if privs.iter().any(|p| p == "INSERT") {
                sql.push_str(&format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {};", qi(&schema), qi(&k.role)));
            }
            exec_retry(dbc, &sql).await.map_err(pg(format!("grants of key {}", k.name)))?;
        }
        if k.schema_create {
            exec_retry(dbc, &format!("GRANT CREATE ON SCHEMA {} TO {}", qi(&a.schema), qi(&k.role)))
                .await
                .map_err(pg(format!("schema create for key {}", k.name)))?;
        }
    }
    Ok(warnings)
}

/// Re-apply the grants of every account (admin API).
pub async fn reapply_grants(config: &Config) -> Result<Vec<String>, SetupError> {
    let base: tokio_postgres::Config = config.admin_url.parse().map_err(|e: tokio_postgres::Error| SetupError::Url(e.to_string()))?;
    let mut warnings = Vec::new();
    for a in crate::accounts::accounts(config).values() {
        let dbc = admin_connect(&base, Some(&a.database)).await.map_err(pg(format!("connect to {}", a.database)))?;
        warnings.extend(apply_grants(&dbc, a).await?);
    }
    Ok(warnings)
}

/// Drop this config's databases and roles (best effort; `publicuser` is shared and stays).
pub async fn teardown(config: &Config) -> Result<(), SetupError> {
    let base: tokio_postgres::Config = config.admin_url.parse().map_err(|e: tokio_postgres::Error| SetupError::Url(e.to_string()))?;
    let admin = admin_connect(&base, None).await.map_err(pg("connect as admin"))?;
    let accounts = crate::accounts::accounts(config);
    let mut dbs: Vec<String> = accounts.values().map(|a| a.database.clone()).collect();
    dbs.sort();
    dbs.dedup();
    for db in dbs {
        let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", qi(&db))).await;
    }
    for a in accounts.values() {
        for k in &a.keys {
            let _ = exec_retry(&admin, &format!("DROP ROLE IF EXISTS {}", qi(&k.role))).await;
        }
        let _ = exec_retry(&admin, &format!("DROP ROLE IF EXISTS {}", qi(&a.owner_role))).await;
    }
    Ok(())
}
