//! The shipped model: its checksum verifies, and it classifies a fixed handful of `test`-split
//! images exactly as recorded when it was trained (so an accidental change to the model, the
//! preprocessing or the calibration cannot go unnoticed).

use std::path::PathBuf;

use skinlesion_core::model::sha256_hex;
use skinlesion_core::testing::ham10000_dir;
use skinlesion_core::{Classifier, Device, LesionClass};

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/skinlesion-v2.json")
}

/// SHA-256 of `models/skinlesion-v2.pt`, recorded when the model was shipped.
const WEIGHTS_SHA256: &str = "d5de38b9c1e1779d9beef74f37edec3a2436fe4fc56f995dde4e09c9f8049eae";

/// (image id, answer, best guess, confidence), recorded with `skinlesion-train classify`.
const RECORDED: &[(&str, &str, &str, f32)] = &[
    ("ISIC_0024307", "NV", "NV", 0.951174),
    ("ISIC_0024312", "UNK", "DF", 0.071585),
    ("ISIC_0024403", "SCC", "SCC", 0.164737),
    ("ISIC_0024418", "MEL", "MEL", 0.286742),
    ("ISIC_0024449", "MEL", "MEL", 0.775033),
    ("ISIC_0024948", "AK", "AK", 0.222690),
    ("ISIC_0025250", "VASC", "VASC", 0.546208),
    ("ISIC_0025302", "UNK", "SCC", 0.129755),
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
