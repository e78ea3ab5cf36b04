//! IMPORT FOREIGN SCHEMA: one foreign table per table of the CARTO account, with exact types.
//!
//! The whole remote catalogue comes in ONE `/sql` request (tables, columns with
//! `format_type(atttypid, atttypmod)`, NOT NULL, primary keys, and what each type is), whatever the
//! number of tables. Types are kept exactly when the local database knows them: built-in types always
//! (typmods and arrays included: `numeric(10,2)`, `character varying(20)[]`), extension types
//! (geometry, geography, h3index...) when the same extension type exists locally. Anything else — a
//! remote enum, domain or composite, an extension type missing locally — is imported as `text` (or
//! `text[]`), with a NOTICE; geometry and geography then hold hex EWKB.
//!
//! IMPORT options: `import_views` (default false: also views and materialized views),
//! `import_webmercator` (default true: false skips `the_geom_webmercator`), `import_not_null`
//! (default true). Unknown options fail with a hint listing these.

use std::collections::BTreeMap;

use pgrx::prelude::*;
use pgrx::{pg_sys, PgSqlErrorCode};
use serde_json::Value;

use crate::fdw::connection::{client_for, server_access};
use crate::pg::sql_text::strip_schema;
use crate::pg::cstr::cstr_owned;
use crate::pg::sql_text::{quote_ident, quote_literal};
use crate::fdw::options::{deflist_to_pairs, parse_bool};
use crate::pg::error::{FdwError, FdwResult, OrReport};
use crate::pg::runtime::block_on;

/// The IMPORT FOREIGN SCHEMA options.
const IMPORT_OPTIONS: &[&str] = &["import_views", "import_webmercator", "import_not_null"];

/// CARTO's own tables, never imported (as CDB_UserTables leaves them out).
const CARTO_INTERNAL: &[&str] = &["cdb_tablemetadata", "cdb_analysis_catalog", "cdb_conf", "spatial_ref_sys"];

#[derive(Debug, Clone, PartialEq)]
pub struct ImportOptions {
    pub views: bool,
    pub webmercator: bool,
    pub not_null: bool,
}

/// Checks the IMPORT options; unknown names and non-Boolean values fail with a hint.
pub fn parse_import_options(pairs: &[(String, String)]) -> FdwResult<ImportOptions> {
    let mut o = ImportOptions { views: false, webmercator: true, not_null: true };
    for (name, value) in pairs {
        let flag = || {
            parse_bool(value).ok_or_else(|| FdwError::InvalidOptionValue {
                message: format!("option \"{name}\" requires a Boolean value, got \"{value}\""),
            })
        };
        match name.as_str() {
            "import_views" => o.views = flag()?,
            "import_webmercator" => o.webmercator = flag()?,
            "import_not_null" => o.not_null = flag()?,
            _ => {
                return Err(FdwError::InvalidOption {
                    message: format!("invalid option \"{name}\" for IMPORT FOREIGN SCHEMA"),
                    hint: Some(format!("Valid options in this context are: {}", IMPORT_OPTIONS.join(", "))),
                })
            }
        }
    }
    Ok(o)
}

/// Which tables LIMIT TO / EXCEPT name.
#[derive(Debug, Clone, PartialEq)]
pub enum TableFilter {
    All,
    LimitTo(Vec<String>),
    Except(Vec<String>),
}

/// The one catalogue query: a row per column (and one row of NULLs when nothing matches), each with
/// the account's schema and whether the asked schema exists.
pub fn catalog_sql(remote_schema: &str, filter: &TableFilter, opts: &ImportOptions) -> String {
    let kinds = if opts.views { "'r', 'p', 'f', 'v', 'm'" } else { "'r', 'p', 'f'" };
    let list = |names: &[String]| names.iter().map(|n| quote_literal(n)).collect::<Vec<_>>().join(", ");
    let filter_sql = match filter {
        TableFilter::All => String::new(),
        TableFilter::LimitTo(n) if n.is_empty() => " AND false".into(),
        TableFilter::LimitTo(n) => format!(" AND c.relname IN ({})", list(n)),
        TableFilter::Except(n) if n.is_empty() => String::new(),
        TableFilter::Except(n) => format!(" AND c.relname NOT IN ({})", list(n)),
    };
    let webmercator = if opts.webmercator { "" } else { " AND a.attname <> 'the_geom_webmercator'" };
    let internal = CARTO_INTERNAL.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ");
    let schema = quote_literal(remote_schema);
    format!(
        "SELECT s.cur, s.schema_exists, x.* FROM \
(SELECT current_schema()::text AS cur, EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = {schema}) AS schema_exists) s \
LEFT JOIN LATERAL (\
SELECT c.relname::text AS rel, c.relkind::text AS kind, a.attnum::int AS attnum, a.attname::text AS col, \
pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS notnull, \
(t.typcategory = 'A' AND t.typelem <> 0) AS is_array, et.typname::text AS elem_type, et.typtype::text AS elem_kind, et.typdelim::text AS delim, \
(et.oid < {first_non_builtin}) AS builtin, \
EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_type'::regclass AND d.objid = et.oid AND d.deptype = 'e') AS ext_type, \
(SELECT string_agg(pa.attname::text, ',') FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute pa ON pa.attrelid = i.indrelid AND pa.attnum = ANY (i.indkey) WHERE i.indrelid = c.oid AND i.indisprimary) AS pkey \
FROM pg_catalog.pg_class c \
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
JOIN pg_catalog.pg_type et ON et.oid = CASE WHEN t.typcategory = 'A' AND t.typelem <> 0 THEN t.typelem ELSE t.oid END \
WHERE n.nspname = {schema} AND c.relkind IN ({kinds}) \
AND c.relname NOT IN ({internal}) \
AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e') \
AND pg_catalog.has_table_privilege(c.oid, 'SELECT'){filter_sql}{webmercator}\
) x ON true ORDER BY x.rel, x.attnum",
        first_non_builtin = crate::pg::builtin::FIRST_NON_BUILTIN_OID
    )
}

/// One remote column, as the catalogue query describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteColumn {
    pub name: String,
    pub type_text: String,
    pub not_null: bool,
    pub is_array: bool,
    pub elem_type: String,
    /// pg_type.typtype of the element type: b(ase), e(num), d(omain), c(omposite), r(ange)...
    pub elem_kind: String,
    pub builtin: bool,
    pub ext_type: bool,
    /// The element type's array delimiter (`,` for most, `:` for geometry and geography).
    pub delim: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RemoteTable {
    pub name: String,
    pub kind: String,
    pub columns: Vec<RemoteColumn>,
    pub pkey: Vec<String>,
}

/// What the catalogue answer says.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    pub current_schema: String,
    pub schema_exists: bool,
    pub tables: Vec<RemoteTable>,
}

fn s(row: &serde_json::Map<String, Value>, k: &str) -> Option<String> {
    row.get(k).and_then(Value::as_str).map(str::to_string)
}

fn b(row: &serde_json::Map<String, Value>, k: &str) -> bool {
    row.get(k).and_then(Value::as_bool).unwrap_or(false)
}

pub fn parse_catalog(rows: &[serde_json::Map<String, Value>]) -> FdwResult<Catalog> {
    let first = rows.first().ok_or_else(|| FdwError::internal("CARTO's catalogue answer has no row"))?;
    let mut tables: BTreeMap<String, RemoteTable> = BTreeMap::new();
    for row in rows {
        let (Some(rel), Some(col), Some(type_text)) = (s(row, "rel"), s(row, "col"), s(row, "type")) else {
            continue;
        };
        let t = tables.entry(rel.clone()).or_insert_with(|| RemoteTable {
            name: rel.clone(),
            kind: s(row, "kind").unwrap_or_else(|| "r".into()),
            columns: Vec::new(),
            pkey: s(row, "pkey").map(|p| p.split(',').map(str::to_string).collect()).unwrap_or_default(),
        });
        t.columns.push(RemoteColumn {
            name: col,
            type_text,
            not_null: b(row, "notnull"),
            is_array: b(row, "is_array"),
            elem_type: s(row, "elem_type").unwrap_or_default(),
            elem_kind: s(row, "elem_kind").unwrap_or_default(),
            builtin: b(row, "builtin"),
            ext_type: b(row, "ext_type"),
            delim: s(row, "delim").unwrap_or_else(|| ",".into()),
        });
    }
    Ok(Catalog {
        current_schema: s(first, "cur").unwrap_or_default(),
        schema_exists: b(first, "schema_exists"),
        tables: tables.into_values().collect(),
    })
}


/// How a remote column's type is spelled locally; `None` when the local database lacks the type.
///
/// The type text comes from CARTO's answer and is never pasted into local DDL: it is parsed here as a
/// type name (PostgreSQL's parseTypeString, which accepts exactly one type name and nothing after it)
/// and the local catalogue's own spelling of the type found is used.
pub trait LocalTypes {
    /// The local spelling of an extension type (schema-qualified), or None.
    fn resolve(&self, type_text: &str) -> Option<String>;
    /// The local spelling of a built-in type (unqualified, as format_type writes it), or None when the
    /// text is not the name of a built-in type.
    fn builtin(&self, type_text: &str) -> Option<String>;
}

/// Local type decisions of one import, with the notices to give.
#[derive(Debug, Default)]
pub struct TypeReport {
    pub postgis_missing: Vec<String>,
    pub as_text: Vec<String>,
}

/// The local type of a remote column.
pub fn local_type(table: &str, c: &RemoteColumn, types: &dyn LocalTypes, report: &mut TypeReport) -> String {
    // An array of a type whose delimiter is not ',' (geometry, geography use ':') would be split
    // wrongly as text[]: it becomes one text value holding the array literal.
    let text = if c.is_array && c.delim == "," { "text[]" } else { "text" };
    if c.builtin {
        if let Some(local) = types.builtin(&c.type_text) {
            return local;
        }
        report.as_text.push(format!(
            "column {} of table {}: CARTO described its type as {}, which is not the name of a built-in type here; imported as {text}",
            quote_ident(&c.name),
            quote_ident(table),
            quote_literal(&c.type_text)
        ));
        return text.to_string();
    }
    if c.ext_type {
        if let Some(local) = types.resolve(&strip_schema(&c.type_text)) {
            return local;
        }
        if matches!(c.elem_type.as_str(), "geometry" | "geography") {
            report.postgis_missing.push(format!("{}.{}", quote_ident(table), quote_ident(&c.name)));
        } else {
            report.as_text.push(format!(
                "column {} of table {}: type {} is not installed locally, imported as {text}",
                quote_ident(&c.name),
                quote_ident(table),
                c.type_text
            ));
        }
        return text.to_string();
    }
    let what = match c.elem_kind.as_str() {
        "e" => "an enum",
        "d" => "a domain",
        "c" => "a composite type",
        "r" | "m" => "a range type",
        _ => "a user-defined type",
    };
    report.as_text.push(format!(
        "column {} of table {}: type {} is {what} of the CARTO account, imported as {text}",
        quote_ident(&c.name),
        quote_ident(table),
        c.type_text
    ));
    text.to_string()
}

/// What every CREATE FOREIGN TABLE of one IMPORT FOREIGN SCHEMA shares.
pub struct ImportContext<'a> {
    pub server: &'a str,
    pub remote_schema: &'a str,
    pub catalog: &'a Catalog,
    pub opts: &'a ImportOptions,
    pub types: &'a dyn LocalTypes,
}

/// The CREATE FOREIGN TABLE statement of one remote table. `notices` collects what the user should
/// know about it.
pub fn create_statement(t: &RemoteTable, cx: &ImportContext, report: &mut TypeReport, notices: &mut Vec<String>) -> String {
    let ImportContext { server, remote_schema, catalog, opts, types } = *cx;
    let mut cols = Vec::with_capacity(t.columns.len());
    for c in &t.columns {
        let ty = local_type(&t.name, c, types, report);
        let nn = if opts.not_null && c.not_null { " NOT NULL" } else { "" };
        cols.push(format!("  {} {ty}{nn}", quote_ident(&c.name)));
    }
    let mut options = vec![format!("table_name {}", quote_literal(&t.name))];
    if remote_schema != catalog.current_schema {
        options.push(format!("schema_name {}", quote_literal(remote_schema)));
    }
    let has = |n: &str| t.columns.iter().any(|c| c.name == n);
    if !has("cartodb_id") {
        if t.pkey.len() == 1 && has(&t.pkey[0]) {
            options.push(format!("rowid_column {}", quote_literal(&t.pkey[0])));
        } else {
            notices.push(format!(
                "{} {} has no cartodb_id column nor a one-column primary key: it is read with COPY (scan_method 'copy'); set the option rowid_column to update or delete through it",
                if matches!(t.kind.as_str(), "v" | "m") { "view" } else { "table" },
                quote_ident(&t.name)
            ));
            options.push("scan_method 'copy'".to_string());
        }
    }
    format!(
        "CREATE FOREIGN TABLE {} (\n{}\n) SERVER {} OPTIONS ({})",
        quote_ident(&t.name),
        cols.join(",\n"),
        quote_ident(server),
        options.join(", ")
    )
}

/// Types resolved in the local database's catalogs.
struct Backend;

impl Backend {
    /// Parses `type_text` as one type name (anything else, e.g. a DEFAULT or a second statement, is a
    /// syntax error there) and writes the type found as the local catalogue spells it.
    fn parse(type_text: &str, builtin: bool) -> Option<String> {
        let c = crate::pg::encoding::server_cstring(type_text)?;
        // A typmod the local type rejects, or text that is not a type name, raises an ERROR: take it
        // as "unknown locally".
        // SAFETY: IMPORT runs on the backend thread in a transaction; `c` is NUL-terminated and outlives the call,
        // and an ERROR is caught by the PgTryBuilder.
        PgTryBuilder::new(|| unsafe {
            let mut oid = pg_sys::InvalidOid;
            let mut typmod: i32 = -1;
            crate::pg::compat::parse_type_string(c.as_ptr(), &mut oid, &mut typmod);
            if oid == pg_sys::InvalidOid {
                return None;
            }
            let mut flags = pg_sys::FORMAT_TYPE_TYPEMOD_GIVEN;
            if builtin {
                if !crate::pg::builtin::is_builtin(oid) {
                    return None;
                }
            } else {
                flags |= pg_sys::FORMAT_TYPE_FORCE_QUALIFY;
            }
            cstr_owned(pg_sys::format_type_extended(oid, typmod, flags as u16))
        })
        .catch_others(|_| None)
        .execute()
    }
}

impl LocalTypes for Backend {
    fn resolve(&self, type_text: &str) -> Option<String> {
        Backend::parse(type_text, false)
    }

    fn builtin(&self, type_text: &str) -> Option<String> {
        Backend::parse(type_text, true)
    }
}

unsafe fn table_filter(stmt: *mut pg_sys::ImportForeignSchemaStmt) -> TableFilter {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let names = || {
            let list = pgrx::PgList::<pg_sys::RangeVar>::from_pg((*stmt).table_list);
            list.iter_ptr().filter_map(|rv| cstr_owned((*rv).relname)).collect::<Vec<_>>()
        };
        match (*stmt).list_type {
            pg_sys::ImportForeignSchemaType::FDW_IMPORT_SCHEMA_LIMIT_TO => TableFilter::LimitTo(names()),
            pg_sys::ImportForeignSchemaType::FDW_IMPORT_SCHEMA_EXCEPT => TableFilter::Except(names()),
            _ => TableFilter::All,
        }
    }
}

unsafe fn import(stmt: *mut pg_sys::ImportForeignSchemaStmt, server_oid: pg_sys::Oid) -> FdwResult<Vec<String>> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let opts = parse_import_options(&deflist_to_pairs((*stmt).options))?;
        let remote_schema = cstr_owned((*stmt).remote_schema).unwrap_or_default();
        let filter = table_filter(stmt);
        let access = server_access(server_oid, pg_sys::GetUserId())?;
        let client = client_for(&access)?;
        let sql = catalog_sql(&remote_schema, &filter, &opts);
        let resp = block_on(client.query_readonly(&sql))?.map_err(|e| {
            FdwError::remote(e, format!("reading the table catalogue of schema \"{remote_schema}\" from CARTO"))
        })?;
        let catalog = parse_catalog(&resp.rows)?;
        if !catalog.schema_exists {
            return Err(FdwError::Custom {
                code: PgSqlErrorCode::ERRCODE_FDW_SCHEMA_NOT_FOUND,
                message: format!("schema \"{remote_schema}\" does not exist on CARTO (server \"{}\")", access.server_name),
                detail: None,
                hint: Some(format!(
                    "This account's tables are in schema \"{}\" (\"public\" for single users, the username for organisation members).",
                    catalog.current_schema
                )),
            });
        }
        if let TableFilter::LimitTo(names) = &filter {
            for n in names {
                if !catalog.tables.iter().any(|t| &t.name == n) {
                    pgrx::notice!(
                        "{}",
                        crate::pg::error::for_database(format!(
                            "table {} named in LIMIT TO was not found in schema \"{remote_schema}\" on CARTO (or it is a view: OPTIONS (import_views 'true'))",
                            quote_ident(n)
                        ))
                    );
                }
            }
        }
        let mut report = TypeReport::default();
        let mut notices = Vec::new();
        let cx = ImportContext {
            server: &access.server_name,
            remote_schema: &remote_schema,
            catalog: &catalog,
            opts: &opts,
            types: &Backend,
        };
        let stmts: Vec<String> = catalog.tables.iter().map(|t| create_statement(t, &cx, &mut report, &mut notices)).collect();
        if !report.postgis_missing.is_empty() {
            pgrx::notice!(
                "{}",
                crate::pg::error::for_database(format!(
                    "PostGIS is not installed in this database: {} geometry/geography column(s) imported as text holding hex EWKB: {}",
                    report.postgis_missing.len(),
                    report.postgis_missing.join(", ")
                ))
            );
        }
        for n in report.as_text.iter().chain(notices.iter()) {
            pgrx::notice!("{}", crate::pg::error::for_database(n.clone()));
        }
        Ok(stmts)
    }
}

/// The ImportForeignSchema callback.
///
/// # Safety
/// Only PostgreSQL calls this (a slot of the FdwRoutine), on the backend thread, with the
/// arguments its foreign-data wrapper API documents for this callback.
#[pg_guard]
pub unsafe extern "C-unwind" fn import_foreign_schema(
    stmt: *mut pg_sys::ImportForeignSchemaStmt,
    server_oid: pg_sys::Oid,
) -> *mut pg_sys::List {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        let stmts = import(stmt, server_oid).or_report();
        let mut list: *mut pg_sys::List = std::ptr::null_mut();
        for s in stmts {
            // Names come from CARTO (UTF-8): PostgreSQL parses the statement in the database encoding
            // (its ERROR for a character that encoding lacks). A NUL byte cannot be part of an identifier.
            let Some(c) = crate::pg::encoding::server_cstring(&s) else { continue };
            let p = pg_sys::pstrdup(c.as_ptr());
            list = pg_sys::lappend(list, p.cast());
        }
        list
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    /// Built-in type names of the tests, as the local catalogue would spell them.
    fn builtin_of(t: &str) -> Option<String> {
        ["integer", "text", "numeric(10,2)", "text[]"].contains(&t).then(|| t.to_string())
    }
    struct NoPostgis;
    impl LocalTypes for NoPostgis {
        fn resolve(&self, _: &str) -> Option<String> {
            None
        }
        fn builtin(&self, t: &str) -> Option<String> {
            builtin_of(t)
        }
    }
    struct WithPostgis;
    impl LocalTypes for WithPostgis {
        fn resolve(&self, t: &str) -> Option<String> {
            t.starts_with("geometry").then(|| format!("public.{t}"))
        }
        fn builtin(&self, t: &str) -> Option<String> {
            builtin_of(t)
        }
    }

    #[test]
    fn hostile_type_text_is_never_pasted() {
        let evil = "integer DEFAULT 42) SERVER s; CREATE FOREIGN TABLE injected (z text) SERVER s; --";
        let t = RemoteTable {
            name: "t".into(),
            kind: "r".into(),
            columns: vec![col("cartodb_id", "integer", true, false, "b", "int4", false), col("x", evil, true, false, "b", "int4", false)],
            pkey: vec![],
        };
        let cat = Catalog { current_schema: "public".into(), schema_exists: true, tables: vec![] };
        let o = ImportOptions { views: false, webmercator: true, not_null: true };
        let mut r = TypeReport::default();
        let cx = ImportContext { server: "srv", remote_schema: "public", catalog: &cat, opts: &o, types: &NoPostgis };
        let s = create_statement(&t, &cx, &mut r, &mut Vec::new());
        assert!(!s.contains("DEFAULT") && !s.contains("injected"), "{s}");
        assert!(s.contains("\"x\" text"), "{s}");
        assert_eq!(r.as_text.len(), 1);
    }

    fn col(name: &str, ty: &str, builtin: bool, ext: bool, kind: &str, elem: &str, array: bool) -> RemoteColumn {
        RemoteColumn {
            name: name.into(),
            type_text: ty.into(),
            not_null: false,
            is_array: array,
            elem_type: elem.into(),
            elem_kind: kind.into(),
            builtin,
            ext_type: ext,
            delim: ",".into(),
        }
    }

    #[test]
    fn options() {
        let p = |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        assert_eq!(
            parse_import_options(&p(&[("import_views", "true"), ("import_webmercator", "off")])).unwrap(),
            ImportOptions { views: true, webmercator: false, not_null: true }
        );
        assert!(matches!(parse_import_options(&p(&[("views", "true")])), Err(FdwError::InvalidOption { .. })));
        assert!(parse_import_options(&p(&[("import_views", "maybe")])).is_err());
    }

    #[test]
    fn statements() {
        let t = RemoteTable {
            name: "it's \"q\"".into(),
            kind: "r".into(),
            columns: vec![
                RemoteColumn { not_null: true, ..col("cartodb_id", "integer", true, false, "b", "int4", false) },
                col("the_geom", "geometry(Point,4326)", false, true, "b", "geometry", false),
                col("mood", "mood[]", false, false, "e", "mood", true),
            ],
            pkey: vec!["cartodb_id".into()],
        };
        let cat = Catalog { current_schema: "public".into(), schema_exists: true, tables: vec![] };
        let o = ImportOptions { views: false, webmercator: true, not_null: true };
        let mut r = TypeReport::default();
        let mut n = Vec::new();
        let cx = ImportContext { server: "srv", remote_schema: "public", catalog: &cat, opts: &o, types: &NoPostgis };
        let s = create_statement(&t, &cx, &mut r, &mut n);
        assert_eq!(
            s,
            "CREATE FOREIGN TABLE \"it's \"\"q\"\"\" (\n  \"cartodb_id\" integer NOT NULL,\n  \"the_geom\" text,\n  \"mood\" text[]\n) SERVER \"srv\" OPTIONS (table_name 'it''s \"q\"')"
        );
        assert_eq!(r.postgis_missing.len(), 1);
        assert_eq!(r.as_text.len(), 1);
        let mut r = TypeReport::default();
        let cx = ImportContext { server: "srv", remote_schema: "alice", catalog: &cat, opts: &o, types: &WithPostgis };
        let s = create_statement(&t, &cx, &mut r, &mut n);
        assert!(s.contains("\"the_geom\" public.geometry(Point,4326)"));
        assert!(s.contains("schema_name 'alice'"));
        assert!(r.postgis_missing.is_empty());
    }

    #[test]
    fn strips_schema() {
        assert_eq!(strip_schema("public.geometry(Point,4326)"), "geometry(Point,4326)");
        assert_eq!(strip_schema("h3index"), "h3index");
        assert_eq!(strip_schema("x.h3index[]"), "h3index[]");
    }

    #[test]
    fn catalog_sql_quotes() {
        let q = catalog_sql("we'ird", &TableFilter::LimitTo(vec!["a'b".into()]), &ImportOptions { views: true, webmercator: false, not_null: true });
        assert!(q.contains("nspname = 'we''ird'"));
        assert!(q.contains("c.relname IN ('a''b')"));
        assert!(q.contains("'v', 'm'"));
        assert!(q.contains("the_geom_webmercator"));
    }
}
