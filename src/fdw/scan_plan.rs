//! The contract between planning and execution: what a scan's plan holds ([`ScanPlan`], serialized
//! into the ForeignScan's fdw_private and read back by the executor), how it is sent ([`Transport`],
//! [`Page`]), and what the planner keeps per foreign relation ([`RelState`]). The base-table planner
//! (plan.rs), the pushed joins and aggregates (pushed.rs, join.rs, upper.rs), the scans (scan.rs) and
//! the direct modifications (modify.rs) all meet here.

use pgrx::pg_sys;
use pgrx::PgList;
use serde::{Deserialize, Serialize};

use crate::fdw::deparse::{RelInfo, SqlTemplate};
use crate::fdw::table::TableDef;
use crate::pg::error::{FdwError, FdwResult};

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Transport {
    /// `/copyto`: one streaming request.
    Copy,
    /// `/sql`: every column cast to text, paged by keyset on the rowid column.
    Query,
}

impl Transport {
    pub fn endpoint(self) -> &'static str {
        match self {
            Transport::Copy => "copyto",
            Transport::Query => "sql",
        }
    }
}

/// One request of a keyset-paged `/sql` read. Keys are compared as the rowid's text form.
///
/// Paging stays exact whatever the rowid column holds: a page never ends inside a group of equal
/// keys (the trailing group is re-read from `>= K`), a group larger than a page is read in one
/// request, and rows with a NULL rowid come last (NULLS LAST): when they do not fit in the last
/// page they are read in one request of their own.
#[derive(Clone, Debug, PartialEq)]
pub enum Page {
    First,
    After(String),
    From(String),
    Group(String),
    Nulls,
}

/// Everything the executor needs to run the scan.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScanPlan {
    pub relid: u32,
    pub table_label: String,
    pub from: String,
    /// Retrieved columns: (local attnum, remote name).
    pub columns: Vec<(i16, String)>,
    pub where_: Option<SqlTemplate>,
    pub order_by: Option<String>,
    pub limit: Option<i64>,
    pub rowid: Option<String>,
    pub transport: Transport,
    pub fetch_size: u64,
    /// COPY binary (transport.rs): the remote casts of the columns, parallel to `columns`; None for COPY text.
    #[serde(default)]
    pub binary_casts: Option<Vec<String>>,
    /// Parallel to `binary_casts`: how each column is read (transport.rs `ReadAs`: its own receive function,
    /// as text inside the binary stream, or CARTO's numeric into a local float8); empty: all their own.
    #[serde(default)]
    pub binary_read_as: Vec<crate::fdw::transport::ReadAs>,
    /// A pushed join or aggregate (pushed.rs): the whole remote SELECT, whose columns are named
    /// `c0`, `c1`, … as the columns above; read as `FROM (subquery) s`.
    #[serde(default)]
    pub subquery: Option<SqlTemplate>,
    /// What a pushed join or aggregate covers, for EXPLAIN (`Aggregate on (ft)`).
    #[serde(default)]
    pub relations: Option<String>,
    /// Foreign tables read by a pushed join or aggregate (their pending inserts are flushed first).
    #[serde(default)]
    pub member_relids: Vec<u32>,
    /// Range-table index whose checkAsUser picks the user mapping of a pushed join or aggregate.
    #[serde(default)]
    pub user_rti: u32,
    /// A `/sql` keyset read that finds this many rows or more (full pages, well beyond the planner's
    /// estimate) reads the rest in one `/copyto` stream (scan.rs); None: it never switches.
    #[serde(default)]
    pub switch_after_rows: Option<u64>,
    /// The range-table index of each of `member_relids`: at execution every member is loaded with
    /// its own user, so each keeps its guarantees (a `query` table's owner rule, read-only `/sql`).
    #[serde(default)]
    pub member_rtis: Vec<u32>,
}

impl ScanPlan {
    fn select_list(&self, cast_text: bool) -> String {
        let names = self.columns.iter().map(|(_, name)| name.as_str());
        if cast_text {
            return crate::fdw::deparse::text_select_list(names);
        }
        let list: Vec<String> = names.map(crate::pg::sql_text::quote_ident).collect();
        if list.is_empty() {
            "NULL".into()
        } else {
            list.join(", ")
        }
    }

    /// What follows FROM: the table, or the pushed statement as a subquery.
    fn relation_sql(&self, params: Option<&[String]>) -> String {
        match &self.subquery {
            Some(q) => format!("({}) s", q.render(params)),
            None => self.from.clone(),
        }
    }

    fn tail(&self, params: Option<&[String]>, extra_cond: Option<&str>, order: Option<&str>, limit: Option<i64>) -> String {
        let mut s = String::new();
        let mut conds = Vec::new();
        if let Some(w) = &self.where_ {
            conds.push(w.render(params));
        }
        if let Some(c) = extra_cond {
            conds.push(c.to_string());
        }
        if !conds.is_empty() {
            s.push_str(" WHERE ");
            s.push_str(&conds.join(" AND "));
        }
        if let Some(o) = order {
            s.push_str(" ORDER BY ");
            s.push_str(o);
        }
        if let Some(l) = limit {
            s.push_str(&format!(" LIMIT {l}"));
        }
        s
    }

    /// The statement of the `/copyto` transport.
    pub fn copy_sql(&self, params: Option<&[String]>) -> String {
        self.copy_sql_from(params, None)
    }

    /// The statement of the `/copyto` transport in COPY binary: each column cast to the local type (`casts`).
    pub fn copy_sql_binary(&self, params: Option<&[String]>, casts: &[String]) -> String {
        self.copy_sql_binary_from(params, casts, None)
    }

    /// [`ScanPlan::copy_sql`] of the rows from keyset page `rest` on (None: all): the rest of a `/sql` read
    /// that switched to `/copyto`.
    pub fn copy_sql_from(&self, params: Option<&[String]>, rest: Option<&Page>) -> String {
        let cond = rest.and_then(|p| self.keyset_cond(p));
        format!(
            "COPY (SELECT {} FROM {}{}) TO STDOUT",
            self.select_list(false),
            self.relation_sql(params),
            self.tail(params, cond.as_deref(), self.order_by.as_deref(), self.limit)
        )
    }

    /// [`ScanPlan::copy_sql_binary`] of the rows from keyset page `rest` on (None: all).
    pub fn copy_sql_binary_from(&self, params: Option<&[String]>, casts: &[String], rest: Option<&Page>) -> String {
        let cond = rest.and_then(|p| self.keyset_cond(p));
        let list: Vec<String> = self
            .columns
            .iter()
            .zip(casts)
            .map(|((_, name), cast)| format!("{}::{cast}", crate::pg::sql_text::quote_ident(name)))
            .collect();
        format!(
            "COPY (SELECT {} FROM {}{}) TO STDOUT (FORMAT binary)",
            list.join(", "),
            self.relation_sql(params),
            self.tail(params, cond.as_deref(), self.order_by.as_deref(), self.limit)
        )
    }

    /// The condition that selects the rows of keyset page `page` and every page after it (a switch to
    /// `/copyto` reads them in one request, in no particular order); None for the first page (all rows).
    fn keyset_cond(&self, page: &Page) -> Option<String> {
        let rowid = crate::pg::sql_text::quote_ident(self.rowid.as_deref()?);
        let lit = crate::pg::sql_text::quote_literal;
        match page {
            Page::First => None,
            Page::After(k) => Some(format!("({rowid} > {} OR {rowid} IS NULL)", lit(k))),
            Page::From(k) | Page::Group(k) => Some(format!("({rowid} >= {} OR {rowid} IS NULL)", lit(k))),
            Page::Nulls => Some(format!("{rowid} IS NULL")),
        }
    }

    /// Whether the `/sql` transport pages by keyset (else it reads the result in one request).
    pub fn pages_by_keyset(&self) -> bool {
        self.rowid.is_some() && self.order_by.is_none() && self.limit.is_none()
    }

    /// The statement of the `/sql` transport for one page.
    pub fn query_sql(&self, params: Option<&[String]>, page: &Page) -> String {
        if !self.pages_by_keyset() {
            return format!(
                "SELECT {} FROM {}{}",
                self.select_list(true),
                self.relation_sql(params),
                self.tail(params, None, self.order_by.as_deref(), self.limit)
            );
        }
        let rowid = crate::pg::sql_text::quote_ident(self.rowid.as_deref().unwrap_or("cartodb_id"));
        let lit = crate::pg::sql_text::quote_literal;
        // Rows with a NULL rowid come after every key (NULLS LAST) on the ordinary pages.
        let (cond, limit) = match page {
            Page::First => (None, Some(self.fetch_size as i64)),
            Page::After(k) => (Some(format!("({rowid} > {} OR {rowid} IS NULL)", lit(k))), Some(self.fetch_size as i64)),
            Page::From(k) => (Some(format!("({rowid} >= {} OR {rowid} IS NULL)", lit(k))), Some(self.fetch_size as i64)),
            Page::Group(k) => (Some(format!("{rowid} = {}", lit(k))), None),
            Page::Nulls => (Some(format!("{rowid} IS NULL")), None),
        };
        let order_by = format!("{rowid} ASC NULLS LAST");
        let order = if limit.is_some() { Some(order_by.as_str()) } else { None };
        format!(
            "SELECT {}, {rowid}::text AS k FROM {}{}",
            self.select_list(true),
            self.from,
            self.tail(params, cond.as_deref(), order, limit)
        )
    }

    /// The statement EXPLAIN shows: the one the chosen transport sends first.
    pub fn explain_sql(&self) -> String {
        match self.transport {
            Transport::Copy => match &self.binary_casts {
                Some(casts) => self.copy_sql_binary(None, casts),
                None => self.copy_sql(None),
            },
            Transport::Query => self.query_sql(None, &Page::First),
        }
    }
}

/// Plan-time state of one foreign relation (baserel->fdw_private).
pub struct RelState {
    pub table: TableDef,
    pub info: RelInfo,
    /// Restriction clauses shipped to CARTO, with their SQL.
    pub remote_conds: Vec<(*mut pg_sys::RestrictInfo, SqlTemplate)>,
    pub local_conds: Vec<*mut pg_sys::RestrictInfo>,
    /// The rows CARTO sends for a scan of the relation: its size times the selectivity of the shipped
    /// clauses only (postgres_fdw's retrieved_rows). The local clauses filter after the transfer, so they
    /// do not make a transfer smaller.
    pub retrieved_rows: f64,
}

/// The RelState that GetForeignRelSize left in a base relation of this wrapper.
///
/// # Safety
/// `baserel` a base relation whose fdw_private is this wrapper's RelState (set by get_foreign_rel_size), alive
/// for `'a` (the planner's memory context), and not borrowed elsewhere while the result lives.
pub(crate) unsafe fn rel_state<'a>(baserel: *mut pg_sys::RelOptInfo) -> &'a mut RelState {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        &mut *((*baserel).fdw_private as *mut RelState)
    }
}

/// The value of a non-negative int8 Const (LIMIT and OFFSET's type), None for any other node, NULL or below 0.
///
/// # Safety
/// `node` a valid, non-null expression node.
pub(crate) unsafe fn const_int(node: *mut pg_sys::Node) -> Option<i64> {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        if (*node).type_ != pg_sys::NodeTag::T_Const {
            return None;
        }
        let c: *mut pg_sys::Const = node.cast();
        if (*c).constisnull || (*c).consttype != pg_sys::INT8OID {
            return None;
        }
        Some((*c).constvalue.value() as i64).filter(|v| *v >= 0)
    }
}

/// A ForeignScan's fdw_private: the ScanPlan as JSON in one String node (palloc'd in the current context).
///
/// # Safety
/// Backend thread, planning.
pub unsafe fn scan_plan_to_private(plan: &ScanPlan) -> FdwResult<*mut pg_sys::List> {
    let json = serde_json::to_string(plan).map_err(|e| FdwError::internal(format!("scan plan: {e}")))?;
    let cjson = std::ffi::CString::new(json).map_err(|e| FdwError::internal(format!("scan plan: {e}")))?;
    let mut private = PgList::<pg_sys::Node>::new();
    // SAFETY: this function's contract (backend thread); pstrdup copies `cjson`, which lives for the call.
    unsafe { private.push(pg_sys::makeString(pg_sys::pstrdup(cjson.as_ptr())).cast()) };
    Ok(private.into_pg())
}

/// Reads the ScanPlan back from a ForeignScan's fdw_private (written by scan_plan_to_private).
///
/// # Safety
/// `private` must be the list get_foreign_plan built.
pub unsafe fn scan_plan_from_private(private: *mut pg_sys::List) -> FdwResult<ScanPlan> {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        let list = PgList::<pg_sys::Node>::from_pg(private);
        let node = list.get_ptr(0).ok_or_else(|| FdwError::internal("foreign scan without a plan"))?;
        let s = crate::pg::cstr::cstr_as_written((*node.cast::<pg_sys::String>()).sval as *const _)
            .ok_or_else(|| FdwError::internal("foreign scan without a plan"))?;
        serde_json::from_str(&s).map_err(|e| FdwError::internal(format!("unreadable scan plan: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::{Page, ScanPlan, Transport};

    fn plan() -> ScanPlan {
        ScanPlan {
            relid: 1,
            table_label: "ft".into(),
            from: "\"t\"".into(),
            columns: vec![(1, "cartodb_id".into()), (2, "name".into())],
            where_: None,
            order_by: None,
            limit: None,
            rowid: Some("cartodb_id".into()),
            transport: Transport::Query,
            fetch_size: 1000,
            binary_casts: None,
            binary_read_as: Vec::new(),
            subquery: None,
            relations: None,
            member_relids: Vec::new(),
            user_rti: 0,
            switch_after_rows: Some(2000),
            member_rtis: Vec::new(),
        }
    }

    #[test]
    fn the_rest_of_a_switched_read_starts_at_its_next_keyset_page() {
        let p = plan();
        assert_eq!(p.copy_sql_from(None, None), "COPY (SELECT \"cartodb_id\", \"name\" FROM \"t\") TO STDOUT");
        assert_eq!(p.copy_sql_from(None, Some(&Page::First)), p.copy_sql(None));
        assert_eq!(
            p.copy_sql_from(None, Some(&Page::From("1999".into()))),
            "COPY (SELECT \"cartodb_id\", \"name\" FROM \"t\" WHERE (\"cartodb_id\" >= '1999' OR \"cartodb_id\" IS NULL)) TO STDOUT"
        );
        // After a group page, the next page starts after its key; the NULL rowids come last either way.
        assert!(p.copy_sql_from(None, Some(&Page::After("7".into()))).contains("WHERE (\"cartodb_id\" > '7' OR \"cartodb_id\" IS NULL)"));
        assert!(p.copy_sql_from(None, Some(&Page::Group("7".into()))).contains("WHERE (\"cartodb_id\" >= '7' OR \"cartodb_id\" IS NULL)"));
        let casts = vec!["integer".to_string(), "text".to_string()];
        assert_eq!(
            p.copy_sql_binary_from(None, &casts, Some(&Page::From("it's".into()))),
            "COPY (SELECT \"cartodb_id\"::integer, \"name\"::text FROM \"t\" WHERE (\"cartodb_id\" >= 'it''s' OR \"cartodb_id\" IS NULL)) TO STDOUT (FORMAT binary)"
        );
    }

    #[test]
    fn the_keyset_condition_joins_the_shipped_where() {
        let mut p = plan();
        let mut w = crate::fdw::deparse::SqlTemplate::default();
        w.push_str("(\"k\" = 5)");
        p.where_ = Some(w);
        assert!(p
            .copy_sql_from(None, Some(&Page::After("10".into())))
            .contains("WHERE (\"k\" = 5) AND (\"cartodb_id\" > '10' OR \"cartodb_id\" IS NULL)"));
    }
}
