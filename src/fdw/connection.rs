//! From a foreign server and the current user's mapping to a carto-client `Client`, and the one
//! privilege rule every entry point goes through (docs/security.md):
//! - a foreign table (scan, modify, ANALYZE, IMPORT) is reached through PostgreSQL's own checks (the
//!   table's privileges; USAGE on the server to create it or to IMPORT into it) and uses the mapping of
//!   the user it runs as ([`server_access`]);
//! - every function that names a server (`carto.query`, `carto.exec`, table management, Batch SQL,
//!   `carto.push`, `carto.pull`) goes through [`server_for_caller`]: a carto_fdw server, USAGE on it for
//!   the current user, and the current user's own or the PUBLIC mapping — as postgres_fdw and dblink do.
//!
//! Clients are cached per backend, keyed by everything that shapes them (URL, key, timeouts, TLS),
//! so every scan and modify of a statement shares one HTTP connection pool, and an ALTER SERVER or
//! ALTER USER MAPPING simply yields a new key and a new client.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;


use carto_client::{ApiKey, Client, ClientConfig};
use pgrx::{pg_sys, PgSqlErrorCode};

use crate::fdw::options::{deflist_to_pairs, ServerOptions};
use crate::pg::error::{FdwError, FdwResult};

/// COPY text is handed to the upload in chunks of about this size (memory stays flat).
pub const COPY_CHUNK: usize = 256 * 1024;

thread_local! {
    static CLIENTS: RefCell<HashMap<String, Client>> = RefCell::new(HashMap::new());
}

/// The server's options and the mapped API key of the current user (None: public access).
pub struct ServerAccess {
    pub server_name: String,
    pub options: ServerOptions,
    pub api_key: Option<String>,
}

/// Reads a server and the user mapping that applies to `userid` (or PUBLIC).
///
/// # Safety
/// Must run in a transaction on the backend thread.
pub unsafe fn server_access(serverid: pg_sys::Oid, userid: pg_sys::Oid) -> FdwResult<ServerAccess> {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        let server = pg_sys::GetForeignServer(serverid);
        let server_name = crate::pg::cstr::cstr_owned((*server).servername).unwrap_or_default();
        let options = ServerOptions::from_pairs(&deflist_to_pairs((*server).options));
        // Without a user mapping PostgreSQL raises its own clear error (ERRCODE_UNDEFINED_OBJECT).
        let mapping = pg_sys::GetUserMapping(userid, serverid);
        let api_key = deflist_to_pairs((*mapping).options)
            .into_iter()
            .find(|(n, _)| n == "api_key")
            .map(|(_, v)| v);
        Ok(ServerAccess { server_name, options, api_key })
    }
}

/// A server named by a function's argument, for the current user: it must be a carto_fdw server, the
/// current user needs USAGE on it, and its own or the PUBLIC user mapping (a missing mapping is
/// PostgreSQL's own error). The one check of every function that names a server.
pub fn server_for_caller(server: &str) -> FdwResult<ServerAccess> {
    let serverid = carto_server_oid(server)?;
    // SAFETY: SQL-callable code, so the backend thread in a transaction; `serverid` was just looked up.
    unsafe {
        let userid = pg_sys::GetUserId();
        check_server_usage(serverid, userid, server)?;
        server_access(serverid, userid)
    }
}

/// The OID of a carto_fdw server by name (PostgreSQL's own error when there is none).
pub fn carto_server_oid(server: &str) -> FdwResult<pg_sys::Oid> {
    let cname = crate::pg::encoding::server_cstring(server).ok_or_else(|| FdwError::InvalidOptionValue {
        message: "a server name cannot contain a NUL byte".into(),
    })?;
    // SAFETY: SQL-callable code, so the backend thread in a transaction; GetForeignServerByName with missing_ok false
    // raises instead of returning NULL, so `srv` is valid.
    unsafe {
        // missing_ok = false: PostgreSQL's own "server \"x\" does not exist".
        let srv = pg_sys::GetForeignServerByName(cname.as_ptr(), false);
        let fdw = pg_sys::GetForeignDataWrapper((*srv).fdwid);
        let handler = if (*fdw).fdwhandler == pg_sys::InvalidOid {
            None
        } else {
            crate::pg::cstr::cstr_owned(pg_sys::get_func_name((*fdw).fdwhandler))
        };
        if handler.as_deref() != Some("carto_fdw_handler") {
            return Err(FdwError::Custom {
                code: PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
                message: format!("server \"{server}\" is not a carto_fdw server"),
                detail: None,
                hint: Some("Pass the name of a server created with FOREIGN DATA WRAPPER carto_fdw (see \\des).".into()),
            });
        }
        Ok((*srv).serverid)
    }
}

/// USAGE on a foreign server, as PostgreSQL checks it for CREATE FOREIGN TABLE.
///
/// # Safety
/// Must run in a transaction on the backend thread.
pub unsafe fn check_server_usage(serverid: pg_sys::Oid, userid: pg_sys::Oid, server: &str) -> FdwResult<()> {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
        let acl = pg_sys::pg_foreign_server_aclcheck(serverid, userid, pg_sys::ACL_USAGE as pg_sys::AclMode);
        #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15")))]
        let acl = pg_sys::object_aclcheck(pg_sys::ForeignServerRelationId, serverid, userid, pg_sys::ACL_USAGE as pg_sys::AclMode);
        if acl != pg_sys::AclResult::ACLCHECK_OK {
            return Err(FdwError::InsufficientPrivilege { message: format!("permission denied for foreign server {server}") });
        }
        Ok(())
    }
}

/// The client configuration a server's options describe.
pub fn client_config(access: &ServerAccess) -> FdwResult<ClientConfig> {
    let o = &access.options;
    let mut cfg = match (&o.username, &o.base_url) {
        (Some(u), None) => ClientConfig::for_username(u),
        (None, Some(url)) => ClientConfig::for_base_url(url),
        _ => {
            return Err(FdwError::InvalidOption {
                message: format!(
                    "server \"{}\" needs exactly one of the options username and base_url",
                    access.server_name
                ),
                hint: Some("ALTER SERVER ... OPTIONS (ADD username 'your-user') or (ADD base_url 'https://...').".into()),
            })
        }
    }
    .map_err(|e| FdwError::InvalidOptionValue { message: e.message })?;
    if let Some(key) = &access.api_key {
        cfg = cfg.with_api_key(ApiKey::new(key.clone()));
    }
    cfg.connect_timeout = Duration::from_secs(o.connect_timeout);
    cfg.request_timeout = Duration::from_secs(o.request_timeout);
    cfg.max_retries = o.max_retries;
    cfg.max_retry_wait = Duration::from_secs(o.max_retry_wait);
    cfg.compression_level = o.compression_level;
    // The option is CARTO's limit; roll over below it by what can still be in flight when the client
    // notices (its channels of COPY chunks, the compressor's buffer), at most half of the limit.
    if o.copyfrom_max_bytes != carto_client::DEFAULT_COPYFROM_MAX_BYTES {
        let in_flight = (cfg.channel_capacity as u64 + 2) * COPY_CHUNK as u64 + 128 * 1024;
        cfg.copyfrom_max_bytes = o.copyfrom_max_bytes.saturating_sub(in_flight).max(o.copyfrom_max_bytes / 2);
    }
    cfg.ca_file = o.ca_file.as_ref().map(Into::into);
    cfg.insecure = o.insecure;
    Ok(cfg)
}

/// The cached client for a server and user mapping.
pub fn client_for(access: &ServerAccess) -> FdwResult<Client> {
    let cfg = client_config(access)?;
    // Everything that shapes the client; the key is part of it but this string never leaves
    // the backend's memory.
    let fingerprint = format!(
        "{}|{}|{}|{:?}|{:?}|{}|{:?}|{}|{:?}|{}|{}",
        cfg.base_url,
        access.api_key.as_deref().unwrap_or(""),
        access.server_name,
        cfg.connect_timeout,
        cfg.request_timeout,
        cfg.max_retries,
        cfg.max_retry_wait,
        cfg.compression_level,
        cfg.ca_file,
        cfg.insecure,
        cfg.copyfrom_max_bytes
    );
    CLIENTS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(c) = cache.get(&fingerprint) {
            return Ok(c.clone());
        }
        // reqwest's client spawns nothing until first used, but building it needs a runtime
        // context for its connector.
        let rt = crate::pg::runtime::runtime()?;
        let _guard = rt.enter();
        let client = Client::new(cfg).map_err(|e| FdwError::remote(e, "configuring the CARTO client"))?;
        if cache.len() > 16 {
            cache.clear();
        }
        cache.insert(fingerprint, client.clone());
        Ok(client)
    })
}
