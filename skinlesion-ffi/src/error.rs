//! Statuses, the per-thread last error, and the panic boundary every export runs inside.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use skinlesion_core::{Error, ErrorKind};

use crate::status::skinlesion_status;

impl skinlesion_status {
    pub(crate) fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| *s as u32 == code)
    }
}

/// The core's error kinds carry their own codes; the statuses are generated from them.
impl From<ErrorKind> for skinlesion_status {
    fn from(kind: ErrorKind) -> Self {
        // A kind newer than this table is still a failure (the unit test keeps them in step).
        Self::from_code(kind.code()).unwrap_or(Self::InferenceError)
    }
}

/// A failure on its way to the caller: status plus message.
pub(crate) struct Failure(pub(crate) skinlesion_status, pub(crate) String);

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure(e.kind().into(), e.to_string())
    }
}

pub(crate) fn null(name: &str) -> Failure {
    Failure(
        skinlesion_status::NullArgument,
        format!("{name} must not be NULL"),
    )
}

pub(crate) fn invalid(message: String) -> Failure {
    Failure(skinlesion_status::InvalidArgument, message)
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

pub(crate) fn set_last_error(message: &str) {
    // Interior NULs cannot be shown by C; drop them rather than lose the message.
    let message = CString::new(message.replace('\0', "")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = message);
}

/// Runs one API call: clears the thread's last error, catches panics, and turns a failure into
/// its status with the message stored for `skinlesion_last_error_message`.
pub(crate) fn call(f: impl FnOnce() -> Result<(), Failure>) -> skinlesion_status {
    // Successful calls (the common case) leave an already empty message untouched.
    LAST_ERROR.with(|e| {
        if !e.borrow().is_empty() {
            *e.borrow_mut() = CString::default();
        }
    });
    let failure = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return skinlesion_status::Ok,
        Ok(Err(failure)) => failure,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Failure(
                skinlesion_status::Panic,
                format!("internal error (please report): {what}"),
            )
        }
    };
    set_last_error(&failure.1);
    failure.0
}

/// The panic boundary of the exports that return a value instead of a status (getters,
/// `*_free`): a panic inside `f` answers `fallback` instead of unwinding into C.
pub(crate) fn guard<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// A short, static description of a status code ("undecodable image"); never NULL.
#[no_mangle]
pub extern "C" fn skinlesion_status_description(status: u32) -> *const c_char {
    // The core's kinds describe themselves; the C API adds its own four statuses.
    static KINDS: OnceLock<Vec<(u32, CString)>> = OnceLock::new();
    guard(c"internal error".as_ptr(), || {
        let kinds = KINDS.get_or_init(|| {
            ErrorKind::ALL
                .iter()
                .map(|k| (k.code(), CString::new(k.description()).unwrap_or_default()))
                .collect()
        });
        let text: &CStr = match skinlesion_status::from_code(status) {
            Some(skinlesion_status::Ok) => c"success",
            Some(skinlesion_status::NullArgument) => c"a required argument was NULL",
            Some(skinlesion_status::InvalidArgument) => c"invalid argument",
            Some(skinlesion_status::Panic) => c"internal error",
            _ => kinds
                .iter()
                .find(|(code, _)| *code == status)
                .map_or(c"unknown status", |(_, text)| text.as_c_str()),
        };
        text.as_ptr()
    })
}

/// The message of the most recent failed call on this thread, or "" when the most recent call
/// succeeded. Never NULL; valid until the next skinlesion call on this thread.
#[no_mangle]
pub extern "C" fn skinlesion_last_error_message() -> *const c_char {
    guard(c"".as_ptr(), || LAST_ERROR.with(|e| e.borrow().as_ptr()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn description(status: u32) -> String {
        // SAFETY: the function returns a static NUL-terminated string.
        unsafe { CStr::from_ptr(skinlesion_status_description(status)) }
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn every_core_error_kind_has_its_own_status_and_description() {
        for &kind in ErrorKind::ALL {
            let status = skinlesion_status::from(kind);
            assert_eq!(status as u32, kind.code(), "{kind}");
            assert_eq!(description(status as u32), kind.description(), "{kind}");
        }
        // The C API's own statuses are none of the core's.
        for own in [0, 1, 2, 16] {
            assert!(ErrorKind::from_code(own).is_none());
            assert_ne!(description(own), "unknown status");
        }
        let past = 1 + ErrorKind::ALL.iter().map(|k| k.code()).max().unwrap();
        assert_eq!(description(past), "unknown status");
        assert_eq!(skinlesion_status::ALL.len(), ErrorKind::ALL.len() + 4);
    }

    #[test]
    fn a_panic_inside_the_boundary_becomes_the_fallback_or_the_panic_status() {
        assert_eq!(guard(7, || panic!("injected")), 7);
        assert_eq!(guard(7, || 3), 3);
        assert_eq!(call(|| panic!("injected")), skinlesion_status::Panic);
        // SAFETY: a NUL-terminated string owned by this thread's last error.
        let message = unsafe { CStr::from_ptr(skinlesion_last_error_message()) };
        assert!(
            message.to_str().unwrap().contains("injected"),
            "{message:?}"
        );
    }

    #[test]
    fn every_export_runs_inside_the_panic_boundary() {
        // Each `extern "C"` function's body must go through `call` (fallible) or `guard`
        // (getters and `*_free`), so that no panic unwinds into C.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut exports = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let source = std::fs::read_to_string(&path).unwrap();
            for body in source.split("extern \"C\" fn ").skip(1) {
                let name = body.split('(').next().unwrap();
                let end = body.find("\n}\n").unwrap_or(body.len());
                let body = &body[..end];
                let guarded = body.contains("call(")
                    || body.contains("guard(")
                    || body.contains("set_positive(");
                assert!(
                    guarded,
                    "{name} in {} is outside the panic boundary",
                    path.display()
                );
                exports += 1;
            }
        }
        // As many as the header declares (a function declaration starts a line with its type).
        let header = include_str!("../include/skinlesion.h");
        let declared = (header.lines())
            .filter(|l| !l.starts_with([' ', '*', '/', '#']) && l.contains("skinlesion_"))
            .filter(|l| l.contains('('))
            .count();
        assert_eq!(exports, declared);
    }
}
