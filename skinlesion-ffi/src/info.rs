//! Static facts: version, disclaimer, class codes and names.

use std::ffi::{c_char, CStr, CString};
use std::sync::OnceLock;

use skinlesion_core::{LesionClass, UnknownReason};

use crate::error::guard;
use crate::types::class_index;

/// Static NUL-terminated copies of the core's class codes and names, made once.
pub(crate) fn class_strings() -> &'static [(CString, CString)] {
    static STRINGS: OnceLock<Vec<(CString, CString)>> = OnceLock::new();
    STRINGS.get_or_init(|| {
        LesionClass::ALL
            .iter()
            .map(|c| {
                let cstr = |s: &str| CString::new(s).unwrap_or_default();
                (cstr(c.code()), cstr(c.name()))
            })
            .collect()
    })
}

pub(crate) fn class_at(index: u32) -> Option<LesionClass> {
    LesionClass::ALL.get(index as usize).copied()
}

/// The library's version, e.g. "0.1.0".
#[no_mangle]
pub extern "C" fn skinlesion_version() -> *const c_char {
    static VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => panic!("version has no interior NUL"),
        };
    guard(c"".as_ptr(), || VERSION.as_ptr())
}

/// The statement every program built on this library must show its users: research and
/// education only, not a medical device.
#[no_mangle]
pub extern "C" fn skinlesion_disclaimer() -> *const c_char {
    static DISCLAIMER: OnceLock<CString> = OnceLock::new();
    guard(c"".as_ptr(), || {
        DISCLAIMER
            .get_or_init(|| CString::new(skinlesion_core::DISCLAIMER).unwrap_or_default())
            .as_ptr()
    })
}

/// Number of lesion classes, UNKNOWN included (9): valid `skinlesion_lesion_class` values are
/// 0 to count - 1.
#[no_mangle]
pub extern "C" fn skinlesion_class_count() -> usize {
    guard(0, || LesionClass::ALL.len())
}

/// The ISIC code of a class ("MEL"), or NULL for a value out of range.
#[no_mangle]
pub extern "C" fn skinlesion_class_code(lesion_class: u32) -> *const c_char {
    guard(std::ptr::null(), || {
        class_at(lesion_class).map_or(std::ptr::null(), |c| {
            class_strings()[class_index(c)].0.as_ptr()
        })
    })
}

/// The wire name of an abstention reason ("not_dermoscopy", "low_confidence"; "" for NONE, as
/// in the HTTP API's `unknown_reason`), or NULL for a value out of range.
#[no_mangle]
pub extern "C" fn skinlesion_unknown_reason_code(reason: u32) -> *const c_char {
    static CODES: OnceLock<[CString; 3]> = OnceLock::new();
    guard(std::ptr::null(), || {
        let codes = CODES.get_or_init(|| {
            [
                None,
                Some(UnknownReason::NotDermoscopy),
                Some(UnknownReason::LowConfidence),
            ]
            .map(|r| CString::new(r.map_or("", UnknownReason::code)).unwrap_or_default())
        });
        codes
            .get(reason as usize)
            .map_or(std::ptr::null(), |c| c.as_ptr())
    })
}

/// The display name of a class ("Melanoma"), or NULL for a value out of range.
#[no_mangle]
pub extern "C" fn skinlesion_class_name(lesion_class: u32) -> *const c_char {
    guard(std::ptr::null(), || {
        class_at(lesion_class).map_or(std::ptr::null(), |c| {
            class_strings()[class_index(c)].1.as_ptr()
        })
    })
}

/// True for melanoma, basal cell carcinoma and squamous cell carcinoma; false otherwise and for
/// a value out of range.
#[no_mangle]
pub extern "C" fn skinlesion_class_is_cancerous(lesion_class: u32) -> bool {
    guard(false, || {
        class_at(lesion_class).is_some_and(LesionClass::is_cancerous)
    })
}
