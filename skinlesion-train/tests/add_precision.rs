//! `add-precision` on a small real subset: the second network is recorded in the manifest with
//! its checksum and measured agreement, the library then loads it, and a network that is not
//! beside the manifest is refused. The second network here is a copy of the fp32 one (the graph
//! rewrite to bf16 is `scripts/bf16_network.py`'s, in Python), so the agreement is exact.

use std::path::PathBuf;

use skinlesion_core::testing::{small_input, write_mean_colour_model, MeanColourWeights};
use skinlesion_core::{Calibration, Classifier, Device, LesionClass, ModelMetadata, Precision};
use skinlesion_train::add_precision::{add_precision, AddPrecisionConfig};

/// A generic CSV over `n` real `val` images of each of four classes.
fn val_csv(dir: &std::path::Path, n: usize) -> PathBuf {
    let mut out = String::from("file,label,split\n");
    let images = skinlesion_core::testing::ham10000_images();
    for class in ["NV", "MEL", "BKL", "BCC"] {
        let chosen = images
            .iter()
            .filter(|i| i.class.code() == class && i.split == "val");
        for image in chosen.take(n) {
            out.push_str(&format!("{}.jpg,{class},val\n", image.id));
        }
    }
    let path = dir.join("val.csv");
    std::fs::write(&path, out).unwrap();
    path
}

/// The model's bf16 network, through the library.
fn load_bf16(model: &std::path::Path) -> skinlesion_core::Result<Classifier> {
    Classifier::builder(model)
        .device(Device::Cpu)
        .precision(Precision::Bf16)
        .build()
}

#[test]
fn a_second_network_is_measured_recorded_and_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_mean_colour_model(
        dir.path(),
        "m",
        &LesionClass::DIAGNOSES,
        &MeanColourWeights::distinct(8),
        small_input(),
        Calibration::default(),
    )
    .unwrap();
    let network = dir.path().join("m.bf16.pt");
    std::fs::copy(dir.path().join("m.pt"), &network).unwrap();
    // Not yet listed: the library refuses bf16.
    let refused = load_bf16(&model).unwrap_err();
    assert!(refused.to_string().contains("no bf16 network"), "{refused}");

    let mut config = AddPrecisionConfig {
        model: model.clone(),
        network: None,
        labels: vec![val_csv(dir.path(), 3)],
        images: vec![skinlesion_core::testing::ham10000_dir().join("images")],
        split: "val".into(),
        recheck_quantile: 0.9,
        keep_recheck: true,
        dry_run: true,
    };
    // No bands recorded yet to keep.
    let err = add_precision(&config).unwrap_err();
    assert!(
        err.to_string().contains("records no recheck bands"),
        "{err}"
    );
    config.keep_recheck = false;
    config.recheck_quantile = 0.0;
    let err = add_precision(&config).unwrap_err();
    assert!(err.to_string().contains("--recheck-quantile"), "{err}");
    config.recheck_quantile = 0.9;
    let measured = add_precision(&config).unwrap();
    assert_eq!(measured.count, 12);
    assert_eq!((measured.same_answer, measured.same_gate), (1.0, 1.0));
    assert_eq!(measured.max_probability_difference, 0.0);
    assert_eq!(measured.balanced_accuracy, measured.balanced_accuracy_fp32);
    assert!(ModelMetadata::read(&model)
        .unwrap()
        .other_precisions
        .is_empty());

    config.dry_run = false;
    let recorded = add_precision(&config).unwrap();
    let metadata = ModelMetadata::read(&model).unwrap();
    let entry = &metadata.other_precisions[0];
    assert_eq!(entry.precision, Precision::Bf16);
    assert_eq!(entry.weights.file, "m.bf16.pt");
    assert_eq!(entry.agreement.as_ref(), Some(&recorded));
    assert!(!dir.path().join("m.add-precision.json").exists());
    let bf16 = load_bf16(&model).unwrap();
    assert_eq!(bf16.precision(), Precision::Bf16);
    // The same network twice moves no margin: zero bands, nothing rechecked, the same answers.
    let recheck = entry.recheck.as_ref().expect("recheck bands recorded");
    let b = recheck.bands;
    assert_eq!(
        (b.answer, b.confidence, b.gate, recheck.quantile),
        (0.0, 0.0, 0.0, 0.9)
    );
    assert_eq!(
        (recheck.rechecked, recheck.agreement.same_answer),
        (0.0, 1.0)
    );
    let checked = Classifier::builder(&model)
        .device(Device::Cpu)
        .precision(Precision::Bf16Checked)
        .build()
        .unwrap();
    assert_eq!(checked.precision(), Precision::Bf16Checked);
    // Kept bands are measured again, not refitted.
    config.keep_recheck = true;
    config.dry_run = true;
    assert_eq!(add_precision(&config).unwrap(), recorded);
    config.keep_recheck = false;
    config.dry_run = false;

    // A changed network no longer matches the recorded checksum.
    std::fs::write(&network, b"not the network").unwrap();
    let err = load_bf16(&model).unwrap_err();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");

    // A network elsewhere cannot be named by a manifest.
    let elsewhere = tempfile::tempdir().unwrap();
    let outside = elsewhere.path().join("m.bf16.pt");
    std::fs::copy(dir.path().join("m.pt"), &outside).unwrap();
    config.network = Some(outside);
    let err = add_precision(&config).unwrap_err();
    assert!(
        err.to_string().contains("must be beside the manifest"),
        "{err}"
    );
}
