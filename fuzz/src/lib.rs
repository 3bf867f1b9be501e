//! What the fuzz targets share: a tiny real model (the core's mean-colour test network at
//! 64×64), written once per process, so an execution costs a decode and a small forward pass.

use std::path::PathBuf;
use std::sync::OnceLock;

use skinlesion_core::model::Calibration;
use skinlesion_core::testing::{small_input, write_mean_colour_model, MeanColourWeights};
use skinlesion_core::{Classifier, Device, LesionClass};

/// Decode limit for fuzzing: small enough that a forged header cannot make one execution slow,
/// large enough that real images and the limit's own checks are exercised.
pub const MAX_PIXELS: u64 = 4_000_000;

/// The tiny model's manifest, in a folder that lives as long as the process.
pub fn model() -> &'static PathBuf {
    static MODEL: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &MODEL
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("temporary folder");
            let classes = LesionClass::DIAGNOSES;
            let manifest = write_mean_colour_model(
                dir.path(),
                "fuzz",
                &classes,
                &MeanColourWeights::distinct(classes.len()),
                small_input(),
                Calibration {
                    unknown_threshold: 0.2,
                    ..Calibration::default()
                },
            )
            .expect("write the tiny model");
            (dir, manifest)
        })
        .1
}

/// A classifier over the tiny model, one thread, with the fuzzing decode limit.
pub fn classifier() -> Classifier {
    Classifier::builder(model())
        .device(Device::Cpu)
        .threads(1)
        .max_pixels(MAX_PIXELS)
        .build()
        .expect("load the tiny model")
}

/// What every prediction must satisfy, whatever the input.
pub fn check(prediction: &skinlesion_core::Prediction) {
    let sum: f32 = prediction.probabilities().iter().map(|(_, p)| p).sum();
    assert!((sum - 1.0).abs() < 1e-3, "probabilities sum to {sum}");
    assert!((0.0..=1.0).contains(&prediction.confidence()));
}
