//! The shipped model: its checksum verifies, and it classifies a fixed handful of `test`-split
//! images exactly as recorded when it was trained (so an accidental change to the model, the
//! preprocessing or the calibration cannot go unnoticed).

use std::path::PathBuf;

use skinlesion_core::model::sha256_hex;
use skinlesion_core::testing::ham10000_dir;
use skinlesion_core::{Classifier, Device, LesionClass};

use skinlesion_core::testing::shipped_model as manifest;

/// SHA-256 of `models/skinlesion-v3.pt`, recorded when the model was shipped.
const WEIGHTS_SHA256: &str = "8ddfadd2e8a469464df4a580b31c9a92b5101769863c7f1f68ee09623ebe0a5f";

/// (image id, answer, best guess, confidence), recorded with `skinlesion-train classify`.
const RECORDED: &[(&str, &str, &str, f32)] = &[
    ("ISIC_0024307", "NV", "NV", 0.957015),
    ("ISIC_0024312", "UNK", "DF", 0.062041),
    ("ISIC_0024403", "UNK", "SCC", 0.169532),
    ("ISIC_0024418", "MEL", "MEL", 0.331883),
    ("ISIC_0024449", "MEL", "MEL", 0.728616),
    ("ISIC_0024948", "AK", "AK", 0.215570),
    ("ISIC_0025250", "VASC", "VASC", 0.586224),
    ("ISIC_0025302", "UNK", "SCC", 0.132376),
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
