//! What a foreign table is: its options, its server, its columns and their remote names.
//! Read from the catalogs once per planning and once per execution.

use pgrx::pg_sys;

use crate::fdw::connection::{server_access, ServerAccess};
use crate::pg::cstr::cstr_owned;
use crate::pg::sql_text::quote_ident;
use crate::fdw::options::{deflist_to_pairs, TableOptions};
use crate::pg::error::FdwResult;

#[derive(Clone, Debug)]
pub struct Column {
    pub attnum: i16,
    pub local_name: String,
    pub remote_name: String,
    pub type_oid: pg_sys::Oid,
    pub typmod: i32,
    pub collation: pg_sys::Oid,
}

/// A foreign table's columns with their remote names (option column_name, else the local name);
/// index attnum - 1, None for dropped columns.
///
/// # Safety
/// Must run in a transaction on the backend thread.
pub unsafe fn columns_of(relid: pg_sys::Oid) -> Vec<Option<Column>> {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        let rel = pg_sys::RelationIdGetRelation(relid);
        if rel.is_null() {
            return Vec::new();
        }
        let tupdesc = (*rel).rd_att;
        let attrs = crate::pg::compat::tuple_desc_attrs(tupdesc);
        let mut columns = Vec::with_capacity(attrs.len());
        for att in attrs {
            if att.attisdropped {
                columns.push(None);
                continue;
            }
            let local = cstr_owned(att.attname.data.as_ptr()).unwrap_or_default();
            let remote = deflist_to_pairs(pg_sys::GetForeignColumnOptions(relid, att.attnum))
                .into_iter()
                .find(|(n, _)| n == "column_name")
                .map(|(_, v)| v)
                .unwrap_or_else(|| local.clone());
            columns.push(Some(Column {
                attnum: att.attnum,
                local_name: local,
                remote_name: remote,
                type_oid: att.atttypid,
                typmod: att.atttypmod,
                collation: att.attcollation,
            }));
        }
        pg_sys::RelationClose(rel);
        columns
    }
}

pub struct TableDef {
    pub relid: pg_sys::Oid,
    pub local_name: String,
    pub access: ServerAccess,
    pub options: TableOptions,
    /// Index attnum - 1; None for dropped columns.
    pub columns: Vec<Option<Column>>,
}

impl TableDef {
    /// # Safety
    /// Must run in a transaction on the backend thread; `relid` a foreign table.
    pub unsafe fn load(relid: pg_sys::Oid, userid: pg_sys::Oid) -> FdwResult<TableDef> {
        // SAFETY: the caller upholds this function's contract (# Safety above).
        unsafe {
            let table = pg_sys::GetForeignTable(relid);
            let access = server_access((*table).serverid, userid)?;
            let local_name = cstr_owned(pg_sys::get_rel_name(relid)).unwrap_or_default();
            let options =
                TableOptions::from_pairs(&deflist_to_pairs((*table).options), &local_name, &access.options);

            if let Some(q) = &options.query {
                // Checked again at every use: the option may predate the check, and the reader's key
                // runs it only when its owner is trusted to choose that SQL (fdw::query_option).
                crate::fdw::query_option::check(q)?;
                crate::fdw::query_option::check_reader(relid, (*table).serverid, userid, &local_name)?;
            }
            let columns = columns_of(relid);
            Ok(TableDef { relid, local_name, access, options, columns })
        }
    }

    /// The remote relation as it appears after FROM.
    pub fn from_clause(&self) -> String {
        match &self.options.query {
            Some(q) => format!("({q}) AS q"),
            None => match &self.options.schema_name {
                Some(s) => format!("{}.{}", quote_ident(s), quote_ident(&self.options.table_name)),
                None => quote_ident(&self.options.table_name),
            },
        }
    }

    /// A `/sql` read of this table as sent: a query table's in a read-only transaction on CARTO.
    pub fn read_sql(&self, sql: String) -> String {
        if self.options.query.is_some() {
            crate::fdw::query_option::read_only(&sql)
        } else {
            sql
        }
    }

    /// The remote name of the rowid column, when reads can page by it: the table (not a query)
    /// declares it among its columns, so it is known to exist remotely.
    pub fn rowid(&self) -> Option<&str> {
        let declared = self.columns.iter().flatten().any(|c| c.remote_name == self.options.rowid_column);
        if self.options.query.is_none() && declared {
            Some(self.options.rowid_column.as_str())
        } else {
            None
        }
    }

    pub fn remote_names(&self) -> Vec<Option<String>> {
        self.columns.iter().map(|c| c.as_ref().map(|c| c.remote_name.clone())).collect()
    }

    pub fn column(&self, attnum: i16) -> Option<&Column> {
        self.columns.get((attnum as usize).wrapping_sub(1)).and_then(|c| c.as_ref())
    }
}
