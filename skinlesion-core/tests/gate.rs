//! The dermoscopy gate through the public API, on tiny traced models whose gate score is known:
//! refusal and its reason, batches, the network contract the manifest states, and models
//! without a gate.

mod common;

use common::*;
use skinlesion_core::image::{DynamicImage, RgbImage};
use skinlesion_core::testing::{
    small_input, write_gated_mean_colour_model, write_mean_colour_model, MeanColourWeights,
};
use skinlesion_core::training::Outputs;
use skinlesion_core::{
    Calibration, Classifier, DermoscopyGate, Error, GateScore, LesionClass, UnknownReason,
};

const CLASSES: [LesionClass; 8] = LesionClass::DIAGNOSES;

/// The normalised mean colour of a flat image of `rgb` under [`small_input`].
fn normalised(rgb: [u8; 3]) -> [f32; 3] {
    let spec = small_input();
    [0, 1, 2].map(|c| (f32::from(rgb[c]) / 255.0 - spec.mean[c]) / spec.std[c])
}

fn flat(rgb: [u8; 3]) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_pixel(40, 30, rgb.into()))
}

fn gated(threshold: f32) -> Calibration {
    Calibration {
        dermoscopy_gate: Some(DermoscopyGate {
            score: GateScore::Mahalanobis,
            threshold,
        }),
        ..Default::default()
    }
}

const SKIN: [u8; 3] = [190, 140, 120];

#[test]
fn images_far_from_the_training_colour_are_refused_as_not_dermoscopy() {
    let dir = tempfile::tempdir().unwrap();
    let weights = MeanColourWeights::distinct(8);
    let manifest = write_gated_mean_colour_model(
        dir.path(),
        "gated",
        &CLASSES,
        &weights,
        normalised(SKIN),
        gated(0.5),
    )
    .unwrap();
    let classifier = cpu(&manifest);

    let near = classifier.classify(&flat([185, 145, 118])).unwrap();
    assert_ne!(near.unknown_reason(), Some(UnknownReason::NotDermoscopy));
    assert!(near.ood_score().unwrap() < 0.5);
    let far = classifier.classify(&flat([20, 200, 40])).unwrap();
    assert_eq!(far.class(), LesionClass::Unknown);
    assert_eq!(far.unknown_reason(), Some(UnknownReason::NotDermoscopy));
    assert!(far.ood_score().unwrap() > 0.5);
    // The lesion probabilities are still those of the trained classes only.
    assert_eq!(far.probabilities().len(), 8);
    let json = serde_json::to_value(&far).unwrap();
    assert_eq!(json["unknown_reason"], "not_dermoscopy");
    assert_eq!(json["class_name"], "Unknown");

    // The score is the one the network computed, the same alone and in a batch.
    let offset: f32 = normalised([20, 200, 40])
        .iter()
        .zip(normalised(SKIN))
        .map(|(a, b)| (a - b) * (a - b))
        .sum();
    assert!((far.ood_score().unwrap() - offset).abs() < 1e-4);
    let batch = classifier.classify_batch(&[flat([20, 200, 40]), flat(SKIN)]);
    assert_eq!(batch[0].as_ref().unwrap(), &far);
    assert!(batch[1].as_ref().unwrap().ood_score().unwrap() < 1e-6);

    // Outputs put together by hand must agree: one score per image.
    let prepared = [
        classifier.prepare(&flat(SKIN)).unwrap(),
        classifier.prepare(&flat(SKIN)).unwrap(),
    ];
    let outputs = classifier.forward(&prepared).unwrap();
    let short = Outputs {
        logits: outputs.logits.shallow_clone(),
        gate_scores: outputs.gate_scores.as_ref().map(|s| s.narrow(0, 0, 1)),
        class_maps: None,
    };
    assert!(matches!(
        classifier.predictions_from_outputs(&short),
        Err(Error::Inference(_))
    ));
    assert_eq!(
        classifier.predictions_from_outputs(&outputs).unwrap().len(),
        2
    );
}

#[test]
fn a_gate_that_needs_network_scores_is_refused_for_a_network_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_mean_colour_model(
        dir.path(),
        "plain",
        &CLASSES,
        &MeanColourWeights::distinct(8),
        small_input(),
        gated(1.0),
    )
    .unwrap();
    match Classifier::load(&manifest) {
        Err(Error::MetadataMismatch(m)) => assert!(m.contains("gate"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_energy_gate_needs_no_second_output() {
    let dir = tempfile::tempdir().unwrap();
    let weights = MeanColourWeights::distinct(8);
    let calibration = |threshold| Calibration {
        dermoscopy_gate: Some(DermoscopyGate {
            score: GateScore::Energy,
            threshold,
        }),
        ..Default::default()
    };
    let open = write_mean_colour_model(
        dir.path(),
        "open",
        &CLASSES,
        &weights,
        small_input(),
        calibration(f32::MAX),
    )
    .unwrap();
    let image = &real_images(1)[0];
    let p = cpu(&open).classify(image).unwrap();
    let energy = p.ood_score().unwrap();
    assert!(energy.is_finite() && p.unknown_reason() != Some(UnknownReason::NotDermoscopy));
    let closed = write_mean_colour_model(
        dir.path(),
        "closed",
        &CLASSES,
        &weights,
        small_input(),
        calibration(energy - 1.0),
    )
    .unwrap();
    let refused = cpu(&closed).classify(image).unwrap();
    assert_eq!(refused.unknown_reason(), Some(UnknownReason::NotDermoscopy));
}

#[test]
fn a_model_without_a_gate_scores_nothing_and_refuses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_mean_colour_model(
        dir.path(),
        "plain",
        &CLASSES,
        &MeanColourWeights::distinct(8),
        small_input(),
        Calibration::default(),
    )
    .unwrap();
    let classifier = cpu(&manifest);
    for image in [flat([20, 200, 40]), flat([0, 0, 0])] {
        let p = classifier.classify(&image).unwrap();
        assert_eq!(p.ood_score(), None);
        assert!(!p.is_unknown() && p.unknown_reason().is_none());
    }
    // A network that scores for a gate the manifest does not have belongs to another manifest.
    let manifest = write_gated_mean_colour_model(
        dir.path(),
        "ungated",
        &CLASSES,
        &MeanColourWeights::distinct(8),
        normalised(SKIN),
        Calibration::default(),
    )
    .unwrap();
    assert!(matches!(
        Classifier::load(&manifest),
        Err(Error::MetadataMismatch(_))
    ));
}
