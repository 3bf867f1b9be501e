//! The training pipeline on small real subsets of HAM10000: a short run yields an artifact the
//! library loads; resuming continues from the saved step; `evaluate` computes exactly the
//! metrics worked out by hand here; `classify` writes one row per image.

use std::path::{Path, PathBuf};

use skinlesion_core::testing::{small_input, write_mean_colour_model, MeanColourWeights};
use skinlesion_core::training::preprocess;
use skinlesion_core::DecodeLimits;
use skinlesion_core::{Calibration, Classifier, Device, LesionClass, Precision};
use skinlesion_train::evaluate::{evaluate, EvalConfig};
use skinlesion_train::nets::Architecture;
use skinlesion_train::train::precision::TrainPrecision;
use skinlesion_train::train::{train, IncompatibleResume, TrainConfig};

/// libtorch's random generator is one per process and training reseeds it: tests that train
/// take turns, or one run's draws would land in another's and break exact resumption.
static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn data_dir() -> PathBuf {
    skinlesion_core::testing::ham10000_dir()
}

/// (image_id, label, split) rows of the real labels file.
fn rows() -> Vec<(String, String, String)> {
    skinlesion_core::testing::ham10000_images()
        .into_iter()
        .map(|i| (i.id, i.class.code().to_owned(), i.split))
        .collect()
}

/// A generic `file,label,split` CSV over a few real images of four classes.
fn subset_csv(dir: &Path, per_class_train: usize, per_class_val: usize) -> PathBuf {
    let mut out = String::from("file,label,split\n");
    for class in ["NV", "MEL", "BKL", "BCC"] {
        for (split, n) in [("train", per_class_train), ("val", per_class_val)] {
            for (id, _, _) in rows()
                .iter()
                .filter(|r| r.1 == class && r.2 == split)
                .take(n)
            {
                out.push_str(&format!("{id}.jpg,{class},{split}\n"));
            }
        }
    }
    let path = dir.join("subset.csv");
    std::fs::write(&path, out).unwrap();
    path
}

/// A generic CSV over a few second-source images of each of its classes.
fn second_source_subset(dir: &Path, per_class_train: usize, per_class_val: usize) -> PathBuf {
    let mut out = String::from("file,label,split\n");
    let rows = skinlesion_core::testing::second_source_images();
    for class in ["NV", "MEL", "BKL"] {
        for (split, n) in [("train", per_class_train), ("val", per_class_val)] {
            let chosen = rows
                .iter()
                .filter(|r| r.class.code() == class && r.split == split);
            for row in chosen.take(n) {
                out.push_str(&format!("{}.jpg,{class},{split}\n", row.id));
            }
        }
    }
    let path = dir.join("second-source.csv");
    std::fs::write(&path, out).unwrap();
    path
}

fn config(dir: &Path, labels: PathBuf, name: &str) -> TrainConfig {
    TrainConfig {
        labels: vec![labels],
        images: vec![data_dir().join("images")],
        output: dir.join(format!("{name}.json")),
        checkpoint_dir: dir.join(format!("ckpt-{name}")),
        architecture: Architecture::ResNetLite,
        input_size: 64,
        test_size: None,
        pretrained: None,
        freeze_blocks: 0,
        backbone_lr_scale: 1.0,
        device: Device::Cpu,
        epochs: 2,
        batch_size: 16,
        learning_rate: 2e-3,
        weight_decay: 0.05,
        label_smoothing: 0.05,
        mixup: 0.0,
        melanoma_sensitivity: 0.8,
        tta_mirror: false,
        colour_constancy: Default::default(),
        // On, so that the resume check below covers its random draws too.
        colour_cast: 0.2,
        // On too, for the same reason.
        acquisition_shifts: 0.3,
        class_cap: None,
        early_size: None,
        early_epochs: 0,
        patience: 5,
        seed: 7,
        max_train_images: None,
        max_steps: None,
        gate_set: None,
        precision: TrainPrecision::Fp32,
        model_name: "test".into(),
        model_version: "0.0.1".into(),
    }
}

// One function: the resume checks need the interrupted and the uninterrupted run side by side.
#[test]
fn short_training_run_yields_a_loadable_model_and_resumes_exactly() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let labels = subset_csv(dir.path(), 10, 4); // 40 train images: 3 steps an epoch
    let images: Vec<PathBuf> = rows()
        .iter()
        .filter(|r| r.2 == "test")
        .take(5)
        .map(|r| data_dir().join("images").join(format!("{}.jpg", r.0)))
        .collect();

    // Uninterrupted: two epochs.
    let straight = config(dir.path(), labels.clone(), "straight");
    let outcome = train(&straight, false).unwrap();
    assert_eq!(outcome.state.epoch, 2);
    assert_eq!(outcome.state.step, 6);
    assert_eq!(outcome.metadata.classes.len(), 4);
    let classifier = Classifier::builder(&straight.output)
        .device(Device::Cpu)
        .build()
        .unwrap();
    for result in classifier.classify_batch(&images) {
        let p = result.unwrap();
        let sum: f32 = p.probabilities().iter().map(|(_, p)| p).sum();
        assert!((sum - 1.0).abs() < 1e-4);
        assert!(
            p.probability(LesionClass::Dermatofibroma).is_none(),
            "not a trained class"
        );
    }

    // Interrupted after the first epoch's 3 steps, then resumed.
    let mut first = config(dir.path(), labels, "resumed");
    first.max_steps = Some(3);
    let partial = train(&first, false).unwrap();
    assert_eq!((partial.state.epoch, partial.state.step), (1, 3));
    first.max_steps = None;
    let resumed = train(&first, true).unwrap();
    assert_eq!((resumed.state.epoch, resumed.state.step), (2, 6));
    assert_eq!(resumed.state.history.len(), 2);
    assert_eq!(resumed.state.history[0].epoch, 1);

    // Same data order, seeds and optimiser state: the same network as the uninterrupted run.
    let resumed_classifier = Classifier::builder(&first.output)
        .device(Device::Cpu)
        .build()
        .unwrap();
    let logits = |c: &Classifier| {
        let prepared: Vec<_> = c
            .prepare_batch(&images)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        c.logits(&prepared).unwrap()
    };
    let (a, b) = (logits(&classifier), logits(&resumed_classifier));
    let diff = (a - b).abs().max().double_value(&[]);
    assert!(diff < 1e-4, "resumed run diverged by {diff}");

    // A checkpoint made with other settings is refused rather than silently mixed.
    let mut other = first.clone();
    other.learning_rate = 1e-2;
    let refused = train(&other, true).expect_err("an incompatible resume is refused");
    let reason = refused
        .downcast_ref::<IncompatibleResume>()
        .unwrap_or_else(|| panic!("{refused:#}"));
    assert_eq!(reason.setting, "--lr", "{refused:#}");

    // Re-exporting the finished run with mirror averaging: no more training, and the exported
    // model answers an image and its mirror image alike, at any batch size.
    let mut mirrored = first.clone();
    mirrored.tta_mirror = true;
    mirrored.output = dir.path().join("mirrored.json");
    let reexported = train(&mirrored, true).unwrap();
    assert_eq!(reexported.state.step, 6);
    assert_eq!(reexported.metadata.architecture, "resnet-lite-64+mirror");
    let mirror_classifier = Classifier::builder(&mirrored.output)
        .device(Device::Cpu)
        .build()
        .unwrap();
    let prepared: Vec<_> = mirror_classifier
        .prepare_batch(&images)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let flipped: Vec<_> = prepared
        .iter()
        .map(|p| skinlesion_core::PreparedImage::from_tensor(p.tensor().flip([3])))
        .collect();
    let (a, b) = (
        mirror_classifier.logits(&prepared).unwrap(),
        mirror_classifier.logits(&flipped).unwrap(),
    );
    assert_eq!(a.size(), [5, 4]);
    let diff = (&a - b).abs().max().double_value(&[]);
    assert!(diff < 1e-4, "mirror images answered differently by {diff}");
    let plain = logits(&resumed_classifier);
    assert!(
        (a - plain).abs().max().double_value(&[]) > 1e-4,
        "no averaging happened"
    );
}

// One function: every metric is worked out by hand from the same few predictions, in turn.
#[test]
fn evaluate_computes_hand_checked_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let classes = [
        LesionClass::ActinicKeratosis,
        LesionClass::Melanoma,
        LesionClass::MelanocyticNevi,
        LesionClass::SquamousCellCarcinoma,
    ];
    let weights = MeanColourWeights::distinct(classes.len());
    let temperature = 2.0f32;
    let model = write_mean_colour_model(
        dir.path(),
        "probe",
        &classes,
        &weights,
        small_input(),
        Calibration {
            temperature,
            ..Default::default()
        },
    )
    .unwrap();

    // Eight real images; what the model predicts for each is computed here from its weights.
    let images: Vec<PathBuf> = rows()
        .iter()
        .filter(|r| r.2 == "test")
        .take(8)
        .map(|r| data_dir().join("images").join(format!("{}.jpg", r.0)))
        .collect();
    let probs: Vec<Vec<f64>> = images
        .iter()
        .map(|p| {
            let x = preprocess(
                &std::fs::read(p).unwrap(),
                &small_input(),
                &DecodeLimits::default(),
            )
            .unwrap();
            let logits = Vec::<f32>::try_from(
                (weights.logits(&x) / f64::from(temperature))
                    .softmax(1, tch::Kind::Float)
                    .flatten(0, -1),
            )
            .unwrap();
            logits.into_iter().map(f64::from).collect()
        })
        .collect();
    let predicted: Vec<usize> = probs
        .iter()
        .map(|p| (0..p.len()).fold(0, |b, i| if p[i] > p[b] { i } else { b }))
        .collect();
    // Truth: the first five as predicted (right), the last three one class further (wrong).
    let truth: Vec<usize> = predicted
        .iter()
        .enumerate()
        .map(|(i, &p)| if i < 5 { p } else { (p + 1) % classes.len() })
        .collect();
    let mut csv = String::from("file,label\n");
    for (path, &t) in images.iter().zip(&truth) {
        csv.push_str(&format!("{},{}\n", path.display(), classes[t].code()));
    }
    std::fs::write(dir.path().join("set.csv"), csv).unwrap();

    let metrics = evaluate(&EvalConfig {
        model: model.clone(),
        labels: dir.path().join("set.csv"),
        images: PathBuf::from("/"),
        split: None,
        maps: vec![],
        out_dir: dir.path().join("eval"),
        batch_size: Some(3),
        precision: Precision::Auto,
    })
    .unwrap();

    // By hand: recall per true class, averaged over the classes that occur.
    let mut recall_sum = 0.0;
    let mut present = 0;
    for k in 0..classes.len() {
        let of_k: Vec<usize> = (0..8).filter(|&i| truth[i] == k).collect();
        if !of_k.is_empty() {
            present += 1;
            recall_sum +=
                of_k.iter().filter(|&&i| predicted[i] == k).count() as f64 / of_k.len() as f64;
        }
    }
    assert!((metrics.balanced_accuracy - recall_sum / f64::from(present)).abs() < 1e-12);
    // Every class here is either always or never found, so resampling its images cannot change
    // its recall: the bootstrap interval is the point itself (the spread is tested in metrics).
    assert_eq!(
        metrics.balanced_accuracy_ci95,
        [metrics.balanced_accuracy; 2]
    );
    assert!((metrics.accuracy - 5.0 / 8.0).abs() < 1e-12);
    // ECE by hand: 15 equal bins of the top probability.
    let mut bins = vec![(0.0f64, 0.0f64, 0.0f64); 15];
    for i in 0..8 {
        let c = probs[i][predicted[i]];
        let b = ((c * 15.0) as usize).min(14);
        bins[b].0 += 1.0;
        bins[b].1 += c;
        bins[b].2 += f64::from(u8::from(i < 5));
    }
    let ece: f64 = bins
        .iter()
        .filter(|b| b.0 > 0.0)
        .map(|b| b.0 / 8.0 * (b.2 / b.0 - b.1 / b.0).abs())
        .sum();
    assert!(
        (metrics.ece_after_calibration - ece).abs() < 1e-6,
        "{} vs {ece}",
        metrics.ece_after_calibration
    );
    assert_eq!(metrics.images, 8);
    assert_eq!(metrics.unknown_rate, 0.0);
    for file in [
        "metrics.json",
        "predictions.csv",
        "confusion_matrix.png",
        "reliability.png",
    ] {
        assert!(
            dir.path().join("eval").join(file).metadata().unwrap().len() > 100,
            "{file}"
        );
    }
    let predictions = std::fs::read_to_string(dir.path().join("eval/predictions.csv")).unwrap();
    assert_eq!(predictions.lines().count(), 9);
    assert!(predictions
        .starts_with(
            "file,true_label,predicted,best_guess,confidence,unknown_reason,ood_score,probability_AK,probability_MEL,probability_NV,probability_SCC"
        ));

    // A coarser label set: AK and SCC count as AKIEC.
    let mut csv = String::from("file,label\n");
    for (path, &t) in images.iter().zip(&truth) {
        let label = match classes[t] {
            LesionClass::ActinicKeratosis | LesionClass::SquamousCellCarcinoma => "AKIEC",
            c => c.code(),
        };
        csv.push_str(&format!("{},{label}\n", path.display()));
    }
    std::fs::write(dir.path().join("coarse.csv"), csv).unwrap();
    let coarse = evaluate(&EvalConfig {
        model,
        labels: dir.path().join("coarse.csv"),
        images: PathBuf::from("/"),
        split: None,
        maps: vec!["AKIEC=AK+SCC".parse().unwrap()],
        out_dir: dir.path().join("coarse"),
        batch_size: Some(8),
        precision: Precision::Fp32,
    })
    .unwrap();
    assert_eq!(coarse.labels, ["AKIEC", "MEL", "NV"]);
    // The coarse answer is the label of the model's answer.
    let coarse_of = |k: usize| match k {
        0 | 3 => 0,
        1 => 1,
        _ => 2,
    };
    let hits = (0..8)
        .filter(|&i| coarse_of(predicted[i]) == coarse_of(truth[i]))
        .count();
    assert!((coarse.accuracy - hits as f64 / 8.0).abs() < 1e-12);
}

/// `classify` to JSON lines: how many failed, and the lines read back.
fn classify_jsonl(
    classifier: &Classifier,
    images: &[PathBuf],
    batch: usize,
) -> (usize, Vec<serde_json::Value>) {
    let mut out = Vec::new();
    let format = skinlesion_train::classify::Format::Jsonl;
    let failures =
        skinlesion_train::classify::classify(classifier, images, format, batch, None, &mut out)
            .unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (failures, lines)
}

/// The eight-class mean-colour model the `classify` tests score folders with.
fn probe_model(dir: &std::path::Path) -> std::path::PathBuf {
    write_mean_colour_model(
        dir,
        "probe",
        &LesionClass::DIAGNOSES,
        &MeanColourWeights::distinct(8),
        small_input(),
        Calibration::default(),
    )
    .unwrap()
}

// One function: one folder of images and failures, read back in both output formats.
#[test]
fn classify_writes_a_row_per_image_and_reports_failures() {
    let dir = tempfile::tempdir().unwrap();
    let model = probe_model(dir.path());
    let folder = dir.path().join("images");
    std::fs::create_dir_all(folder.join("nested")).unwrap();
    for (i, r) in rows().iter().take(3).enumerate() {
        let target = if i == 0 {
            folder.join("nested")
        } else {
            folder.clone()
        };
        // A comma and a quote in a file name must be quoted in the CSV.
        let name = match i {
            1 => format!("{},\"copy\".jpg", r.0),
            _ => format!("{}.jpg", r.0),
        };
        std::fs::copy(
            data_dir().join("images").join(format!("{}.jpg", r.0)),
            target.join(name),
        )
        .unwrap();
    }
    std::fs::write(folder.join("broken.jpg"), b"not a jpeg").unwrap();
    std::fs::write(folder.join("notes.txt"), b"ignored").unwrap();

    let classifier = Classifier::builder(&model)
        .device(Device::Cpu)
        .build()
        .unwrap();
    let images = skinlesion_train::classify::collect_images(std::slice::from_ref(&folder)).unwrap();
    assert_eq!(images.len(), 4);
    let (failures, lines) = classify_jsonl(&classifier, &images, 2);
    assert_eq!(failures, 1);
    assert_eq!(lines.len(), 4);
    let (errors, answers): (Vec<_>, Vec<_>) = lines.iter().partition(|l| l.get("error").is_some());
    assert_eq!(errors.len(), 1);
    assert!(errors[0]["file"].as_str().unwrap().ends_with("broken.jpg"));
    assert!(errors[0]["error"]
        .as_str()
        .unwrap()
        .contains("unsupported image format"));
    for line in answers {
        assert!(
            line["class_name"].is_string()
                && line["all_predictions"].as_object().unwrap().len() == 8
        );
    }
    let mut csv = Vec::new();
    skinlesion_train::classify::classify(
        &classifier,
        &images,
        skinlesion_train::classify::Format::Csv,
        8,
        None,
        &mut csv,
    )
    .unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_slice());
    let width = reader.headers().unwrap().len();
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 4);
    assert!(records.iter().all(|r| r.len() == width));
    let broken = records
        .iter()
        .find(|r| r[0].ends_with("broken.jpg"))
        .unwrap();
    assert!(broken[width - 1].contains("unsupported image format"));
    assert!(records.iter().any(|r| r[0].ends_with(",\"copy\".jpg")));

    // --explain: this test model has no class maps, so it is refused before any work...
    let overlays = dir.path().join("overlays");
    let refused = skinlesion_train::classify::classify(
        &classifier,
        &images,
        skinlesion_train::classify::Format::Csv,
        2,
        Some(&overlays),
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(refused.to_string().contains("no class maps"), "{refused:#}");
    assert!(!overlays.exists());
    // ...and the shipped model writes one overlay per image, of the image's size, named in
    // the rows; two images with one name get two files.
    let shipped = Classifier::builder(skinlesion_core::testing::shipped_model())
        .device(Device::Cpu)
        .build()
        .unwrap();
    let twin = folder.join("nested").join(images[0].file_name().unwrap());
    let mut with_twin = images.clone();
    if !with_twin.contains(&twin) {
        std::fs::copy(&images[0], &twin).unwrap();
        with_twin.push(twin);
    } else {
        let other = folder.join(images[0].file_name().unwrap());
        std::fs::copy(&images[0], &other).unwrap();
        with_twin.push(other);
    }
    let mut csv = Vec::new();
    let failures = skinlesion_train::classify::classify(
        &shipped,
        &with_twin,
        skinlesion_train::classify::Format::Csv,
        2,
        Some(&overlays),
        &mut csv,
    )
    .unwrap();
    assert_eq!(failures, 1);
    let mut reader = csv::Reader::from_reader(csv.as_slice());
    assert_eq!(&reader.headers().unwrap()[width], "overlay");
    let mut written = std::collections::HashSet::new();
    for record in reader.records().map(Result::unwrap) {
        assert_eq!(record.len(), width + 1);
        if record[0].ends_with("broken.jpg") {
            assert_eq!(&record[width], "");
            continue;
        }
        let overlay = skinlesion_core::image::open(&record[width]).unwrap();
        let image = skinlesion_core::image::open(&record[0]).unwrap();
        assert_eq!(
            (overlay.width(), overlay.height()),
            (image.width(), image.height())
        );
        assert_ne!(
            overlay.to_rgb8(),
            image.to_rgb8(),
            "the heatmap is laid over it"
        );
        assert!(
            written.insert(record[width].to_owned()),
            "one file per image"
        );
    }
    assert_eq!(written.len(), with_twin.len() - 1);
}

/// Training fits the calibration with the library's own rule, so on real logits of the
/// shipped model the served answers are exactly what the fit saw.
#[test]
fn training_and_serving_apply_one_calibration_to_real_logits() {
    let shipped = skinlesion_core::testing::shipped_model();
    // fp32 on both sides: the refit artifact below carries the fp32 network only.
    let classifier = Classifier::builder(&shipped)
        .device(Device::Cpu)
        .precision(Precision::Fp32)
        .build()
        .unwrap();
    let classes = classifier.classes().to_vec();
    let sample = skinlesion_core::testing::ham10000_sample("val", 48);
    let paths: Vec<&Path> = sample.iter().map(|s| s.path.as_path()).collect();
    let prepared: Vec<_> = classifier
        .prepare_batch(paths.iter().copied())
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let outputs = classifier.forward(&prepared).unwrap();
    let logits = outputs.logits.shallow_clone();
    let scores = Vec::<f32>::try_from(outputs.gate_scores.as_ref().unwrap()).unwrap();
    let rows: Vec<Vec<f32>> = Vec::<f32>::try_from(logits.flatten(0, -1))
        .unwrap()
        .chunks(classes.len())
        .map(<[f32]>::to_vec)
        .collect();
    let truth: Vec<usize> = sample
        .iter()
        .map(|s| classes.iter().position(|c| *c == s.class).unwrap())
        .collect();
    // Train side: a calibration fitted here (melanoma bias and Unknown threshold included).
    let mut fitted = skinlesion_train::train::calibrate(&rows, &truth, &classes, 0.9, &[]);
    assert!(fitted.unknown_threshold > 0.0 || !fitted.log_prior.is_empty());
    assert!(fitted.decision_bias.is_empty());
    // The shipped network scores for its gate: the gate goes with it.
    fitted.dermoscopy_gate = classifier.metadata().calibration.dermoscopy_gate.clone();

    // Serve side: the shipped network under that calibration.
    let dir = tempfile::tempdir().unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&shipped).unwrap()).unwrap();
    manifest["calibration"] = serde_json::to_value(&fitted).unwrap();
    let weights = shipped.with_extension("pt");
    std::fs::copy(&weights, dir.path().join(weights.file_name().unwrap())).unwrap();
    std::fs::write(dir.path().join("refit.json"), manifest.to_string()).unwrap();
    let refit = Classifier::builder(dir.path().join("refit.json"))
        .device(Device::Cpu)
        .precision(Precision::Fp32)
        .build()
        .unwrap();
    let served = refit.predictions_from_outputs(&outputs).unwrap();
    let mut nll = 0.0;
    for (((row, p), &t), &score) in rows.iter().zip(&served).zip(&truth).zip(&scores) {
        assert_eq!(*p, fitted.prediction(&classes, row, Some(score)).unwrap());
        nll -= f64::from(p.probability(classes[t]).unwrap()).ln();
    }
    let ones = vec![1.0; rows.len()];
    let fitted_nll = skinlesion_train::metrics::nll(&rows, &truth, &ones, &fitted);
    assert!((nll / rows.len() as f64 - fitted_nll).abs() < 1e-6);
}

/// A few bfloat16 steps from the ImageNet weights on two sources: the artifact loads and
/// answers, each source is validated apart, the frozen blocks kept their pretrained weights
/// while the others moved, and the new head trained.
#[test]
fn a_short_fine_tune_of_the_pretrained_backbone_yields_a_loadable_model() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let labels = subset_csv(dir.path(), 6, 3);
    let second = second_source_subset(dir.path(), 3, 2);
    let weights = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(skinlesion_train::nets::pretrained::DEFAULT_EFFICIENTNET_LITE0);
    let mut config = TrainConfig {
        architecture: Architecture::EfficientNetLite0,
        pretrained: Some(weights.clone()),
        freeze_blocks: 3,
        backbone_lr_scale: 0.3,
        input_size: 64,
        // Tested at a higher resolution than trained at: validated and exported at 80.
        test_size: Some(80),
        epochs: 1,
        batch_size: 8,
        tta_mirror: true,
        colour_cast: 0.0,
        precision: TrainPrecision::Bf16,
        // NV, MEL and BKL have 9 training images over both sources: 5 each an epoch.
        class_cap: Some(5),
        // Progressive resizing: this one epoch trains at 48 px.
        early_size: Some(48),
        early_epochs: 1,
        ..config(dir.path(), labels, "effnet")
    };
    config.labels.push(second);
    config
        .images
        .push(skinlesion_core::testing::second_source_dir().join("images"));
    let outcome = train(&config, false).unwrap();
    // The epoch's score is the mean of the two sources' val balanced accuracies.
    let epoch = &outcome.state.history[0];
    let by_source = &epoch.val_source_balanced_accuracy;
    assert_eq!(by_source.len(), 2);
    assert!((epoch.val_balanced_accuracy - (by_source[0] + by_source[1]) / 2.0).abs() < 1e-12);
    // 5 + 5 + 5 + 6 (BCC) images at batch 8: 3 steps.
    assert_eq!(outcome.state.step, 3);
    assert_eq!(epoch.step_profile.steps, 3);
    assert!(epoch.step_profile.backward > 0.0);
    assert_eq!(
        outcome.metadata.architecture,
        "efficientnet-lite0-80+mirror"
    );
    assert_eq!(outcome.metadata.input.mean, [0.5; 3]);
    assert_eq!(
        (outcome.metadata.input.width, outcome.metadata.input.height),
        (80, 80)
    );
    let classifier = Classifier::builder(&config.output)
        .device(Device::Cpu)
        .build()
        .unwrap();
    let image = &skinlesion_core::testing::ham10000_sample("test", 1)[0];
    let prediction = classifier.classify(&image.path).unwrap();
    assert_eq!(prediction.probabilities().len(), 4);
    // The gate is traced in: the network scores each image, the manifest holds the threshold.
    let gate = outcome
        .metadata
        .calibration
        .dermoscopy_gate
        .clone()
        .unwrap();
    assert_eq!(gate.score, skinlesion_core::GateScore::Mahalanobis);
    assert!(gate.threshold.is_finite() && gate.threshold > 0.0);
    assert!(prediction.ood_score().is_some_and(f32::is_finite));
    // The threshold refuses at most 5 % of the calibration source's val: with this run's 3
    // val images per class, none. It is the largest val score as training computed it; the
    // exported trace recomputes that score with other float rounding (and a gate fitted on
    // 33 images scores in the 1e5s), so the largest may land a hair above.
    let val: Vec<PathBuf> = std::fs::read_to_string(&config.labels[0])
        .unwrap()
        .lines()
        .filter(|l| l.ends_with(",val"))
        .map(|l| data_dir().join("images").join(l.split(',').next().unwrap()))
        .collect();
    assert_eq!(val.len(), 12);
    for (path, p) in val.iter().zip(classifier.classify_batch(&val)) {
        let score = p.unwrap().ood_score().unwrap();
        assert!(
            score <= gate.threshold * (1.0 + 1e-4),
            "{}: {score} > {}",
            path.display(),
            gate.threshold
        );
    }
    // Refusal follows the score (a few steps of training make no useful gate to test more).
    let grey = skinlesion_core::image::DynamicImage::ImageRgb8(
        skinlesion_core::image::RgbImage::from_pixel(80, 80, [128, 128, 128].into()),
    );
    let p = classifier.classify(&grey).unwrap();
    let refused = p.unknown_reason() == Some(skinlesion_core::UnknownReason::NotDermoscopy);
    assert_eq!(refused, p.ood_score().unwrap() > gate.threshold);
    // The class maps are traced in too (80 px in: 3×3 cells), mirror-averaged like the
    // logits: each map's mean plus the head's bias is its class's raw logit.
    let maps = outcome.metadata.class_maps.clone().unwrap();
    assert_eq!((maps.width, maps.height, maps.bias.len()), (3, 3, 4));
    let prepared = classifier.prepare(&image.path).unwrap();
    let logits =
        Vec::<f32>::try_from(classifier.logits(&[prepared]).unwrap().flatten(0, -1)).unwrap();
    for (i, &class) in classifier.classes().iter().enumerate() {
        let explained = classifier.explain(&image.path, Some(class)).unwrap();
        assert_eq!(explained.prediction(), &prediction);
        let logit = explained.class_map().logit();
        assert!(
            (logit - logits[i]).abs() < 1e-4,
            "{class}: {logit} vs {}",
            logits[i]
        );
    }

    let start: std::collections::HashMap<String, _> = tch::Tensor::read_safetensors(&weights)
        .unwrap()
        .into_iter()
        .collect();
    let trained: std::collections::HashMap<String, _> =
        tch::Tensor::load_multi(config.checkpoint_dir.join("last.ot"))
            .unwrap()
            .into_iter()
            .collect();
    let moved = |name: &str| !trained[name].equal(&start[name]);
    assert!(!moved("_conv_stem.weight") && !moved("_blocks.2._project_conv.weight"));
    assert!(
        !moved("_blocks.1._bn1.running_mean"),
        "frozen batch norm keeps its statistics"
    );
    assert!(moved("_blocks.3._expand_conv.weight") && moved("_conv_head.weight"));
    assert_eq!(trained["_fc.weight"].size(), [4, 1280]);
}

// DICOM files are found in folders by extension or, without one, by their marker, and
// answered as the JPEG they wrap, with the `dicom` object in JSON lines.
#[test]
fn classify_reads_dicom_files_in_folders() {
    let fixtures = skinlesion_core::testing::dicom_fixtures();
    let dir = tempfile::tempdir().unwrap();
    let model = probe_model(dir.path());
    let folder = dir.path().join("pacs");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(&fixtures.jpegs[0], folder.join("a.jpg")).unwrap();
    std::fs::copy(fixtures.path("ham-0.dcm"), folder.join("b.DCM")).unwrap();
    std::fs::copy(
        fixtures.path("ham-0.dcm"),
        folder.join("1.2.826.0.1.3680043"),
    )
    .unwrap();
    std::fs::write(folder.join("README"), b"no image here").unwrap();
    let images = skinlesion_train::classify::collect_images(std::slice::from_ref(&folder)).unwrap();
    let names: Vec<_> = images
        .iter()
        .map(|p| p.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["1.2.826.0.1.3680043", "a.jpg", "b.DCM"]);
    let classifier = Classifier::builder(&model)
        .device(Device::Cpu)
        .build()
        .unwrap();
    let (failures, lines) = classify_jsonl(&classifier, &images, 4);
    assert_eq!(failures, 0);
    let jpeg = &lines[1];
    assert!(jpeg.get("dicom").is_none());
    for dicom in [&lines[0], &lines[2]] {
        assert_eq!(dicom["all_predictions"], jpeg["all_predictions"]);
        assert_eq!(dicom["dicom"]["modality"], "DMS");
    }
}
