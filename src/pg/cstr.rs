//! C strings handed out by PostgreSQL (names, output functions' text, option values), as Rust strings.

/// The string at `p`, in the database encoding, as UTF-8 (crate::pg::encoding: PostgreSQL's own
/// conversion, its ERROR for an invalid byte, never a lossy replacement); None for a null pointer.
///
/// # Safety
/// Backend thread; `p` is null or points to a NUL-terminated string that stays valid during the call.
pub unsafe fn cstr_owned(p: *const std::ffi::c_char) -> Option<String> {
    // SAFETY: this function's contract is cstr_to_utf8's.
    unsafe { crate::pg::encoding::cstr_to_utf8(p) }
}

/// The string at `p` that this extension wrote itself as UTF-8 (a plan's JSON kept in a String node), read
/// back without conversion; None for a null pointer or (never written by us) invalid UTF-8.
///
/// # Safety
/// Backend thread; `p` is null or points to a NUL-terminated string that stays valid during the call.
pub unsafe fn cstr_as_written(p: *const std::ffi::c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null, NUL-terminated and valid: this function's contract.
    unsafe { std::ffi::CStr::from_ptr(p) }.to_str().ok().map(str::to_string)
}
