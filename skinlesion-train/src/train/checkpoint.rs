//! Checkpoints: everything a run needs to continue exactly where it stopped. One folder holds
//! the live weights (`last.ot`), their moving average (`ema.ot`), the best epoch's average
//! (`best.ot`), the optimiser's moments (`optimizer.ot`) and `state.json` ([`Checkpoint`]).

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tch::nn;
use tch::Tensor;

use super::config::TrainConfig;
use super::ema::Ema;
use super::optim::AdamW;

/// Progress that survives a restart.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs completed.
    pub epoch: usize,
    /// Optimiser steps completed.
    pub step: usize,
    pub best_epoch: Option<usize>,
    pub best_val_balanced_accuracy: f64,
    pub history: Vec<EpochLog>,
    pub seconds: f64,
}

impl TrainState {
    /// A run that has not started: any epoch's score beats "best so far".
    pub fn new() -> Self {
        Self {
            best_val_balanced_accuracy: -1.0,
            ..Default::default()
        }
    }

    /// True once `patience` epochs have passed without a better validation score.
    pub fn stopped_early(&self, patience: usize) -> bool {
        self.best_epoch
            .is_some_and(|best| self.epoch >= best + patience)
    }

    /// True when the run has nothing left to train.
    pub fn finished(&self, config: &TrainConfig) -> bool {
        self.epoch >= config.epochs || self.stopped_early(config.patience)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_balanced_accuracy: f64,
    pub val_accuracy: f64,
    pub learning_rate: f64,
    pub seconds: f64,
    /// Each source's `val` balanced accuracy (`val_balanced_accuracy` is their mean).
    #[serde(default)]
    pub val_source_balanced_accuracy: Vec<f64>,
    #[serde(default)]
    pub step_profile: StepProfile,
}

/// Where an epoch's training steps spent their time, in seconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct StepProfile {
    pub steps: usize,
    /// Batch gathering, augmentation, mixup and layout.
    pub data: f64,
    /// Forward pass and loss.
    pub forward: f64,
    pub backward: f64,
    /// Optimiser and weight average.
    pub optimiser: f64,
}

impl std::fmt::Display for StepProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per_step = |s: f64| 1000.0 * s / self.steps.max(1) as f64;
        write!(
            f,
            "{:.0} ms per step: data {:.0}, forward {:.0}, backward {:.0}, optimiser {:.0}",
            per_step(self.data + self.forward + self.backward + self.optimiser),
            per_step(self.data),
            per_step(self.forward),
            per_step(self.backward),
            per_step(self.optimiser)
        )
    }
}

/// `state.json`: the settings a checkpoint was made with, and how far it got.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    pub config: TrainConfig,
    pub state: TrainState,
}

/// The networks and optimiser a checkpoint saves and restores.
pub struct Weights<'a> {
    pub live: &'a mut nn::VarStore,
    pub ema: &'a mut Ema,
    pub optimizer: &'a mut AdamW,
}

pub fn save(dir: &Path, checkpoint: &Checkpoint, weights: &Weights<'_>) -> Result<()> {
    weights.live.save(dir.join("last.ot"))?;
    weights.ema.vs.save(dir.join("ema.ot"))?;
    Tensor::save_multi(&weights.optimizer.named_state(), dir.join("optimizer.ot"))?;
    let json = serde_json::to_string_pretty(checkpoint)?;
    std::fs::write(dir.join("state.json"), json)?;
    Ok(())
}

/// Restores the checkpoint in `dir` into `weights`, refusing one made with settings `config`
/// may not change ([`TrainConfig::resume_compatible`]).
pub fn load(dir: &Path, config: &TrainConfig, weights: Weights<'_>) -> Result<TrainState> {
    let text = std::fs::read_to_string(dir.join("state.json"))
        .with_context(|| format!("no checkpoint to resume in {}", dir.display()))?;
    let saved: Checkpoint = serde_json::from_str(&text)
        .with_context(|| format!("unreadable checkpoint {}", dir.join("state.json").display()))?;
    config
        .resume_compatible(&saved.config)
        .with_context(|| format!("cannot resume the checkpoint in {}", dir.display()))?;
    weights.live.load(dir.join("last.ot"))?;
    weights.ema.vs.load(dir.join("ema.ot"))?;
    // A finished run is only re-exported (e.g. recalibrated): it needs no optimiser state.
    if !saved.state.finished(config) {
        let moments = Tensor::load_multi(dir.join("optimizer.ot"))?;
        weights.optimizer.load_state(moments)?;
    }
    Ok(saved.state)
}
