//! What the fuzz targets share: a tiny real model (the core's mean-colour test network at
//! 64×64, with a dermoscopy gate scored by the network, as the shipped model has), written once
//! per process, so an execution costs a decode and a small forward pass.

use std::path::PathBuf;
use std::sync::OnceLock;

use skinlesion_core::testing::{write_gated_mean_colour_model, MeanColourWeights};
use skinlesion_core::Calibration;
use skinlesion_core::{Classifier, DermoscopyGate, Device, GateScore, LesionClass, UnknownReason};

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
            // Refuses inputs whose mean normalised colour is far from mid-grey: both paths run.
            let manifest = write_gated_mean_colour_model(
                dir.path(),
                "fuzz",
                &classes,
                &MeanColourWeights::distinct(classes.len()),
                [0.0; 3],
                Calibration {
                    unknown_threshold: 0.2,
                    dermoscopy_gate: Some(DermoscopyGate {
                        score: GateScore::Mahalanobis,
                        threshold: 1.0,
                    }),
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
    let score = prediction.ood_score().expect("the fuzz model has a gate");
    let refused = prediction.unknown_reason() == Some(UnknownReason::NotDermoscopy);
    let accepted = score <= 1.0; // NaN: refused
    assert_eq!(refused, !accepted, "score {score}");
    assert_eq!(
        prediction.is_unknown(),
        prediction.unknown_reason().is_some()
    );
}
