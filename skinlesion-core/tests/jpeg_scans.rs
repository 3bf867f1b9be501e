//! The JPEG scan limit: a progressive JPEG's decoding work grows with its scans, so their
//! number is bounded before either decoder (libjpeg-turbo's reduced-scale one, the pure-Rust
//! full-size one) runs. The hostile input is valid, not garbage: the longest progression the
//! format allows, which both decoders accept when the limit is raised.

use skinlesion_core::testing::MeanColourWeights;
use skinlesion_core::testing::{many_scan_jpeg, small_input, write_mean_colour_model};
use skinlesion_core::training::{decode_image, decode_image_covering};
use skinlesion_core::LesionClass::{MelanocyticNevi, Melanoma};
use skinlesion_core::{Calibration, Classifier, DecodeLimits, Device, Error, ErrorKind};

fn assert_flat_grey(image: &skinlesion_core::image::DynamicImage, size: (u32, u32)) {
    let rgb = image.to_rgb8();
    assert_eq!(rgb.dimensions(), size);
    assert!(rgb
        .pixels()
        .all(|p| p.0.iter().all(|&c| c.abs_diff(128) <= 1)));
}

#[test]
fn the_written_progression_is_valid_for_both_decoders() {
    let unlimited = DecodeLimits {
        max_jpeg_scans: u32::MAX,
        ..DecodeLimits::default()
    };
    // The pure-Rust decoder stops at 100 scans of its own accord.
    let hundred = many_scan_jpeg(1024, 1024, 100);
    assert_flat_grey(&decode_image(&hundred, &unlimited).unwrap(), (1024, 1024));
    let jpeg = many_scan_jpeg(1024, 1024, 2647);
    assert!(decode_image(&jpeg, &unlimited).is_err());
    // libjpeg-turbo at 1/8 scale, every scan (it refuses on any warning, and the full decode
    // that would answer then cannot: the size says libjpeg ran).
    let reduced = decode_image_covering(&jpeg, &unlimited, (16, 16)).unwrap();
    assert_flat_grey(&reduced, (128, 128));
}

#[test]
fn scans_over_the_limit_are_a_decode_error() {
    let limits = DecodeLimits::default();
    assert_eq!(limits.max_jpeg_scans, DecodeLimits::DEFAULT_MAX_JPEG_SCANS);
    let at_limit = many_scan_jpeg(1024, 1024, limits.max_jpeg_scans as usize);
    assert_flat_grey(&decode_image(&at_limit, &limits).unwrap(), (1024, 1024));
    let over = many_scan_jpeg(1024, 1024, limits.max_jpeg_scans as usize + 1);
    for result in [
        decode_image(&over, &limits),
        decode_image_covering(&over, &limits, (16, 16)),
    ] {
        match result {
            Err(Error::Decode(message)) => assert!(message.contains("scans"), "{message}"),
            other => panic!("expected a decode error, got {other:?}"),
        }
    }
}

#[test]
fn a_twelve_megapixel_many_scan_upload_is_refused_by_the_classifier() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_mean_colour_model(
        dir.path(),
        "model",
        &[Melanoma, MelanocyticNevi],
        &MeanColourWeights::distinct(2),
        small_input(),
        Calibration::default(),
    )
    .unwrap();
    let classifier = Classifier::builder(&manifest)
        .device(Device::Cpu)
        .build()
        .unwrap();
    let jpeg = many_scan_jpeg(4032, 3024, 2647);
    // Small as uploads go: the work, not the bytes, is what it would cost.
    assert!(jpeg.len() < 200_000, "{}", jpeg.len());
    let e = classifier.classify(&jpeg).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
}

/// The fuzz corpus starts from this input too (`fuzz/seeds/`, copied in by `fuzz/run.sh`):
/// the committed seed is what the writer writes, at a size under the fuzzer's input limit.
/// `SKINLESION_WRITE_SEEDS=1` rewrites it.
#[test]
fn the_fuzz_seed_is_the_written_progression() {
    let seed = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds/classify_bytes/jpeg_2647_scans.jpg");
    let jpeg = many_scan_jpeg(1024, 1024, 2647);
    assert!(jpeg.len() <= 65_536, "{}", jpeg.len());
    if std::env::var_os("SKINLESION_WRITE_SEEDS").is_some() {
        std::fs::create_dir_all(seed.parent().unwrap()).unwrap();
        std::fs::write(&seed, &jpeg).unwrap();
    }
    let committed = std::fs::read(&seed).unwrap_or_default();
    assert!(
        committed == jpeg,
        "{} is not the writer's output: rerun with SKINLESION_WRITE_SEEDS=1",
        seed.display()
    );
}
