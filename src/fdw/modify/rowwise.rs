//! Row-wise UPDATE and DELETE: rows addressed by the rowid column, sent in batches of `/sql` statements.

use carto_client::Client;
use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};
use crate::fdw::connection::client_for;
use crate::pg::cstr::cstr_owned;
use crate::pg::sql_text::{literal_for_type, quote_ident};
use crate::fdw::table::TableDef;
use crate::fdw::xact::{cleanup_stale_uploads, finish_pending_for};
use crate::pg::error::{FdwError, FdwResult};
use crate::pg::runtime::block_on;
use crate::pg::typeio::{ColumnOutput, TransmissionModes};

use super::shared::{result_user, ModifyPlan, ROWID_JUNK};

// ---------------------------------------------------------------------------------------------
// Row-wise UPDATE and DELETE.

/// Row-wise UPDATE/DELETE: rows per `/sql` request, and the largest request.
const ROWWISE_BATCH_ROWS: usize = 1000;
const ROWWISE_BATCH_BYTES: usize = 1024 * 1024;

struct SetCol {
    attnum: i16,
    remote: String,
    type_oid: pg_sys::Oid,
    type_name: String,
    output: ColumnOutput,
}

pub struct RowwiseState {
    label: String,
    op: u32,
    client: Option<Client>,
    from: String,
    rowid_remote: String,
    rowid_type_oid: pg_sys::Oid,
    rowid_type: String,
    rowid_output: ColumnOutput,
    junk_attno: i16,
    set: Vec<SetCol>,
    /// Rendered rows of the current batch: `(k, v1, v2, ...)` for UPDATE, `k` for DELETE.
    batch: Vec<String>,
    batch_bytes: usize,
    /// When the rowid itself changes, rows are sent only at the end of the statement, so that the
    /// scan (paged by rowid) never meets a row it already updated.
    hold_until_end: bool,
    pub(super) requests: u64,
    rows_sent: u64,
    rows_affected: u64,
    pub(super) explain_sql: String,
}

fn type_name_of(typid: pg_sys::Oid, typmod: i32) -> String {
    // SAFETY: catalog lookup on the backend thread.
    let name = unsafe { cstr_owned(pg_sys::format_type_with_typemod(typid, typmod)) }.unwrap_or_default();
    // Extension types may print schema-qualified locally; CARTO has them on its search_path.
    let head_end = name.find('(').unwrap_or(name.len());
    match name[..head_end].rfind('.') {
        Some(dot) => name[dot + 1..].to_string(),
        None => name,
    }
}

impl RowwiseState {
    fn is_update(&self) -> bool {
        self.op == pg_sys::CmdType::CMD_UPDATE
    }

    fn statement(&self) -> String {
        if self.is_update() {
            let sets: Vec<String> =
                self.set.iter().enumerate().map(|(i, c)| format!("{} = v.c{}", quote_ident(&c.remote), i + 1)).collect();
            let names: Vec<String> = (1..=self.set.len()).map(|i| format!("c{i}")).collect();
            let mut cols = vec!["k".to_string()];
            cols.extend(names);
            format!(
                "UPDATE {} AS r SET {} FROM (VALUES {}) AS v({}) WHERE r.{} = v.k",
                self.from,
                sets.join(", "),
                self.batch.join(", "),
                cols.join(", "),
                quote_ident(&self.rowid_remote)
            )
        } else {
            format!("DELETE FROM {} WHERE {} IN ({})", self.from, quote_ident(&self.rowid_remote), self.batch.join(", "))
        }
    }

    unsafe fn literal(
        modes: &TransmissionModes,
        output: &mut ColumnOutput,
        typid: pg_sys::Oid,
        type_name: &str,
        value: Option<pg_sys::Datum>,
    ) -> String {
        // SAFETY: this function's contract: called on the backend thread, inside a transaction.
        unsafe {
            match value {
                None => format!("NULL::{type_name}"),
                Some(d) => {
                    let text = cstr_owned(output.output(modes, d)).unwrap_or_default();
                    literal_for_type(typid, &text, type_name)
                }
            }
        }
    }

    pub(super) unsafe fn add_row(&mut self, slot: *mut pg_sys::TupleTableSlot, plan_slot: *mut pg_sys::TupleTableSlot) -> FdwResult<()> {
        // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
        unsafe {
            // The rowid of the row, from the junk column of the subplan's row.
            let pn = self.junk_attno as i32;
            if ((*plan_slot).tts_nvalid as i32) < pn {
                pg_sys::slot_getsomeattrs_int(plan_slot, pn);
            }
            let k_null = *(*plan_slot).tts_isnull.add(pn as usize - 1);
            if k_null {
                return Err(FdwError::Internal {
                    message: format!(
                        "a row of foreign table \"{}\" has a NULL {}: it cannot be addressed on CARTO",
                        self.label, self.rowid_remote
                    ),
                });
            }
            let k = *(*plan_slot).tts_values.add(pn as usize - 1);
            // The row's values are printed under the transmission modes, the request sent without them.
            let modes = TransmissionModes::enter();
            let k_lit = Self::literal(&modes, &mut self.rowid_output, self.rowid_type_oid, &self.rowid_type, Some(k));
            let row = if self.is_update() {
                let natts = (*(*slot).tts_tupleDescriptor).natts;
                if ((*slot).tts_nvalid as i32) < natts {
                    pg_sys::slot_getsomeattrs_int(slot, natts);
                }
                let mut parts = vec![k_lit];
                for c in self.set.iter_mut() {
                    let idx = c.attnum as usize - 1;
                    let v = if *(*slot).tts_isnull.add(idx) { None } else { Some(*(*slot).tts_values.add(idx)) };
                    parts.push(Self::literal(&modes, &mut c.output, c.type_oid, &c.type_name, v));
                }
                format!("({})", parts.join(", "))
            } else {
                k_lit
            };
            drop(modes);
            self.batch_bytes += row.len() + 2;
            self.batch.push(row);
            if !self.hold_until_end && (self.batch.len() >= ROWWISE_BATCH_ROWS || self.batch_bytes >= ROWWISE_BATCH_BYTES) {
                self.flush()?;
            }
            Ok(())
        }
    }

    pub(super) fn flush(&mut self) -> FdwResult<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let Some(client) = self.client.clone() else { return Ok(()) };
        // Rows held until the end of the statement still go in requests of at most ROWWISE_BATCH_ROWS.
        let all = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        for chunk in all.chunks(ROWWISE_BATCH_ROWS) {
            self.batch = chunk.to_vec();
            self.send_batch(&client)?;
        }
        self.batch.clear();
        Ok(())
    }

    fn send_batch(&mut self, client: &Client) -> FdwResult<()> {
        let sql = self.statement();
        let n = self.batch.len() as u64;
        let verb = if self.is_update() { "updating" } else { "deleting from" };
        let resp = block_on(client.query(&sql))?
            .map_err(|e| FdwError::remote(e, format!("{verb} foreign table \"{}\"", self.label)))?;
        self.requests += 1;
        self.rows_sent += n;
        self.rows_affected += resp.total_rows;
        if resp.total_rows < n {
            ErrorReport::new(
                PgSqlErrorCode::ERRCODE_WARNING,
                crate::pg::error::for_database(format!(
                    "{} of {n} rows of foreign table \"{}\" were no longer on CARTO",
                    n - resp.total_rows,
                    self.label
                )),
                "carto_fdw",
            )
            .report(PgLogLevel::WARNING);
        }
        Ok(())
    }
}

pub(super) unsafe fn new_rowwise_state(
    mtstate: *mut pg_sys::ModifyTableState,
    rinfo: *mut pg_sys::ResultRelInfo,
    plan: &ModifyPlan,
    explain_only: bool,
) -> FdwResult<RowwiseState> {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let estate = (*mtstate).ps.state;
        let relid = (*(*rinfo).ri_RelationDesc).rd_id;
        let userid = result_user(estate, rinfo);
        let table = TableDef::load(relid, userid)?;
        let rowid = table.options.rowid_column.clone();
        let rcol = table
            .columns
            .iter()
            .flatten()
            .find(|c| c.remote_name == rowid)
            .cloned()
            .ok_or_else(|| FdwError::internal(format!("foreign table \"{}\" lost its rowid column", table.local_name)))?;
        let mut junk_attno = 0i16;
        if !explain_only {
            let sub = (*mtstate).ps.lefttree;
            if !sub.is_null() {
                junk_attno = pg_sys::ExecFindJunkAttributeInTlist((*(*sub).plan).targetlist, ROWID_JUNK.as_ptr());
            }
            if junk_attno <= 0 {
                return Err(FdwError::internal("the rowid junk column is missing from the plan"));
            }
        }
        let mut set = Vec::new();
        let mut hold_until_end = false;
        for &a in &plan.update_attnums {
            let Some(c) = table.column(a) else { continue };
            if c.remote_name == rowid {
                hold_until_end = true;
            }
            set.push(SetCol {
                attnum: a,
                remote: c.remote_name.clone(),
                type_oid: c.type_oid,
                type_name: type_name_of(c.type_oid, c.typmod),
                output: ColumnOutput::new(c.type_oid),
            });
        }
        if !explain_only {
            finish_pending_for(relid)?;
        }
        let client = if explain_only { None } else { Some(client_for(&table.access)?) };
        if let Some(c) = &client {
            cleanup_stale_uploads(c);
        }
        let mut st = RowwiseState {
            label: table.local_name.clone(),
            op: plan.op,
            client,
            from: table.from_clause(),
            rowid_remote: rowid,
            rowid_type_oid: rcol.type_oid,
            rowid_type: type_name_of(rcol.type_oid, rcol.typmod),
            rowid_output: ColumnOutput::new(rcol.type_oid),
            junk_attno,
            set,
            batch: Vec::new(),
            batch_bytes: 0,
            hold_until_end,
            requests: 0,
            rows_sent: 0,
            rows_affected: 0,
            explain_sql: String::new(),
        };
        // What EXPLAIN shows: the statement's shape with placeholders.
        st.batch = vec![if st.is_update() {
            let mut p = vec!["$k".to_string()];
            p.extend((1..=st.set.len()).map(|i| format!("$v{i}")));
            format!("({})", p.join(", "))
        } else {
            "$k".to_string()
        }];
        st.explain_sql = st.statement();
        st.batch.clear();
        Ok(st)
    }
}
