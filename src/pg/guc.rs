//! Settings changed for a stretch of code: one GUC nest level with the settings saved in it, all put back
//! when the level is popped (as a function's `SET` clause does). Used for the transmission modes
//! (crate::pg::typeio) and for the pinned search_path of code run as another role (crate::pg::identity).

use std::ffi::CStr;

use pgrx::pg_sys;

/// An open GUC nest level; dropping it pops the level and restores every setting changed in it (also when
/// an ERROR unwinds through it; a transaction abort pops any level left open anyway).
pub struct GucLevel {
    level: i32,
}

impl GucLevel {
    /// Opens a nest level and sets `settings` (name, value) in it, for this session only.
    /// Backend thread, inside a transaction.
    pub fn set(settings: &[(&CStr, &CStr)]) -> GucLevel {
        // SAFETY: the GUC API on the backend thread inside a transaction (this function's contract); the
        // names and values are NUL-terminated C strings; GUC_ACTION_SAVE ties the values to the level.
        unsafe {
            let level = pg_sys::NewGUCNestLevel();
            for (name, value) in settings {
                pg_sys::set_config_option(
                    name.as_ptr(),
                    value.as_ptr(),
                    pg_sys::GucContext::PGC_USERSET,
                    pg_sys::GucSource::PGC_S_SESSION,
                    pg_sys::GucAction::GUC_ACTION_SAVE,
                    true,
                    0,
                    false,
                );
            }
            GucLevel { level }
        }
    }
}

impl Drop for GucLevel {
    fn drop(&mut self) {
        // SAFETY: pops the level opened in set(), restoring the settings saved in it.
        unsafe { pg_sys::AtEOXact_GUC(true, self.level) };
    }
}
