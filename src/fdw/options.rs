//! Options of the wrapper's objects: the table of valid options (which object takes which option
//! and how its value is checked), the validator PostgreSQL calls on CREATE/ALTER, and the parsed
//! option structs the planner and executor read.
//!
//! As in postgres_fdw, every option is checked when it is given, not when it is first used, and an
//! unknown name fails with a hint listing the names that object accepts.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::pg::error::FdwError;

/// Which catalog an option belongs to (the validator's second argument).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OptionTarget {
    Wrapper,
    Server,
    UserMapping,
    Table,
    Column,
}

impl OptionTarget {
    fn from_catalog(catalog: pg_sys::Oid) -> Option<Self> {
        match catalog {
            pg_sys::ForeignDataWrapperRelationId => Some(Self::Wrapper),
            pg_sys::ForeignServerRelationId => Some(Self::Server),
            pg_sys::UserMappingRelationId => Some(Self::UserMapping),
            pg_sys::ForeignTableRelationId => Some(Self::Table),
            pg_sys::AttributeRelationId => Some(Self::Column),
            _ => None,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Self::Wrapper => "foreign-data wrapper",
            Self::Server => "server",
            Self::UserMapping => "user mapping",
            Self::Table => "foreign table",
            Self::Column => "column",
        }
    }
}

/// How an option's value is checked.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Text,
    Url,
    Bool,
    /// A whole number in the inclusive range.
    Int(i64, i64),
    /// A non-negative floating-point number.
    Cost,
    OneOf(&'static [&'static str]),
    /// A comma-separated list of extension names.
    Extensions,
}

struct Spec {
    name: &'static str,
    targets: &'static [OptionTarget],
    kind: Kind,
    superuser_only: bool,
}

use OptionTarget::{Column as C, Server as S, Table as T, UserMapping as U};

const SCAN_METHODS: &[&str] = &["auto", "copy", "query"];
const COPY_FORMATS: &[&str] = &["auto", "binary", "text"];

/// Every option of the wrapper. Names are part of the user-facing contract (docs/options.md).
static SPECS: &[Spec] = &[
    Spec { name: "username", targets: &[S], kind: Kind::Text, superuser_only: false },
    Spec { name: "base_url", targets: &[S], kind: Kind::Url, superuser_only: false },
    Spec { name: "extensions", targets: &[S], kind: Kind::Extensions, superuser_only: false },
    Spec { name: "scan_method", targets: &[S, T], kind: Kind::OneOf(SCAN_METHODS), superuser_only: false },
    Spec { name: "copy_threshold", targets: &[S, T], kind: Kind::Int(0, i64::MAX), superuser_only: false },
    Spec { name: "copy_format", targets: &[S, T], kind: Kind::OneOf(COPY_FORMATS), superuser_only: false },
    Spec { name: "fetch_size", targets: &[S, T], kind: Kind::Int(1, 1_000_000), superuser_only: false },
    Spec { name: "compression_level", targets: &[S], kind: Kind::Int(0, 9), superuser_only: false },
    Spec { name: "copyfrom_max_bytes", targets: &[S], kind: Kind::Int(65_536, 2_147_483_648), superuser_only: false },
    Spec { name: "connect_timeout", targets: &[S], kind: Kind::Int(1, 3600), superuser_only: false },
    Spec { name: "request_timeout", targets: &[S], kind: Kind::Int(1, 86_400), superuser_only: false },
    Spec { name: "max_retries", targets: &[S], kind: Kind::Int(0, 100), superuser_only: false },
    Spec { name: "max_retry_wait", targets: &[S], kind: Kind::Int(0, 3600), superuser_only: false },
    Spec { name: "use_remote_estimate", targets: &[S, T], kind: Kind::Bool, superuser_only: false },
    Spec { name: "fdw_startup_cost", targets: &[S], kind: Kind::Cost, superuser_only: false },
    Spec { name: "fdw_tuple_cost", targets: &[S], kind: Kind::Cost, superuser_only: false },
    Spec { name: "updatable", targets: &[S, T], kind: Kind::Bool, superuser_only: false },
    Spec { name: "truncatable", targets: &[S, T], kind: Kind::Bool, superuser_only: false },
    Spec { name: "ca_file", targets: &[S], kind: Kind::Text, superuser_only: true },
    Spec { name: "insecure", targets: &[S], kind: Kind::Bool, superuser_only: true },
    Spec { name: "api_key", targets: &[U], kind: Kind::Text, superuser_only: false },
    Spec { name: "table_name", targets: &[T], kind: Kind::Text, superuser_only: false },
    Spec { name: "schema_name", targets: &[T], kind: Kind::Text, superuser_only: false },
    Spec { name: "query", targets: &[T], kind: Kind::Text, superuser_only: false },
    Spec { name: "rowid_column", targets: &[T], kind: Kind::Text, superuser_only: false },
    Spec { name: "column_name", targets: &[C], kind: Kind::Text, superuser_only: false },
];

fn valid_names(target: OptionTarget) -> String {
    let names: Vec<&str> =
        SPECS.iter().filter(|s| s.targets.contains(&target)).map(|s| s.name).collect();
    if names.is_empty() {
        "There are no valid options in this context.".to_string()
    } else {
        format!("Valid options in this context are: {}", names.join(", "))
    }
}

pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "1" | "t" | "y" => Some(true),
        "false" | "off" | "no" | "0" | "f" | "n" => Some(false),
        _ => None,
    }
}

/// Checks one option value; returns the message of the error when it is not valid.
fn check_value(spec: &Spec, value: &str) -> Result<(), String> {
    let name = spec.name;
    match spec.kind {
        Kind::Text => {
            if value.is_empty() {
                return Err(format!("option \"{name}\" must not be empty"));
            }
        }
        Kind::Url => {
            if value.contains("api_key=") || value.contains("map_key=") {
                return Err("option \"base_url\" must not carry an API key: put it in the user mapping's api_key option".into());
            }
            // Never echoed: a URL may hold credentials, and server options are readable by everyone
            // with USAGE on the server. The client's own parse decides (credentials, query string,
            // fragment and other schemes are refused there), so a server that passes here works.
            let ok = (value.starts_with("https://") || value.starts_with("http://"))
                && value.len() > "https://".len()
                && !value.contains(char::is_whitespace);
            if !ok {
                return Err("option \"base_url\" must be an http:// or https:// URL".into());
            }
            if let Err(e) = carto_client::ClientConfig::for_base_url(value) {
                return Err(format!("option \"base_url\" is not valid: {}", e.message));
            }
        }
        Kind::Bool => {
            if parse_bool(value).is_none() {
                return Err(format!("option \"{name}\" requires a Boolean value, got \"{value}\""));
            }
        }
        Kind::Int(min, max) => match value.trim().parse::<i64>() {
            Ok(v) if v >= min && v <= max => {}
            _ => {
                return Err(format!(
                    "option \"{name}\" requires an integer between {min} and {max}, got \"{value}\""
                ))
            }
        },
        Kind::Cost => match value.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => {}
            _ => return Err(format!("option \"{name}\" requires a non-negative number, got \"{value}\"")),
        },
        Kind::OneOf(allowed) => {
            if !allowed.contains(&value) {
                return Err(format!(
                    "option \"{name}\" must be one of {}, got \"{value}\"",
                    allowed.join(", ")
                ));
            }
        }
        Kind::Extensions => {
            // '' turns the default (postgis) off: nothing but built-ins is shipped.
            if value.trim().is_empty() {
                return Ok(());
            }
            for ext in value.split(',').map(str::trim) {
                if ext.is_empty() || !ext.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!(
                        "option \"extensions\" must be a comma-separated list of extension names, got \"{value}\""
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Checks a whole option list of one object. Pure, so it is unit-tested without a backend.
pub fn validate(
    target: OptionTarget,
    options: &[(String, String)],
    is_superuser: bool,
) -> Result<(), FdwError> {
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in options {
        let spec = SPECS.iter().find(|s| s.name == name && s.targets.contains(&target));
        let Some(spec) = spec else {
            return Err(FdwError::InvalidOption {
                message: format!("invalid option \"{name}\" for a {}", target.noun()),
                hint: Some(valid_names(target)),
            });
        };
        if seen.contains(&name.as_str()) {
            return Err(FdwError::InvalidOption {
                message: format!("option \"{name}\" provided more than once"),
                hint: None,
            });
        }
        seen.push(name);
        if spec.superuser_only && !is_superuser {
            return Err(FdwError::InsufficientPrivilege {
                message: format!("only a superuser can set option \"{name}\""),
            });
        }
        // The key is never echoed back in a message.
        let checked = if name == "api_key" { check_value(spec, value).map_err(|_| "option \"api_key\" must not be empty".to_string()) } else { check_value(spec, value) };
        checked.map_err(|message| FdwError::InvalidOptionValue { message })?;
    }
    let has = |n: &str| seen.contains(&n);
    match target {
        OptionTarget::Server => {
            if !has("username") && !has("base_url") {
                return Err(FdwError::InvalidOption {
                    message: "a carto_fdw server needs the option \"username\" or \"base_url\"".into(),
                    hint: Some("Use username for a cloud account (https://USERNAME.carto.com), or base_url for an organisation member, on-premises or local server.".into()),
                });
            }
            if has("username") && has("base_url") {
                return Err(FdwError::InvalidOption {
                    message: "options \"username\" and \"base_url\" cannot both be set".into(),
                    hint: Some("Use username for a cloud account (https://USERNAME.carto.com), or base_url for an organisation member, on-premises or local server.".into()),
                });
            }
        }
        OptionTarget::Table if has("query") && (has("table_name") || has("schema_name")) => {
            return Err(FdwError::InvalidOption {
                message: "option \"query\" cannot be combined with \"table_name\" or \"schema_name\"".into(),
                hint: Some("A foreign table reads either a remote table or a query.".into()),
            });
        }
        _ => {}
    }
    Ok(())
}

/// Splits "name=value" strings (PostgreSQL's untransformed option array) into pairs.
pub fn split_option_strings(raw: &[Option<String>]) -> Vec<(String, String)> {
    raw.iter()
        .flatten()
        .map(|s| match s.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => (s.clone(), String::new()),
        })
        .collect()
}

#[pg_extern]
fn carto_fdw_validator(options: Option<Vec<Option<crate::pg::encoding::DbText>>>, catalog: Option<pg_sys::Oid>) {
    let Some(target) = catalog.and_then(OptionTarget::from_catalog) else { return };
    // Option strings read in the database encoding, converted to UTF-8 as every option value is.
    let options: Vec<Option<String>> =
        options.unwrap_or_default().into_iter().map(|o| o.map(crate::pg::encoding::DbText::into_string)).collect();
    let pairs = split_option_strings(&options);
    // SAFETY: the validator runs on the backend thread; superuser() only reads the session's user id and the catalog.
    let is_superuser = unsafe { pg_sys::superuser() };
    if let Err(e) = validate(target, &pairs, is_superuser) {
        e.report();
    }
    if target == OptionTarget::Table {
        if let Some(q) = get(&pairs, "query") {
            if let Err(e) = crate::fdw::query_option::check(q) {
                e.report();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parsed options, read from the catalogs at plan and execution time.

/// Reads a DefElem list into name/value pairs.
///
/// # Safety
/// `list` must be a valid List of DefElem (or null).
pub unsafe fn deflist_to_pairs(list: *mut pg_sys::List) -> Vec<(String, String)> {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        let mut out = Vec::new();
        if list.is_null() {
            return out;
        }
        let list = pgrx::PgList::<pg_sys::DefElem>::from_pg(list);
        for def in list.iter_ptr() {
            let name = crate::pg::cstr::cstr_owned((*def).defname).unwrap_or_default();
            let value = crate::pg::cstr::cstr_owned(pg_sys::defGetString(def)).unwrap_or_default();
            out.push((name, value));
        }
        out
    }
}

fn get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ScanMethod {
    Auto,
    Copy,
    Query,
}

impl ScanMethod {
    fn parse(s: &str) -> Self {
        match s {
            "copy" => Self::Copy,
            "query" => Self::Query,
            _ => Self::Auto,
        }
    }
}

/// Options of a server, with their defaults.
/// The format of COPY streams (reads through /copyto, writes through /copyfrom); see src/fdw/transport.rs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CopyFormat {
    /// Binary when every column's type is known to be the same on both sides and can go binary, else text.
    Auto,
    /// Binary whenever the types can go binary at all (reads cast each column to the local type); an error
    /// for a type that cannot.
    Binary,
    Text,
}

impl CopyFormat {
    fn parse(s: &str) -> Self {
        match s {
            "binary" => Self::Binary,
            "text" => Self::Text,
            _ => Self::Auto,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub username: Option<String>,
    pub base_url: Option<String>,
    pub extensions: Vec<String>,
    pub scan_method: ScanMethod,
    pub copy_threshold: f64,
    pub copy_format: CopyFormat,
    pub fetch_size: u64,
    pub compression_level: u32,
    /// Compressed bytes after which an upload rolls over to a new COPY request (CARTO: 2 GB max).
    pub copyfrom_max_bytes: u64,
    pub connect_timeout: u64,
    pub request_timeout: u64,
    pub max_retries: u32,
    pub max_retry_wait: u64,
    pub use_remote_estimate: bool,
    pub fdw_startup_cost: f64,
    pub fdw_tuple_cost: f64,
    pub updatable: bool,
    pub truncatable: bool,
    pub ca_file: Option<String>,
    pub insecure: bool,
}

fn num<T: std::str::FromStr>(pairs: &[(String, String)], name: &str, default: T) -> T {
    get(pairs, name).and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

fn flag(pairs: &[(String, String)], name: &str, default: bool) -> bool {
    get(pairs, name).and_then(parse_bool).unwrap_or(default)
}

impl ServerOptions {
    pub fn from_pairs(p: &[(String, String)]) -> Self {
        ServerOptions {
            username: get(p, "username").map(str::to_string),
            base_url: get(p, "base_url").map(str::to_string),
            extensions: get(p, "extensions")
                .map(|v| v.split(',').map(|e| e.trim().to_ascii_lowercase()).filter(|e| !e.is_empty()).collect())
                // Every CARTO account has PostGIS: shipped by default (when it is installed locally too).
                .unwrap_or_else(|| vec!["postgis".to_string()]),
            scan_method: get(p, "scan_method").map(ScanMethod::parse).unwrap_or(ScanMethod::Auto),
            copy_threshold: num(p, "copy_threshold", 10_000.0),
            copy_format: get(p, "copy_format").map(CopyFormat::parse).unwrap_or(CopyFormat::Auto),
            fetch_size: num(p, "fetch_size", 1000),
            compression_level: num(p, "compression_level", 2),
            copyfrom_max_bytes: num(p, "copyfrom_max_bytes", carto_client::DEFAULT_COPYFROM_MAX_BYTES),
            connect_timeout: num(p, "connect_timeout", 10),
            request_timeout: num(p, "request_timeout", 300),
            max_retries: num(p, "max_retries", 3),
            max_retry_wait: num(p, "max_retry_wait", 60),
            use_remote_estimate: flag(p, "use_remote_estimate", false),
            fdw_startup_cost: num(p, "fdw_startup_cost", 100.0),
            fdw_tuple_cost: num(p, "fdw_tuple_cost", 0.01),
            updatable: flag(p, "updatable", true),
            truncatable: flag(p, "truncatable", true),
            ca_file: get(p, "ca_file").map(str::to_string),
            insecure: flag(p, "insecure", false),
        }
    }

    pub fn has_postgis(&self) -> bool {
        self.extensions.iter().any(|e| e == "postgis")
    }
}

/// Options of a foreign table, server-level defaults already applied.
#[derive(Clone, Debug)]
pub struct TableOptions {
    /// Remote schema, if given.
    pub schema_name: Option<String>,
    /// Remote table name (defaults to the local name).
    pub table_name: String,
    /// A read-only subquery instead of a table.
    pub query: Option<String>,
    pub rowid_column: String,
    pub updatable: bool,
    pub truncatable: bool,
    pub scan_method: ScanMethod,
    pub copy_threshold: f64,
    pub copy_format: CopyFormat,
    pub fetch_size: u64,
    pub use_remote_estimate: bool,
}

impl TableOptions {
    pub fn from_pairs(p: &[(String, String)], local_name: &str, server: &ServerOptions) -> Self {
        TableOptions {
            schema_name: get(p, "schema_name").map(str::to_string),
            table_name: get(p, "table_name").unwrap_or(local_name).to_string(),
            query: get(p, "query").map(str::to_string),
            rowid_column: get(p, "rowid_column").unwrap_or("cartodb_id").to_string(),
            updatable: flag(p, "updatable", server.updatable),
            truncatable: flag(p, "truncatable", server.truncatable),
            scan_method: get(p, "scan_method").map(ScanMethod::parse).unwrap_or(server.scan_method),
            copy_threshold: num(p, "copy_threshold", server.copy_threshold),
            copy_format: get(p, "copy_format").map(CopyFormat::parse).unwrap_or(server.copy_format),
            fetch_size: num(p, "fetch_size", server.fetch_size),
            use_remote_estimate: flag(p, "use_remote_estimate", server.use_remote_estimate),
        }
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn unknown_option_hints_valid_names() {
        let e = validate(OptionTarget::Server, &pairs(&[("username", "a"), ("usernme", "x")]), true).unwrap_err();
        match e {
            FdwError::InvalidOption { message, hint } => {
                assert_eq!(message, "invalid option \"usernme\" for a server");
                assert!(hint.unwrap().contains("username, base_url"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn username_xor_base_url() {
        let e = validate(
            OptionTarget::Server,
            &pairs(&[("username", "a"), ("base_url", "http://x/user/a")]),
            true,
        );
        assert!(e.is_err());
        assert!(validate(OptionTarget::Server, &pairs(&[("username", "a")]), true).is_ok());
    }

    #[test]
    fn ranges_and_booleans() {
        assert!(validate(OptionTarget::Server, &pairs(&[("username", "a"), ("compression_level", "10")]), true).is_err());
        assert!(validate(OptionTarget::Server, &pairs(&[("username", "a"), ("compression_level", "9")]), true).is_ok());
        assert!(validate(OptionTarget::Server, &pairs(&[("compression_level", "9")]), true).is_err());
        assert!(validate(OptionTarget::Table, &pairs(&[("updatable", "maybe")]), true).is_err());
        assert!(validate(OptionTarget::Table, &pairs(&[("scan_method", "copy")]), true).is_ok());
        assert!(validate(OptionTarget::Table, &pairs(&[("scan_method", "fast")]), true).is_err());
    }

    #[test]
    fn copy_format() {
        for v in ["auto", "binary", "text"] {
            assert!(validate(OptionTarget::Table, &pairs(&[("copy_format", v)]), true).is_ok());
            assert!(validate(OptionTarget::Server, &pairs(&[("username", "a"), ("copy_format", v)]), true).is_ok());
        }
        assert!(validate(OptionTarget::Table, &pairs(&[("copy_format", "csv")]), true).is_err());
        assert!(validate(OptionTarget::Column, &pairs(&[("copy_format", "text")]), true).is_err());
        let server = ServerOptions::from_pairs(&pairs(&[("username", "a"), ("copy_format", "text")]));
        assert_eq!(server.copy_format, CopyFormat::Text);
        assert_eq!(ServerOptions::from_pairs(&pairs(&[("username", "a")])).copy_format, CopyFormat::Auto);
        let t = TableOptions::from_pairs(&pairs(&[("copy_format", "binary")]), "t", &server);
        assert_eq!(t.copy_format, CopyFormat::Binary);
        assert_eq!(TableOptions::from_pairs(&[], "t", &server).copy_format, CopyFormat::Text);
    }

    #[test]
    fn superuser_only_and_key_never_echoed() {
        assert!(matches!(
            validate(OptionTarget::Server, &pairs(&[("username", "a"), ("insecure", "true")]), false),
            Err(FdwError::InsufficientPrivilege { .. })
        ));
        let e = validate(OptionTarget::Server, &pairs(&[("base_url", "http://h/user/a?api_key=SECRET")]), true)
            .unwrap_err();
        assert!(!format!("{e:?}").contains("SECRET"));
    }

    #[test]
    fn base_url_without_credentials_or_query_string_and_never_echoed() {
        for url in [
            "http://demo:SECRET@h/user/demo",
            "http://SECRET@h/user/demo",
            "https://h/user/demo?token=SECRET",
            "https://h/user/demo#SECRET",
            "ftp://SECRET/user/demo",
            "http://SECRET host/",
        ] {
            let e = validate(OptionTarget::Server, &pairs(&[("base_url", url)]), true).unwrap_err();
            assert!(!format!("{e:?}").contains("SECRET"), "{url}: {e:?}");
        }
        assert!(validate(OptionTarget::Server, &pairs(&[("base_url", "https://team.carto.com/user/alice")]), true).is_ok());
    }

    #[test]
    fn query_excludes_table_name() {
        assert!(validate(OptionTarget::Table, &pairs(&[("query", "select 1"), ("table_name", "t")]), true).is_err());
    }

    #[test]
    fn defaults() {
        let s = ServerOptions::from_pairs(&pairs(&[("username", "a"), ("extensions", "PostGIS, h3")]));
        assert!(s.has_postgis());
        // PostGIS by default; '' turns it off.
        assert!(ServerOptions::from_pairs(&pairs(&[("username", "a")])).has_postgis());
        let off = ServerOptions::from_pairs(&pairs(&[("username", "a"), ("extensions", " ")]));
        assert!(!off.has_postgis() && off.extensions.is_empty());
        assert!(validate(OptionTarget::Server, &pairs(&[("username", "a"), ("extensions", "")]), true).is_ok());
        assert!(validate(OptionTarget::Server, &pairs(&[("username", "a"), ("extensions", "postgis,")]), true).is_err());
        assert_eq!(s.compression_level, 2);
        let t = TableOptions::from_pairs(&[], "cities", &s);
        assert_eq!(t.table_name, "cities");
        assert_eq!(t.rowid_column, "cartodb_id");
    }
}
