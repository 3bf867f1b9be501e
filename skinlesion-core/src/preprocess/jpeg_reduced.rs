//! A JPEG decoded at a reduced DCT scale by libjpeg-turbo (mozjpeg's build of it, vendored C;
//! its SIMD kernels where `nasm` was found at build time).
//!
//! Why not the pure-Rust decoder the rest of the crate uses: at 1/2 scale a 4032×3024
//! photograph took jpeg-decoder 23 ms and libjpeg-turbo 10.6 ms (one thread, idle machine;
//! `benches/RESULTS.md`), and that decode is most of what a phone's photograph costs. Only
//! this reduced path runs in C: full-size decoding (training's images, explanations) stays with
//! the `image` crate, so training and serving still share one decoder for the images a model
//! was trained on.

use std::os::raw::c_int;
use std::panic::{self, AssertUnwindSafe};

use image::{DynamicImage, GrayImage, RgbImage};
use mozjpeg::Decompress;
use mozjpeg_sys::{jpeg_common_struct, jpeg_error_mgr, J_COLOR_SPACE};

/// The JPEG in `bytes` decoded at `eighths`/8 of its size (1, 2 or 4), or `None` when it is not
/// 8-bit grey or colour (CMYK, 12-bit) or libjpeg found anything wrong with it, warnings
/// included: the caller then decodes in full, the path that reports typed errors.
pub(super) fn decode_reduced(bytes: &[u8], eighths: u8) -> Option<DynamicImage> {
    // libjpeg reports errors by unwinding out of its error handler (`resume_unwind`: no panic
    // message is printed); they end here.
    panic::catch_unwind(AssertUnwindSafe(|| decode(bytes, eighths)))
        .ok()
        .flatten()
}

fn decode(bytes: &[u8], eighths: u8) -> Option<DynamicImage> {
    let mut decoder = Decompress::with_err(strict_errors()).from_mem(bytes).ok()?;
    decoder.scale(eighths);
    let grey = match decoder.color_space() {
        J_COLOR_SPACE::JCS_GRAYSCALE => true,
        J_COLOR_SPACE::JCS_YCbCr | J_COLOR_SPACE::JCS_RGB => false,
        _ => return None,
    };
    let mut started = if grey {
        decoder.grayscale()
    } else {
        decoder.rgb()
    }
    .ok()?;
    let (width, height) = (started.width() as u32, started.height() as u32);
    let pixels: Vec<u8> = started.read_scanlines().ok()?;
    started.finish().ok()?;
    if grey {
        GrayImage::from_raw(width, height, pixels).map(DynamicImage::ImageLuma8)
    } else {
        RgbImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgb8)
    }
}

/// libjpeg's error manager with its fatal errors and its warnings (corrupt data it would
/// otherwise paint grey) both ending the decode.
fn strict_errors() -> jpeg_error_mgr {
    // SAFETY: `jpeg_std_error` initialises every field of the manager it is given, which is
    // how libjpeg documents making one; a zeroed struct of plain fields is valid to pass.
    let mut errors: jpeg_error_mgr = unsafe { std::mem::zeroed() };
    unsafe { mozjpeg_sys::jpeg_std_error(&mut errors) };
    errors.error_exit = Some(fail);
    errors.emit_message = Some(fail_on_warning);
    errors
}

extern "C-unwind" fn fail(_: &mut jpeg_common_struct) {
    panic::resume_unwind(Box::new("libjpeg: fatal error"));
}

/// libjpeg's message levels: -1 a warning, 0 and above trace messages.
extern "C-unwind" fn fail_on_warning(_: &mut jpeg_common_struct, level: c_int) {
    if level < 0 {
        panic::resume_unwind(Box::new("libjpeg: corrupt data"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::codecs::jpeg::JpegEncoder;

    fn jpeg(image: &DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(image)
            .unwrap();
        out
    }

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| image::Rgb([(x / 4) as u8, (y / 4) as u8, 128]))
    }

    #[test]
    fn reduces_by_the_scale_asked_for() {
        let bytes = jpeg(&DynamicImage::ImageRgb8(gradient(803, 600)));
        for (eighths, size) in [(4, (402, 300)), (2, (201, 150)), (1, (101, 75))] {
            let image = decode_reduced(&bytes, eighths).expect("a good JPEG decodes");
            assert_eq!((image.width(), image.height()), size, "{eighths}/8");
            let full = image::load_from_memory(&bytes).unwrap().to_rgb8();
            // The same picture: a pixel of the reduced image against the full one's there.
            let (x, y) = (size.0 / 2, size.1 / 2);
            let reduced = image.to_rgb8().get_pixel(x, y).0;
            let scale = 8 / u32::from(eighths);
            let original = full.get_pixel(x * scale, y * scale).0;
            for c in 0..3 {
                assert!(
                    reduced[c].abs_diff(original[c]) <= 4,
                    "{reduced:?} vs {original:?}"
                );
            }
        }
    }

    #[test]
    fn grey_stays_grey() {
        // A one-component JPEG (image's encoder writes grey as three components).
        let (w, h) = (640, 480);
        let pixels: Vec<u8> = (0..w * h).map(|i| (i % w / 3) as u8).collect();
        let mut encoder = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_GRAYSCALE);
        encoder.set_size(w, h);
        let mut started = encoder.start_compress(Vec::new()).unwrap();
        started.write_scanlines(&pixels).unwrap();
        let bytes = started.finish().unwrap();
        let image = decode_reduced(&bytes, 2).unwrap();
        assert!(matches!(image, DynamicImage::ImageLuma8(_)));
        assert_eq!((image.width(), image.height()), (160, 120));
    }

    #[test]
    fn broken_data_is_refused_not_painted() {
        let mut bytes = jpeg(&DynamicImage::ImageRgb8(gradient(640, 480)));
        // Cut the entropy-coded data short but keep the end marker: libjpeg would warn and
        // fill the rest grey.
        let end = bytes.len() - 2;
        bytes.drain(end / 2..end);
        assert!(decode_reduced(&bytes, 2).is_none());
        assert!(decode_reduced(b"\xFF\xD8\xFF\xD9", 2).is_none());
        assert!(decode_reduced(b"not a jpeg", 2).is_none());
    }
}
