//! `evaluate`: scores a model on a labelled set and writes `metrics.json`, `predictions.csv`
//! and PNG plots.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use skinlesion_core::{Classifier, LesionClass, Precision, Prediction, UnknownReason};

use crate::data::{filter_split, read_labels, Sample};
use crate::metrics::{self, ClassReport, ReliabilityBin};

/// Bins of the expected calibration error and the reliability diagram.
pub const ECE_BINS: usize = 15;

/// A coarser label that several model classes count as, e.g. `AKIEC=AK+SCC`.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelMap {
    pub label: String,
    pub classes: Vec<LesionClass>,
}

impl std::str::FromStr for LabelMap {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (label, classes) = s
            .split_once('=')
            .ok_or_else(|| format!("--map {s:?}: expected LABEL=CLASS+CLASS..."))?;
        let classes = classes
            .split('+')
            .map(|c| c.parse::<LesionClass>().map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        if label.trim().is_empty() || classes.is_empty() {
            return Err(format!("--map {s:?}: empty label or class list"));
        }
        Ok(Self {
            label: label.trim().to_owned(),
            classes,
        })
    }
}

#[derive(Debug, Clone)]
pub struct EvalConfig {
    pub model: PathBuf,
    pub labels: PathBuf,
    pub images: PathBuf,
    pub split: Option<String>,
    pub maps: Vec<LabelMap>,
    pub out_dir: PathBuf,
    /// Images per forward pass; `None` for the device's fastest
    /// ([`skinlesion_core::Device::preferred_batch_size`]).
    pub batch_size: Option<usize>,
    /// The arithmetic to score in (`Auto`: what a server on this machine runs).
    pub precision: Precision,
}

#[derive(Debug, Serialize)]
pub struct Metrics {
    pub model: String,
    /// The arithmetic scored: fp32, bf16 or bf16-checked (see the manifest's
    /// `other_precisions`).
    pub precision: Precision,
    /// Its weights' checksum.
    pub model_sha256: String,
    pub split: Option<String>,
    pub images: usize,
    /// Images that could not be read or decoded (left out of every metric).
    pub failed_images: Vec<String>,
    pub labels: Vec<String>,
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    /// 95% interval of the balanced accuracy from the images' sampling (see
    /// `interval_definition`): a difference inside it is not evidence between two models.
    pub balanced_accuracy_ci95: [f64; 2],
    pub macro_auc: Option<f64>,
    /// Recall of melanoma (`MEL`), when it is a label of the set.
    pub melanoma_sensitivity: Option<f64>,
    pub melanoma_sensitivity_ci95: Option<[f64; 2]>,
    /// Share of non-melanoma images not called melanoma.
    pub melanoma_specificity: Option<f64>,
    /// Melanomas answered melanoma (an Unknown answer does not count as found).
    pub melanoma_sensitivity_served: Option<f64>,
    /// Non-melanomas not answered melanoma (an Unknown answer counts as not melanoma).
    pub melanoma_specificity_served: Option<f64>,
    /// One-vs-rest AUC of melanoma's probability.
    pub melanoma_auc: Option<f64>,
    /// AUC of the melanoma-to-nevus log ratio among melanomas and nevi alone: how well the
    /// network ranks the melanocytic lesions whatever the other classes do.
    pub melanoma_vs_nevus_auc: Option<f64>,
    /// Recall of melanocytic nevi (`NV`), when it is a label of the set.
    pub nevus_recall: Option<f64>,
    pub ece_before_calibration: f64,
    pub ece_after_calibration: f64,
    /// The same with every true label weighing equally: the population the probabilities of
    /// a format-2 model are calibrated for.
    pub class_balanced_ece_before_calibration: f64,
    pub class_balanced_ece_after_calibration: f64,
    /// Balanced accuracy of what a user is told: an "Unknown" answer (either reason) counts as
    /// wrong.
    pub balanced_accuracy_served: f64,
    /// Share of images answered "Unknown" by the model's calibrated rule, for either reason.
    pub unknown_rate: f64,
    /// Share answered "Unknown" because the answer's confidence is below the threshold.
    pub low_confidence_rate: f64,
    /// How often the best guess is right where the answer is Unknown for low confidence: the
    /// rule means "the model is likely wrong here" when this is well below
    /// `accuracy_when_answered`.
    pub accuracy_when_low_confidence: Option<f64>,
    /// Selective accuracy against coverage over the images the gate accepts, ranked by the
    /// answer's confidence (the model's own threshold is one point on it).
    pub coverage_curve: Vec<metrics::CoveragePoint>,
    /// Share of images the dermoscopy gate refused (`not_dermoscopy`); `None` without a gate.
    pub not_dermoscopy_rate: Option<f64>,
    /// Balanced accuracy over the images the gate accepted; `None` without a gate.
    pub balanced_accuracy_accepted: Option<f64>,
    /// Accuracy over the images not answered "Unknown".
    pub accuracy_when_answered: Option<f64>,
    pub per_class: Vec<ClassReport>,
    /// `confusion_matrix[truth][predicted]`, in `labels` order; predictions are the model's
    /// answers (its best guess also when the answer is Unknown).
    pub confusion_matrix: Vec<Vec<u64>>,
    /// Class-balanced reliability bins (see `class_balanced_ece_*`).
    pub reliability_before_calibration: Vec<ReliabilityBin>,
    pub reliability_after_calibration: Vec<ReliabilityBin>,
    pub temperature: f32,
    pub unknown_threshold: f32,
    /// How ECE is measured here.
    pub ece_definition: &'static str,
    /// How the `_ci95` intervals are computed.
    pub interval_definition: &'static str,
}

/// Bootstrap resamples behind the `_ci95` intervals, and their fixed seed.
const RESAMPLES: usize = 2000;
const RESAMPLE_SEED: u64 = 2019;

/// One scored image.
struct Scored {
    sample: Sample,
    truth: usize,
    /// The label of the model's answer (its best guess, also when it abstained).
    decision: usize,
    prediction: Prediction,
    /// Label probabilities before and after temperature scaling.
    raw: Vec<f64>,
    calibrated: Vec<f64>,
}

/// The label space: model classes (mapped), then truth labels the model cannot produce.
struct Labels {
    names: Vec<String>,
    of_class: BTreeMap<LesionClass, usize>,
}

impl Labels {
    fn new(classes: &[LesionClass], maps: &[LabelMap], samples: &[Sample]) -> Result<Self> {
        let mut names: Vec<String> = Vec::new();
        let mut of_class = BTreeMap::new();
        let index = |names: &mut Vec<String>, name: &str| match names.iter().position(|n| n == name)
        {
            Some(i) => i,
            None => {
                names.push(name.to_owned());
                names.len() - 1
            }
        };
        for &class in classes {
            let name = maps
                .iter()
                .find(|m| m.classes.contains(&class))
                .map_or(class.code(), |m| m.label.as_str());
            of_class.insert(class, index(&mut names, name));
        }
        for s in samples {
            let name = Self::truth_name(&s.label, maps)?;
            index(&mut names, &name);
        }
        Ok(Self { names, of_class })
    }

    /// A truth label as a label name: a mapped coarse label, or a lesion class's code.
    fn truth_name(label: &str, maps: &[LabelMap]) -> Result<String> {
        if let Some(m) = maps.iter().find(|m| m.label.eq_ignore_ascii_case(label)) {
            return Ok(m.label.clone());
        }
        let class: LesionClass = label.parse().with_context(|| {
            format!("label {label:?} is neither a lesion class nor a --map label")
        })?;
        Ok(maps
            .iter()
            .find(|m| m.classes.contains(&class))
            .map_or(class.code().to_owned(), |m| m.label.clone()))
    }

    fn index_of(&self, name: &str) -> usize {
        self.names
            .iter()
            .position(|n| n == name)
            .expect("label registered")
    }

    /// Sums class probabilities into label probabilities.
    fn project(&self, classes: &[LesionClass], probs: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; self.names.len()];
        for (class, p) in classes.iter().zip(probs) {
            out[self.of_class[class]] += p;
        }
        out
    }
}

/// Scores the model on the labelled images and writes metrics.json, predictions.csv and the
/// two plots into `config.out_dir`.
pub fn evaluate(config: &EvalConfig) -> Result<Metrics> {
    let classifier = Classifier::builder(&config.model)
        .device(skinlesion_core::Device::Cpu)
        .precision(config.precision)
        .build()?;
    let meta = classifier.metadata().clone();
    let samples = filter_split(
        read_labels(&config.labels, &config.images)?,
        config.split.as_deref(),
    )?;
    let labels = Labels::new(classifier.classes(), &config.maps, &samples)?;
    let (scored, failed) = score(&classifier, &samples, &labels, config)?;
    let metrics = compute(
        &scored,
        &labels,
        &meta,
        classifier.precision(),
        config,
        failed,
    );
    write_outputs(config, &meta, &metrics, &scored, classifier.classes())?;
    Ok(metrics)
}

/// Classifies every sample in batches: the scored ones, and the paths that failed.
fn score(
    classifier: &Classifier,
    samples: &[Sample],
    labels: &Labels,
    config: &EvalConfig,
) -> Result<(Vec<Scored>, Vec<String>)> {
    let progress = crate::progress::bar(samples.len() as u64, "evaluating");
    let mut scored = Vec::with_capacity(samples.len());
    let mut failed = Vec::new();
    let batch_size = config
        .batch_size
        .unwrap_or_else(|| classifier.device().preferred_batch_size());
    for chunk in samples.chunks(batch_size.max(1)) {
        let paths: Vec<&Path> = chunk.iter().map(|s| s.path.as_path()).collect();
        let mut good = Vec::new();
        let mut good_samples = Vec::new();
        for (sample, prepared) in chunk
            .iter()
            .zip(classifier.prepare_batch(paths.iter().copied()))
        {
            match prepared {
                Ok(p) => {
                    good.push(p);
                    good_samples.push(sample.clone());
                }
                Err(e) => {
                    eprintln!("{}: {e}", sample.path.display());
                    failed.push(sample.path.display().to_string());
                }
            }
        }
        progress.inc(chunk.len() as u64);
        if !good.is_empty() {
            scored.extend(score_batch(
                classifier,
                &good,
                good_samples,
                labels,
                config,
            )?);
        }
    }
    progress.finish_and_clear();
    if scored.is_empty() {
        bail!("no image could be scored");
    }
    Ok((scored, failed))
}

/// One forward pass over prepared images of `samples`.
fn score_batch(
    classifier: &Classifier,
    good: &[skinlesion_core::PreparedImage],
    samples: Vec<Sample>,
    labels: &Labels,
    config: &EvalConfig,
) -> Result<Vec<Scored>> {
    let classes = classifier.classes();
    let outputs = classifier.forward(good)?;
    let predictions = classifier.predictions_from_outputs(&outputs)?;
    let flat = Vec::<f32>::try_from(outputs.logits.flatten(0, -1))?;
    samples
        .into_iter()
        .zip(predictions)
        .zip(flat.chunks(classes.len()))
        .map(|((sample, prediction), row)| {
            let truth = labels.index_of(&Labels::truth_name(&sample.label, &config.maps)?);
            let calibrated: Vec<f64> = classes
                .iter()
                .map(|c| f64::from(prediction.probability(*c).unwrap_or(0.0)))
                .collect();
            Ok(Scored {
                truth,
                decision: labels.of_class[&prediction.best_guess()],
                prediction,
                raw: labels.project(classes, &metrics::softmax(row, 1.0)),
                calibrated: labels.project(classes, &calibrated),
                sample,
            })
        })
        .collect()
}

fn write_outputs(
    config: &EvalConfig,
    meta: &skinlesion_core::ModelMetadata,
    metrics: &Metrics,
    scored: &[Scored],
    classes: &[LesionClass],
) -> Result<()> {
    std::fs::create_dir_all(&config.out_dir)?;
    std::fs::write(
        config.out_dir.join("metrics.json"),
        serde_json::to_string_pretty(&metrics)? + "\n",
    )?;
    write_predictions(&config.out_dir.join("predictions.csv"), scored, classes)?;
    crate::plots::confusion_matrix(
        &config.out_dir.join("confusion_matrix.png"),
        &metrics.confusion_matrix,
        &metrics.labels,
        &format!(
            "{} on {} — balanced accuracy {:.3}",
            meta.name,
            config.split.as_deref().unwrap_or("all images"),
            metrics.balanced_accuracy
        ),
    )?;
    crate::plots::reliability_diagram(
        &config.out_dir.join("reliability.png"),
        &metrics.reliability_before_calibration,
        &metrics.reliability_after_calibration,
        metrics.class_balanced_ece_before_calibration,
        metrics.class_balanced_ece_after_calibration,
    )
}

fn compute(
    scored: &[Scored],
    labels: &Labels,
    meta: &skinlesion_core::ModelMetadata,
    precision: Precision,
    config: &EvalConfig,
    failed: Vec<String>,
) -> Metrics {
    let k = labels.names.len();
    let truth: Vec<usize> = scored.iter().map(|s| s.truth).collect();
    let predicted: Vec<usize> = scored.iter().map(|s| s.decision).collect();
    let matrix = metrics::confusion(&truth, &predicted, k);
    let aucs: Vec<Option<f64>> = (0..k)
        .map(|label| {
            let scores: Vec<f64> = scored.iter().map(|s| s.calibrated[label]).collect();
            let positive: Vec<bool> = truth.iter().map(|&t| t == label).collect();
            metrics::roc_auc(&scores, &positive)
        })
        .collect();
    let defined: Vec<f64> = aucs.iter().flatten().copied().collect();
    let per_class = metrics::class_reports(&matrix, &labels.names, &aucs);
    let intervals = metrics::recall_intervals(&matrix, RESAMPLES, RESAMPLE_SEED);

    // Calibration of the number users see: the probability given to the model's answer.
    let confidence_and_hits = |probs: fn(&Scored) -> &Vec<f64>| -> (Vec<f64>, Vec<bool>) {
        scored
            .iter()
            .map(|s| (probs(s)[s.decision], s.decision == s.truth))
            .unzip()
    };
    let (conf_raw, hits_raw) = confidence_and_hits(|s| &s.raw);
    let (conf_cal, hits_cal) = confidence_and_hits(|s| &s.calibrated);

    let mel = labels
        .names
        .iter()
        .position(|n| n == LesionClass::Melanoma.code());
    let melanoma_specificity = mel.and_then(|m| {
        let negatives: Vec<usize> = (0..truth.len()).filter(|&i| truth[i] != m).collect();
        (!negatives.is_empty()).then(|| {
            negatives.iter().filter(|&&i| predicted[i] != m).count() as f64 / negatives.len() as f64
        })
    });
    let answered: Vec<usize> = (0..scored.len())
        .filter(|&i| !scored[i].prediction.is_unknown())
        .collect();
    let served = served_melanoma(scored, &truth, mel);
    let nevus = labels
        .names
        .iter()
        .position(|n| n == LesionClass::MelanocyticNevi.code());
    let weights = metrics::class_balanced_weights(&truth, k);
    let ece = |conf: &[f64], hits: &[bool], w: &[f64]| {
        metrics::expected_calibration_error(conf, hits, w, ECE_BINS)
    };
    let gated = meta.calibration.dermoscopy_gate.is_some();
    let low_confidence: Vec<usize> = (0..scored.len())
        .filter(|&i| scored[i].prediction.unknown_reason() == Some(UnknownReason::LowConfidence))
        .collect();
    let share_right = |images: &[usize]| {
        (!images.is_empty()).then(|| {
            images.iter().filter(|&&i| predicted[i] == truth[i]).count() as f64
                / images.len() as f64
        })
    };
    let accepted: Vec<usize> = (0..scored.len())
        .filter(|&i| scored[i].prediction.unknown_reason() != Some(UnknownReason::NotDermoscopy))
        .collect();
    let accepted_matrix = metrics::confusion(
        &accepted.iter().map(|&i| truth[i]).collect::<Vec<_>>(),
        &accepted.iter().map(|&i| predicted[i]).collect::<Vec<_>>(),
        k,
    );
    Metrics {
        model: meta.name.clone() + " " + &meta.version,
        precision,
        model_sha256: meta
            .weights_for(precision)
            .unwrap_or(&meta.weights)
            .sha256
            .clone(),
        split: config.split.clone(),
        images: scored.len(),
        failed_images: failed,
        labels: labels.names.clone(),
        accuracy: metrics::accuracy(&truth, &predicted),
        balanced_accuracy: metrics::balanced_accuracy(&matrix),
        balanced_accuracy_ci95: intervals.balanced_accuracy,
        macro_auc: (!defined.is_empty())
            .then(|| defined.iter().sum::<f64>() / defined.len() as f64),
        melanoma_sensitivity: mel.and_then(|m| per_class[m].recall),
        melanoma_sensitivity_ci95: mel.and_then(|m| intervals.recall[m]),
        melanoma_specificity,
        melanoma_sensitivity_served: served.0,
        melanoma_specificity_served: served.1,
        melanoma_auc: mel.and_then(|m| aucs[m]),
        melanoma_vs_nevus_auc: mel
            .zip(nevus)
            .and_then(|(m, n)| ratio_auc(scored, &truth, m, n)),
        nevus_recall: nevus.and_then(|n| per_class[n].recall),
        ece_before_calibration: ece(&conf_raw, &hits_raw, &[]),
        ece_after_calibration: ece(&conf_cal, &hits_cal, &[]),
        class_balanced_ece_before_calibration: ece(&conf_raw, &hits_raw, &weights),
        class_balanced_ece_after_calibration: ece(&conf_cal, &hits_cal, &weights),
        balanced_accuracy_served: served_balanced_accuracy(&truth, &predicted, &answered, k),
        unknown_rate: 1.0 - answered.len() as f64 / scored.len() as f64,
        low_confidence_rate: low_confidence.len() as f64 / scored.len() as f64,
        accuracy_when_low_confidence: share_right(&low_confidence),
        coverage_curve: metrics::coverage_curve(
            &accepted
                .iter()
                .map(|&i| f64::from(scored[i].prediction.confidence()))
                .collect::<Vec<_>>(),
            &accepted.iter().map(|&i| truth[i]).collect::<Vec<_>>(),
            &accepted.iter().map(|&i| predicted[i]).collect::<Vec<_>>(),
            k,
            &metrics::CURVE_COVERAGES,
        ),
        not_dermoscopy_rate: gated.then(|| 1.0 - accepted.len() as f64 / scored.len() as f64),
        balanced_accuracy_accepted: gated.then(|| metrics::balanced_accuracy(&accepted_matrix)),
        accuracy_when_answered: share_right(&answered),
        per_class,
        confusion_matrix: matrix,
        reliability_before_calibration: metrics::reliability(
            &conf_raw, &hits_raw, &weights, ECE_BINS,
        ),
        reliability_after_calibration: metrics::reliability(
            &conf_cal, &hits_cal, &weights, ECE_BINS,
        ),
        temperature: meta.calibration.temperature,
        unknown_threshold: meta.calibration.unknown_threshold,
        ece_definition: "15 equal-width bins of the probability given to the model's answer; \
                         'before' is the plain softmax of the logits, 'after' the model's \
                         calibration; class-balanced: each image weighted 1 / (images of its \
                         true label)",
        interval_definition: "2.5th-97.5th percentiles of 2000 bootstrap resamples of the images, \
                              drawn within each true label (every label keeps its support)",
    }
}

/// Melanoma sensitivity and specificity of what a user is told: only an answered "melanoma"
/// counts as calling it.
fn served_melanoma(
    scored: &[Scored],
    truth: &[usize],
    mel: Option<usize>,
) -> (Option<f64>, Option<f64>) {
    let Some(m) = mel else {
        return (None, None);
    };
    let called = |s: &Scored| s.prediction.class() == LesionClass::Melanoma;
    let share = |positive: bool| {
        let of: Vec<&Scored> = (scored.iter().zip(truth))
            .filter(|(_, &t)| (t == m) == positive)
            .map(|(s, _)| s)
            .collect();
        let hits = of.iter().filter(|s| called(s) == positive).count();
        (!of.is_empty()).then(|| hits as f64 / of.len() as f64)
    };
    (share(true), share(false))
}

/// AUC of the melanoma-to-nevus log ratio separating melanomas from nevi, the other images
/// left out (of the plain softmax, in f64: temperature and prior do not change its ranking).
fn ratio_auc(scored: &[Scored], truth: &[usize], mel: usize, nevus: usize) -> Option<f64> {
    let (scores, positive): (Vec<f64>, Vec<bool>) = (scored.iter().zip(truth))
        .filter(|(_, &t)| t == mel || t == nevus)
        .map(|(s, &t)| ((s.raw[mel] / s.raw[nevus]).ln(), t == mel))
        .unzip();
    metrics::roc_auc(&scores, &positive)
}

/// Balanced accuracy where only the `answered` images can be right.
fn served_balanced_accuracy(
    truth: &[usize],
    predicted: &[usize],
    answered: &[usize],
    labels: usize,
) -> f64 {
    let mut matrix = metrics::confusion(truth, &vec![labels; truth.len()], labels + 1);
    for &i in answered {
        matrix[truth[i]][labels] -= 1;
        matrix[truth[i]][predicted[i]] += 1;
    }
    matrix.truncate(labels);
    metrics::balanced_accuracy(&matrix)
}

fn write_predictions(path: &Path, scored: &[Scored], classes: &[LesionClass]) -> Result<()> {
    let mut out = csv::Writer::from_path(path)?;
    let mut header = vec![
        "file",
        "true_label",
        "predicted",
        "best_guess",
        "confidence",
        "unknown_reason",
        "ood_score",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    header.extend(classes.iter().map(|c| c.probability_column()));
    out.write_record(&header)?;
    for s in scored {
        let mut row = vec![
            s.sample.path.display().to_string(),
            s.sample.label.clone(),
            s.prediction.class().code().to_owned(),
            s.prediction.best_guess().code().to_owned(),
            format!("{:.6}", s.prediction.confidence()),
            s.prediction
                .unknown_reason()
                .map_or("", |r| r.code())
                .to_owned(),
            s.prediction
                .ood_score()
                .map_or(String::new(), |v| format!("{v:.3}")),
        ];
        row.extend(
            classes
                .iter()
                .map(|c| format!("{:.6}", s.prediction.probability(*c).unwrap_or(0.0))),
        );
        out.write_record(&row)?;
    }
    out.flush()?;
    Ok(())
}
