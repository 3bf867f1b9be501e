//! `refit-decision`: a model's manifest written anew with the two-step decision
//! ([`skinlesion_core::DecisionRule::TwoStep`]) fitted on the `val` splits of its training
//! sources, and the Unknown threshold refitted for it. The network, its checksum, the
//! temperature and the dermoscopy gate stay as they are: no training, no checkpoint.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use skinlesion_core::training::{read_metadata, sha256_hex};
use skinlesion_core::{Classifier, Device, LesionClass, ModelMetadata, Precision, UnknownReason};

use crate::add_precision::{add_precision, AddPrecisionConfig};
use crate::data::{filter_split, read_fitting_labels};
use crate::train::two_step::{fit_two_step, SourceLogits, TwoStepFit};
use crate::train::{abstain, UNKNOWN_COVERAGE};

/// Images per forward pass (the logits do not depend on it).
const BATCH: usize = 16;

/// What `refit-decision` needs.
#[derive(Debug, Clone, clap::Args)]
pub struct RefitDecisionConfig {
    /// The model's manifest.
    #[arg(long)]
    pub model: PathBuf,
    /// Labels CSV of a training source (repeatable, each with its --images). The first is the
    /// calibration source: the Unknown threshold is refitted on its `val` alone, as at export.
    #[arg(long, required = true)]
    pub labels: Vec<PathBuf>,
    /// The folder of the images of the --labels at the same position.
    #[arg(long, required = true)]
    pub images: Vec<PathBuf>,
    /// The split of every labels file the rule is fitted on.
    #[arg(long, default_value = "val")]
    pub split: String,
    /// Share of the melanomas of all sources together the rule must find.
    #[arg(long, default_value_t = 0.85)]
    pub melanoma_sensitivity: f64,
    /// The new manifest; it names the same weights, so it must be in the model's folder.
    #[arg(long)]
    pub output: PathBuf,
    #[arg(long)]
    pub model_version: String,
}

/// One source's fitting logits.
struct Source {
    name: String,
    labels_sha256: String,
    logits: Vec<Vec<f32>>,
    truth: Vec<usize>,
    /// The gate accepts the image.
    accepted: Vec<bool>,
}

/// Fits the rule, writes the manifest and, for a model with a bf16 network, measures that
/// network's agreement and recheck bands anew under the new rule.
pub fn refit_decision(config: &RefitDecisionConfig) -> Result<ModelMetadata> {
    if config.labels.len() != config.images.len() {
        bail!("give one --images per --labels");
    }
    let (mut metadata, paths) = read_metadata(&config.model)?;
    let folder = |p: &Path| p.parent().map(Path::to_path_buf).unwrap_or_default();
    if folder(&config.output).canonicalize().ok() != folder(&paths.manifest).canonicalize().ok() {
        bail!(
            "--output must be in {}: the new manifest names the same weights",
            folder(&paths.manifest).display()
        );
    }
    let classifier = Classifier::builder(&config.model)
        .device(Device::Cpu)
        .precision(Precision::Fp32)
        .build()?;
    let sources = (config.labels.iter().zip(&config.images))
        .map(|(labels, images)| source_logits(&classifier, labels, images, &config.split))
        .collect::<Result<Vec<_>>>()?;
    let views: Vec<SourceLogits<'_>> = sources
        .iter()
        .map(|s| SourceLogits {
            name: s.name.clone(),
            logits: &s.logits,
            truth: &s.truth,
        })
        .collect();
    let mut calibration = metadata.calibration.clone();
    let fit = fit_two_step(
        &mut calibration,
        &metadata.classes,
        &views,
        config.melanoma_sensitivity,
    )
    .context(
        "the two-step rule needs melanoma and nevi among the classes and melanomas to fit on",
    )?;
    let first = &sources[0];
    abstain(
        &mut calibration,
        &first.logits,
        &first.truth,
        &first.accepted,
    );
    report(&fit);
    metadata.calibration = calibration;
    metadata.version = config.model_version.clone();
    metadata.provenance.insert(
        "decision_rule_fit".into(),
        provenance(&fit, &sources, config)?,
    );
    let json = serde_json::to_string_pretty(&metadata)?;
    std::fs::write(&config.output, json + "\n")
        .with_context(|| format!("writing {}", config.output.display()))?;
    eprintln!("wrote {}", config.output.display());
    if let Some(bf16) = metadata.other_precisions.first() {
        // The recheck bands are margins of the old rule: measure them for the new one.
        add_precision(&AddPrecisionConfig {
            model: config.output.clone(),
            network: Some(folder(&paths.manifest).join(&bf16.weights.file)),
            labels: config.labels.clone(),
            images: config.images.clone(),
            split: config.split.clone(),
            recheck_quantile: bf16.recheck.as_ref().map_or(0.9, |r| r.quantile),
            keep_recheck: false,
            dry_run: false,
        })?;
        return Ok(read_metadata(&config.output)?.0);
    }
    Ok(metadata)
}

/// The fp32 logits, truth and gate decisions of one source's `split`.
fn source_logits(
    classifier: &Classifier,
    labels: &Path,
    images: &Path,
    split: &str,
) -> Result<Source> {
    let samples = filter_split(read_fitting_labels(labels, images)?, Some(split))?;
    let classes = classifier.classes();
    let calibration = &classifier.metadata().calibration;
    let mut source = Source {
        name: format!("{} {split}", crate::data::source_name(labels)),
        labels_sha256: sha256_hex(&std::fs::read(labels)?),
        logits: Vec::new(),
        truth: Vec::new(),
        accepted: Vec::new(),
    };
    for chunk in samples.chunks(BATCH) {
        let prepared = classifier
            .prepare_batch(chunk.iter().map(|s| s.path.as_path()))
            .into_iter()
            .zip(chunk)
            .map(|(p, s)| p.with_context(|| format!("preparing {}", s.path.display())))
            .collect::<Result<Vec<_>>>()?;
        let rows = classifier.rows_from_outputs(&classifier.forward(&prepared)?)?;
        for (sample, (logits, score)) in chunk.iter().zip(rows) {
            let class: LesionClass = sample.label.parse()?;
            let truth = (classes.iter().position(|&c| c == class))
                .with_context(|| format!("label {class} is not among the model's classes"))?;
            let refused = calibration
                .prediction(classes, &logits, score)?
                .unknown_reason()
                == Some(UnknownReason::NotDermoscopy);
            source.truth.push(truth);
            source.accepted.push(!refused);
            source.logits.push(logits);
        }
    }
    Ok(source)
}

fn report(fit: &TwoStepFit) {
    eprintln!(
        "two-step rule: melanoma log prior {:.3}, melanocytic bias {:.2}; pooled melanoma \
         sensitivity {:.3}, mean balanced accuracy {:.4}",
        fit.melanoma_log_prior,
        fit.melanocytic_bias,
        fit.pooled_melanoma_sensitivity,
        fit.mean_balanced_accuracy
    );
    for s in &fit.per_source {
        eprintln!(
            "  {} ({} images): balanced accuracy {:.4}, melanoma sensitivity {} / specificity {}",
            s.source,
            s.images,
            s.balanced_accuracy,
            s.melanoma_sensitivity
                .map_or("-".into(), |v| format!("{v:.3}")),
            s.melanoma_specificity
                .map_or("-".into(), |v| format!("{v:.3}"))
        );
    }
}

fn provenance(
    fit: &TwoStepFit,
    sources: &[Source],
    config: &RefitDecisionConfig,
) -> Result<serde_json::Value> {
    let fitted_on: Vec<serde_json::Value> = sources
        .iter()
        .map(|s| {
            serde_json::json!({
                "set": s.name,
                "images": s.truth.len(),
                "labels_sha256": s.labels_sha256,
            })
        })
        .collect();
    Ok(serde_json::json!({
        "rule": "two_step: melanocytic when ln(p(MEL) + p(NV)) + melanocytic_bias is at least every other class's ln p; then melanoma when p(MEL) >= p(NV), else the most probable other class",
        "fitted_on": fitted_on,
        "melanoma_sensitivity_target": config.melanoma_sensitivity,
        "objective": "the highest mean of the sources' balanced accuracies among (bias, melanoma log prior) pairs that find the target share of all sources' melanomas together",
        "unknown_threshold": format!(
            "answers {:.0} % of the gate-accepted {} images",
            100.0 * UNKNOWN_COVERAGE,
            sources[0].name
        ),
        "fit": serde_json::to_value(fit)?,
    }))
}
