//! CARTO table management: `carto.cartodbfy`, `carto.create_table` (two forms), `carto.drop_table`.


use pgrx::prelude::*;
use pgrx::{pg_sys, PgSqlErrorCode};

use crate::pg::sql_text::{quote_ident, quote_literal};
use crate::pg::sql_text::strip_schema;
use crate::functions::{account_schema, regclass_literal, relay_warnings, remote, required, Remote};
use crate::pg::encoding::DbText;
use crate::pg::error::{FdwError, FdwResult, OrReport};
use crate::pg::runtime::block_on;

/// The `CDB_CartodbfyTable` call that fits the account: `CDB_CartodbfyTable(reloid)` for a single user
/// (schema public), `CDB_CartodbfyTable(destschema, reloid)` for an organisation member.
fn cartodbfy_call(account: &str, schema: &str, table: &str) -> String {
    let reg = regclass_literal(schema, table);
    if account == "public" {
        format!("cartodb.CDB_CartodbfyTable({reg})")
    } else {
        format!("cartodb.CDB_CartodbfyTable({}, {reg})", quote_literal(account))
    }
}

/// The statements that cartodbfy a table and report its OID before and after (a changed OID means
/// CARTO rewrote the table).
fn cartodbfy_sql(account: &str, schema: &str, table: &str) -> String {
    format!(
        "SELECT {reg}::oid::text AS old_oid; SELECT t::text AS table_name, t::oid::text AS new_oid FROM {call} AS t",
        reg = regclass_literal(schema, table),
        call = cartodbfy_call(account, schema, table)
    )
}

/// Reads the answer of [`cartodbfy_sql`] (possibly after other statements), tells whether CARTO
/// rewrote the table, and returns the resulting table name.
fn cartodbfy_result(resp: &carto_client::QueryResponse, table: &str) -> FdwResult<String> {
    let get = |k: &str| {
        resp.rows.iter().rev().find_map(|r| r.get(k).and_then(|v| v.as_str()).map(str::to_string))
    };
    let name = get("table_name").ok_or_else(|| FdwError::internal("CDB_CartodbfyTable returned no table"))?;
    if let (Some(old), Some(new)) = (get("old_oid"), get("new_oid")) {
        if old != new {
            pgrx::notice!(
                "{}",
                crate::pg::error::for_database(format!(
                    "CARTO rewrote table {} to cartodbfy it (it lacked a cartodb_id primary key with a sequence, or the_geom / the_geom_webmercator): views on it in CARTO must be recreated",
                    quote_ident(table)
                ))
            );
        }
    }
    Ok(name)
}

fn do_cartodbfy(r: &Remote, server: &str, table: &str, schema: Option<&str>) -> FdwResult<String> {
    let account = account_schema(r)?;
    let schema = schema.unwrap_or(&account);
    let sql = cartodbfy_sql(&account, schema, table);
    let resp = block_on(r.client.query(&sql))?.map_err(|e| {
        FdwError::remote(e, format!("cartodbfying table \"{table}\" on server \"{server}\""))
    })?;
    relay_warnings(&resp);
    cartodbfy_result(&resp, table)
}

/// Cartodbfies a CARTO table (`CDB_CartodbfyTable`, with the signature the account needs: organisation
/// members pass their schema, found with `SELECT current_schema()` once per session) and returns the
/// resulting table name. `schema_name` defaults to the account's schema. Gives a NOTICE when CARTO had
/// to rewrite the table. Not STRICT (schema_name may be NULL); a NULL server or table_name is an error.
/// VOLATILE, PARALLEL UNSAFE.
#[pg_extern(volatile, parallel_unsafe)]
fn cartodbfy(server: Option<DbText>, table_name: Option<DbText>, schema_name: default!(Option<DbText>, "NULL")) -> DbText {
    // Text arguments are read in the database encoding and converted to UTF-8 (crate::pg::encoding);
    // the name returned is converted back.
    let schema_name = schema_name.as_deref();
    DbText((|| {
        let server = required(server.as_deref(), "server")?;
        let table = required(table_name.as_deref(), "table_name")?;
        let r = remote(server)?;
        do_cartodbfy(&r, server, table, schema_name)
    })()
    .or_report())
}

/// Checks, before anything is sent, that a local foreign table `local_schema.table` can be created.
fn check_local_target(local_schema: &str, table: &str) -> FdwResult<()> {
    let c = crate::pg::encoding::server_cstring(local_schema).ok_or_else(|| crate::functions::bad_argument("a schema name cannot contain a NUL byte", None))?;
    // missing_ok = false: PostgreSQL's own "schema \"x\" does not exist".
    // SAFETY: SQL-callable function: backend thread in a transaction; `c` is NUL-terminated and outlives the call (a
    // missing schema raises).
    let nsp = unsafe { pg_sys::get_namespace_oid(c.as_ptr(), false) };
    let t = crate::pg::encoding::server_cstring(table).ok_or_else(|| crate::functions::bad_argument("a table name cannot contain a NUL byte", None))?;
    // SAFETY: as above: `t` is NUL-terminated and outlives the call, `nsp` a valid namespace.
    if unsafe { pg_sys::get_relname_relid(t.as_ptr(), nsp) } != pg_sys::InvalidOid {
        return Err(FdwError::Custom {
            code: PgSqlErrorCode::ERRCODE_DUPLICATE_TABLE,
            message: format!("relation {}.{} already exists locally", quote_ident(local_schema), quote_ident(table)),
            detail: None,
            hint: Some("Nothing was created on CARTO. Pass another local_schema, or drop the local table first.".into()),
        });
    }
    Ok(())
}

/// Creates the remote table with CARTO's three columns up front (so cartodbfy need not rewrite it),
/// cartodbfies it in the same request (one transaction on CARTO: nothing is left behind on failure),
/// and optionally imports it as a foreign table into `local_schema`.
fn do_create_table(
    server: &str,
    table: &str,
    columns: &str,
    cartodbfy: bool,
    local_schema: Option<&str>,
) -> FdwResult<String> {
    if table.is_empty() {
        return Err(crate::functions::bad_argument("table_name must not be empty", None));
    }
    if let Some(ls) = local_schema {
        check_local_target(ls, table)?;
    }
    let r = remote(server)?;
    let account = account_schema(&r)?;
    let extra = columns.trim();
    let mut sql = format!(
        "CREATE TABLE {} (cartodb_id bigserial PRIMARY KEY, the_geom geometry(Geometry,4326), the_geom_webmercator geometry(Geometry,3857){}{})",
        quote_ident(table),
        if extra.is_empty() { "" } else { ", " },
        extra
    );
    if cartodbfy {
        sql.push_str("; ");
        sql.push_str(&cartodbfy_sql(&account, &account, table));
    }
    let resp = block_on(r.client.query(&sql))?.map_err(|e| {
        FdwError::remote(e, format!("creating table \"{table}\" on server \"{server}\""))
    })?;
    relay_warnings(&resp);
    let name = if cartodbfy { cartodbfy_result(&resp, table)? } else { table.to_string() };
    if let Some(ls) = local_schema {
        let import = format!(
            "IMPORT FOREIGN SCHEMA {} LIMIT TO ({}) FROM SERVER {} INTO {}",
            quote_ident(&account),
            quote_ident(table),
            quote_ident(server),
            quote_ident(ls)
        );
        crate::pg::local_sql::run(&import).map_err(|e| FdwError::internal(format!("importing the new table: {e}")))?;
    }
    Ok(name)
}

/// Creates a table on CARTO: `cartodb_id bigserial PRIMARY KEY`, `the_geom geometry(Geometry,4326)`,
/// `the_geom_webmercator geometry(Geometry,3857)`, then `columns` (SQL column definitions, e.g.
/// `'name text NOT NULL, pop integer'`); cartodbfies it (default) and, with `local_schema`, creates the
/// matching foreign table there. Returns the table name. Not STRICT: a NULL server, table_name or
/// columns is an error; NULL cartodbfy means true. VOLATILE, PARALLEL UNSAFE.
#[pg_extern(volatile, parallel_unsafe)]
fn create_table(
    server: Option<DbText>,
    table_name: Option<DbText>,
    columns: Option<DbText>,
    cartodbfy: default!(Option<bool>, true),
    local_schema: default!(Option<DbText>, "NULL"),
) -> DbText {
    DbText((|| {
        let server = required(server.as_deref(), "server")?;
        let table = required(table_name.as_deref(), "table_name")?;
        let columns = required(columns.as_deref(), "columns")?;
        do_create_table(server, table, columns, cartodbfy.unwrap_or(true), local_schema.as_deref())
    })()
    .or_report())
}

/// The column definitions of a local table, for CARTO: every column but cartodb_id, the_geom and
/// the_geom_webmercator (create_table adds those), with its type (typmod kept, extension types
/// unqualified) and NOT NULL.
fn columns_of(relid: pg_sys::Oid) -> FdwResult<String> {
    let rows: Vec<(String, String, bool)> = Spi::connect(|client| {
        let mut out = Vec::new();
        let tup = client.select(
            "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull \
               FROM pg_catalog.pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            None,
            &[relid.into()],
        )?;
        for row in tup {
            let name: Option<String> = row.get::<DbText>(1)?.map(DbText::into_string);
            let ty: Option<String> = row.get::<DbText>(2)?.map(DbText::into_string);
            let nn: Option<bool> = row.get(3)?;
            if let (Some(n), Some(t)) = (name, ty) {
                out.push((n, t, nn.unwrap_or(false)));
            }
        }
        Ok::<_, pgrx::spi::Error>(out)
    })
    .map_err(|e| FdwError::internal(format!("reading the local table's columns: {e}")))?;
    if rows.is_empty() {
        return Err(crate::functions::bad_argument("the local table has no columns", None));
    }
    Ok(rows
        .into_iter()
        .filter(|(n, _, _)| !matches!(n.as_str(), "cartodb_id" | "the_geom" | "the_geom_webmercator"))
        .map(|(n, t, nn)| format!("{} {}{}", quote_ident(&n), strip_schema(&t), if nn { " NOT NULL" } else { "" }))
        .collect::<Vec<_>>()
        .join(", "))
}

/// The regclass form's implementation (called by the SQL function `carto.create_table(server,
/// table_name, "like" regclass, ...)`).
#[pg_extern(volatile, parallel_unsafe)]
fn _create_table_like(
    server: Option<DbText>,
    table_name: Option<DbText>,
    like: Option<pg_sys::Oid>,
    cartodbfy: Option<bool>,
    local_schema: Option<DbText>,
) -> DbText {
    DbText((|| {
        let server = required(server.as_deref(), "server")?;
        let table = required(table_name.as_deref(), "table_name")?;
        let relid = required(like, "like")?;
        let columns = columns_of(relid)?;
        do_create_table(server, table, &columns, cartodbfy.unwrap_or(true), local_schema.as_deref())
    })()
    .or_report())
}

/// Drops a table on CARTO (`DROP TABLE`, or `DROP TABLE IF EXISTS` with if_exists). Local foreign
/// tables over it are left alone. Not STRICT: a NULL server or table_name is an error. VOLATILE,
/// PARALLEL UNSAFE.
#[pg_extern(volatile, parallel_unsafe)]
fn drop_table(server: Option<DbText>, table_name: Option<DbText>, if_exists: default!(Option<bool>, false)) {
    (|| {
        let server = required(server.as_deref(), "server")?;
        let table = required(table_name.as_deref(), "table_name")?;
        let sql = format!("DROP TABLE {}{}", if if_exists.unwrap_or(false) { "IF EXISTS " } else { "" }, quote_ident(table));
        crate::functions::query::exec_sql(server, &sql, &format!("dropping table \"{table}\""))?;
        Ok::<_, FdwError>(())
    })()
    .or_report()
}

extension_sql!(
    r#"
CREATE FUNCTION carto.create_table(server text, table_name text, "like" regclass, cartodbfy boolean DEFAULT true,
                                   local_schema text DEFAULT NULL) RETURNS text
  LANGUAGE sql VOLATILE PARALLEL UNSAFE
  AS $$ SELECT carto._create_table_like(server, table_name, "like"::oid, cartodbfy, local_schema) $$;
COMMENT ON FUNCTION carto.create_table(text, text, regclass, boolean, text) IS
  'Create a CARTO table with the columns of a local table (plus cartodb_id, the_geom, the_geom_webmercator), cartodbfied';
COMMENT ON FUNCTION carto.create_table(text, text, text, boolean, text) IS
  'Create a CARTO table (cartodb_id, the_geom, the_geom_webmercator and the given columns), cartodbfied without a rewrite';
COMMENT ON FUNCTION carto.cartodbfy(text, text, text) IS 'CDB_CartodbfyTable on CARTO, with the signature the account needs';
COMMENT ON FUNCTION carto.drop_table(text, text, boolean) IS 'DROP TABLE on CARTO';
REVOKE EXECUTE ON FUNCTION carto.cartodbfy(text, text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION carto.create_table(text, text, text, boolean, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION carto.create_table(text, text, regclass, boolean, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION carto._create_table_like(text, text, oid, boolean, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION carto.drop_table(text, text, boolean) FROM PUBLIC;
"#,
    name = "carto_tables_sql",
    requires = [cartodbfy, create_table, _create_table_like, drop_table]
);

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn cartodbfy_signature_fits_the_account() {
        assert_eq!(cartodbfy_call("public", "public", "t"), "cartodb.CDB_CartodbfyTable('\"public\".\"t\"'::regclass)");
        assert_eq!(
            cartodbfy_call("alice", "alice", "it's"),
            "cartodb.CDB_CartodbfyTable('alice', '\"alice\".\"it''s\"'::regclass)"
        );
        let q = cartodbfy_sql("public", "public", "t");
        assert!(q.starts_with("SELECT '\"public\".\"t\"'::regclass::oid::text AS old_oid; SELECT t::text AS table_name"));
    }
}
