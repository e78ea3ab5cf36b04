//! The upload of a push: one tagged `/copyfrom` request, rolled over before CARTO's size limit, handed to
//! the transaction's abort (crate::fdw::xact) when dropped unfinished.

use carto_client::Bytes;

use crate::pg::error::{FdwError, FdwResult};
use crate::pg::runtime::block_on;

/// The upload of a push (text or binary): one request, rolled over to a new one before CARTO's
/// size limit. Dropped before it is finished (an ERROR unwinding), its open request is handed to
/// the transaction's abort to be ended with a poison row rather than left to CARTO noticing a
/// closed connection.
pub struct PushUpload<'a> {
    copy: Option<carto_client::CopyIn>,
    open: Box<dyn Fn() -> carto_client::CopyIn + 'a>,
    columns: usize,
    total: i64,
    requests: u32,
}

impl<'a> PushUpload<'a> {
    /// `open` starts one request (its COPY tagged); `columns` is the COPY column count (for the poison).
    pub fn new(open: impl Fn() -> carto_client::CopyIn + 'a, columns: usize) -> Self {
        PushUpload { copy: Some(open()), open: Box::new(open), columns, total: 0, requests: 1 }
    }

    fn get(&mut self) -> FdwResult<&mut carto_client::CopyIn> {
        self.copy.as_mut().ok_or_else(|| FdwError::internal("upload lost"))
    }

    /// Sends whole rows; finishes the request and opens the next when it nears CARTO's limit.
    pub fn send(&mut self, data: Vec<u8>, rows: u64) -> FdwResult<()> {
        block_on(self.get()?.send(Bytes::from(data), rows))?.map_err(|e| FdwError::remote(e, "pushing rows"))?;
        if self.get()?.needs_rollover() {
            let next = (self.open)();
            let done = self.copy.replace(next).ok_or_else(|| FdwError::internal("upload lost"))?;
            self.total += block_on(done.finish())?.map_err(|e| FdwError::remote(e, "pushing rows"))?.total_rows as i64;
            self.requests += 1;
        }
        Ok(())
    }

    /// Sends the last rows (if any) and finishes the request: the rows CARTO confirmed in all
    /// requests, and how many requests there were.
    pub fn finish(mut self, data: Vec<u8>, rows: u64) -> FdwResult<(i64, u32)> {
        if rows > 0 {
            block_on(self.get()?.send(Bytes::from(data), rows))?.map_err(|e| FdwError::remote(e, "pushing rows"))?;
        }
        let last = self.copy.take().ok_or_else(|| FdwError::internal("upload lost"))?;
        self.total += block_on(last.finish())?.map_err(|e| FdwError::remote(e, "pushing rows"))?.total_rows as i64;
        Ok((self.total, self.requests))
    }
}

impl Drop for PushUpload<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.copy.take() {
            crate::fdw::xact::adopt_orphan(c, self.columns);
        }
    }
}
