//! The shipped model: its checksum verifies, and it classifies a fixed handful of `test`-split
//! images exactly as recorded when it was trained (so an accidental change to the model, the
//! preprocessing or the calibration cannot go unnoticed).

use std::path::PathBuf;

use skinlesion_core::model::sha256_hex;
use skinlesion_core::testing::ham10000_dir;
use skinlesion_core::{Classifier, Device, LesionClass};

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/skinlesion-v1.json")
}

/// SHA-256 of `models/skinlesion-v1.pt`, recorded when the model was shipped.
const WEIGHTS_SHA256: &str = "75a2c358bfc53d4de004a7e2e1262a5a84556b72ce1ca829fae4a039c1b85f5f";

/// (image id, answer, best guess, confidence), recorded with `skinlesion-train classify`.
const RECORDED: &[(&str, &str, &str, f32)] = &[
    ("ISIC_0024307", "NV", "NV", 0.948760),
    ("ISIC_0024312", "UNK", "DF", 0.046771),
    ("ISIC_0024403", "UNK", "SCC", 0.157299),
    ("ISIC_0024418", "UNK", "MEL", 0.174348),
    ("ISIC_0024449", "MEL", "MEL", 0.706979),
    ("ISIC_0024948", "UNK", "SCC", 0.189418),
    ("ISIC_0025250", "VASC", "VASC", 0.365118),
    ("ISIC_0025302", "UNK", "SCC", 0.083792),
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
