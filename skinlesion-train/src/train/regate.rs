//! `regate`: a shipped model re-exported with a new dermoscopy gate and Unknown threshold.
//! Its network (logits and class maps), temperature and melanoma operating point stay
//! exactly as shipped; only the gate's column and the low-confidence threshold are refitted,
//! so no training checkpoint is needed.

use std::path::PathBuf;

use anyhow::{Context, Result};
use skinlesion_core::ModelMetadata;
use tch::Device;

use super::checkpoint::TrainState;
use super::config::TrainConfig;
use super::{abstain, export, fit_gate, outputs, read_splits, Split};
use crate::nets::artifact::ArtifactNet;

/// What `regate` needs.
#[derive(Debug, Clone, clap::Args)]
pub struct RegateConfig {
    /// The shipped model's manifest.
    #[arg(long)]
    pub model: PathBuf,
    /// Its network returning its pooled features too (`scripts/expose_features.py`).
    #[arg(long)]
    pub network: PathBuf,
    /// The gate's fitting set (`gate.csv` from `scripts/gate_fit_set.py`).
    #[arg(long)]
    pub gate_set: PathBuf,
    /// The new manifest; the weights go beside it with the `.pt` extension.
    #[arg(long)]
    pub output: PathBuf,
    #[arg(long)]
    pub model_version: String,
    /// The labels whose `val` split validates (default: those the model was trained with).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Their images' folder (default: the training's).
    #[arg(long)]
    pub images: Option<PathBuf>,
}

/// Refits the gate and the Unknown threshold of `config.model` on its validation set (the
/// labels its training used) and writes the new artifact.
pub fn regate(config: &RegateConfig) -> Result<ModelMetadata> {
    let text = std::fs::read_to_string(&config.model)
        .with_context(|| format!("reading {}", config.model.display()))?;
    let shipped: ModelMetadata = serde_json::from_str(&text)?;
    let training = shipped
        .provenance
        .get("training_config")
        .context("the manifest does not say how the model was trained")?;
    let mut run: TrainConfig = serde_json::from_value(training.clone())?;
    run.output = config.output.clone();
    run.model_version = config.model_version.clone();
    run.gate_set = Some(config.gate_set.clone());
    if let Some(labels) = &config.labels {
        run.labels = vec![labels.clone()];
    }
    if let Some(images) = &config.images {
        run.images = vec![images.clone()];
    }
    tch_threads();

    let mut net = ArtifactNet::load(&config.network, &shipped, Device::Cpu)?;
    let splits = read_splits(&run)?;
    let val = Split::load(splits.calibration_val(), &shipped.classes, &shipped.input)?;
    let (val_logits, val_features) = outputs(&net, &val.images, Device::Cpu);
    let val_features = val_features.context("the network does not expose its features")?;
    let gate = fit_gate(
        &run,
        &shipped.classes,
        &shipped.input,
        &net,
        Device::Cpu,
        &val_features,
    )?;
    let mut calibration = shipped.calibration.clone();
    calibration.dermoscopy_gate = Some(gate.manifest());
    let accepted = gate.accepts(&val_features)?;
    abstain(&mut calibration, &val_logits, &val.truth, &accepted);

    let state = TrainState {
        best_epoch: shipped
            .provenance
            .get("best_epoch")
            .and_then(|v| v.as_u64())
            .map(|e| e as usize),
        best_val_balanced_accuracy: shipped
            .provenance
            .get("val_balanced_accuracy")
            .and_then(|v| v.as_f64())
            .unwrap_or(f64::NAN),
        seconds: shipped
            .provenance
            .get("training_seconds")
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0),
        ..TrainState::new()
    };
    export::export(export::Export {
        config: &run,
        classes: &shipped.classes,
        spec: shipped.input,
        calibration,
        state: &state,
        net: &mut net,
        gate: Some(gate),
        val_images: &val.images,
        network_from: Some(format!(
            "{} {} (weights sha256 {}): same network, gate and Unknown threshold refitted",
            shipped.name, shipped.version, shipped.weights.sha256
        )),
    })
}

fn tch_threads() {
    tch::set_num_threads(skinlesion_core::available_cores() as i32);
}
