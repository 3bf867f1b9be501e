//! Reading what C hands over: byte buffers, arrays and strings, NULL checked.

use std::ffi::{c_char, CStr};

use crate::error::{invalid, null, Failure};

/// A byte slice from C; NULL with length 0 is the empty slice.
///
/// # Safety
/// `data` must be NULL or valid for `len` bytes.
pub(crate) unsafe fn bytes<'a>(
    data: *const u8,
    len: usize,
    name: &str,
) -> Result<&'a [u8], Failure> {
    match (data.is_null(), len) {
        (_, 0) => Ok(&[]),
        (true, _) => Err(null(name)),
        // SAFETY: the caller guarantees `data` is valid for `len` bytes.
        (false, _) => Ok(unsafe { std::slice::from_raw_parts(data, len) }),
    }
}

/// # Safety
/// `ptr` must be NULL or point to `count` valid items.
pub(crate) unsafe fn items<'a, T>(
    ptr: *const T,
    count: usize,
    name: &str,
) -> Result<&'a [T], Failure> {
    match (ptr.is_null(), count) {
        (_, 0) => Ok(&[]),
        (true, _) => Err(null(name)),
        // SAFETY: the caller guarantees `ptr` points to `count` items.
        (false, _) => Ok(unsafe { std::slice::from_raw_parts(ptr, count) }),
    }
}

/// # Safety
/// `s` must be NULL or a NUL-terminated string.
pub(crate) unsafe fn text<'a>(s: *const c_char, name: &str) -> Result<&'a str, Failure> {
    if s.is_null() {
        return Err(null(name));
    }
    // SAFETY: the caller guarantees a NUL-terminated string.
    unsafe { CStr::from_ptr(s) }
        .to_str()
        .map_err(|_| invalid(format!("{name} is not valid UTF-8")))
}
