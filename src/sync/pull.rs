//! carto.pull: a CARTO table (or query) into a local table.
//!
//! The remote rows are read through a transient foreign table (so they stream through the scan
//! path: `/copyto` for big reads, `/sql` for small ones, with the same exact values), and applied
//! by one local statement sequence in the calling transaction: the rows and the run's record
//! commit together, so a pull is exactly once by construction, and `replace` is atomic for local
//! readers (they see the old rows until the transaction commits).

use pgrx::Spi;

use crate::pg::encoding::DbText;
use crate::pg::local_sql;

use crate::pg::sql_text::{quote_ident, quote_literal};
use crate::pg::error::{FdwError, FdwResult};
use crate::sync::runs::RunOutcome;
use crate::sync::Mode;

pub struct PullArgs {
    pub server: String,
    /// A remote table name ([schema.]table), unless `query` is given.
    pub remote: String,
    /// A query to pull instead of a table (checked as a foreign table's option query is).
    pub query: Option<String>,
    pub target: String,
    pub mode: Mode,
    pub key: Option<String>,
    pub since: Option<String>,
}

fn spi_err(what: &str) -> impl Fn(pgrx::spi::Error) -> FdwError + '_ {
    move |e| FdwError::internal(format!("{what}: {e}"))
}

pub fn run(args: &PullArgs, name: &str, prev_wm: Option<&str>) -> FdwResult<RunOutcome> {
    let target: String = local_sql::get_one_with_args::<DbText>("SELECT to_regclass($1)::text", &[DbText(args.target.clone()).into()])
        .map_err(spi_err("looking up the target table"))?
        .map(DbText::into_string)
        .ok_or_else(|| FdwError::InvalidOptionValue {
            message: format!("target table \"{}\" does not exist", args.target),
        })?;
    let schema: String = local_sql::get_one_with_args::<DbText>(
        "SELECT n.nspname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::regclass",
        &[DbText(target.clone()).into()],
    )
    .map_err(spi_err("looking up the target table"))?
    .map(DbText::into_string)
    .unwrap_or_else(|| "public".into());

    // The target's columns define what is read: same names remotely.
    let cols = target_columns(&target)?;
    let ft = create_transient_table(args, name, &schema, &cols)?;

    let names: Vec<String> = cols.iter().map(|(n, _)| quote_ident(n)).collect();
    let list = names.join(", ");
    let mut filter = String::new();
    if let Some(s) = &args.since {
        let ty = cols.iter().find(|(n, _)| n == s).map(|(_, t)| t.clone()).ok_or_else(|| {
            FdwError::InvalidOptionValue { message: format!("since column \"{s}\" is not a column of the target") }
        })?;
        if let Some(w) = prev_wm {
            filter = format!(" WHERE {} > {}::{ty}", quote_ident(s), quote_literal(w));
        }
    }
    let insert = match args.mode {
        Mode::Append | Mode::Replace => format!("INSERT INTO {target} ({list}) SELECT {list} FROM {ft}{filter}"),
        Mode::Upsert => {
            let key = args.key.as_deref().map(quote_ident).unwrap_or_else(|| "\"cartodb_id\"".into());
            let updates: Vec<String> =
                names.iter().filter(|n| **n != key).map(|n| format!("{n} = EXCLUDED.{n}")).collect();
            let action = if updates.is_empty() { "NOTHING".to_string() } else { format!("UPDATE SET {}", updates.join(", ")) };
            format!("INSERT INTO {target} ({list}) SELECT {list} FROM {ft}{filter} ON CONFLICT ({key}) DO {action}")
        }
    };
    if args.mode == Mode::Replace {
        // DELETE, not TRUNCATE: other sessions keep reading the old rows until we commit.
        local_sql::run(&format!("DELETE FROM {target}")).map_err(spi_err("emptying the target"))?;
    }
    let rows: i64 = local_sql::get_one(&format!("WITH ins AS ({insert} RETURNING 1) SELECT count(*) FROM ins"))
        .map_err(spi_err("loading the target"))?
        .unwrap_or(0);
    local_sql::run(&format!("DROP FOREIGN TABLE {ft}")).map_err(spi_err("dropping the transient foreign table"))?;

    let watermark_to = match &args.since {
        // Stored, then parsed back into the next run's filter (maybe under other settings): portable.
        Some(s) => crate::pg::typeio::with_transmission_modes(|| {
            local_sql::get_one::<DbText>(&format!("SELECT max({})::text FROM {target}", quote_ident(s)))
        })
        .map_err(spi_err("reading the new watermark"))?
            .map(DbText::into_string)
            .or_else(|| prev_wm.map(str::to_string)),
        None => None,
    };
    Ok(RunOutcome { rows, watermark_to })
}

/// The target table's columns, (name, type with typmod), in order.
fn target_columns(target: &str) -> FdwResult<Vec<(String, String)>> {
    let mut cols: Vec<(String, String)> = Vec::new();
    Spi::connect(|c| -> FdwResult<()> {
        let t = c
            .select(
                "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                None,
                &[DbText(target.to_string()).into()],
            )
            .map_err(spi_err("reading the target's columns"))?;
        for row in t {
            let n: Option<String> = row.get::<DbText>(1).map_err(spi_err("reading the target's columns"))?.map(DbText::into_string);
            let ty: Option<String> = row.get::<DbText>(2).map_err(spi_err("reading the target's columns"))?.map(DbText::into_string);
            if let (Some(n), Some(ty)) = (n, ty) {
                cols.push((n, ty));
            }
        }
        Ok(())
    })?;
    Ok(cols)
}

/// Creates the transient foreign table `schema.carto_pull_...` over the remote table or query, with the
/// target's columns; returns its quoted name.
fn create_transient_table(args: &PullArgs, name: &str, schema: &str, cols: &[(String, String)]) -> FdwResult<String> {
    let ft = format!(
        "{}.{}",
        quote_ident(schema),
        // Per role and sync, not per backend: the sync's lock makes it unique, and names stay stable.
        quote_ident(&format!(
            "carto_pull_{}",
            crate::sync::push::stage_prefix(&format!("{}/{name}", u32::from(crate::pg::bookkeeping::caller())))
                .trim_start_matches("carto_sync_stage_")
                .trim_end_matches('_')
        ))
    );
    let defs: Vec<String> = cols.iter().map(|(n, t)| format!("{} {t}", quote_ident(n))).collect();
    let remote_opt = if let Some(q) = &args.query {
        format!("query {}", quote_literal(q))
    } else {
        match args.remote.split_once('.') {
            Some((s, t)) => format!("schema_name {}, table_name {}", quote_literal(s), quote_literal(t)),
            None => format!("table_name {}", quote_literal(&args.remote)),
        }
    };
    local_sql::run(&format!(
        "CREATE FOREIGN TABLE {ft} ({}) SERVER {} OPTIONS ({remote_opt})",
        defs.join(", "),
        quote_ident(&args.server)
    ))
    .map_err(spi_err("creating the transient foreign table"))?;
    Ok(ft)
}
