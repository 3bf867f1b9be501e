//! The shipped model: its checksum verifies, it classifies a fixed handful of `test`-split
//! images exactly as recorded when it was shipped (so an accidental change to the model, the
//! preprocessing or the calibration cannot go unnoticed), every answer over the whole `test`
//! split tells one story, and its dermoscopy gate refuses what is not dermoscopy.

use std::path::{Path, PathBuf};

use skinlesion_core::image::{DynamicImage, RgbImage};
use skinlesion_core::testing::{
    ham10000_dir, ham10000_images, noise, second_source_images, LabelledImage,
};
use skinlesion_core::training::sha256_hex;
use skinlesion_core::{Classifier, Device, LesionClass, Precision, Prediction, UnknownReason};

use skinlesion_core::testing::shipped_model as manifest;

/// SHA-256 of `models/skinlesion-v5.pt`, recorded when the model was shipped.
const WEIGHTS_SHA256: &str = "a89c5a6764116b34c4a6b1e7d80fd25308afa1c69f0c3e4b65b830c1cee6c039";

/// (image id, answer, best guess, confidence, Unknown reason), recorded with `skinlesion-train
/// evaluate` (predictions.csv) when the model was shipped.
const RECORDED: &[(&str, &str, &str, f32, &str)] = &[
    ("ISIC_0024307", "NV", "NV", 0.453077, ""),
    ("ISIC_0024383", "BKL", "BKL", 0.739916, ""),
    ("ISIC_0024403", "BCC", "BCC", 0.557922, ""),
    ("ISIC_0024449", "MEL", "MEL", 0.898283, ""),
    ("ISIC_0025250", "VASC", "VASC", 0.962818, ""),
    ("ISIC_0025302", "DF", "DF", 0.296065, ""),
    ("ISIC_0026212", "AK", "AK", 0.970331, ""),
    ("ISIC_0026327", "SCC", "SCC", 0.768631, ""),
    // A nevus called melanoma: the melanoma operating point's price (see the model card).
    ("ISIC_0024363", "MEL", "MEL", 0.302351, ""),
    ("ISIC_0024521", "UNK", "NV", 0.215716, "low_confidence"),
    ("ISIC_0024523", "UNK", "NV", 0.233436, "low_confidence"),
    ("ISIC_0028750", "UNK", "BKL", 0.441012, "not_dermoscopy"),
];

/// The fp32 network, whose answers were recorded (`tests/precision.rs` holds bf16 to them).
fn classifier() -> Classifier {
    Classifier::builder(manifest())
        .device(Device::Cpu)
        .precision(Precision::Fp32)
        .build()
        .expect("the shipped model loads and verifies its checksum")
}

#[test]
fn shipped_model_verifies_and_classifies_as_recorded() {
    let classifier = classifier();
    let meta = classifier.metadata();
    assert_eq!(meta.weights.sha256, WEIGHTS_SHA256);
    let weights = std::fs::read(manifest().with_extension("pt")).unwrap();
    assert_eq!(sha256_hex(&weights), WEIGHTS_SHA256);
    assert_eq!(classifier.classes(), LesionClass::DIAGNOSES);
    let calibration = &meta.calibration;
    assert!(calibration.temperature > 0.0 && calibration.decision_bias.is_empty());
    // The melanoma operating point (see the model card): only melanoma's prior is raised.
    assert_eq!(calibration.log_prior.len(), 8);
    for (class, p) in classifier.classes().iter().zip(&calibration.log_prior) {
        assert_eq!(*p > 0.0, *class == LesionClass::Melanoma, "{class:?}: {p}");
    }
    assert!(calibration.dermoscopy_gate.is_some());

    let paths: Vec<PathBuf> = RECORDED
        .iter()
        .map(|(id, ..)| ham10000_dir().join(format!("images/{id}.jpg")))
        .collect();
    for ((id, answer, best_guess, confidence, reason), result) in
        RECORDED.iter().zip(classifier.classify_batch(&paths))
    {
        let p = result.unwrap();
        assert_eq!(p.class().code(), *answer, "{id}");
        assert_eq!(p.best_guess().code(), *best_guess, "{id}");
        assert_eq!(p.unknown_reason().map_or("", |r| r.code()), *reason, "{id}");
        assert!(
            (p.confidence() - confidence).abs() < 1e-4,
            "{id}: {} vs {confidence}",
            p.confidence()
        );
    }
}

fn most_probable(p: &Prediction) -> LesionClass {
    p.probabilities()
        .iter()
        .copied()
        .reduce(|best, next| if next.1 > best.1 { next } else { best })
        .unwrap()
        .0
}

/// Over every `test` image: the best guess (the answer, unless Unknown) is the most probable
/// class shown and its confidence is that probability; and the gate accepts the dermoscopy.
#[test]
fn every_test_answer_is_the_top_probability_and_the_gate_accepts_test_dermoscopy() {
    let classifier = classifier();
    let test = paths_of(ham10000_images(), "test");
    let mut refused = 0;
    for chunk in test.chunks(64) {
        for (path, result) in chunk.iter().zip(classifier.classify_batch(chunk)) {
            let p = result.unwrap();
            assert_eq!(p.best_guess(), most_probable(&p), "{}", path.display());
            assert_eq!(Some(p.confidence()), p.probability(p.best_guess()));
            if !p.is_unknown() {
                assert_eq!(p.class(), p.best_guess());
            }
            refused += usize::from(p.unknown_reason() == Some(UnknownReason::NotDermoscopy));
        }
    }
    // Measured when shipped: 2 of 1469 (0.1 %); the target is 2 % (see the model card).
    let share = refused as f64 / test.len() as f64;
    assert!(
        share <= 0.02,
        "the gate refused {refused} of {} test lesions",
        test.len()
    );
}

fn paths_of(images: Vec<LabelledImage>, split: &str) -> Vec<PathBuf> {
    images
        .into_iter()
        .filter(|i| i.split == split)
        .map(|i| i.path)
        .collect()
}

/// Classifies `paths` in chunks: (refused as not dermoscopy, answered) of what the gate accepts.
fn gate_and_answers(classifier: &Classifier, paths: &[PathBuf]) -> (usize, usize) {
    let (mut refused, mut answered) = (0, 0);
    for chunk in paths.chunks(64) {
        for result in classifier.classify_batch(chunk) {
            let p = result.unwrap();
            refused += usize::from(p.unknown_reason() == Some(UnknownReason::NotDermoscopy));
            answered += usize::from(!p.is_unknown());
        }
    }
    (refused, answered)
}

/// Second-source `val` images the gate refused when the model was shipped (of 497; the
/// target is at most 3 %, 14).
const REFUSED_SECOND_SOURCE: usize = 1;

/// Dermoscopy from other clinics and devices, never fitted on: the second source's `val`.
#[test]
fn the_gate_accepts_the_second_sources_dermoscopy() {
    let val = paths_of(second_source_images(), "val");
    let (refused, _) = gate_and_answers(&classifier(), &val);
    assert!(
        refused <= REFUSED_SECOND_SOURCE,
        "the gate refused {refused} of {} second-source val images",
        val.len()
    );
}

/// The Unknown rule's stated meaning (see the manifest's `unknown_rule`): it answers at least
/// 95 % of the validation images the gate accepts, and not many more (a threshold that drifts
/// either way fails).
#[test]
fn unknown_answers_the_stated_share_of_validation() {
    let val = paths_of(ham10000_images(), "val");
    let (refused, answered) = gate_and_answers(&classifier(), &val);
    let coverage = answered as f64 / (val.len() - refused) as f64;
    assert!(
        (0.95..0.955).contains(&coverage),
        "answered {answered} of the {} val images the gate accepts ({coverage:.4})",
        val.len() - refused
    );
}

fn assert_refused(p: &Prediction, what: &str) {
    assert_eq!(
        p.unknown_reason(),
        Some(UnknownReason::NotDermoscopy),
        "{what}: {p:?}"
    );
    assert!(p.is_unknown() && !p.is_cancerous(), "{what}");
}

/// Photographs the shipped gate accepts, known when it was shipped (see the model card's "The
/// dermoscopy gate"): v5 takes scikit-image's fundus photograph (`retina`: round, reddish,
/// with vessels) for dermoscopy, as it does three crops of it in the OOD bench; v4.3 refused
/// it. Any other photograph accepted, or this one refused, fails the test until the list and
/// the card say so.
const ACCEPTED_PHOTOGRAPHS: &[&str] = &["retina.jpg"];

#[test]
fn the_gate_refuses_photographs_that_are_not_dermoscopy() {
    let classifier = classifier();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/not-dermoscopy");
    let mut photos: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    photos.sort();
    assert!(photos.len() >= 10, "{}", dir.display());
    let mut accepted = Vec::new();
    for (photo, result) in photos.iter().zip(classifier.classify_batch(&photos)) {
        let p = result.unwrap();
        let name = photo.file_name().unwrap().to_string_lossy().into_owned();
        match p.unknown_reason() {
            Some(UnknownReason::NotDermoscopy) => assert_refused(&p, &name),
            _ => accepted.push(name),
        }
    }
    assert_eq!(accepted, ACCEPTED_PHOTOGRAPHS);
}

#[test]
fn the_gate_refuses_generated_images() {
    let classifier = classifier();
    let side = 192;
    let solid = |rgb: [u8; 3]| RgbImage::from_pixel(side, side, rgb.into());
    let mut images = vec![
        ("black", solid([0, 0, 0])),
        ("white", solid([255, 255, 255])),
        ("skin-coloured", solid([200, 150, 130])),
        ("red", solid([200, 30, 40])),
        (
            "noise",
            RgbImage::from_raw(side, side, noise((side * side * 3) as usize, 7)).unwrap(),
        ),
        (
            "gradient",
            RgbImage::from_fn(side, side, |x, y| [x as u8, y as u8, 128].into()),
        ),
        (
            "checkerboard",
            RgbImage::from_fn(side, side, |x, y| {
                [if (x / 16 + y / 16) % 2 == 0 { 255 } else { 0 }; 3].into()
            }),
        ),
    ];
    // A real lesion's pixels in a scrambled order: its colours without its structure.
    let lesion = skinlesion_core::image::open(ham10000_dir().join("images/ISIC_0024306.jpg"))
        .unwrap()
        .to_rgb8();
    let (w, h) = lesion.dimensions();
    let pixels: Vec<_> = lesion.pixels().copied().collect();
    let order = noise(pixels.len() * 4, 11);
    let mut shuffled = pixels.clone();
    for i in (1..shuffled.len()).rev() {
        let r = u32::from_le_bytes(order[4 * i..4 * i + 4].try_into().unwrap()) as usize;
        shuffled.swap(i, r % (i + 1));
    }
    images.push((
        "scrambled lesion",
        RgbImage::from_fn(w, h, |x, y| shuffled[(y * w + x) as usize]),
    ));
    let decoded: Vec<DynamicImage> = images
        .iter()
        .map(|(_, i)| DynamicImage::ImageRgb8(i.clone()))
        .collect();
    for ((name, _), p) in images.iter().zip(
        classifier
            .classify_batch(&decoded)
            .into_iter()
            .map(Result::unwrap),
    ) {
        assert_refused(&p, name);
    }
}

/// v5.1 ships beside v5: the same weights answering by the two-step decision (model card).
/// A nevus v5 calls melanoma (its melanoma prior's price) is a nevus to v5.1, and a
/// dermatofibroma v5 names is, by the rule, a melanocytic low-confidence abstention.
#[test]
fn v5_1_is_v5s_network_with_the_two_step_decision() {
    let manifest = manifest().with_file_name("skinlesion-v5.1.json");
    let classifier = Classifier::builder(&manifest)
        .device(Device::Cpu)
        .precision(Precision::Fp32)
        .build()
        .unwrap();
    let meta = classifier.metadata();
    assert_eq!(meta.weights.sha256, WEIGHTS_SHA256);
    assert!(matches!(
        meta.calibration.decision_rule,
        skinlesion_core::DecisionRule::TwoStep { .. }
    ));
    let image = |id: &str| ham10000_dir().join(format!("images/{id}.jpg"));
    let nevus = classifier
        .classify(image("ISIC_0024363").as_path())
        .unwrap();
    assert_eq!(nevus.class(), LesionClass::MelanocyticNevi);
    assert!((nevus.confidence() - 0.298219).abs() < 1e-4, "{nevus:?}");
    let df = classifier
        .classify(image("ISIC_0025302").as_path())
        .unwrap();
    assert_eq!(df.unknown_reason(), Some(UnknownReason::LowConfidence));
    assert_eq!(df.best_guess(), LesionClass::MelanocyticNevi);
}
