//! Preprocessing checked against an independent implementation (PIL + numpy, in the project
//! venv) on real HAM10000 images, so training and serving can trust it.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use skinlesion_core::training::preprocess;
use skinlesion_core::DecodeLimits;
use skinlesion_core::{InputSpec, ResizePolicy};

fn python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        venv.exists(),
        "no project venv at {}: run `bash scripts/setup.sh`",
        venv.display()
    );
    venv
}

/// Runs the reference over `paths`, returning N×3×H×W floats.
fn reference(spec: &InputSpec, paths: &[PathBuf]) -> Vec<f32> {
    let out = tempfile::NamedTempFile::new().unwrap();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/reference/preprocess_ref.py");
    let status = Command::new(python())
        .arg(script)
        .arg(serde_json::to_string(spec).unwrap())
        .arg(out.path())
        .args(paths)
        .status()
        .unwrap();
    assert!(status.success(), "reference script failed");
    std::fs::read(out.path())
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn ours(spec: &InputSpec, paths: &[PathBuf]) -> Vec<f32> {
    paths
        .iter()
        .flat_map(|p| {
            let t = preprocess(&read(p), spec, &DecodeLimits::default()).unwrap();
            assert_eq!(t.size(), [1, 3, spec.height as i64, spec.width as i64]);
            Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
        })
        .collect()
}

/// (mean, max) absolute difference, in units of one 8-bit grey level (1/255 before
/// normalisation), so the tolerance reads the same for any mean/std.
fn diff_in_levels(a: &[f32], b: &[f32], spec: &InputSpec) -> (f64, f64) {
    assert_eq!(a.len(), b.len());
    let plane = (spec.width * spec.height) as usize;
    let (mut sum, mut max) = (0f64, 0f64);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let channel = (i / plane) % 3;
        let levels = f64::from((x - y).abs()) * f64::from(spec.std[channel]) * 255.0;
        sum += levels;
        max = max.max(levels);
    }
    (sum / a.len() as f64, max)
}

fn spec(width: u32, height: u32, resize: ResizePolicy) -> InputSpec {
    InputSpec {
        width,
        height,
        resize,
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        colour_constancy: Default::default(),
    }
}

/// Lossless PNG copies of real JPEGs: PIL and we then start from identical pixels, so only
/// resizing and normalisation are compared. Tolerance: 0.25 grey levels on average, 1 at most
/// (the two resamplers round intermediate values differently; measured: 0.18 and 1).
#[test]
fn resize_and_normalise_match_pil() {
    let dir = tempfile::tempdir().unwrap();
    let pngs: Vec<PathBuf> = real_images(12)
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let png = dir.path().join(format!("{i}.png"));
            skinlesion_core::image::open(p).unwrap().save(&png).unwrap();
            png
        })
        .collect();
    for spec in [
        spec(128, 128, ResizePolicy::Stretch),
        spec(128, 128, ResizePolicy::CenterCrop),
        spec(96, 72, ResizePolicy::Stretch),
        spec(200, 150, ResizePolicy::Stretch), // identity resize: exact
    ] {
        let (mean, max) = diff_in_levels(&ours(&spec, &pngs), &reference(&spec, &pngs), &spec);
        eprintln!("{spec:?}: mean {mean:.4} max {max:.4} grey levels");
        assert!(
            mean < 0.25 && max <= 1.01,
            "{spec:?}: mean {mean}, max {max}"
        );
        if spec.width == 200 {
            assert!(max < 1e-3, "identity resize must be exact, max {max}");
        }
    }
}

/// The whole pipeline from the real JPEG bytes, including two different JPEG decoders
/// (libjpeg-turbo in PIL, zune-jpeg here): half a grey level on average, 4 at most
/// (measured: 0.26 and 3).
#[test]
fn jpeg_pipeline_matches_pil() {
    let paths = real_images(12);
    let spec = spec(128, 128, ResizePolicy::Stretch);
    let (mean, max) = diff_in_levels(&ours(&spec, &paths), &reference(&spec, &paths), &spec);
    eprintln!("JPEG pipeline: mean {mean:.4} max {max:.4} grey levels");
    assert!(mean < 0.5 && max <= 4.01, "mean {mean}, max {max}");
}

/// EXIF orientation is applied as PIL's `exif_transpose` does.
#[test]
fn exif_orientation_matches_pil() {
    let dir = tempfile::tempdir().unwrap();
    let original = skinlesion_core::image::open(&real_images(1)[0]).unwrap();
    let rotated = dir.path().join("rotated.jpg");
    std::fs::write(&rotated, exif_rotated_jpeg(&original)).unwrap();
    let spec = spec(200, 150, ResizePolicy::Stretch);
    let paths = [rotated];
    let (mean, max) = diff_in_levels(&ours(&spec, &paths), &reference(&spec, &paths), &spec);
    eprintln!("EXIF: mean {mean:.4} max {max:.4}");
    // If either side ignored the orientation, the images would differ by tens of levels.
    assert!(mean < 1.0, "mean {mean}, max {max}");
}
