//! The options handle of `skinlesion_classifier_new`.

use std::ffi::c_char;

use skinlesion_core::{Device, Precision};

use crate::error::{call, guard, invalid, null, Failure};
use crate::pointers::text;
use crate::status::skinlesion_status;

/// Options for `skinlesion_classifier_new` (opaque; made by `skinlesion_options_new`).
pub struct skinlesion_options {
    pub(crate) device: Device,
    pub(crate) precision: Precision,
    pub(crate) threads: Option<usize>,
    pub(crate) max_pixels: Option<u64>,
    pub(crate) max_bytes: Option<u64>,
}

/// Makes an options handle with the defaults: device "auto", precision "auto", threads = all cores, 50
/// megapixels and 64 MiB per image. Free it with `skinlesion_options_free`.
///
/// # Safety
/// `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn skinlesion_options_new(
    out: *mut *mut skinlesion_options,
) -> skinlesion_status {
    call(|| {
        if out.is_null() {
            return Err(null("out"));
        }
        let options = Box::new(skinlesion_options {
            device: Device::default(),
            precision: Precision::default(),
            threads: None,
            max_pixels: None,
            max_bytes: None,
        });
        // SAFETY: checked non-NULL; the caller guarantees it is writable.
        unsafe { out.write(Box::into_raw(options)) };
        Ok(())
    })
}

/// Frees an options handle; NULL does nothing. A classifier made with it does not need it.
///
/// # Safety
/// `options` must be NULL or a handle from `skinlesion_options_new`, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn skinlesion_options_free(options: *mut skinlesion_options) {
    if !options.is_null() {
        // SAFETY: the caller hands back a handle from `skinlesion_options_new`.
        guard((), || drop(unsafe { Box::from_raw(options) }));
    }
}

/// # Safety
/// `options` must be NULL or a live handle.
pub(crate) unsafe fn options_mut<'a>(
    options: *mut skinlesion_options,
) -> Result<&'a mut skinlesion_options, Failure> {
    // SAFETY: the caller guarantees a live handle or NULL.
    unsafe { options.as_mut() }.ok_or_else(|| null("options"))
}

/// Sets one option that must be at least 1.
///
/// # Safety
/// `options` must be NULL or a live handle.
pub(crate) unsafe fn set_positive<T: PartialEq + Default>(
    options: *mut skinlesion_options,
    value: T,
    name: &str,
    set: impl FnOnce(&mut skinlesion_options, T),
) -> skinlesion_status {
    call(|| {
        if value == T::default() {
            return Err(invalid(format!("{name} must be at least 1")));
        }
        // SAFETY: forwarded from the caller.
        set(unsafe { options_mut(options)? }, value);
        Ok(())
    })
}

/// Sets where inference runs: "cpu", "cuda", "cuda:N", or "auto" (CUDA when available). An
/// unknown name is `SKINLESION_STATUS_CONFIG_ERROR`; a GPU that is missing is reported by
/// `skinlesion_classifier_new`.
///
/// # Safety
/// `options` must be a live handle; `device` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn skinlesion_options_set_device(
    options: *mut skinlesion_options,
    device: *const c_char,
) -> skinlesion_status {
    call(|| {
        // SAFETY: forwarded from the caller.
        let (options, device) = unsafe { (options_mut(options)?, text(device, "device")?) };
        options.device = device.parse::<Device>()?;
        Ok(())
    })
}

/// Sets the arithmetic of the forward pass: "fp32", "bf16", "bf16-checked" (bf16, with the
/// answers close to a decision boundary re-run in fp32), or "auto" (on a CPU that computes
/// bfloat16 natively, whichever of bf16 and bf16-checked agrees with fp32 closely enough; see
/// `skinlesion_classifier_precision`). An unknown name is `SKINLESION_STATUS_CONFIG_ERROR`; a
/// model without a bf16 network is reported by `skinlesion_classifier_new`.
///
/// # Safety
/// `options` must be a live handle; `precision` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn skinlesion_options_set_precision(
    options: *mut skinlesion_options,
    precision: *const c_char,
) -> skinlesion_status {
    call(|| {
        // SAFETY: forwarded from the caller.
        let (options, precision) =
            unsafe { (options_mut(options)?, text(precision, "precision")?) };
        options.precision = precision.parse::<Precision>()?;
        Ok(())
    })
}

/// Sets how many CPU threads inference and image decoding use (at least 1).
///
/// # Safety
/// `options` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn skinlesion_options_set_threads(
    options: *mut skinlesion_options,
    threads: usize,
) -> skinlesion_status {
    // SAFETY: forwarded from the caller.
    unsafe { set_positive(options, threads, "threads", |o, v| o.threads = Some(v)) }
}

/// Sets the largest image accepted, in pixels (width × height, at least 1); larger images are
/// refused from their header, before decoding.
///
/// # Safety
/// `options` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn skinlesion_options_set_max_pixels(
    options: *mut skinlesion_options,
    max_pixels: u64,
) -> skinlesion_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        set_positive(options, max_pixels, "max_pixels", |o, v| {
            o.max_pixels = Some(v)
        })
    }
}

/// Sets the largest encoded image accepted, in bytes (at least 1).
///
/// # Safety
/// `options` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn skinlesion_options_set_max_bytes(
    options: *mut skinlesion_options,
    max_bytes: u64,
) -> skinlesion_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        set_positive(options, max_bytes, "max_bytes", |o, v| {
            o.max_bytes = Some(v)
        })
    }
}
