//! carto.push: local rows into a CARTO table.
//!
//! Rows are read with an SPI cursor (every column cast to text: PostgreSQL's exact text form),
//! encoded as COPY text and streamed through one `/copyfrom` request. Except for a plain append,
//! they go to a staging table first, and ONE remote transaction (a multi-statement `/sql` request,
//! or a Batch job when it is too big for CARTO's statement timeout) moves them into the target
//! and advances the sync's watermark in a ledger table next to it. The watermark therefore moves
//! exactly when the rows land, which is what makes a retried run safe.

use carto_client::{BatchJobRequest, Client, ErrorKind, JobStatus};
use pgrx::Spi;

use crate::pg::encoding::DbText;

use crate::pg::sql_text::{quote_ident, quote_literal};
use crate::pg::error::{FdwError, FdwResult};
use crate::pg::runtime::block_on;
use crate::pg::typeio::with_transmission_modes;
use crate::sync::runs::RunOutcome;
use crate::fdw::xact::Upload;
use crate::sync::{Mode, SourceColumn};

/// Rows above which a staged apply goes straight to a Batch job.
pub const BATCH_THRESHOLD: i64 = 1_000_000;
/// Remote ledger of watermarks, one row per sync, in the account's schema.
pub const LEDGER: &str = "carto_sync_state";

pub struct PushArgs {
    pub source: String,
    pub remote_table: String,
    pub mode: Mode,
    pub key: Option<String>,
    pub since: Option<String>,
    pub create: bool,
    pub cartodbfy: bool,
    pub lnglat: Option<(String, String)>,
    pub name: String,
    /// The server's copy_format: `text` keeps pushes in COPY text (push_binary.rs).
    pub binary_allowed: bool,
}

/// The staging table names of a sync start with this prefix (so leftovers of a killed run are
/// found and dropped by the next run of the same sync, and never another sync's).
pub fn stage_prefix(name: &str) -> String {
    let mut h: u32 = 2166136261;
    for b in name.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(16777619);
    }
    format!("carto_sync_stage_{h:08x}_")
}

fn remote_ident(name: &str) -> String {
    match name.split_once('.') {
        Some((s, t)) => format!("{}.{}", quote_ident(s), quote_ident(t)),
        None => quote_ident(name),
    }
}

fn query(client: &Client, sql: &str, what: &str) -> FdwResult<carto_client::QueryResponse> {
    block_on(client.query(sql))?.map_err(|e| FdwError::remote(e, what.to_string()))
}

fn first_text(resp: &carto_client::QueryResponse, col: &str) -> Option<String> {
    resp.rows.first().and_then(|r| r.get(col)).and_then(|v| match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    })
}

/// The watermark CARTO has for this sync (the ledger is the source of truth: it moves in the
/// same remote transaction as the rows).
pub fn remote_watermark(client: &Client, name: &str) -> FdwResult<Option<String>> {
    let exists = query(client, &format!("SELECT (to_regclass({}) IS NOT NULL)::text AS e", quote_literal(LEDGER)), "reading the sync ledger")?;
    if first_text(&exists, "e").as_deref() != Some("true") {
        return Ok(None);
    }
    let resp = query(
        client,
        &format!("SELECT watermark FROM {LEDGER} WHERE name = {}", quote_literal(name)),
        "reading the sync ledger",
    )?;
    Ok(first_text(&resp, "watermark"))
}

/// Drops staging tables a killed or failed run of this sync left behind. Best effort.
pub fn drop_leftover_stages(client: &Client, name: &str) {
    let sql = format!(
        "SELECT string_agg(quote_ident(tablename), ',') AS t FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE {}",
        quote_literal(&format!("{}%", stage_prefix(name)))
    );
    if let Ok(resp) = query(client, &sql, "looking for leftover staging tables") {
        if let Some(list) = first_text(&resp, "t") {
            let _ = query(client, &format!("DROP TABLE IF EXISTS {list}"), "dropping leftover staging tables");
        }
    }
}

/// The type of the column on CARTO: a built-in (pg/builtin.rs) or PostGIS type by its name, anything else as text.
fn remote_type(col: &SourceColumn) -> String {
    if crate::pg::builtin::is_builtin(col.type_oid) || col.type_name.starts_with("geometry") || col.type_name.starts_with("geography") {
        col.type_name.clone()
    } else {
        // Types CARTO may not have (enums, domains): their text form.
        "text".into()
    }
}

/// A point as hex EWKB (SRID 4326), built here rather than by a remote rewrite.
pub fn point_ewkb_hex(lng: f64, lat: f64) -> String {
    let mut b = Vec::with_capacity(25);
    b.push(1u8); // little endian
    b.extend_from_slice(&(1u32 | 0x2000_0000).to_le_bytes()); // Point with SRID
    b.extend_from_slice(&4326u32.to_le_bytes());
    b.extend_from_slice(&lng.to_le_bytes());
    b.extend_from_slice(&lat.to_le_bytes());
    b.iter().map(|x| format!("{x:02X}")).collect()
}

pub fn run(args: &PushArgs, client: &Client, prev_wm: Option<&str>, stage: &str) -> FdwResult<RunOutcome> {
    // A push may create or replace its target: what this backend remembers of CARTO's catalogue goes.
    crate::fdw::remote_catalog::forget_all();
    let src = crate::sync::source_sql(&args.source);
    let cols = crate::sync::source_columns(&src)?;
    let send: Vec<&SourceColumn> = cols.iter().filter(|c| c.name != "the_geom_webmercator").collect();
    let lnglat_idx = lnglat_columns(args, &cols, &send)?;
    let Some(RunRange { filter, new_wm }) = run_range(args, &cols, &src, prev_wm)? else {
        return Ok(RunOutcome { rows: 0, watermark_to: prev_wm.map(str::to_string) });
    };

    // The remote table: created plain when missing (loaded, then cartodbfied).
    let target = remote_ident(&args.remote_table);
    let mut col_defs: Vec<String> = send.iter().map(|c| format!("{} {}", quote_ident(&c.name), remote_type(c))).collect();
    if lnglat_idx.is_some() {
        col_defs.push("\"the_geom\" geometry(Point,4326)".into());
    }
    let created = create_if_missing(args, client, &target, &col_defs)?;

    let mut names: Vec<String> = send.iter().map(|c| quote_ident(&c.name)).collect();
    if lnglat_idx.is_some() {
        names.push("\"the_geom\"".into());
    }
    let col_list = names.join(", ");
    let direct = args.mode == Mode::Append && args.since.is_none();
    let copy_target = if direct {
        target.clone()
    } else {
        query(client, &format!("CREATE TABLE {} ({})", quote_ident(stage), col_defs.join(", ")), "creating the staging table")?;
        quote_ident(stage)
    };

    let select = send.iter().map(|c| format!("{}::text", quote_ident(&c.name))).collect::<Vec<_>>().join(", ");
    // COPY binary where the COPY target's types are the ones push declared (push_binary.rs).
    let sends = if args.binary_allowed && (!direct || created) && lnglat_idx.is_none() {
        let remote: Vec<String> = send.iter().map(|c| remote_type(c)).collect();
        crate::sync::push_binary::send_functions(&send, &remote)?
    } else {
        None
    };
    let rows = match sends {
        Some(sends) => {
            let copy_sql = format!("COPY {copy_target} ({col_list}) FROM STDIN (FORMAT binary)");
            let (rows, requests) = crate::sync::push_binary::stream_rows(client, &send, &sends, &format!("({src}) s{filter}"), &copy_sql)?;
            if requests > 1 {
                pgrx::notice!("carto_fdw: the rows went to CARTO in {requests} COPY requests (each request is its own remote transaction)");
            }
            rows
        }
        None => stream_rows(client, &format!("SELECT {select} FROM ({src}) s{filter}"), &format!("COPY {copy_target} ({col_list}) FROM STDIN"), names.len(), lnglat_idx)?,
    };

    if !direct {
        apply_staged(args, client, &target, stage, &names, new_wm.as_deref(), rows)?;
    }
    if created && args.cartodbfy {
        cartodbfy(args, client, &target)?;
    }
    Ok(RunOutcome { rows, watermark_to: new_wm.or_else(|| prev_wm.map(str::to_string)) })
}

/// The positions, among the columns sent, of lnglat's longitude and latitude columns (which build
/// the_geom), or None without lnglat.
fn lnglat_columns(args: &PushArgs, cols: &[SourceColumn], send: &[&SourceColumn]) -> FdwResult<Option<(usize, usize)>> {
    let Some((lng, lat)) = &args.lnglat else { return Ok(None) };
    if cols.iter().any(|c| c.name == "the_geom") {
        return Err(FdwError::InvalidOptionValue {
            message: "lnglat builds the_geom, but the source already has a the_geom column".into(),
        });
    }
    let find = |n: &str| {
        send.iter().position(|c| c.name == n).ok_or_else(|| FdwError::InvalidOptionValue {
            message: format!("lnglat column \"{n}\" is not a column of the source"),
        })
    };
    Ok(Some((find(lng)?, find(lat)?)))
}

/// The rows of one run: the filter on the source (` WHERE ...`, empty for every row) and the watermark the
/// run advances to.
struct RunRange {
    filter: String,
    new_wm: Option<String>,
}

/// The range of this run: without `since`, every row; with it, rows past the previous watermark, up to
/// the highest value now. None when the source has no value to go up to (nothing to send).
fn run_range(args: &PushArgs, cols: &[SourceColumn], src: &str, prev_wm: Option<&str>) -> FdwResult<Option<RunRange>> {
    let Some(s) = &args.since else { return Ok(Some(RunRange { filter: String::new(), new_wm: None })) };
    let sc = cols.iter().find(|c| &c.name == s).ok_or_else(|| FdwError::InvalidOptionValue {
        message: format!("since column \"{s}\" is not a column of the source"),
    })?;
    let qc = quote_ident(&sc.name);
    let past = match prev_wm {
        Some(w) => format!(" WHERE {qc} > {}::{}", quote_literal(w), sc.type_name),
        None => String::new(),
    };
    // The watermark's text goes to CARTO's ledger and back into later runs' filters: portable.
    let new_wm = with_transmission_modes(|| crate::pg::local_sql::get_one::<DbText>(&format!("SELECT max({qc})::text FROM ({src}) s{past}")))
        .map_err(|e| FdwError::internal(format!("reading the source: {e}")))?
        .map(DbText::into_string);
    let Some(upto) = &new_wm else { return Ok(None) };
    let upper = format!(
        "{} {qc} <= {}::{}",
        if past.is_empty() { " WHERE" } else { " AND" },
        quote_literal(upto),
        sc.type_name
    );
    Ok(Some(RunRange { filter: format!("{past}{upper}"), new_wm }))
}

/// Creates the remote table with `col_defs` (and the upsert key unique) when it does not exist and
/// `create` allows it. Returns whether it was created.
fn create_if_missing(args: &PushArgs, client: &Client, target: &str, col_defs: &[String]) -> FdwResult<bool> {
    let exists = query(
        client,
        &format!("SELECT (to_regclass({}) IS NOT NULL)::text AS e", quote_literal(target)),
        "looking up the remote table",
    )?;
    let created = first_text(&exists, "e").as_deref() != Some("true");
    if created {
        if !args.create {
            return Err(FdwError::InvalidOptionValue {
                message: format!("remote table {target} does not exist (pass create => true to create it)"),
            });
        }
        let mut defs = col_defs.to_vec();
        if args.mode == Mode::Upsert {
            if let Some(k) = &args.key {
                defs.push(format!("UNIQUE ({})", quote_ident(k)));
            }
        }
        query(client, &format!("CREATE TABLE {target} ({})", defs.join(", ")), "creating the remote table")?;
    }
    Ok(created)
}

/// Cartodbfies the table this run created, and makes the upsert key unique again.
fn cartodbfy(args: &PushArgs, client: &Client, target: &str) -> FdwResult<()> {
    query(
        client,
        &format!("SELECT CDB_CartodbfyTable(current_schema()::text, {}::regclass)::text AS t", quote_literal(target)),
        "cartodbfying the new table",
    )?;
    // A cartodbfy that rewrites the table drops its constraints; upserts need the key unique.
    if args.mode == Mode::Upsert {
        if let Some(k) = &args.key {
            let index = quote_ident(&format!("{}_{k}_carto_sync_key", args.remote_table.replace('.', "_")));
            query(
                client,
                &format!("CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {target} ({})", quote_ident(k)),
                "indexing the upsert key",
            )?;
        }
    }
    Ok(())
}

/// Streams the cursor's rows as COPY text into one `/copyfrom` request (rolling over to a new
/// one before CARTO's size limit, with a NOTICE). Returns the rows CARTO confirmed.
fn stream_rows(client: &Client, select: &str, copy_sql: &str, columns: usize, lnglat: Option<(usize, usize)>) -> FdwResult<i64> {
    // Each request's COPY is tagged, and an ERROR (cancel, timeout, a bad row) hands the open
    // upload to the transaction's abort, which ends it with a poison line (fdw/xact.rs).
    let mut upload = Upload::new(client, copy_sql, false, columns);
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut pending_rows: u64 = 0;
    Spi::connect(|c| -> FdwResult<()> {
        // The `::text` casts of the select list run when rows are fetched: the cursor is opened
        // and every FETCH runs under the transmission modes, so the text CARTO gets is portable.
        let select = crate::pg::local_sql::sql(select);
        let mut cursor = with_transmission_modes(|| c.try_open_cursor(&select, &[]))
            .map_err(|e| FdwError::internal(format!("reading the source: {e}")))?;
        loop {
            let table = with_transmission_modes(|| cursor.fetch(2000))
                .map_err(|e| FdwError::internal(format!("reading the source: {e}")))?;
            if table.is_empty() {
                break;
            }
            let ncols = table.columns().unwrap_or(0);
            for row in table {
                // Each value's text in the database encoding, converted to UTF-8 for CARTO (DbText).
                let mut values: Vec<Option<String>> = Vec::with_capacity(ncols + 1);
                for i in 1..=ncols {
                    let v = row.get::<DbText>(i).map_err(|e| FdwError::internal(format!("reading the source: {e}")))?;
                    values.push(v.map(DbText::into_string));
                }
                if let Some((lng, lat)) = lnglat {
                    let p = match (values[lng].as_deref().and_then(|v| v.parse::<f64>().ok()), values[lat].as_deref().and_then(|v| v.parse::<f64>().ok())) {
                        (Some(x), Some(y)) => Some(point_ewkb_hex(x, y)),
                        _ => None,
                    };
                    values.push(p);
                }
                carto_client::copy_text::encode_row(values.iter().map(|v| v.as_deref().map(str::as_bytes)), &mut buf);
                pending_rows += 1;
            }
            if buf.len() >= 1 << 20 {
                upload.send(std::mem::take(&mut buf), pending_rows, "pushing rows")?;
                pending_rows = 0;
            }
        }
        Ok(())
    })?;
    let (total, requests) = upload.finish(buf, pending_rows, "pushing rows")?;
    if requests > 1 {
        pgrx::notice!("carto_fdw: the rows went to CARTO in {requests} COPY requests (each request is its own remote transaction)");
    }
    Ok(total as i64)
}

/// One remote transaction: the staged rows into the target, the ledger's watermark, the staging
/// table dropped. Too big or too slow for `/sql`: the same statements as one Batch job.
fn apply_staged(
    args: &PushArgs,
    client: &Client,
    target: &str,
    stage: &str,
    names: &[String],
    new_wm: Option<&str>,
    rows: i64,
) -> FdwResult<()> {
    let cols = names.join(", ");
    let stage = quote_ident(stage);
    let mut stmts = Vec::new();
    match args.mode {
        Mode::Replace => {
            // DELETE, not TRUNCATE: readers keep seeing the old rows until the swap commits.
            stmts.push(format!("DELETE FROM {target}"));
            stmts.push(format!("INSERT INTO {target} ({cols}) SELECT {cols} FROM {stage}"));
        }
        Mode::Append => stmts.push(format!("INSERT INTO {target} ({cols}) SELECT {cols} FROM {stage}")),
        Mode::Upsert => {
            let key = args.key.as_deref().map(quote_ident).unwrap_or_else(|| "\"cartodb_id\"".into());
            let updates: Vec<String> =
                names.iter().filter(|n| **n != key).map(|n| format!("{n} = EXCLUDED.{n}")).collect();
            let action = if updates.is_empty() { "NOTHING".to_string() } else { format!("UPDATE SET {}", updates.join(", ")) };
            stmts.push(format!(
                "INSERT INTO {target} ({cols}) SELECT {cols} FROM {stage} ON CONFLICT ({key}) DO {action}"
            ));
        }
    }
    if let Some(wm) = new_wm {
        stmts.push(format!("CREATE TABLE IF NOT EXISTS {LEDGER} (name text PRIMARY KEY, watermark text, updated_at timestamptz NOT NULL DEFAULT now())"));
        stmts.push(format!(
            "INSERT INTO {LEDGER} (name, watermark) VALUES ({}, {}) ON CONFLICT (name) DO UPDATE SET watermark = EXCLUDED.watermark, updated_at = now()",
            quote_literal(&args.name),
            quote_literal(wm)
        ));
    }
    stmts.push(format!("DROP TABLE {stage}"));
    let sql = stmts.join("; ");

    if rows <= BATCH_THRESHOLD {
        match block_on(client.query(&sql))? {
            Ok(_) => return Ok(()),
            // CARTO's statement timeout rolled the whole statement back: run it as a Batch job.
            Err(e) if e.kind() == ErrorKind::RemoteTimeout => {}
            Err(e) => return Err(FdwError::remote(e, "applying the staged rows")),
        }
    }
    let job = block_on(client.batch_create(&BatchJobRequest::Single(sql)))?
        .map_err(|e| FdwError::remote(e, "submitting the apply as a Batch job"))?;
    let done = block_on(client.batch_wait(&job.job_id, None))?
        .map_err(|e| FdwError::remote(e, "waiting for the apply Batch job"))?;
    if done.status != JobStatus::Done {
        return Err(FdwError::internal(format!(
            "the apply Batch job {} ended as {}: {}",
            done.job_id,
            done.status.as_str(),
            done.failed_reason.unwrap_or_default()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod unit {
    #[test]
    fn ewkb_point_matches_postgis_layout() {
        // As ST_AsEWKB(ST_SetSRID(ST_MakePoint(1, 2), 4326)) in hex.
        assert_eq!(super::point_ewkb_hex(1.0, 2.0), "0101000020E6100000000000000000F03F0000000000000040");
    }

    #[test]
    fn stage_prefix_is_stable_and_per_sync() {
        // FNV-1a (32 bits) of the sync's name: the known digests of "a" and "b", so a change of the
        // hash (which would orphan the staging tables a killed run left) fails here.
        assert_eq!(super::stage_prefix("a"), "carto_sync_stage_e40c292c_");
        assert_eq!(super::stage_prefix("b"), "carto_sync_stage_e70c2de5_");
        assert_eq!(super::stage_prefix(""), "carto_sync_stage_811c9dc5_");
    }
}
