//! The shipped model: its checksum verifies, and it classifies a fixed handful of `test`-split
//! images exactly as recorded when it was trained (so an accidental change to the model, the
//! preprocessing or the calibration cannot go unnoticed).

use std::path::PathBuf;

use skinlesion_core::model::sha256_hex;
use skinlesion_core::testing::ham10000_dir;
use skinlesion_core::{Classifier, Device, LesionClass};

use skinlesion_core::testing::shipped_model as manifest;

/// SHA-256 of `models/skinlesion-v4.pt`, recorded when the model was shipped.
const WEIGHTS_SHA256: &str = "0a93f7279619950f6dbc31e1fd275d1c42fd033f7aced5dee8c6a918114e6e44";

/// (image id, answer, best guess, confidence), recorded with `skinlesion-train evaluate` (predictions.csv) when the model was shipped.
const RECORDED: &[(&str, &str, &str, f32)] = &[
    ("ISIC_0024307", "NV", "NV", 0.976265),
    ("ISIC_0024312", "SCC", "SCC", 0.185000),
    ("ISIC_0024403", "MEL", "MEL", 0.169222),
    ("ISIC_0024418", "MEL", "MEL", 0.146030),
    ("ISIC_0024449", "MEL", "MEL", 0.753413),
    ("ISIC_0024948", "AK", "AK", 0.143277),
    ("ISIC_0025250", "VASC", "VASC", 0.901319),
    ("ISIC_0025302", "DF", "DF", 0.178803),
    ("ISIC_0024406", "UNK", "MEL", 0.029114),
];

#[test]
fn shipped_model_verifies_and_classifies_as_recorded() {
    let classifier = Classifier::builder(manifest())
        .device(Device::Cpu)
        .build()
        .expect("the shipped model loads and verifies its checksum");
    let meta = classifier.metadata();
    assert_eq!(meta.weights.sha256, WEIGHTS_SHA256);
    let weights = std::fs::read(manifest().with_extension("pt")).unwrap();
    assert_eq!(sha256_hex(&weights), WEIGHTS_SHA256);
    assert_eq!(classifier.classes(), LesionClass::DIAGNOSES);
    assert!(meta.calibration.temperature > 0.0);
    assert_eq!(meta.calibration.log_prior.len(), 8);
    // The melanoma operating point (see the model card): only melanoma's decision is shifted.
    let bias = &meta.calibration.decision_bias;
    assert_eq!(bias.len(), 8);
    for (class, b) in classifier.classes().iter().zip(bias) {
        assert_eq!(*b > 0.0, *class == LesionClass::Melanoma, "{class:?}: {b}");
    }

    let paths: Vec<PathBuf> = RECORDED
        .iter()
        .map(|(id, ..)| ham10000_dir().join(format!("images/{id}.jpg")))
        .collect();
    for ((id, answer, best_guess, confidence), result) in
        RECORDED.iter().zip(classifier.classify_batch_paths(&paths))
    {
        let p = result.unwrap();
        assert_eq!(p.class().code(), *answer, "{id}");
        assert_eq!(p.best_guess().code(), *best_guess, "{id}");
        assert!(
            (p.confidence() - confidence).abs() < 1e-4,
            "{id}: {} vs {confidence}",
            p.confidence()
        );
    }
}
