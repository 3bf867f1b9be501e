//! The C ABI with arbitrary sizes, strides, formats and buffers, as a C caller could pass them
//! (the buffer's true length is always passed: lying about it is the caller's undefined
//! behaviour, as for any C API). Every call must return a status, with a message on failure.
#![no_main]

use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use skinlesion::*;

struct Handle(*mut skinlesion_classifier);
// SAFETY: the header documents a classifier as usable from many threads.
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

fn classifier() -> Handle {
    let path = std::ffi::CString::new(skinlesion_fuzz::model().to_str().unwrap()).unwrap();
    let mut options = std::ptr::null_mut();
    let mut classifier = std::ptr::null_mut();
    // SAFETY: valid pointers to locals; the options handle is freed once used.
    unsafe {
        assert_eq!(skinlesion_options_new(&mut options), skinlesion_status::Ok);
        let cpu = c"cpu";
        assert_eq!(
            skinlesion_options_set_device(options, cpu.as_ptr()),
            skinlesion_status::Ok
        );
        assert_eq!(
            skinlesion_options_set_threads(options, 1),
            skinlesion_status::Ok
        );
        assert_eq!(
            skinlesion_options_set_max_pixels(options, skinlesion_fuzz::MAX_PIXELS),
            skinlesion_status::Ok
        );
        let status = skinlesion_classifier_new(path.as_ptr(), options, &mut classifier);
        skinlesion_options_free(options);
        assert_eq!(status, skinlesion_status::Ok);
    }
    Handle(classifier)
}

/// An OK status has written the prediction; any other leaves a message.
fn checked(status: skinlesion_status, prediction: &MaybeUninit<skinlesion_prediction>) {
    if status == skinlesion_status::Ok {
        // SAFETY: the library writes the prediction whenever it returns OK.
        let prediction = unsafe { prediction.assume_init_ref() };
        assert!((0.0..=1.0).contains(&prediction.confidence));
    } else {
        // SAFETY: the message is a NUL-terminated string owned by the library.
        let message = unsafe { CStr::from_ptr(skinlesion_last_error_message()) };
        assert!(
            !message.to_bytes().is_empty(),
            "{status:?} without a message"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    static CLASSIFIER: OnceLock<Handle> = OnceLock::new();
    let classifier = CLASSIFIER.get_or_init(classifier).0;
    if data.len() < 7 {
        return;
    }
    // A small header chooses the description; the rest is the pixel buffer.
    let (header, pixels) = data.split_at(7);
    let image = skinlesion_raw_image {
        data: if header[0] & 0x80 != 0 {
            std::ptr::null()
        } else {
            pixels.as_ptr()
        },
        len: pixels.len(),
        width: u32::from(u16::from_le_bytes([header[1], header[2]])) % 4096,
        height: u32::from(u16::from_le_bytes([header[3], header[4]])) % 4096,
        stride: usize::from(u16::from_le_bytes([header[5], header[6]])),
        format: u32::from(header[0] & 0x7f) % 5,
    };
    let mut prediction = MaybeUninit::uninit();
    // SAFETY: `image.data` is NULL or valid for `image.len` bytes; outputs are locals.
    unsafe {
        let status = skinlesion_classify_pixels(classifier, &image, prediction.as_mut_ptr());
        checked(status, &prediction);
        let status = skinlesion_classify_encoded(
            classifier,
            pixels.as_ptr(),
            pixels.len(),
            prediction.as_mut_ptr(),
        );
        checked(status, &prediction);
        let batch = [image, image];
        let mut out = [MaybeUninit::<skinlesion_prediction>::uninit(); 2];
        let mut statuses = [skinlesion_status::Ok; 2];
        let status = skinlesion_classify_pixels_batch(
            classifier,
            batch.as_ptr(),
            batch.len(),
            out.as_mut_ptr().cast(),
            statuses.as_mut_ptr(),
        );
        assert_eq!(statuses[0], statuses[1], "the same image, two statuses");
        // The call reports its first failed item, or OK.
        assert_eq!(status, statuses[0], "the batch's status is not its items'");
        checked(statuses[0], &out[0]);
    }
});
