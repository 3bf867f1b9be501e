//! Shared helpers: real HAM10000 images from ../shared and the variants derived from them.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::Cursor;
use std::path::PathBuf;

use skinlesion_core::image::{self, DynamicImage, ImageFormat};

/// `../shared/data/ham10000` beside the repository (override with `SKINLESION_DATA`).
pub fn data_dir() -> PathBuf {
    let dir = std::env::var_os("SKINLESION_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/ham10000")
        });
    assert!(
        dir.join("labels.csv").exists(),
        "HAM10000 not found at {} (set SKINLESION_DATA)",
        dir.display()
    );
    dir
}

/// Real images from the test split of every class, in a fixed order.
pub fn real_images(n: usize) -> Vec<PathBuf> {
    let dir = data_dir();
    let labels = std::fs::read_to_string(dir.join("labels.csv")).unwrap();
    let mut seen_labels = std::collections::BTreeMap::<String, usize>::new();
    let mut out = Vec::new();
    // Round-robin over labels so that every class appears early.
    let rows: Vec<(String, String)> = labels
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[3] == "test").then(|| (f[0].to_owned(), f[2].to_owned()))
        })
        .collect();
    for round in 0.. {
        let before = out.len();
        for (id, label) in &rows {
            let count = seen_labels.entry(label.clone()).or_default();
            if *count == round && out.len() < n {
                *count += 1;
                out.push(dir.join("images").join(format!("{id}.jpg")));
            }
        }
        if out.len() >= n || out.len() == before {
            break;
        }
    }
    out
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

/// A valid 45-byte PNG that declares `width` × `height` pixels (a decompression bomb header).
pub fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Deterministic pseudo-random bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}
