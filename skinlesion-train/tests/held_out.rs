//! Judging on sources held out of training: PH2 is read as it is and never by a path that
//! trains or fits; `refit-decision` writes the two-step rule for the same weights; a
//! leave-one-source-out twin (a few steps on HAM10000 alone) is scored on the second source
//! and PH2 with the held-out metrics.

use std::path::{Path, PathBuf};

use skinlesion_core::testing::{
    ham10000_dir, ph2_dir, second_source_dir, small_input, write_mean_colour_model,
    MeanColourWeights,
};
use skinlesion_core::{
    Calibration, Classifier, DecisionRule, Device, LesionClass, ModelMetadata, Precision,
};
use skinlesion_train::add_precision::{add_precision, AddPrecisionConfig};
use skinlesion_train::data::{read_gate_set, read_labels};
use skinlesion_train::evaluate::{evaluate, EvalConfig};
use skinlesion_train::nets::Architecture;
use skinlesion_train::refit_decision::{refit_decision, RefitDecisionConfig};
use skinlesion_train::train::precision::TrainPrecision;
use skinlesion_train::train::{train, TrainConfig};

/// The rows of a generic `file,label,split` CSV: `n` images per class of a labelled folder's
/// `split` (absolute paths), each given the split `as_split`.
fn rows(from: &Path, split: Option<&str>, n: usize, as_split: &str) -> String {
    let samples = read_labels(&from.join("labels.csv"), &from.join("images")).unwrap();
    let mut out = String::new();
    let mut taken = std::collections::BTreeMap::<String, usize>::new();
    for s in samples
        .iter()
        .filter(|s| split.is_none() || s.split.as_deref() == split)
    {
        let count = taken.entry(s.label.clone()).or_default();
        if *count < n {
            *count += 1;
            out.push_str(&format!("{},{},{as_split}\n", s.path.display(), s.label));
        }
    }
    out
}

/// A CSV of [`rows`] of `val` images, written as `name` into `dir`.
fn subset(dir: &Path, name: &str, from: &Path, split: Option<&str>, n: usize) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("file,label,split\n{}", rows(from, split, n, "val")),
    )
    .unwrap();
    path
}

#[test]
fn the_ph2_reader_is_pinned_split_counts_and_masks() {
    let dir = ph2_dir();
    let samples = read_labels(&dir.join("labels.csv"), &dir.join("images")).unwrap();
    assert_eq!(samples.len(), 200);
    let count = |label: &str| samples.iter().filter(|s| s.label == label).count();
    assert_eq!((count("MEL"), count("NV")), (40, 160));
    // No split: every image validates.
    assert!(samples.iter().all(|s| s.split.is_none()));
    for s in &samples {
        let stem = s.path.file_stem().unwrap().to_string_lossy().into_owned();
        let mask = dir.join("masks").join(format!("{stem}.png"));
        let size = skinlesion_core::image::image_dimensions(&s.path).unwrap();
        let mask_size = skinlesion_core::image::image_dimensions(&mask).unwrap();
        assert_eq!(size, mask_size, "{stem}: the mask is the image's size");
    }
}

/// Every path that trains or fits refuses PH2 by name, before reading any image.
#[test]
fn no_training_or_fitting_path_reads_ph2() {
    let dir = tempfile::tempdir().unwrap();
    let ph2 = ph2_dir();
    let (labels, images) = (ph2.join("labels.csv"), ph2.join("images"));
    let refused = |e: anyhow::Error| {
        let text = format!("{e:#}");
        assert!(text.contains("validation only"), "{text}");
    };
    // Training (and `regate`, which reads its splits the same way).
    let mut config = tiny_run(dir.path(), ham10000_dir().join("labels.csv"), "refused");
    config.labels = vec![labels.clone()];
    config.images = vec![images.clone()];
    refused(train(&config, false).expect_err("training on PH2 refused"));
    // A second source of PH2 beside HAM10000 too.
    config.labels = vec![ham10000_dir().join("labels.csv"), labels.clone()];
    config.images = vec![ham10000_dir().join("images"), images.clone()];
    refused(train(&config, false).expect_err("PH2 as a second source refused"));

    let model = write_mean_colour_model(
        dir.path(),
        "m",
        &LesionClass::DIAGNOSES,
        &MeanColourWeights::distinct(8),
        small_input(),
        Calibration::default(),
    )
    .unwrap();
    // The decision rule and the Unknown threshold.
    let refit = RefitDecisionConfig {
        model: model.clone(),
        labels: vec![labels.clone()],
        images: vec![images.clone()],
        split: "val".into(),
        melanoma_sensitivity: 0.85,
        output: dir.path().join("m2.json"),
        model_version: "2".into(),
    };
    refused(refit_decision(&refit).expect_err("refit on PH2 refused"));
    // The bf16 recheck bands.
    std::fs::copy(dir.path().join("m.pt"), dir.path().join("m.bf16.pt")).unwrap();
    let precision = AddPrecisionConfig {
        model,
        network: None,
        labels: vec![labels.clone()],
        images: vec![images],
        split: "val".into(),
        recheck_quantile: 0.9,
        keep_recheck: false,
        dry_run: true,
    };
    refused(add_precision(&precision).expect_err("bands on PH2 refused"));
    // The dermoscopy gate's fitting set.
    let gate = dir.path().join("gate.csv");
    let ph2_image = ph2.join("images/IMD003.jpg");
    std::fs::write(
        &gate,
        format!(
            "file,dermoscopy,label,source\n{},1,NV,ph2\n",
            ph2_image.display()
        ),
    )
    .unwrap();
    refused(read_gate_set(&gate).expect_err("a gate set with PH2 refused"));
    // Measuring on it is what it is for.
    assert!(read_labels(&labels, &ph2.join("images")).is_ok());
}

fn tiny_run(dir: &Path, labels: PathBuf, name: &str) -> TrainConfig {
    TrainConfig {
        labels: vec![labels],
        images: vec![ham10000_dir().join("images")],
        output: dir.join(format!("{name}.json")),
        checkpoint_dir: dir.join(format!("ckpt-{name}")),
        architecture: Architecture::ResNetLite,
        input_size: 64,
        test_size: None,
        pretrained: None,
        freeze_blocks: 0,
        backbone_lr_scale: 1.0,
        device: Device::Cpu,
        epochs: 1,
        batch_size: 16,
        learning_rate: 2e-3,
        weight_decay: 0.05,
        label_smoothing: 0.05,
        mixup: 0.0,
        melanoma_sensitivity: 0.8,
        tta_mirror: false,
        colour_constancy: Default::default(),
        colour_cast: 0.0,
        acquisition_shifts: 0.0,
        class_cap: None,
        early_size: None,
        early_epochs: 0,
        patience: 5,
        seed: 7,
        max_train_images: None,
        max_steps: Some(3),
        gate_set: None,
        precision: TrainPrecision::Fp32,
        model_name: "twin".into(),
        model_version: "0.0.1".into(),
    }
}

/// A HAM10000-only twin of a few steps, its decision refitted on HAM10000 `val`, scored on
/// the second source and PH2: the held-out metrics are there and agree with each other.
#[test]
fn a_ham_only_twin_is_refitted_and_scored_on_held_out_sources() {
    let dir = tempfile::tempdir().unwrap();
    let ham = ham10000_dir();
    let train_rows = dir.path().join("ham.csv");
    let csv = format!(
        "file,label,split\n{}{}",
        rows(&ham, Some("train"), 6, "train"),
        rows(&ham, Some("val"), 6, "val")
    );
    std::fs::write(&train_rows, csv).unwrap();
    let config = tiny_run(dir.path(), train_rows.clone(), "twin");
    train(&config, false).unwrap();

    let refit = RefitDecisionConfig {
        model: config.output.clone(),
        labels: vec![train_rows],
        images: vec![PathBuf::from("/")],
        split: "val".into(),
        melanoma_sensitivity: 0.85,
        output: dir.path().join("twin-two-step.json"),
        model_version: "0.0.1-two-step".into(),
    };
    // Outside the model's folder the new manifest could not name the same weights.
    let elsewhere = RefitDecisionConfig {
        output: dir.path().join("other").join("m.json"),
        ..refit.clone()
    };
    std::fs::create_dir_all(dir.path().join("other")).unwrap();
    assert!(refit_decision(&elsewhere).is_err());
    let refitted = refit_decision(&refit).unwrap();
    let before = ModelMetadata::read(&config.output).unwrap();
    assert_eq!(refitted.weights, before.weights, "the same weights");
    assert!(matches!(
        refitted.calibration.decision_rule,
        DecisionRule::TwoStep { .. }
    ));
    let fit = &refitted.provenance["decision_rule_fit"];
    assert_eq!(fit["fitted_on"][0]["images"], 6 * 8);
    assert!(fit["fit"]["pooled_melanoma_sensitivity"].as_f64().unwrap() >= 0.85);

    // The library answers by the rule written; evaluate scores the held-out sets.
    let classifier = Classifier::builder(&refit.output)
        .device(Device::Cpu)
        .precision(Precision::Fp32)
        .build()
        .unwrap();
    assert!(matches!(
        classifier.metadata().calibration.decision_rule,
        DecisionRule::TwoStep { .. }
    ));
    for (name, from, split) in [
        ("second.csv", second_source_dir(), Some("val")),
        ("ph2.csv", ph2_dir(), None),
    ] {
        let labels = subset(dir.path(), name, &from, split, 5);
        let metrics = evaluate(&EvalConfig {
            model: refit.output.clone(),
            labels,
            images: PathBuf::from("/"),
            split: None,
            maps: Vec::new(),
            out_dir: dir.path().join(format!("eval-{name}")),
            batch_size: Some(4),
            precision: Precision::Fp32,
        })
        .unwrap();
        let served = metrics.melanoma_sensitivity_served.unwrap();
        assert!(served <= metrics.melanoma_sensitivity.unwrap() + 1e-12);
        assert!(
            metrics.melanoma_specificity_served.unwrap()
                >= metrics.melanoma_specificity.unwrap() - 1e-12
        );
        for v in [
            metrics.melanoma_auc,
            metrics.melanoma_vs_nevus_auc,
            metrics.nevus_recall,
        ] {
            assert!(v.is_some_and(|v| (0.0..=1.0).contains(&v)), "{name}: {v:?}");
        }
    }
}
