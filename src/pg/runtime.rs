//! The backend's tokio runtime and the one way the backend waits on it.
//!
//! PostgreSQL's API is only ever called on the backend's own thread. Network I/O runs on a small
//! multi-thread runtime created lazily, once per backend (never in `_PG_init`: the postmaster
//! forks after it). The backend waits on futures in slices of [`SLICE`], checking for interrupts
//! in between, so Ctrl-C and statement_timeout stop any transfer promptly.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::runtime::Runtime;

use crate::pg::error::{FdwError, FdwResult};

/// How long the backend waits on a future before it checks for interrupts again.
pub const SLICE: Duration = Duration::from_millis(100);

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// Blocks every signal on the runtime's threads, so PostgreSQL's handlers (SIGINT for cancel,
/// SIGTERM, SIGALRM for timeouts) always run on the backend's own thread.
fn block_signals_on_this_thread() {
    // SAFETY: plain libc calls on a local sigset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

pub fn runtime() -> FdwResult<&'static Runtime> {
    let rt = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(4)
            .thread_name("carto_fdw-io")
            .on_thread_start(block_signals_on_this_thread)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    });
    rt.as_ref().map_err(|e| FdwError::internal(format!("could not start the I/O runtime: {e}")))
}

/// Runs `fut` to completion on the backend's runtime, waking every [`SLICE`] to check for
/// interrupts. A cancel, statement timeout or terminate raises PostgreSQL's ERROR from here, and
/// the unwinding drops the future, which closes its HTTP connection (CARTO then cancels the
/// remote query, or rolls a COPY back).
pub fn block_on<F: Future>(fut: F) -> FdwResult<F::Output> {
    let rt = runtime()?;
    let mut fut = Box::pin(fut);
    loop {
        let done = rt.block_on(async {
            tokio::select! {
                biased;
                out = &mut fut => Some(out),
                _ = tokio::time::sleep(SLICE) => None,
            }
        });
        if let Some(out) = done {
            return Ok(out);
        }
        if pgrx::pg_sys::submodules::elog::interrupt_pending() {
            // Benign interrupts (a config reload, a barrier) return here and the wait goes on.
            pgrx::check_for_interrupts!();
        }
    }
}

/// Like [`block_on`], but gives up at `deadline` (None: never) and returns `Ok(None)` then, the
/// future dropped. For waits PostgreSQL's own timer does not bound: the pre-commit finish of an
/// upload runs after PostgreSQL disabled the statement timer, so its deadline is derived from
/// statement_timeout by the caller. Cancel and terminate still stop it (as in [`block_on`]).
pub fn block_on_until<F: Future>(fut: F, deadline: Option<std::time::Instant>) -> FdwResult<Option<F::Output>> {
    let Some(deadline) = deadline else {
        return block_on(fut).map(Some);
    };
    let deadline = tokio::time::Instant::from_std(deadline);
    block_on(async move { tokio::time::timeout_at(deadline, fut).await.ok() })
}

/// Runs a future that is bounded by its own deadline to completion WITHOUT checking for interrupts,
/// so it never raises an ERROR: for the abort callbacks (interrupts are held there anyway, and an
/// ERROR during an abort is not allowed) and for a FATAL exit, where the ABORT callback still runs.
pub fn block_on_bounded<F: Future>(fut: F) -> Option<F::Output> {
    let rt = runtime().ok()?;
    Some(rt.block_on(fut))
}

/// How [`block_on_interruptible`] ended.
pub enum Waited<T> {
    Done(T),
    /// The deadline passed; the future was dropped.
    Deadline,
    /// A cancel or terminate is pending (not yet raised); the future was dropped. The caller may
    /// clean up (with interrupts held) and must then call `pgrx::check_for_interrupts!()`.
    Interrupted,
}

/// Like [`block_on_until`], but a pending cancel or terminate is returned to the caller instead of
/// being raised at once, so that what the dropped future leaves behind can be cleaned up first.
pub fn block_on_interruptible<F: Future>(fut: F, deadline: Option<std::time::Instant>) -> FdwResult<Waited<F::Output>> {
    let rt = runtime()?;
    let mut fut = Box::pin(fut);
    loop {
        let slice = match deadline {
            Some(d) => SLICE.min(d.saturating_duration_since(std::time::Instant::now())),
            None => SLICE,
        };
        let done = rt.block_on(async {
            tokio::select! {
                biased;
                out = &mut fut => Some(out),
                _ = tokio::time::sleep(slice) => None,
            }
        });
        if let Some(out) = done {
            return Ok(Waited::Done(out));
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            return Ok(Waited::Deadline);
        }
        if pgrx::pg_sys::submodules::elog::interrupt_pending() {
            // SAFETY: reads of signal flags on the backend thread.
            if unsafe { pgrx::pg_sys::QueryCancelPending != 0 || pgrx::pg_sys::ProcDiePending != 0 } {
                return Ok(Waited::Interrupted);
            }
            pgrx::check_for_interrupts!();
        }
    }
}

/// Holds PostgreSQL's interrupts while it lives (HOLD_INTERRUPTS / RESUME_INTERRUPTS).
pub struct HeldInterrupts(());

impl HeldInterrupts {
    pub fn hold() -> Self {
        // SAFETY: the backend thread's own counter, as HOLD_INTERRUPTS() does.
        unsafe { pgrx::pg_sys::InterruptHoldoffCount += 1 };
        HeldInterrupts(())
    }
}

impl Drop for HeldInterrupts {
    fn drop(&mut self) {
        // SAFETY: undoes hold(); an ERROR's recovery resets the counter anyway.
        unsafe {
            pgrx::pg_sys::InterruptHoldoffCount = pgrx::pg_sys::InterruptHoldoffCount.saturating_sub(1);
        }
    }
}
