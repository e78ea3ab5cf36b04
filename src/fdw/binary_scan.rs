//! A scan's rows from a COPY binary stream, made on two threads.
//!
//! A task on the I/O runtime takes the stream's chunks, cuts them into tuples (carto_client's Decoder) and
//! converts what needs no PostgreSQL call (crate::pg::binary_fast: integers, floats, dates, timestamps,
//! uuid, text checked against the encoding) into finished values, a chunk's rows at a time. The backend
//! receives these batches over a bounded channel and only puts the values into the slot, calling a receive
//! function for the other fields (geometry, numeric, domains, anything doubtful), from bytes the task
//! already laid out NUL-terminated. Before, the backend did all of it alone while the I/O thread idled.
//!
//! Lifetimes: a row's by-reference values point into its batch, which stays alive until the executor asks
//! for the row after the batch's last one (the executor is done with a scan's tuple when it asks for the
//! next: postgres_fdw's batches live the same way). Memory: the channel holds at most [`BATCHES`] batches of
//! about one chunk each, so it stays flat whatever the number of rows.

use carto_client::copy_binary::{Decoder, Step};
use carto_client::{CopyOutStream, Error as ClientError, StatsHandle};
use pgrx::pg_sys;
use pgrx::PgTryBuilder;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::fdw::table::Column;
use crate::fdw::transport::ReadAs;
use crate::pg::binary::{CastCall, ColumnRecv};
use crate::pg::binary_fast::{FastType, TextRule, Wire};
use crate::pg::error::{FdwError, FdwResult};
use crate::pg::typeio::ColumnInput;
use crate::pg::runtime::{block_on, runtime};

/// Batches decoded ahead of the backend.
const BATCHES: usize = 4;

/// One field of a decoded row.
#[derive(Clone, Copy, Debug)]
enum Cell {
    Null,
    Value(usize),
    /// A by-reference value at this byte offset of the arena.
    ByRef(usize),
    /// Bytes for the receive function at this offset (NUL-terminated, as StringInfo's convention asks).
    Recv { off: usize, len: usize },
}

/// The rows of (about) one chunk.
struct Batch {
    rows: usize,
    /// rows × columns.
    cells: Vec<Cell>,
    /// By-reference values and fields for receive functions; u32 words keep varlena headers 4-byte aligned.
    arena: Vec<u32>,
    /// Bytes of the arena in use.
    used: usize,
}

impl Batch {
    fn new() -> Self {
        Batch { rows: 0, cells: Vec::new(), arena: Vec::new(), used: 0 }
    }

    /// Room for `n` bytes (4-byte aligned when `align`): their offset and the bytes to write.
    fn reserve(&mut self, n: usize, align: bool) -> (usize, &mut [u8]) {
        let off = if align { self.used.next_multiple_of(4) } else { self.used };
        self.used = off + n;
        let words = self.used.div_ceil(4);
        if words > self.arena.len() {
            self.arena.resize(words.max(self.arena.len() * 2), 0);
        }
        // SAFETY: u32 words viewed as bytes; `off + n` is within the arena.
        let bytes = unsafe { std::slice::from_raw_parts_mut(self.arena.as_mut_ptr().cast::<u8>(), self.arena.len() * 4) };
        (off, &mut bytes[off..off + n])
    }

    fn push_row(&mut self, decoder: &Decoder, kinds: &[Option<FastType>], rule: TextRule) {
        for (i, kind) in kinds.iter().enumerate() {
            let cell = match (decoder.field(i), kind) {
                (None, _) => Cell::Null,
                (Some(bytes), Some(k)) => match k.decode(bytes, rule) {
                    Wire::Value(v) => Cell::Value(v),
                    Wire::ByRef(n) => {
                        let (off, out) = self.reserve(n, true);
                        k.write_by_ref(bytes, out);
                        Cell::ByRef(off)
                    }
                    Wire::Recv => self.push_recv(bytes),
                },
                (Some(bytes), None) => self.push_recv(bytes),
            };
            self.cells.push(cell);
        }
        self.rows += 1;
    }

    fn push_recv(&mut self, bytes: &[u8]) -> Cell {
        let (off, out) = self.reserve(bytes.len() + 1, false);
        out[..bytes.len()].copy_from_slice(bytes);
        out[bytes.len()] = 0;
        Cell::Recv { off, len: bytes.len() }
    }
}

enum Msg {
    Batch(Box<Batch>),
    End,
    Err(ClientError),
}

/// The I/O side: chunks in, batches out, until the end, an error, or the backend dropping its receiver.
async fn decode_stream(mut stream: CopyOutStream, kinds: Vec<Option<FastType>>, rule: TextRule, tx: mpsc::Sender<Msg>) {
    let mut decoder = Decoder::new(Some(kinds.len()));
    let mut batch = Batch::new();
    loop {
        match decoder.next_tuple() {
            Ok(Step::Tuple) => batch.push_row(&decoder, &kinds, rule),
            Ok(Step::NeedData | Step::End) => {
                if batch.rows > 0 && tx.send(Msg::Batch(Box::new(std::mem::replace(&mut batch, Batch::new())))).await.is_err() {
                    return;
                }
                match stream.next_chunk().await {
                    Ok(Some(chunk)) => decoder.push(chunk),
                    Ok(None) => {
                        let last = match decoder.finish() {
                            Ok(()) => Msg::End,
                            Err(e) => Msg::Err(e),
                        };
                        let _ = tx.send(last).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Msg::Err(e)).await;
                        return;
                    }
                }
            }
            Err(e) => {
                // Rows decoded before the fault come first.
                if batch.rows > 0 {
                    let _ = tx.send(Msg::Batch(Box::new(batch))).await;
                }
                let _ = tx.send(Msg::Err(e)).await;
                return;
            }
        }
    }
}

/// A retrieved column: where its value goes and how it is made.
struct ColumnRead {
    /// Index into the slot's values (attnum - 1).
    index: usize,
    fast: Option<FastType>,
    recv: ColumnRecv,
    /// A type whose binary form is text (text, varchar, char, name, json, jsonb, xml, enums): a NUL
    /// in it is refused with the text transports' error (22P05, naming the column), not left to the
    /// receive function's invalid-encoding error (22021).
    text_like: bool,
    /// A column that travels as text (transport.rs `Mismatch::AsText`: its local type is not CARTO's): its
    /// bytes are checked as the text transports check them, then go through this input function.
    as_text: Option<ColumnInput>,
    /// CARTO's numeric into this float8 column (transport.rs `ReadAs::NumericToFloat8`): what binary_fast
    /// leaves goes through numeric_recv, then this cast, numeric_float8 (float8in of numeric_out: the text
    /// path's value and errors).
    cast: Option<CastCall>,
}

/// A running read: the decode task and what it sent.
struct Running {
    rx: mpsc::Receiver<Msg>,
    task: AbortHandle,
    batch: Option<Box<Batch>>,
    row: usize,
    ended: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        // The task drops the stream, which closes its connection: CARTO cancels the query.
        self.task.abort();
    }
}

/// A scan's rows from a binary COPY stream. See the module documentation.
pub struct BinaryRows {
    columns: Vec<ColumnRead>,
    running: Option<Running>,
}

impl BinaryRows {
    /// # Safety
    /// Backend thread, in a transaction; `columns` the scan's retrieved columns, in order; `read_as`
    /// parallel to them (empty: all read by their own receive functions).
    pub unsafe fn new(columns: &[&Column], read_as: &[ReadAs]) -> Self {
        // SAFETY: the caller upholds this function's contract (# Safety above).
        unsafe {
            let columns = columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let how = read_as.get(i).copied().unwrap_or(ReadAs::Own);
                    let text = how == ReadAs::Text;
                    let numeric = how == ReadAs::NumericToFloat8;
                    ColumnRead {
                        index: c.attnum as usize - 1,
                        fast: match how {
                            ReadAs::Own => FastType::for_recv(c.type_oid, c.typmod),
                            ReadAs::Text => FastType::for_text_input(c.type_oid),
                            ReadAs::NumericToFloat8 => Some(FastType::NumericFloat8),
                        },
                        // CARTO's numeric arrives for a float8 column: numeric's receive function, then the cast.
                        recv: if numeric {
                            ColumnRecv::new(c.attnum, pg_sys::NUMERICOID, -1)
                        } else {
                            ColumnRecv::new(c.attnum, c.type_oid, c.typmod)
                        },
                        text_like: text || (!numeric && is_text_like(c.type_oid)),
                        as_text: text.then(|| ColumnInput::new(c.attnum, c.type_oid, c.typmod)),
                        // numeric -> double precision is a built-in function cast: never missing.
                        cast: if numeric {
                            Some(CastCall::new(pg_sys::NUMERICOID, pg_sys::FLOAT8OID).unwrap_or_else(|| {
                                pgrx::error!("carto_fdw: the cast from numeric to double precision is not a function")
                            }))
                        } else {
                            None
                        },
                    }
                })
                .collect();
            BinaryRows { columns, running: None }
        }
    }

    /// Reads `stream` from now on (a previous read, if any, is dropped); its counters stay readable
    /// through the returned handle.
    pub fn start(&mut self, stream: CopyOutStream) -> FdwResult<StatsHandle> {
        self.running = None;
        let stats = stream.stats_handle();
        // Binary is only chosen in UTF8 and SQL_ASCII databases (crate::pg::binary::encodings_agree).
        // SAFETY: a read of a backend global.
        let rule = if unsafe { pg_sys::GetDatabaseEncoding() } == pg_sys::pg_enc::PG_UTF8 as i32 {
            TextRule::Utf8
        } else {
            TextRule::SqlAscii
        };
        let kinds = self.columns.iter().map(|c| c.fast).collect();
        let (tx, rx) = mpsc::channel(BATCHES);
        let task = runtime()?.spawn(decode_stream(stream, kinds, rule, tx)).abort_handle();
        self.running = Some(Running { rx, task, batch: None, row: 0, ended: false });
        Ok(stats)
    }

    /// Stops the read (the connection closes).
    pub fn stop(&mut self) {
        self.running = None;
    }

    /// Fills `slot` with the next row; false at the clean end of the stream. CARTO's appended error, a cut
    /// or malformed stream are errors; a value the receive function refuses raises an ERROR naming its
    /// column (`names`) and `table`.
    ///
    /// # Safety
    /// Backend thread; `slot` the scan's slot.
    pub unsafe fn next(&mut self, slot: *mut pg_sys::TupleTableSlot, names: &[String], table: &str) -> FdwResult<bool> {
        // SAFETY: the caller upholds this function's contract (# Safety above).
        unsafe {
            let context = || format!("reading foreign table \"{table}\"");
            let Some(run) = self.running.as_mut() else { return Ok(false) };
            loop {
                if let Some(batch) = run.batch.as_deref_mut() {
                    if run.row < batch.rows {
                        let row = run.row;
                        run.row += 1;
                        fill(&mut self.columns, batch, row, slot, names, table);
                        return Ok(true);
                    }
                }
                if run.ended {
                    return Ok(false);
                }
                // The previous batch is dropped only now: the executor is done with its last row.
                run.batch = None;
                match block_on(run.rx.recv())? {
                    Some(Msg::Batch(b)) => {
                        run.batch = Some(b);
                        run.row = 0;
                    }
                    Some(Msg::End) => run.ended = true,
                    Some(Msg::Err(e)) => {
                        run.ended = true;
                        return Err(FdwError::remote(e, context()));
                    }
                    None => {
                        run.ended = true;
                        return Err(FdwError::internal(format!("the binary COPY reader of foreign table \"{table}\" stopped")));
                    }
                }
            }
        }
    }
}

/// Puts row `row` of `batch` into `slot`.
unsafe fn fill(columns: &mut [ColumnRead], batch: &mut Batch, row: usize, slot: *mut pg_sys::TupleTableSlot, names: &[String], table: &str) {
    // SAFETY: this function's contract: called on the backend thread, its pointers valid for the call.
    unsafe {
        let (datums, nulls) = crate::pg::executor::empty_slot(slot);
        let n = columns.len();
        let cells = &batch.cells[row * n..(row + 1) * n];
        let base = batch.arena.as_mut_ptr().cast::<u8>();
        // Only a receive function can raise an ERROR: rows without one need no PG_TRY.
        let calls_pg = cells.iter().zip(columns.iter()).any(|(c, col)| match c {
            Cell::Recv { .. } => true,
            Cell::Null => col.fast.is_none(),
            _ => false,
        });
        for (i, (cell, col)) in cells.iter().zip(columns.iter()).enumerate() {
            if let (Cell::Recv { off, len }, true) = (cell, col.text_like) {
                let bytes = std::slice::from_raw_parts(base.add(*off), *len);
                let name = || names.get(i).map(String::as_str).unwrap_or("?");
                if col.as_text.is_some() {
                    // What an input function reads must be valid in the database encoding (binary is only
                    // used in UTF8 and SQL_ASCII databases, so nothing is ever converted here).
                    if let Err(bad) = crate::pg::text::check(bytes) {
                        bad.error(name(), table).report();
                    }
                } else if memchr::memchr(0, bytes).is_some() {
                    crate::pg::text::BadText::Nul.error(name(), table).report();
                }
            }
        }
        let mut put = |i: usize, col: &mut ColumnRead| match cells[i] {
            Cell::Null => {
                // Through the input or receive function, so that a domain's NOT NULL is checked (a fast
                // type is never a domain).
                if col.fast.is_none() {
                    datums[col.index] = match col.as_text.as_mut() {
                        Some(input) => input.input_null(),
                        None => col.recv.recv_null(),
                    };
                }
                nulls[col.index] = true;
            }
            Cell::Value(v) => {
                datums[col.index] = pg_sys::Datum::from(v);
                nulls[col.index] = false;
            }
            Cell::ByRef(off) => {
                datums[col.index] = pg_sys::Datum::from(base.add(off));
                nulls[col.index] = false;
            }
            Cell::Recv { off, len } => {
                datums[col.index] = match col.as_text.as_mut() {
                    // NUL-terminated by push_recv, checked above.
                    Some(input) => input.input(base.add(off).cast::<std::ffi::c_char>()),
                    None => {
                        let received = col.recv.recv_in_place(base.add(off), len);
                        match col.cast.as_mut() {
                            Some(cast) => cast.call(received),
                            None => received,
                        }
                    }
                };
                nulls[col.index] = false;
            }
        };
        if calls_pg {
            let current = std::sync::atomic::AtomicUsize::new(0);
            PgTryBuilder::new(std::panic::AssertUnwindSafe(|| {
                for (i, col) in columns.iter_mut().enumerate() {
                    current.store(i, std::sync::atomic::Ordering::Relaxed);
                    put(i, col);
                }
            }))
            .catch_others(|e| {
                let name = names.get(current.load(std::sync::atomic::Ordering::Relaxed)).map(String::as_str).unwrap_or("?");
                crate::pg::executor::reraise_with_column(e, name, table)
            })
            .execute();
        } else {
            for (i, col) in columns.iter_mut().enumerate() {
                put(i, col);
            }
        }
        pg_sys::ExecStoreVirtualTuple(slot);
    }
}

/// Whether `type_oid`'s binary form is its text (see [`ColumnRead::text_like`]).
///
/// # Safety
/// Backend thread, in a transaction.
unsafe fn is_text_like(type_oid: pg_sys::Oid) -> bool {
    // SAFETY: the caller upholds this function's contract (# Safety above).
    unsafe {
        use pgrx::pg_sys::BuiltinOid as B;
        let base = pg_sys::getBaseType(type_oid);
        if [B::JSONOID, B::JSONBOID, B::XMLOID].iter().any(|o| o.value() == base) {
            return true;
        }
        let mut category: std::ffi::c_char = 0;
        let mut preferred = false;
        pg_sys::get_type_category_preferred(base, &mut category, &mut preferred);
        // TYPCATEGORY_STRING and TYPCATEGORY_ENUM.
        category as u8 == b'S' || category as u8 == b'E'
    }
}
