//! What CARTO's catalogue says of a remote table: how many rows it holds (planning) and its column types
//! (COPY binary, transport.rs), read together in one `/sql` request and kept per backend, across
//! transactions, for [`MAX_AGE`].
//!
//! A table CARTO never analyzed (`reltuples` -1: just made by CREATE TABLE AS, carto.exec, a push) has no
//! row count: its size is then CARTO's own planner's estimate (`EXPLAIN`, made from the table's size on
//! disk), one more request, never a guess of 1,000 rows that would page a large table through `/sql`.
//!
//! An entry is dropped when it can be wrong: after [`MAX_AGE`]; when a foreign server, a user mapping or a
//! foreign table that used it changes (crate::pg::inval); when CARTO refuses a statement built from it
//! ([`forget`]); when this backend runs SQL on CARTO through carto.exec / carto.query ([`forget_all`]).
//! Reads never depend on the types being current (a binary read casts every column on CARTO's side), but an
//! upload in COPY binary sends the bytes of the local type with no cast: writes ask for an entry read in
//! their own transaction ([`Freshness::ThisTransaction`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use carto_client::Client;
use pgrx::pg_sys;

use crate::fdw::table::TableDef;
use crate::pg::error::FdwResult;
use crate::pg::inval::{foreign_table_hash, CatalogChange};
use crate::pg::runtime::block_on;
use crate::pg::sql_text::{quote_literal, strip_schema};

/// How long an entry is trusted.
pub const MAX_AGE: Duration = Duration::from_secs(300);

/// CARTO's column types of one table: remote column name → type name (no typmod, no schema).
pub type RemoteTypes = HashMap<String, String>;

/// What the catalogue said of one remote table.
#[derive(Clone, Debug, Default)]
pub struct RemoteTable {
    /// The rows CARTO expects the table to hold; None when the catalogue could not be read.
    pub rows: Option<f64>,
    /// The column types; None when the catalogue could not be read.
    pub types: Option<RemoteTypes>,
}

/// How recent an entry must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Any entry younger than [`MAX_AGE`].
    Recent,
    /// An entry read in the current local transaction.
    ThisTransaction,
}

struct Entry {
    at: Instant,
    xact: u32,
    table: RemoteTable,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<String, Entry>,
    /// The foreign tables that used an entry: their entry's key, and the hash a change of their
    /// pg_foreign_table entry is announced with (computed here: no catalog may be read in the invalidation
    /// callback).
    users: HashMap<u32, (u32, String)>,
}

impl Cache {
    fn drop_where(&mut self, pred: impl Fn(u32, u32) -> bool) {
        let keys: Vec<String> =
            self.users.iter().filter(|(relid, (hash, _))| pred(**relid, *hash)).map(|(_, (_, k))| k.clone()).collect();
        for k in keys {
            self.entries.remove(&k);
            self.users.retain(|_, (_, key)| *key != k);
        }
    }
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// The entry's key: the CARTO account (base_url or username) and the remote relation.
pub fn key(table: &TableDef) -> String {
    let account = table.access.options.base_url.as_deref().or(table.access.options.username.as_deref()).unwrap_or("");
    format!("{account}|{}", table.from_clause())
}

/// What CARTO's catalogue says of `table` (a cached answer when fresh enough). A `query` table has no
/// catalogue entry: its answer is empty and nothing is asked.
pub fn remote_table(table: &TableDef, client: &Client, freshness: Freshness) -> FdwResult<RemoteTable> {
    if table.options.query.is_some() {
        return Ok(RemoteTable::default());
    }
    crate::pg::inval::on_foreign_catalog_change(catalog_changed);
    let key = key(table);
    let xact = crate::pg::compat::local_xact_id();
    let hash = foreign_table_hash(table.relid);
    let hit = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.users.insert(u32::from(table.relid), (hash, key.clone()));
        c.entries
            .get(&key)
            .filter(|e| e.at.elapsed() < MAX_AGE && (freshness == Freshness::Recent || e.xact == xact))
            .map(|e| e.table.clone())
    });
    if let Some(hit) = hit {
        return Ok(hit);
    }
    let found = look_up(table, client)?;
    CACHE.with(|c| c.borrow_mut().entries.insert(key, Entry { at: Instant::now(), xact, table: found.clone() }));
    Ok(found)
}

/// Drops what is known of the table of [`key`] `key` (CARTO refused a statement built from it).
pub fn forget_key(key: &str) {
    CACHE.with(|c| c.borrow_mut().entries.remove(key));
}

/// Drops everything (SQL run on CARTO may have changed any table).
pub fn forget_all() {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.entries.clear();
        c.users.clear();
    });
}

/// crate::pg::inval's callback: a server or user mapping change drops everything; a foreign table's change
/// drops the entry it used.
fn catalog_changed(change: CatalogChange) {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        match change {
            CatalogChange::ServerOrMapping | CatalogChange::ForeignTable(0) => {
                c.entries.clear();
                c.users.clear();
            }
            CatalogChange::Relation(relid) if relid == pg_sys::InvalidOid => {
                c.entries.clear();
                c.users.clear();
            }
            CatalogChange::ForeignTable(hash) => c.drop_where(|_, h| h == hash),
            CatalogChange::Relation(relid) => c.drop_where(|r, _| r == u32::from(relid)),
        }
    });
}

/// One request for the size and the column types; a second (EXPLAIN) when CARTO has no row count. A
/// failure only costs what it would have told: the planner's default size, COPY text.
fn look_up(table: &TableDef, client: &Client) -> FdwResult<RemoteTable> {
    let sql = format!(
        "SELECT c.reltuples::float8 AS n, c.relpages::float8 AS p, \
         (SELECT pg_catalog.json_object_agg(a.attname, pg_catalog.format_type(a.atttypid, NULL)) \
            FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)::text AS t \
         FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass({})",
        quote_literal(&table.from_clause())
    );
    let Ok(resp) = block_on(client.query_readonly(&sql))? else { return Ok(RemoteTable::default()) };
    let Some(row) = resp.rows.first() else { return Ok(RemoteTable::default()) };
    let types = row.get("t").and_then(|v| v.as_str()).and_then(parse_types);
    let reltuples = row.get("n").and_then(|v| v.as_f64());
    let relpages = row.get("p").and_then(|v| v.as_f64()).unwrap_or(0.0);
    let rows = match reltuples {
        // Analyzed (or vacuumed) with rows: CARTO's count.
        Some(n) if n > 0.0 => Some(n),
        // Never analyzed (-1), or 0 (empty when last vacuumed, or never analyzed before PostgreSQL 14):
        // CARTO's planner estimates from the table's current size on disk.
        _ => planner_rows(table, client)?.or((relpages > 0.0).then_some(relpages * 50.0)),
    };
    Ok(RemoteTable { rows, types })
}

/// CARTO's planner's row estimate for the whole table.
fn planner_rows(table: &TableDef, client: &Client) -> FdwResult<Option<f64>> {
    let sql = format!("EXPLAIN (FORMAT JSON) SELECT * FROM {}", table.from_clause());
    Ok(match block_on(client.query_readonly(&sql))? {
        Ok(resp) => explain_plan_rows(&resp),
        Err(_) => None,
    })
}

/// CARTO's row estimate from the answer to `EXPLAIN (FORMAT JSON) …` through `/sql` (the plan arrives as a
/// JSON value or as its text, depending on the server).
pub(crate) fn explain_plan_rows(resp: &carto_client::QueryResponse) -> Option<f64> {
    resp.rows
        .first()
        .and_then(|r| r.values().next().cloned())
        .and_then(|v| match v {
            serde_json::Value::String(s) => serde_json::from_str::<serde_json::Value>(&s).ok(),
            other => Some(other),
        })
        .and_then(|v| v.get(0)?.get("Plan")?.get("Plan Rows")?.as_f64())
}

/// The `t` column: a JSON object of column name → `format_type` (schema stripped: PostGIS's types print
/// qualified when its schema is not on CARTO's search_path).
fn parse_types(json: &str) -> Option<RemoteTypes> {
    let map: HashMap<String, String> = serde_json::from_str(json).ok()?;
    Some(map.into_iter().map(|(n, t)| (n, strip_schema(&t))).collect())
}

#[cfg(test)]
mod tests {
    use super::parse_types;

    #[test]
    fn types_are_read_from_the_json_object_without_schemas() {
        let t = parse_types(r#"{"cartodb_id": "bigint", "the_geom": "public.geometry", "Name \"x\"": "text"}"#).unwrap();
        assert_eq!(t.get("cartodb_id").map(String::as_str), Some("bigint"));
        assert_eq!(t.get("the_geom").map(String::as_str), Some("geometry"));
        assert_eq!(t.get("Name \"x\"").map(String::as_str), Some("text"));
        assert!(parse_types("null").is_none());
        assert!(parse_types("[1]").is_none());
    }
}
