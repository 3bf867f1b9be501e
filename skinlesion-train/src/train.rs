//! The training loop: logit-adjusted cross-entropy (balanced for rare classes), dermoscopy
//! augmentation, AdamW with warm-up and cosine decay, an exponential moving average of the
//! weights (the network that is validated and shipped), a checkpoint every epoch (exactly
//! resumable), early stopping on validation balanced accuracy, then calibration on validation
//! and export as a model artifact.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use skinlesion_core::model::{write_artifact, ModelMetadata, WeightsRef, MANIFEST_FORMAT};
use skinlesion_core::tch::nn::{self, ModuleT};
use skinlesion_core::tch::{self, CModule, Device, Kind, Reduction, Tensor};
use skinlesion_core::{
    Calibration, Classifier, ColourConstancy, InputSpec, LesionClass, ResizePolicy,
};

use crate::data::{filter_split, load_images, read_labels, Sample};
use crate::metrics;
use crate::nets::{Architecture, MirrorAveraged};

/// Everything that defines a training run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainConfig {
    pub labels: PathBuf,
    pub images: PathBuf,
    /// Where the model artifact goes (`NAME.json`, with `NAME.pt` beside it).
    pub output: PathBuf,
    pub checkpoint_dir: PathBuf,
    pub architecture: String,
    pub input_size: u32,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub label_smoothing: f64,
    /// Mixup's Beta(α, α) parameter (Zhang et al., ICLR 2018): each batch is blended with a
    /// shuffled copy of itself, and the loss with it. 0 turns it off.
    #[serde(default)]
    pub mixup: f64,
    /// Share of validation melanomas the answer must find: the melanoma decision bias is the
    /// smallest that reaches it (0 when the balanced decision already does). A calibration
    /// setting: it may change when a finished run is resumed to re-export it.
    #[serde(default)]
    pub melanoma_sensitivity: f64,
    /// Average each image's logits with its mirror image's in the exported model (test-time
    /// augmentation; twice the inference work). An export setting, like the one above.
    #[serde(default)]
    pub tta_mirror: bool,
    /// Colour normalisation of every image, in training and in the exported model's
    /// preprocessing (absent from older checkpoints: none).
    #[serde(default)]
    pub colour_constancy: ColourConstancy,
    /// Random colour casts in training: each channel of each image is scaled by e^u with
    /// u ~ U(−s, s) (white-balance jitter: other cameras and lamps tint the picture). 0 is off.
    #[serde(default)]
    pub colour_cast: f64,
    pub patience: usize,
    pub seed: u64,
    /// Use only the first N training images (quick experiments, tests).
    pub max_train_images: Option<usize>,
    /// Stop after this many optimiser steps in total (tests).
    pub max_steps: Option<usize>,
    pub model_name: String,
    pub model_version: String,
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

impl TrainConfig {
    /// Checks every numeric setting (the CLI's names in the error).
    pub fn validate(&self) -> Result<(), InvalidSetting> {
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
        let (lr, wd, ls, mixup, mel) = (
            self.learning_rate,
            self.weight_decay,
            self.label_smoothing,
            self.mixup,
            self.melanoma_sensitivity,
        );
        // The networks halve the resolution five times (the seed network needs 10 pixels).
        check(
            self.input_size >= 32,
            "--input-size",
            "at least 32",
            self.input_size,
        )?;
        check(self.epochs >= 1, "--epochs", "at least 1", self.epochs)?;
        check(
            self.batch_size >= 2,
            "--batch-size",
            "at least 2",
            self.batch_size,
        )?;
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
        check(
            mixup.is_finite() && mixup >= 0.0,
            "--mixup",
            "0 (off) or more",
            mixup,
        )?;
        check(
            (0.0..=1.0).contains(&self.colour_cast),
            "--colour-cast",
            "in [0, 1]",
            self.colour_cast,
        )?;
        check(
            (0.0..=1.0).contains(&mel),
            "--melanoma-sensitivity",
            "in [0, 1]",
            mel,
        )?;
        check(
            self.patience >= 1,
            "--patience",
            "at least 1",
            self.patience,
        )
    }
}

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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_balanced_accuracy: f64,
    pub val_accuracy: f64,
    pub learning_rate: f64,
    pub seconds: f64,
}

/// What a finished run produced.
#[derive(Debug)]
pub struct TrainOutcome {
    pub metadata: ModelMetadata,
    pub state: TrainState,
}

struct Split {
    images: Tensor,
    labels: Tensor,
    truth: Vec<usize>,
}

fn load_split(samples: &[Sample], classes: &[LesionClass], spec: &InputSpec) -> Result<Split> {
    let truth = samples
        .iter()
        .map(|s| {
            let class: LesionClass = s.label.parse()?;
            classes
                .iter()
                .position(|c| *c == class)
                .with_context(|| format!("label {class} is not among the training classes"))
        })
        .collect::<Result<Vec<_>>>()?;
    let images = load_images(samples, spec, skinlesion_core::available_cores())?;
    let labels = Tensor::from_slice(&truth.iter().map(|&t| t as i64).collect::<Vec<_>>());
    Ok(Split {
        images,
        labels,
        truth,
    })
}

/// The input spec every model of this pipeline uses: square, stretched (HAM10000 images are
/// lesion-centred 4:3 fields; stretching keeps the whole field), ImageNet statistics, and the
/// chosen colour normalisation.
pub fn input_spec(size: u32, colour_constancy: ColourConstancy) -> InputSpec {
    InputSpec {
        width: size,
        height: size,
        resize: ResizePolicy::Stretch,
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        colour_constancy,
    }
}

pub fn train(config: &TrainConfig, resume: bool) -> Result<TrainOutcome> {
    let started = Instant::now();
    config.validate()?;
    let arch: Architecture = config.architecture.parse().map_err(anyhow::Error::msg)?;
    let threads = skinlesion_core::available_cores();
    tch::set_num_threads(threads as i32);
    let spec = input_spec(config.input_size, config.colour_constancy);

    let all = read_labels(&config.labels, &config.images)?;
    if all.iter().all(|s| s.split.is_none()) {
        bail!(
            "{}: training needs a `split` column with train and val rows",
            config.labels.display()
        );
    }
    let mut train_samples = filter_split(all.clone(), Some("train"))?;
    if let Some(n) = config.max_train_images {
        train_samples.truncate(n);
    }
    let val_samples = filter_split(all, Some("val"))?;
    let classes = class_list(&train_samples)?;
    eprintln!(
        "training {} on {} images ({} classes: {}), validating on {}, {} threads",
        arch,
        train_samples.len(),
        classes.len(),
        classes
            .iter()
            .map(|c| c.code())
            .collect::<Vec<_>>()
            .join(" "),
        val_samples.len(),
        threads
    );
    let train_set = load_split(&train_samples, &classes, &spec)?;
    let val_set = load_split(&val_samples, &classes, &spec)?;

    let mut vs = nn::VarStore::new(Device::Cpu);
    tch::manual_seed(config.seed as i64);
    let net = arch.build(&vs.root(), config.input_size, classes.len() as i64);
    let mut ema = Ema::new(&vs, |root| {
        arch.build(root, config.input_size, classes.len() as i64)
    })?;
    let mut optimizer = AdamW::new(&vs, config.weight_decay);
    let log_prior = Tensor::from_slice(&log_prior(&train_set.truth, classes.len())).view([1, -1]);

    std::fs::create_dir_all(&config.checkpoint_dir)?;
    let mut state = TrainState {
        best_val_balanced_accuracy: -1.0,
        ..Default::default()
    };
    if resume {
        state = load_checkpoint(
            &config.checkpoint_dir,
            config,
            &mut vs,
            &mut ema,
            &mut optimizer,
        )?;
        eprintln!("resumed after epoch {} (step {})", state.epoch, state.step);
    }
    let steps_per_epoch = train_set.truth.len().div_ceil(config.batch_size);
    let total_steps = steps_per_epoch * config.epochs;
    let previous_seconds = state.seconds;

    while state.epoch < config.epochs && !stopped_early(&state, config) {
        if config.max_steps.is_some_and(|m| state.step >= m) {
            break;
        }
        let epoch_started = Instant::now();
        let order = permutation(train_set.truth.len(), config.seed, state.epoch);
        let progress = crate::progress::bar(
            steps_per_epoch as u64,
            &format!("epoch {}", state.epoch + 1),
        );
        let (mut loss_sum, mut batches) = (0.0, 0usize);
        let mut lr = 0.0;
        for batch in order.chunks(config.batch_size) {
            if batch.len() < 2 || config.max_steps.is_some_and(|m| state.step >= m) {
                continue; // batch norm needs two samples
            }
            // Per-step seeding makes augmentation and dropout identical after a resume.
            tch::manual_seed((config.seed as i64).wrapping_mul(1_000_003) + state.step as i64);
            let index = Tensor::from_slice(&batch.iter().map(|&i| i as i64).collect::<Vec<_>>());
            let x = augment(
                &train_set.images.index_select(0, &index),
                &spec,
                config.colour_cast,
            );
            let y = train_set.labels.index_select(0, &index);
            let (x, mix) = mixup(x, config.mixup);
            // Logit adjustment (Menon et al., ICLR 2021): adding the log prior in the loss makes
            // the logits themselves score p(class | image) / p(class), so their argmax is the
            // balanced decision, with steadier gradients than inverse-frequency weights.
            let out = net.forward_t(&x, true) + &log_prior;
            let loss_for = |target: &Tensor| {
                out.cross_entropy_loss::<&Tensor>(
                    target,
                    None,
                    Reduction::Mean,
                    -100,
                    config.label_smoothing,
                )
            };
            let loss = match mix {
                Some((lambda, partner)) => {
                    loss_for(&y) * lambda + loss_for(&y.index_select(0, &partner)) * (1.0 - lambda)
                }
                None => loss_for(&y),
            };
            optimizer.zero_grad();
            loss.backward();
            lr = learning_rate(
                config.learning_rate,
                state.step,
                steps_per_epoch,
                total_steps,
            );
            optimizer.step(lr);
            ema.update(state.step);
            state.step += 1;
            let loss = loss.double_value(&[]);
            loss_sum += loss;
            batches += 1;
            progress.set_message(format!("loss {loss:.3}"));
            progress.inc(1);
        }
        progress.finish_and_clear();

        let val_logits = logits(ema.net.as_ref(), &val_set.images, 128);
        let predicted: Vec<usize> = val_logits.iter().map(|l| argmax_f32(l)).collect();
        let matrix = metrics::confusion(&val_set.truth, &predicted, classes.len());
        let bal = metrics::balanced_accuracy(&matrix);
        let log = EpochLog {
            epoch: state.epoch + 1,
            train_loss: loss_sum / batches.max(1) as f64,
            val_balanced_accuracy: bal,
            val_accuracy: metrics::accuracy(&val_set.truth, &predicted),
            learning_rate: lr,
            seconds: epoch_started.elapsed().as_secs_f64(),
        };
        eprintln!(
            "epoch {:>3}  loss {:.4}  val balanced acc {:.4}  val acc {:.4}  lr {:.2e}  {:.0}s",
            log.epoch, log.train_loss, log.val_balanced_accuracy, log.val_accuracy, lr, log.seconds
        );
        state.history.push(log);
        state.epoch += 1;
        if bal > state.best_val_balanced_accuracy {
            state.best_val_balanced_accuracy = bal;
            state.best_epoch = Some(state.epoch);
            ema.vs.save(config.checkpoint_dir.join("best.ot"))?;
        }
        state.seconds = previous_seconds + started.elapsed().as_secs_f64();
        save_checkpoint(
            &config.checkpoint_dir,
            config,
            &vs,
            &ema,
            &optimizer,
            &state,
        )?;
    }

    // Export the best epoch's averaged weights, calibrated on validation.
    drop(net);
    let Ema {
        vs: mut best, net, ..
    } = ema;
    best.load(config.checkpoint_dir.join("best.ot"))
        .context("no best checkpoint: did any epoch run?")?;
    best.freeze();
    let net: Box<dyn ModuleT> = match config.tta_mirror {
        true => Box::new(MirrorAveraged(net)),
        false => net,
    };
    let val_logits = logits(net.as_ref(), &val_set.images, 128);
    let calibration = calibrate(
        &val_logits,
        &val_set.truth,
        &train_set.truth,
        &classes,
        config.melanoma_sensitivity,
    );
    state.seconds = previous_seconds + started.elapsed().as_secs_f64();
    let metadata = export(
        config,
        arch,
        &classes,
        spec,
        calibration,
        &state,
        net.as_ref(),
        &val_set,
    )?;
    Ok(TrainOutcome { metadata, state })
}

/// Fits the calibration on validation logits: the log training prior undoes the balanced
/// loss's prior shift, the temperature minimises NLL, the melanoma decision bias is the
/// smallest that finds `melanoma_sensitivity` of validation melanomas, and the Unknown
/// threshold follows the rule of [`metrics::unknown_threshold`] on the calibrated confidence
/// of each answer.
pub fn calibrate(
    val_logits: &[Vec<f32>],
    val_truth: &[usize],
    train_truth: &[usize],
    classes: &[LesionClass],
    melanoma_sensitivity: f64,
) -> Calibration {
    let log_prior = log_prior(train_truth, classes.len());
    let temperature = metrics::fit_temperature(val_logits, val_truth, &log_prior);
    let mut decision_bias = vec![0f32; classes.len()];
    if let Some(mel) = classes.iter().position(|&c| c == LesionClass::Melanoma) {
        decision_bias[mel] =
            metrics::bias_for_recall(val_logits, val_truth, mel, melanoma_sensitivity);
    }
    let mut calibration = Calibration {
        temperature: temperature as f32,
        unknown_threshold: 0.0,
        log_prior,
        decision_bias,
    };
    if calibration.decision_bias.iter().all(|&b| b == 0.0) {
        calibration.decision_bias.clear();
    }
    let decisions: Vec<usize> = val_logits.iter().map(|l| calibration.decision(l)).collect();
    let mut raw = Vec::new();
    let (confidence, correct): (Vec<f64>, Vec<bool>) = val_logits
        .iter()
        .zip(val_truth)
        .zip(&decisions)
        .map(|((l, &t), &decision)| {
            raw.push(metrics::softmax(l, 1.0)[decision]);
            let p = metrics::calibrated(l, temperature, &calibration.log_prior);
            (p[decision], decision == t)
        })
        .unzip();
    let threshold = metrics::unknown_threshold(
        &confidence,
        &correct,
        UNKNOWN_MIN_ACCURACY,
        UNKNOWN_MAX_ABSTAIN,
    );
    calibration.unknown_threshold = threshold as f32;
    let matrix = metrics::confusion(val_truth, &decisions, classes.len());
    eprintln!(
        "calibration on val: temperature {temperature:.3} with the log training prior, melanoma \
         decision bias {:.3}, Unknown below {threshold:.3}; val balanced accuracy {:.4}, ECE \
         {:.4} -> {:.4}",
        calibration
            .decision_bias
            .iter()
            .copied()
            .fold(0f32, f32::max),
        metrics::balanced_accuracy(&matrix),
        metrics::expected_calibration_error(&raw, &correct, 15),
        metrics::expected_calibration_error(&confidence, &correct, 15)
    );
    calibration
}

/// The Unknown rule's parameters (see [`metrics::unknown_threshold`]): abstain on the least
/// confident predictions while those are right less than half the time, at most 20% of them.
pub const UNKNOWN_MIN_ACCURACY: f64 = 0.5;
pub const UNKNOWN_MAX_ABSTAIN: f64 = 0.2;

fn stopped_early(state: &TrainState, config: &TrainConfig) -> bool {
    state
        .best_epoch
        .is_some_and(|best| state.epoch >= best + config.patience)
}

#[allow(clippy::too_many_arguments)]
fn export(
    config: &TrainConfig,
    arch: Architecture,
    classes: &[LesionClass],
    spec: InputSpec,
    calibration: Calibration,
    state: &TrainState,
    net: &dyn ModuleT,
    val: &Split,
) -> Result<ModelMetadata> {
    let example = val.images.narrow(0, 0, 1);
    let module = tch::no_grad(|| {
        CModule::create_by_tracing("SkinLesionNet", "forward", &[example], &mut |xs| {
            vec![net.forward_t(&xs[0], false)]
        })
    })?;
    let mut provenance = serde_json::Map::new();
    provenance.insert("training_config".into(), serde_json::to_value(config)?);
    provenance.insert("best_epoch".into(), serde_json::json!(state.best_epoch));
    provenance.insert(
        "val_balanced_accuracy".into(),
        serde_json::json!(state.best_val_balanced_accuracy),
    );
    provenance.insert(
        "training_seconds".into(),
        serde_json::json!(state.seconds.round()),
    );
    provenance.insert(
        "unknown_rule".into(),
        serde_json::json!(format!(
            "Unknown when the calibrated top probability is below the largest threshold t such that \
             validation predictions below t are right less than {:.0}% of the time, abstaining on at \
             most {:.0}% of validation images",
            UNKNOWN_MIN_ACCURACY * 100.0,
            UNKNOWN_MAX_ABSTAIN * 100.0
        )),
    );
    let metadata = ModelMetadata {
        format: MANIFEST_FORMAT.into(),
        name: config.model_name.clone(),
        version: config.model_version.clone(),
        architecture: match config.tta_mirror {
            true => format!("{arch}-{}+mirror", config.input_size),
            false => format!("{arch}-{}", config.input_size),
        },
        classes: classes.to_vec(),
        input: spec,
        calibration,
        weights: WeightsRef {
            file: String::new(),
            format: "torchscript".into(),
            sha256: String::new(),
        },
        provenance,
    };
    let metadata = write_artifact(&module, metadata, &config.output)?;

    // The exported artifact, loaded through the library, must reproduce the trained network.
    let classifier = Classifier::builder(&config.output)
        .device(skinlesion_core::Device::Cpu)
        .build()?;
    let n = val.truth.len().min(16) as i64;
    let batch = val.images.narrow(0, 0, n);
    let eager = tch::no_grad(|| net.forward_t(&batch, false));
    let prepared: Vec<_> = (0..n)
        .map(|i| classifier_input(&batch.narrow(0, i, 1)))
        .collect();
    let exported = classifier.logits(&prepared)?;
    let diff = (eager - exported).abs().max().double_value(&[]);
    if diff > 1e-3 {
        bail!("the exported model differs from the trained one by {diff}");
    }
    eprintln!(
        "wrote {} (sha256 {})",
        config.output.display(),
        metadata.weights.sha256
    );
    Ok(metadata)
}

fn classifier_input(t: &Tensor) -> skinlesion_core::PreparedImage {
    skinlesion_core::PreparedImage::from_tensor(t.shallow_clone())
}

/// The trained classes: every label of the training set, in the stable class order.
fn class_list(samples: &[Sample]) -> Result<Vec<LesionClass>> {
    let mut classes = Vec::new();
    for s in samples {
        let class: LesionClass = s.label.parse()?;
        if class == LesionClass::Unknown {
            bail!("{}: Unknown cannot be a training label", s.path.display());
        }
        if !classes.contains(&class) {
            classes.push(class);
        }
    }
    classes.sort();
    if classes.len() < 2 {
        bail!("training needs at least two classes, found {classes:?}");
    }
    Ok(classes)
}

/// The log of each class's share of the training labels, Laplace-smoothed so that a class
/// absent from training stays finite.
fn log_prior(truth: &[usize], classes: usize) -> Vec<f32> {
    let mut counts = vec![0f64; classes];
    for &t in truth {
        counts[t] += 1.0;
    }
    let total = truth.len() as f64 + classes as f64;
    counts
        .iter()
        .map(|c| ((c + 1.0) / total).ln() as f32)
        .collect()
}

/// Linear warm-up over the first epoch, then cosine decay to zero.
fn learning_rate(base: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    base * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
}

/// A deterministic shuffle for (seed, epoch).
fn permutation(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut state = seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    order
}

fn argmax_f32(values: &[f32]) -> usize {
    metrics::argmax(&values.iter().map(|&v| f64::from(v)).collect::<Vec<_>>())
}

/// Logits of the network (evaluation mode) for every image, in chunks.
fn logits(net: &dyn ModuleT, images: &Tensor, chunk: i64) -> Vec<Vec<f32>> {
    let n = images.size()[0];
    let mut out = Vec::with_capacity(n as usize);
    tch::no_grad(|| {
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let l = net.forward_t(&images.narrow(0, start, len), false);
            let classes = l.size()[1] as usize;
            let flat = Vec::<f32>::try_from(l.flatten(0, -1)).expect("float logits");
            out.extend(flat.chunks(classes).map(<[f32]>::to_vec));
            start += len;
        }
    });
    out
}

/// Augmentation that fits dermoscopy (no canonical orientation, varying zoom and lighting):
/// random resized crop (65–100% of the area, aspect 3:4–4:3), horizontal and vertical flips,
/// 90° rotations (square inputs), mild brightness, contrast and saturation jitter, and, when
/// `colour_cast` s > 0, a per-channel gain e^u with u ~ U(−s, s).
/// Works on normalised N×3×H×W batches; randomness comes from libtorch's seeded generator.
pub fn augment(batch: &Tensor, spec: &InputSpec, colour_cast: f64) -> Tensor {
    let (n, h, w) = (
        batch.size()[0],
        i64::from(spec.height),
        i64::from(spec.width),
    );
    let mean = Tensor::from_slice(&spec.mean).view([3, 1, 1]);
    let std = Tensor::from_slice(&spec.std).view([3, 1, 1]);
    let luma = Tensor::from_slice(&[0.299f32, 0.587, 0.114]).view([3, 1, 1]);
    let random =
        Vec::<f32>::try_from(Tensor::rand([n, 9], (Kind::Float, Device::Cpu)).flatten(0, -1))
            .expect("float");
    // Drawn after the others, and only when on, so runs without it keep their random stream.
    let gains = (colour_cast > 0.0).then(|| {
        ((Tensor::rand([n, 3, 1, 1], (Kind::Float, Device::Cpu)) * 2.0 - 1.0) * colour_cast).exp()
    });
    let out: Vec<Tensor> = (0..n)
        .map(|i| {
            let r = &random[(i * 9) as usize..(i * 9 + 9) as usize];
            let x = batch.get(i);
            // Random resized crop.
            let scale = 0.65 + 0.35 * f64::from(r[0]);
            let ratio =
                ((0.75f64).ln() + f64::from(r[1]) * ((4.0f64 / 3.0).ln() - (0.75f64).ln())).exp();
            let cw = ((w as f64 * (scale * ratio).sqrt()).round() as i64).clamp(8, w);
            let ch = ((h as f64 * (scale / ratio).sqrt()).round() as i64).clamp(8, h);
            let x0 = ((f64::from(r[2]) * (w - cw + 1) as f64) as i64).min(w - cw);
            let y0 = ((f64::from(r[3]) * (h - ch + 1) as f64) as i64).min(h - ch);
            let mut x = x
                .narrow(2, x0, cw)
                .narrow(1, y0, ch)
                .unsqueeze(0)
                .upsample_bilinear2d([h, w], false, None, None)
                .squeeze_dim(0);
            if r[4] < 0.5 {
                x = x.flip([2]);
            }
            if r[5] < 0.5 {
                x = x.flip([1]);
            }
            if h == w {
                let k = (r[6] * 4.0) as i64 % 4;
                if k > 0 {
                    x = x.rot90(k, [1, 2]);
                }
            }
            // Colour jitter on the 0–1 scale.
            let rgb = &x * &std + &mean;
            let brightness = 0.85 + 0.3 * f64::from(r[7]);
            let contrast = 0.85 + 0.3 * f64::from(r[8]);
            let saturation = 0.9 + 0.2 * f64::from((r[7] + r[8]) / 2.0);
            let rgb = match &gains {
                Some(g) => rgb * g.get(i) * brightness,
                None => rgb * brightness,
            };
            let m = rgb.mean(Kind::Float);
            let rgb = (rgb - &m) * contrast + &m;
            let grey = (&rgb * &luma).sum_dim_intlist(0, true, Kind::Float);
            let rgb = (rgb - &grey) * saturation + grey;
            (rgb.clamp(0.0, 1.0) - &mean) / &std
        })
        .collect();
    Tensor::stack(&out, 0)
}

/// Mixup: blends the batch with a shuffled copy of itself by λ ~ Beta(α, α) and returns the
/// blend with (λ, the partner of each image); `alpha` 0 returns the batch unchanged. Randomness
/// comes from libtorch's seeded generator, like the augmentation's.
fn mixup(batch: Tensor, alpha: f64) -> (Tensor, Option<(f64, Tensor)>) {
    if alpha <= 0.0 {
        return (batch, None);
    }
    // Beta(α, α) as the first share of two Gamma(α) draws.
    let gamma = Tensor::full([2], alpha, (Kind::Double, Device::Cpu)).internal_standard_gamma();
    let g = Vec::<f64>::try_from(gamma).expect("double");
    let lambda = g[0] / (g[0] + g[1]);
    let partner = Tensor::randperm(batch.size()[0], (Kind::Int64, Device::Cpu));
    let mixed = &batch * lambda + batch.index_select(0, &partner) * (1.0 - lambda);
    (mixed, Some((lambda, partner)))
}

/// An exponential moving average of every variable (weights and batch-norm statistics): a
/// smoother network than the last step's, and a less noisy one to select on validation.
struct Ema {
    vs: nn::VarStore,
    net: Box<dyn ModuleT>,
    /// (averaged, live) pairs, by name.
    pairs: Vec<(Tensor, Tensor)>,
}

impl Ema {
    /// Horizon of about 500 steps (4 epochs of HAM10000 at batch 64).
    const DECAY: f64 = 0.998;

    fn new(live: &nn::VarStore, build: impl Fn(&nn::Path) -> Box<dyn ModuleT>) -> Result<Self> {
        let mut vs = nn::VarStore::new(Device::Cpu);
        let net = build(&vs.root());
        vs.copy(live)?;
        let live_vars = live.variables();
        let mut pairs: Vec<(String, Tensor, Tensor)> = vs
            .variables()
            .into_iter()
            .map(|(name, averaged)| {
                let l = live_vars[&name].shallow_clone();
                (name, averaged, l)
            })
            .collect();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Self {
            vs,
            net,
            pairs: pairs.into_iter().map(|(_, a, l)| (a, l)).collect(),
        })
    }

    /// Folds in the live weights after optimiser step `step` (0-based); the decay ramps up so
    /// that the random initialisation is forgotten quickly.
    fn update(&mut self, step: usize) {
        let decay = Self::DECAY.min((1.0 + step as f64) / (10.0 + step as f64));
        tch::no_grad(|| {
            for (averaged, live) in &mut self.pairs {
                let _ = averaged.g_mul_scalar_(decay);
                let _ = averaged.g_add_(&(&*live * (1.0 - decay)));
            }
        });
    }
}

/// AdamW (decoupled weight decay), written out so that its moments can be checkpointed and a
/// resumed run continues exactly where it stopped.
struct AdamW {
    params: Vec<(String, Tensor)>,
    m: BTreeMap<String, Tensor>,
    v: BTreeMap<String, Tensor>,
    t: i64,
    weight_decay: f64,
}

impl AdamW {
    const BETA1: f64 = 0.9;
    const BETA2: f64 = 0.999;
    const EPS: f64 = 1e-8;

    fn new(vs: &nn::VarStore, weight_decay: f64) -> Self {
        let mut params: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let zeros = |t: &Tensor| t.zeros_like();
        Self {
            m: params.iter().map(|(n, t)| (n.clone(), zeros(t))).collect(),
            v: params.iter().map(|(n, t)| (n.clone(), zeros(t))).collect(),
            params,
            t: 0,
            weight_decay,
        }
    }

    fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    fn step(&mut self, lr: f64) {
        self.t += 1;
        let bias1 = 1.0 - Self::BETA1.powi(self.t as i32);
        let bias2 = 1.0 - Self::BETA2.powi(self.t as i32);
        tch::no_grad(|| {
            for (name, p) in &mut self.params {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let m = self.m.get_mut(name).expect("moment");
                let _ = m.g_mul_scalar_(Self::BETA1);
                let _ = m.g_add_(&(&g * (1.0 - Self::BETA1)));
                let v = self.v.get_mut(name).expect("moment");
                let _ = v.g_mul_scalar_(Self::BETA2);
                let _ = v.g_add_(&(&g * &g * (1.0 - Self::BETA2)));
                // No decay on biases and batch-norm scales (1-D parameters).
                if p.dim() > 1 {
                    let _ = p.g_mul_scalar_(1.0 - lr * self.weight_decay);
                }
                let update = (&*m / bias1) / ((&*v / bias2).sqrt() + Self::EPS) * lr;
                let _ = p.g_sub_(&update);
            }
        });
    }

    /// Moments are saved by parameter index: libtorch archives treat `.` in a name as nesting,
    /// so parameter names do not round-trip.
    fn named_state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("t".to_owned(), Tensor::from(self.t))];
        for (i, (name, _)) in self.params.iter().enumerate() {
            out.push((format!("m{i}"), self.m[name].shallow_clone()));
            out.push((format!("v{i}"), self.v[name].shallow_clone()));
        }
        out
    }

    fn load_state(&mut self, saved: Vec<(String, Tensor)>) -> Result<()> {
        let mut loaded = 0;
        for (key, tensor) in saved {
            if key == "t" {
                self.t = tensor.int64_value(&[]);
                continue;
            }
            let (moments, index) = match key.split_at(1) {
                ("m", i) => (&mut self.m, i),
                ("v", i) => (&mut self.v, i),
                _ => bail!("unexpected optimizer state {key:?}"),
            };
            let name = index
                .parse::<usize>()
                .ok()
                .and_then(|i| self.params.get(i))
                .map(|(n, _)| n)
                .with_context(|| format!("optimizer state {key:?} matches no parameter"))?;
            let target = moments.get_mut(name).expect("a moment per parameter");
            if target.size() != tensor.size() {
                bail!(
                    "optimizer state {key:?} has shape {:?}, parameter {name} {:?}",
                    tensor.size(),
                    target.size()
                );
            }
            target.copy_(&tensor);
            loaded += 1;
        }
        if loaded != 2 * self.params.len() {
            bail!(
                "optimizer checkpoint has {loaded} moments, expected {}",
                2 * self.params.len()
            );
        }
        Ok(())
    }
}

fn save_checkpoint(
    dir: &Path,
    config: &TrainConfig,
    vs: &nn::VarStore,
    ema: &Ema,
    optimizer: &AdamW,
    state: &TrainState,
) -> Result<()> {
    vs.save(dir.join("last.ot"))?;
    ema.vs.save(dir.join("ema.ot"))?;
    Tensor::save_multi(&optimizer.named_state(), dir.join("optimizer.ot"))?;
    let json = serde_json::json!({ "config": config, "state": state });
    std::fs::write(dir.join("state.json"), serde_json::to_string_pretty(&json)?)?;
    Ok(())
}

fn load_checkpoint(
    dir: &Path,
    config: &TrainConfig,
    vs: &mut nn::VarStore,
    ema: &mut Ema,
    optimizer: &mut AdamW,
) -> Result<TrainState> {
    let text = std::fs::read_to_string(dir.join("state.json"))
        .with_context(|| format!("no checkpoint to resume in {}", dir.display()))?;
    let saved: serde_json::Value = serde_json::from_str(&text)?;
    let saved_config: TrainConfig = serde_json::from_value(saved["config"].clone())?;
    // Only the stopping limits, calibration and export settings, the artifact's name and version
    // and where files go may change on resume; anything else would be another run. (Resuming a
    // finished run re-exports it, e.g. as a new model version.)
    let comparable = |c: &TrainConfig| TrainConfig {
        epochs: 0,
        max_steps: None,
        patience: 0,
        melanoma_sensitivity: 0.0,
        tta_mirror: false,
        model_name: String::new(),
        model_version: String::new(),
        output: PathBuf::new(),
        checkpoint_dir: PathBuf::new(),
        ..c.clone()
    };
    if comparable(&saved_config) != comparable(config) {
        bail!(
            "the checkpoint in {} was made with a different configuration",
            dir.display()
        );
    }
    vs.load(dir.join("last.ot"))?;
    ema.vs.load(dir.join("ema.ot"))?;
    let state: TrainState = serde_json::from_value(saved["state"].clone())?;
    // A finished run is only re-exported (e.g. recalibrated): it needs no optimiser state.
    if state.epoch < config.epochs && !stopped_early(&state, config) {
        optimizer.load_state(Tensor::load_multi(dir.join("optimizer.ot"))?)?;
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_out_of_range_are_refused_by_name() {
        let good = TrainConfig {
            labels: "labels.csv".into(),
            images: "images".into(),
            output: "m.json".into(),
            checkpoint_dir: "ckpt".into(),
            architecture: "resnet-lite".into(),
            input_size: 128,
            epochs: 60,
            batch_size: 64,
            learning_rate: 2e-3,
            weight_decay: 0.05,
            label_smoothing: 0.05,
            mixup: 0.0,
            melanoma_sensitivity: 0.75,
            tta_mirror: false,
            colour_constancy: ColourConstancy::None,
            colour_cast: 0.0,
            patience: 60,
            seed: 42,
            max_train_images: None,
            max_steps: None,
            model_name: "skinlesion".into(),
            model_version: "1.0.0".into(),
        };
        assert_eq!(good.validate(), Ok(()));
        type Edit = fn(&mut TrainConfig);
        let bad: [(Edit, &str); 15] = [
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
        ];
        for (edit, setting) in bad {
            let mut config = good.clone();
            edit(&mut config);
            let err = config.validate().unwrap_err();
            assert_eq!(err.setting, setting, "{err}");
            assert!(err.to_string().starts_with(setting), "{err}");
        }
        // Refused before any file is read: these paths do not exist.
        let config = TrainConfig { epochs: 0, ..good };
        let err = train(&config, false).err().unwrap();
        assert_eq!(
            err.downcast_ref::<InvalidSetting>().unwrap().setting,
            "--epochs"
        );
    }

    #[test]
    fn schedule_warms_up_then_decays() {
        assert!((learning_rate(1.0, 0, 10, 100) - 0.1).abs() < 1e-12);
        assert!((learning_rate(1.0, 9, 10, 100) - 1.0).abs() < 1e-12);
        assert!(learning_rate(1.0, 55, 10, 100) < 0.6);
        assert!(learning_rate(1.0, 100, 10, 100) < 1e-12);
    }

    #[test]
    fn permutations_are_deterministic_and_complete() {
        let a = permutation(100, 7, 3);
        assert_eq!(a, permutation(100, 7, 3));
        assert_ne!(a, permutation(100, 7, 4));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn log_prior_is_the_smoothed_class_share() {
        // Counts 3, 1, 0 over 4 labels; +1 each over 4 + 3.
        let p = log_prior(&[0, 0, 0, 1], 3);
        let expected = [4.0f32 / 7.0, 2.0 / 7.0, 1.0 / 7.0].map(f32::ln);
        for (a, b) in p.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn ema_forgets_the_start_then_averages() {
        let live = nn::VarStore::new(Device::Cpu);
        let w = live.root().zeros("w", &[1]);
        let build = |p: &nn::Path| -> Box<dyn ModuleT> {
            let _ = p.zeros("w", &[1]);
            Box::new(nn::func_t(|x, _| x.shallow_clone()))
        };
        let mut ema = Ema::new(&live, build).unwrap();
        let _ = tch::no_grad(|| w.shallow_clone().fill_(1.0));
        ema.update(0); // decay 1/10: mostly the new value
        let first = ema.vs.variables()["w"].double_value(&[0]);
        assert!((first - 0.9).abs() < 1e-6, "{first}");
        for step in 1..5000 {
            ema.update(step);
        }
        let settled = ema.vs.variables()["w"].double_value(&[0]);
        assert!((settled - 1.0).abs() < 1e-4, "{settled}");
    }

    #[test]
    fn mixup_blends_each_image_with_one_partner() {
        tch::manual_seed(3);
        let batch = Tensor::rand([6, 3, 8, 8], (Kind::Float, Device::Cpu));
        let (same, none) = mixup(batch.shallow_clone(), 0.0);
        assert!(none.is_none() && same.equal(&batch));
        let (mixed, mix) = mixup(batch.shallow_clone(), 0.4);
        let (lambda, partner) = mix.unwrap();
        assert!((0.0..=1.0).contains(&lambda));
        let mut seen = Vec::<i64>::try_from(&partner).unwrap();
        seen.sort();
        assert_eq!(seen, [0, 1, 2, 3, 4, 5], "a permutation");
        let expected = &batch * lambda + batch.index_select(0, &partner) * (1.0 - lambda);
        assert!(f64::try_from((mixed - expected).abs().max()).unwrap() < 1e-6);
        // Beta(0.4, 0.4) draws spread over (0, 1), mostly near its ends.
        let draws: Vec<f64> = (0..400)
            .map(|_| mixup(batch.shallow_clone(), 0.4).1.unwrap().0)
            .collect();
        let mean = draws.iter().sum::<f64>() / 400.0;
        assert!((mean - 0.5).abs() < 0.06, "mean {mean}");
        assert!(draws.iter().filter(|&&l| !(0.1..0.9).contains(&l)).count() > 150);
    }

    #[test]
    fn augmentation_keeps_shape_and_range() {
        let spec = input_spec(32, ColourConstancy::None);
        let to_rgb = |y: &Tensor| {
            y * Tensor::from_slice(&spec.std).view([1, 3, 1, 1])
                + Tensor::from_slice(&spec.mean).view([1, 3, 1, 1])
        };
        tch::manual_seed(1);
        let x = Tensor::rand([4, 3, 32, 32], (Kind::Float, Device::Cpu));
        let x = (x - Tensor::from_slice(&spec.mean).view([1, 3, 1, 1]))
            / Tensor::from_slice(&spec.std).view([1, 3, 1, 1]);
        for cast in [0.0, 0.25] {
            tch::manual_seed(2);
            let y = augment(&x, &spec, cast);
            assert_eq!(y.size(), [4, 3, 32, 32]);
            let rgb = to_rgb(&y);
            assert!(
                rgb.min().double_value(&[]) >= -1e-5 && rgb.max().double_value(&[]) <= 1.0 + 1e-5
            );
            tch::manual_seed(2);
            assert!(augment(&x, &spec, cast).allclose(&y, 1e-6, 1e-6, false));
        }
    }

    #[test]
    fn colour_casts_tint_grey_images_only_when_asked() {
        let spec = input_spec(32, ColourConstancy::None);
        let grey_rgb = Tensor::full([8, 3, 32, 32], 0.5, (Kind::Float, Device::Cpu));
        let grey = (grey_rgb - Tensor::from_slice(&spec.mean).view([1, 3, 1, 1]))
            / Tensor::from_slice(&spec.std).view([1, 3, 1, 1]);
        // Per image: largest over smallest channel mean (1 for grey).
        let tint = |y: Tensor| {
            let rgb = y * Tensor::from_slice(&spec.std).view([1, 3, 1, 1])
                + Tensor::from_slice(&spec.mean).view([1, 3, 1, 1]);
            let means = rgb.mean_dim([2, 3].as_slice(), false, Kind::Float);
            let ratio = means.amax([1].as_slice(), false) / means.amin([1].as_slice(), false);
            Vec::<f32>::try_from(ratio).expect("float")
        };
        tch::manual_seed(3);
        assert!(tint(augment(&grey, &spec, 0.0)).iter().all(|&r| r < 1.001));
        tch::manual_seed(3);
        let tinted = tint(augment(&grey, &spec, 0.25));
        // Gains lie in e^±0.25, so two channels differ by at most e^0.5 (saturation jitter
        // can only pull them together or push them apart by 10%).
        assert!(tinted.iter().all(|&r| r < 0.5f32.exp() * 1.1), "{tinted:?}");
        assert!(
            tinted.iter().filter(|&&r| r > 1.05).count() >= 6,
            "{tinted:?}"
        );
    }
}
