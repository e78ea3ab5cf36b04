//! C strings handed out by PostgreSQL, as Rust strings.

use std::ffi::CStr;

/// The string at `p`, or None for a null pointer.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string that stays valid during the call.
pub unsafe fn cstr_owned(p: *const std::ffi::c_char) -> Option<String> {
    if p.is_null() {
        None
    } else {
        // SAFETY: non-null, NUL-terminated and valid: this function's contract.
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }
}
