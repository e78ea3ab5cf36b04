//! The `query` option of a foreign table: SQL that runs on CARTO with the key of whoever reads the
//! table. Two rules keep it from being a way to run one role's SQL with another role's key
//! (docs/security.md):
//!
//! - its text must be exactly one plain SELECT, checked with PostgreSQL's own parser here (no other
//!   statement, no data-modifying WITH, no SELECT INTO, no FOR UPDATE/SHARE), and it must stay one
//!   subquery when wrapped (`SELECT ... FROM (query) AS q`), so nothing in it can close the
//!   parenthesis and go on; through `/sql` it runs in a read-only transaction on CARTO;
//! - it runs only for a reader who is trusted to choose the SQL their key runs: the table's owner (or
//!   a member of it), or any reader when the table's owner is a superuser or owns the server.


use pgrx::pg_sys;
use pgrx::{PgList, PgTryBuilder};

use crate::pg::error::{FdwError, FdwResult};

/// Checks the text of a `query` option; the error says what is wrong without echoing the text.
pub fn check(query: &str) -> FdwResult<()> {
    check_text(query).map_err(|why| FdwError::InvalidOptionValue {
        message: format!("option \"query\" must be exactly one SELECT statement: {why}"),
    })
}

fn check_text(query: &str) -> Result<(), String> {
    if query.trim().is_empty() {
        return Err("it is empty".into());
    }
    // SAFETY: called on the backend thread in a transaction (option validation, plan time): the raw parser and its
    // node lists live in the current memory context for this block.
    unsafe {
        let stmts = parse(query)?;
        if stmts.len() != 1 {
            return Err(format!("it holds {} statements", stmts.len()));
        }
        let raw = stmts[0];
        // A ';' after the statement would end the wrapping subquery.
        let end = usize::try_from((*raw).stmt_location).unwrap_or(0)
            + usize::try_from((*raw).stmt_len).unwrap_or(0);
        if (*raw).stmt_len != 0 && query.get(end..).is_some_and(|rest| rest.contains(';')) {
            return Err("remove the trailing semicolon".into());
        }
        check_select((*raw).stmt)?;
        check_depth((*raw).stmt)?;
        // Wrapped as every remote statement wraps it: still one SELECT, so the text cannot end the
        // subquery early (an unbalanced parenthesis, a trailing -- comment).
        let wrapped = parse(&format!("SELECT * FROM ({query}) AS q"))
            .map_err(|_| "it does not stay one subquery when wrapped in parentheses".to_string())?;
        if wrapped.len() != 1 || !is_a((*wrapped[0]).stmt, pg_sys::NodeTag::T_SelectStmt) {
            return Err("it does not stay one subquery when wrapped in parentheses".into());
        }
    }
    Ok(())
}

unsafe fn is_a(node: *mut pg_sys::Node, tag: pg_sys::NodeTag) -> bool {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        !node.is_null() && (*node).type_ == tag
    }
}

/// A plain SELECT: no INTO, no locking clause, WITH queries that are SELECTs themselves, and the
/// same for both sides of a UNION / INTERSECT / EXCEPT.
unsafe fn check_select(node: *mut pg_sys::Node) -> Result<(), String> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        if !is_a(node, pg_sys::NodeTag::T_SelectStmt) {
            return Err("it is not a SELECT".into());
        }
        let s = node as *mut pg_sys::SelectStmt;
        if !(*s).intoClause.is_null() {
            return Err("SELECT INTO creates a table".into());
        }
        if !(*s).lockingClause.is_null() {
            return Err("FOR UPDATE / FOR SHARE lock rows".into());
        }
        if !(*s).withClause.is_null() {
            let ctes = PgList::<pg_sys::Node>::from_pg((*(*s).withClause).ctes);
            for cte in ctes.iter_ptr() {
                if is_a(cte, pg_sys::NodeTag::T_CommonTableExpr) {
                    let q = (*(cte as *mut pg_sys::CommonTableExpr)).ctequery;
                    check_select(q).map_err(|why| format!("a WITH query that is not a plain SELECT: {why}"))?;
                }
            }
        }
        if (*s).op != pg_sys::SetOperation::SETOP_NONE {
            check_select((*s).larg.cast())?;
            check_select((*s).rarg.cast())?;
        }
        Ok(())
    }
}

/// The rules of [`check_select`] at every depth: a locking clause, SELECT INTO or a data-modifying
/// statement in a subquery, a CTE, a set operation's branch or a sublink is refused as the top-level
/// one is. PostgreSQL's own raw-tree walker visits every node, so no nesting is missed.
unsafe fn check_depth(stmt: *mut pg_sys::Node) -> Result<(), String> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let mut found: Option<&'static str> = None;
        let ctx = (&mut found as *mut Option<&'static str>).cast::<std::ffi::c_void>();
        // The walker raises an ERROR for a node type it does not know: refuse what cannot be checked.
        let walked = PgTryBuilder::new(|| Ok(pg_sys::raw_expression_tree_walker(stmt, Some(forbidden_node), ctx)))
            .catch_others(|_| Err("it cannot be checked".to_string()))
            .execute();
        walked?;
        match found {
            Some(why) => Err(why.to_string()),
            None => Ok(()),
        }
    }
}

/// The raw-tree walker's callback: records why `node` is refused (and stops the walk), or walks on.
unsafe extern "C-unwind" fn forbidden_node(node: *mut pg_sys::Node, ctx: *mut std::ffi::c_void) -> bool {
    // SAFETY: PostgreSQL calls this on the backend thread with valid pointers, as its API for this callback
    // guarantees: this function's contract.
    unsafe {
        if node.is_null() {
            return false;
        }
        // SAFETY: `ctx` is the `Option<&str>` check_depth passed, alive for the whole walk.
        let found = &mut *ctx.cast::<Option<&'static str>>();
        let why = match (*node).type_ {
            pg_sys::NodeTag::T_SelectStmt => {
                let s = node.cast::<pg_sys::SelectStmt>();
                if !(*s).lockingClause.is_null() {
                    Some("FOR UPDATE / FOR SHARE lock rows")
                } else if !(*s).intoClause.is_null() {
                    Some("SELECT INTO creates a table")
                } else {
                    None
                }
            }
            pg_sys::NodeTag::T_InsertStmt
            | pg_sys::NodeTag::T_UpdateStmt
            | pg_sys::NodeTag::T_DeleteStmt
            | pg_sys::NodeTag::T_MergeStmt => Some("a data-modifying statement inside it"),
            _ => None,
        };
        if let Some(why) = why {
            *found = Some(why);
            return true;
        }
        pg_sys::raw_expression_tree_walker(node, Some(forbidden_node), ctx)
    }
}

/// PostgreSQL's raw parser over `sql`, with `standard_conforming_strings` on as on CARTO, whatever
/// this session says (so a string literal ends where CARTO's lexer ends it). A syntax error is an Err.
unsafe fn parse(sql: &str) -> Result<Vec<*mut pg_sys::RawStmt>, String> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        // The option's text is UTF-8 (what CARTO gets); the parser reads the database encoding.
        let c = crate::pg::encoding::server_cstring(sql).ok_or_else(|| "it contains a NUL byte".to_string())?;
        let saved = pg_sys::standard_conforming_strings;
        pg_sys::standard_conforming_strings = true;
        let list = PgTryBuilder::new(|| Ok(pg_sys::raw_parser(c.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT)))
            .catch_others(|e| {
                let msg = match &e {
                    pgrx::pg_sys::panic::CaughtError::PostgresError(r)
                    | pgrx::pg_sys::panic::CaughtError::ErrorReport(r) => r.message().to_string(),
                    pgrx::pg_sys::panic::CaughtError::RustPanic { ereport, .. } => ereport.message().to_string(),
                };
                Err(msg)
            })
            .execute();
        pg_sys::standard_conforming_strings = saved;
        let list = list?;
        Ok(PgList::<pg_sys::RawStmt>::from_pg(list).iter_ptr().collect())
    }
}

/// Whether `reader` may run the `query` of foreign table `relid` with its own key: it owns the table
/// (or is a member of its owner; being a superuser does not count), or the table's owner is a
/// superuser or the owner of the server.
///
/// # Safety
/// Must run in a transaction on the backend thread.
pub unsafe fn check_reader(relid: pg_sys::Oid, serverid: pg_sys::Oid, reader: pg_sys::Oid, label: &str) -> FdwResult<()> {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        let rel = pg_sys::RelationIdGetRelation(relid);
        if rel.is_null() {
            return Ok(());
        }
        let owner = (*(*rel).rd_rel).relowner;
        pg_sys::RelationClose(rel);
        let server_owner = (*pg_sys::GetForeignServer(serverid)).owner;
        // Membership, not privileges: a superuser reader has every role's privileges, yet its key must not
        // run a low-privileged role's SQL either (a scheduled job of a superuser reading such a table).
        if reader == owner || pg_sys::is_member_of_role_nosuper(reader, owner) || owner == server_owner || pg_sys::superuser_arg(owner) {
            return Ok(());
        }
        Err(FdwError::Custom {
            code: pgrx::PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            message: format!("permission denied to run the query of foreign table \"{label}\" with this role's API key"),
            detail: Some("A foreign table with the option \"query\" runs its SQL with the key of the role that reads it: it runs only for its owner, or for anyone when a superuser or the server's owner owns it.".into()),
            hint: Some("Ask the server's owner to create the table, or read it as its owner.".into()),
        })
    }
}

/// The text sent through `/sql` for a read of a query table: in a read-only transaction on CARTO
/// (several statements of one `q` run in one transaction there, carto-sql-api.md section 3).
pub fn read_only(sql: &str) -> String {
    format!("SET TRANSACTION READ ONLY; {sql}")
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn err(q: &str) -> String {
        match super::check(q) {
            Ok(()) => String::new(),
            Err(e) => e.parts().1,
        }
    }

    #[pg_test]
    fn accepts_selects() {
        for q in [
            "SELECT 1 AS x",
            "select a, b from t where c = 'it''s' order by a",
            "WITH w AS (SELECT 1 AS x) SELECT * FROM w",
            "SELECT 1 UNION ALL SELECT 2",
            "VALUES (1), (2)",
            "SELECT $$a ) b$$ AS x -- note\n",
            "SELECT 'a\\' AS x",
        ] {
            assert_eq!(err(q), "", "{q}");
        }
    }

    #[pg_test]
    fn refuses_anything_else() {
        for (q, why) in [
            ("SELECT '1' AS x) AS q0; CREATE TABLE loot AS SELECT 1; SELECT * FROM (SELECT 1", "syntax error"),
            ("SELECT 1; SELECT 2", "2 statements"),
            ("SELECT 1;", "trailing semicolon"),
            ("DELETE FROM t", "not a SELECT"),
            ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "WITH query"),
            ("SELECT * INTO loot FROM t", "SELECT INTO"),
            ("SELECT * FROM t FOR UPDATE", "FOR UPDATE"),
            ("SELECT 1 UNION SELECT * FROM t FOR SHARE", "FOR UPDATE"),
            ("SELECT 1 AS x --", "wrapped"),
            ("", "empty"),
        ] {
            let e = err(q);
            assert!(e.contains(why), "{q}: {e}");
        }
    }

    #[pg_test]
    fn refuses_locking_and_writes_at_any_depth() {
        for q in [
            "SELECT name FROM (SELECT name FROM t FOR UPDATE) s",
            "SELECT * FROM (SELECT * FROM (SELECT 1 AS x FROM t FOR NO KEY UPDATE) a) b",
            "WITH w AS (SELECT x FROM t FOR SHARE) SELECT * FROM w",
            "SELECT 1 AS x UNION ALL (SELECT x FROM t FOR KEY SHARE)",
            "SELECT x FROM t WHERE x IN (SELECT y FROM u FOR UPDATE)",
            "SELECT EXISTS (SELECT 1 FROM u FOR UPDATE SKIP LOCKED) AS x",
            "SELECT (SELECT y FROM u LIMIT 1 FOR SHARE) AS x",
            "SELECT * FROM t, LATERAL (SELECT y FROM u FOR UPDATE) l",
            "SELECT * FROM t JOIN (SELECT y FROM u FOR UPDATE) j ON true",
        ] {
            let e = err(q);
            assert!(e.contains("FOR UPDATE / FOR SHARE"), "{q}: {e}");
        }
        for q in [
            "SELECT * FROM (WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d) s",
            "SELECT x FROM t WHERE x IN (WITH i AS (INSERT INTO u VALUES (1) RETURNING y) SELECT y FROM i)",
        ] {
            let e = err(q);
            assert!(e.contains("data-modifying"), "{q}: {e}");
        }
        // A nested plain SELECT, CTE, sublink and set operation stay fine.
        for q in [
            "SELECT * FROM (SELECT x FROM t) s WHERE x IN (SELECT y FROM u) AND EXISTS (WITH w AS (SELECT 1) SELECT * FROM w)",
            "SELECT x FROM (SELECT 1 AS x UNION SELECT 2) s",
        ] {
            assert_eq!(err(q), "", "{q}");
        }
    }
}
