//! Shared helpers: real HAM10000 images from ../shared and the variants derived from them.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::Cursor;
use std::path::PathBuf;

use skinlesion_core::image::{self, DynamicImage, ImageFormat};

#[allow(unused_imports)] // not every test binary uses both
pub use skinlesion_core::testing::{noise, png_header_only};

/// Real images from the test split of every class, in a fixed order.
pub fn real_images(n: usize) -> Vec<PathBuf> {
    skinlesion_core::testing::ham10000_sample("test", n)
        .into_iter()
        .map(|i| i.path)
        .collect()
}

/// A classifier on the CPU with one thread in fp32 (answers do not depend on the machine:
/// `auto` runs bf16 where the CPU has it; `tests/precision.rs` tests that).
pub fn cpu(manifest: &std::path::Path) -> skinlesion_core::Classifier {
    skinlesion_core::Classifier::builder(manifest)
        .device(skinlesion_core::Device::Cpu)
        .precision(skinlesion_core::Precision::Fp32)
        .threads(1)
        .build()
        .unwrap()
}

pub fn read(path: &PathBuf) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

pub fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// A JPEG whose pixels are stored rotated 90° counter-clockwise, with EXIF orientation 6
/// ("rotate 90° clockwise to display"): shown upright, it is `image`.
pub fn exif_rotated_jpeg(image: &DynamicImage) -> Vec<u8> {
    let stored = image.rotate270();
    let jpeg = {
        let mut out = Vec::new();
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 100);
        stored.to_rgb8().write_with_encoder(encoder).unwrap();
        out
    };
    // APP1 "Exif": little-endian TIFF header and one IFD entry, Orientation (0x0112) = 6.
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"II*\0");
    tiff.extend_from_slice(&8u32.to_le_bytes());
    tiff.extend_from_slice(&1u16.to_le_bytes());
    tiff.extend_from_slice(&0x0112u16.to_le_bytes());
    tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_le_bytes());
    tiff.extend_from_slice(&6u16.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}
