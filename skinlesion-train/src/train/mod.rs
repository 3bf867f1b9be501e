//! The training loop: logit-adjusted cross-entropy (balanced for rare classes), dermoscopy
//! augmentation, AdamW with warm-up and cosine decay, an exponential moving average of the
//! weights (the network that is validated and shipped), a checkpoint every epoch (exactly
//! resumable), early stopping on validation balanced accuracy, then calibration on validation
//! and export as a model artifact.
//!
//! [`config`] holds the settings, [`checkpoint`] what survives a restart, [`optim`] the
//! optimiser and schedule, [`ema`] the weight average, [`augment`] the augmentation,
//! [`calibrate`] the calibration fit and [`export`] the artifact; [`Trainer`] runs them.

pub mod augment;
pub mod calibrate;
pub mod checkpoint;
pub mod config;
pub mod ema;
pub mod export;
pub mod gate;
pub mod optim;
pub mod precision;
pub mod regate;
pub mod shifts;
pub mod two_step;

use std::ops::Range;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use skinlesion_core::ModelMetadata;
use skinlesion_core::{InputSpec, LesionClass};
use tch::nn::{self, ModuleT};
use tch::{Device, Reduction, Tensor};

pub use calibrate::{abstain, calibrate, UNKNOWN_COVERAGE};
pub use checkpoint::{Checkpoint, EpochLog, StepProfile, TrainState};
pub use config::{IncompatibleResume, InvalidSetting, TrainConfig};

use crate::data::{filter_split, load_images, read_fitting_labels, Sample};
use crate::metrics;
use crate::nets::{MirrorAveraged, Net, NetShape};
use checkpoint::Weights;
use ema::Ema;
use optim::{learning_rate, AdamW};
use precision::Autocast;

/// What a finished run produced.
#[derive(Debug)]
pub struct TrainOutcome {
    pub metadata: ModelMetadata,
    pub state: TrainState,
}

/// Trains (or resumes) the run `config` describes and exports its model.
pub fn train(config: &TrainConfig, resume: bool) -> Result<TrainOutcome> {
    let mut trainer = Trainer::new(config, resume)?;
    while !trainer.done() {
        trainer.epoch()?;
    }
    trainer.finish()
}

/// Images decoded once into memory, with their class indices.
pub(crate) struct Split {
    images: Tensor,
    labels: Tensor,
    truth: Vec<usize>,
}

impl Split {
    pub(crate) fn load(
        samples: &[Sample],
        classes: &[LesionClass],
        spec: &InputSpec,
    ) -> Result<Self> {
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
        Ok(Self {
            images,
            labels,
            truth,
        })
    }
}

/// A training run in progress.
pub struct Trainer<'a> {
    config: &'a TrainConfig,
    started: Instant,
    /// Training time of the run before this process resumed it.
    previous_seconds: f64,
    /// Training input.
    spec: InputSpec,
    /// Validation and exported input (another side, see `--test-size`).
    test_spec: InputSpec,
    classes: Vec<LesionClass>,
    train_set: Split,
    /// Every source's `val` images, the calibration source's first.
    val_set: Split,
    /// Where each source's images lie in `val_set`.
    val_sources: Vec<Range<usize>>,
    /// The forward pass in training runs in bfloat16 autocast.
    bf16: bool,
    vs: nn::VarStore,
    net: Box<dyn Net>,
    ema: Ema,
    optimizer: AdamW,
    log_prior: Tensor,
    /// Steps in one epoch (every image, or at most the class cap of each class).
    steps_per_epoch: usize,
    state: TrainState,
}

impl<'a> Trainer<'a> {
    /// Validates the settings, loads the data, builds the network and, with `resume`,
    /// restores the checkpoint in `config.checkpoint_dir`.
    pub fn new(config: &'a TrainConfig, resume: bool) -> Result<Self> {
        let started = Instant::now();
        config.validate()?;
        // A GPU asked for but not usable is refused before any data is read.
        let device = skinlesion_core::training::resolve_device(config.device)?;
        tch::set_num_threads(skinlesion_core::available_cores() as i32);
        let arch = config.architecture;
        let spec = arch.input_spec(config.input_size, config.colour_constancy);
        let test_spec = arch.input_spec(config.test_size(), config.colour_constancy);
        let splits = read_splits(config)?;
        let classes = class_list(&splits.train)?;
        let bf16 = config.precision.bf16_on(device);
        announce(config, &classes, &splits, bf16);
        let train_set = Split::load(&splits.train, &classes, &spec)?;
        let val_set = Split::load(&splits.val, &classes, &test_spec)?;

        let mut vs = nn::VarStore::new(device);
        tch::manual_seed(config.seed as i64);
        let shape = NetShape {
            input_size: config.input_size,
            classes: classes.len() as i64,
            frozen_blocks: config.freeze_blocks,
        };
        let net = arch.build(&vs.root(), shape);
        let pretrained = config.pretrained_weights();
        if let Some(path) = &pretrained {
            let loaded = arch.load_pretrained(&vs, path, config.freeze_blocks)?;
            eprintln!("started from {} ({loaded} tensors)", path.display());
        }
        let mut ema = Ema::new(&vs, |root| arch.build(root, shape))?;
        let mut optimizer = AdamW::new(&vs, config.weight_decay);
        if pretrained.is_some() {
            optimizer.scale_learning_rate(config.backbone_lr_scale, &["_fc."]);
        }
        let per_epoch = epoch_class_counts(&train_set.truth, classes.len(), config.class_cap);
        let log_prior = calibrate::log_prior(&per_epoch);
        let steps_per_epoch = per_epoch.iter().sum::<usize>().div_ceil(config.batch_size);
        std::fs::create_dir_all(&config.checkpoint_dir)?;
        let state = match resume {
            false => TrainState::new(),
            true => {
                let weights = Weights {
                    live: &mut vs,
                    ema: &mut ema,
                    optimizer: &mut optimizer,
                };
                let state = checkpoint::load(&config.checkpoint_dir, config, weights)?;
                eprintln!("resumed after epoch {} (step {})", state.epoch, state.step);
                state
            }
        };
        Ok(Self {
            config,
            started,
            previous_seconds: state.seconds,
            spec,
            test_spec,
            classes,
            train_set,
            val_set,
            val_sources: splits.val_sources,
            bf16,
            vs,
            net,
            ema,
            optimizer,
            log_prior: Tensor::from_slice(&log_prior)
                .view([1, -1])
                .to_device(device),
            steps_per_epoch,
            state,
        })
    }

    /// True when the run has nothing left to train (epochs, patience or step limit reached).
    pub fn done(&self) -> bool {
        self.state.finished(self.config) || self.steps_exhausted()
    }

    fn steps_exhausted(&self) -> bool {
        self.config.max_steps.is_some_and(|m| self.state.step >= m)
    }

    /// Trains one epoch, validates the weight average, and writes the checkpoint.
    pub fn epoch(&mut self) -> Result<&EpochLog> {
        let epoch_started = Instant::now();
        let order = epoch_order(
            &self.train_set.truth,
            self.config.class_cap,
            self.config.seed,
            self.state.epoch,
        );
        let label = format!("epoch {}", self.state.epoch + 1);
        let progress = crate::progress::bar(self.steps_per_epoch as u64, &label);
        let (mut loss_sum, mut batches, mut lr) = (0.0, 0usize, 0.0);
        let mut profile = StepProfile::default();
        for batch in order.chunks(self.config.batch_size) {
            // Batch norm needs two samples.
            if batch.len() < 2 || self.steps_exhausted() {
                continue;
            }
            let (loss, step_lr) = self.step(batch, &mut profile);
            (loss_sum, batches, lr) = (loss_sum + loss, batches + 1, step_lr);
            progress.set_message(format!("loss {loss:.3}"));
            progress.inc(1);
        }
        progress.finish_and_clear();
        let mut log = self.validate(loss_sum / batches.max(1) as f64, lr, epoch_started);
        eprintln!("           step time: {profile}");
        log.step_profile = profile;
        self.record(log)
    }

    /// One optimiser step on the training images at `batch`: (loss, learning rate), with the
    /// time of each phase added to `profile`.
    fn step(&mut self, batch: &[usize], profile: &mut StepProfile) -> (f64, f64) {
        let config = self.config;
        let mut clock = Instant::now();
        let mut lap = |slot: &mut f64| {
            *slot += clock.elapsed().as_secs_f64();
            clock = Instant::now();
        };
        // Per-step seeding makes augmentation and dropout identical after a resume.
        tch::manual_seed((config.seed as i64).wrapping_mul(1_000_003) + self.state.step as i64);
        let index = Tensor::from_slice(&batch.iter().map(|&i| i as i64).collect::<Vec<_>>());
        // The data set stays in host memory; each batch goes to the training device.
        let device = self.vs.device();
        let images = self
            .train_set
            .images
            .index_select(0, &index)
            .to_device(device);
        let x = augment::augment(
            &images,
            &self.spec,
            config.colour_cast,
            config.acquisition_shifts,
        );
        let y = self
            .train_set
            .labels
            .index_select(0, &index)
            .to_device(device);
        let (x, mix) = augment::mixup(x, config.mixup);
        let x = match config.early_size {
            Some(side) if self.state.epoch < config.early_epochs => {
                let side = i64::from(side);
                x.upsample_bilinear2d([side, side], false, None, None)
            }
            _ => x,
        };
        // Channels-last is the layout oneDNN's convolutions run fastest on (16 % in inference).
        let x = skinlesion_core::training::channels_last(&x);
        lap(&mut profile.data);
        let out = {
            let _autocast = Autocast::new(device, self.bf16);
            self.net.forward_t(&x, true)
        };
        // Logit adjustment (Menon et al., ICLR 2021): adding the log prior in the loss makes
        // the logits themselves score p(class | image) / p(class), so their argmax is the
        // balanced decision, with steadier gradients than inverse-frequency weights.
        let out = out.to_kind(tch::Kind::Float) + &self.log_prior;
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
        self.optimizer.zero_grad();
        let loss_value = loss.double_value(&[]);
        lap(&mut profile.forward);
        loss.backward();
        lap(&mut profile.backward);
        let total_steps = self.steps_per_epoch * config.epochs;
        let lr = learning_rate(
            config.learning_rate,
            self.state.step,
            self.steps_per_epoch,
            total_steps,
        );
        self.optimizer.step(lr);
        self.ema.update(self.state.step);
        self.state.step += 1;
        lap(&mut profile.optimiser);
        profile.steps += 1;
        (loss_value, lr)
    }

    /// Scores the weight average on validation.
    fn validate(&self, train_loss: f64, lr: f64, started: Instant) -> EpochLog {
        let device = self.vs.device();
        let val_logits = logits(self.ema.net.as_ref(), &self.val_set.images, device);
        let predicted: Vec<usize> = val_logits.iter().map(|l| argmax_f32(l)).collect();
        let truth = &self.val_set.truth;
        let by_source: Vec<f64> = self
            .val_sources
            .iter()
            .map(|r| {
                let m = metrics::confusion(
                    &truth[r.clone()],
                    &predicted[r.clone()],
                    self.classes.len(),
                );
                metrics::balanced_accuracy(&m)
            })
            .collect();
        let log = EpochLog {
            epoch: self.state.epoch + 1,
            train_loss,
            val_balanced_accuracy: by_source.iter().sum::<f64>() / by_source.len() as f64,
            val_accuracy: metrics::accuracy(truth, &predicted),
            learning_rate: lr,
            seconds: started.elapsed().as_secs_f64(),
            val_source_balanced_accuracy: by_source,
            step_profile: StepProfile::default(),
        };
        let sources: Vec<String> = log
            .val_source_balanced_accuracy
            .iter()
            .map(|b| format!("{b:.4}"))
            .collect();
        eprintln!(
            "epoch {:>3}  loss {:.4}  val balanced acc {:.4} ({})  val acc {:.4}  lr {:.2e}  {:.0}s",
            log.epoch,
            log.train_loss,
            log.val_balanced_accuracy,
            sources.join(" / "),
            log.val_accuracy,
            lr,
            log.seconds
        );
        log
    }

    /// Adds an epoch to the history, keeps the best weight average, writes the checkpoint.
    fn record(&mut self, log: EpochLog) -> Result<&EpochLog> {
        let score = log.val_balanced_accuracy;
        self.state.history.push(log);
        self.state.epoch += 1;
        let dir = &self.config.checkpoint_dir;
        if score > self.state.best_val_balanced_accuracy {
            self.state.best_val_balanced_accuracy = score;
            self.state.best_epoch = Some(self.state.epoch);
            self.ema.vs.save(dir.join("best.ot"))?;
        }
        self.state.seconds = self.previous_seconds + self.started.elapsed().as_secs_f64();
        let checkpoint = Checkpoint {
            config: self.config.clone(),
            state: self.state.clone(),
        };
        let weights = Weights {
            live: &mut self.vs,
            ema: &mut self.ema,
            optimizer: &mut self.optimizer,
        };
        checkpoint::save(dir, &checkpoint, &weights)?;
        Ok(self.state.history.last().expect("just pushed"))
    }

    /// Exports the best epoch's weight average, calibrated on the calibration source's
    /// validation images.
    pub fn finish(self) -> Result<TrainOutcome> {
        let Self {
            config, mut state, ..
        } = self;
        let Ema {
            vs: mut best, net, ..
        } = self.ema;
        best.load(config.checkpoint_dir.join("best.ot"))
            .context("no best checkpoint: did any epoch run?")?;
        best.freeze();
        let mut net: Box<dyn Net> = match config.tta_mirror {
            true => Box::new(MirrorAveraged(net)),
            false => net,
        };
        let calibration_val = self.val_sources[0].clone();
        let val_images = self.val_set.images.narrow(
            0,
            calibration_val.start as i64,
            calibration_val.len() as i64,
        );
        let val_truth = &self.val_set.truth[calibration_val];
        let (val_logits, val_features) = outputs(net.as_ref(), &val_images, best.device());
        let gate = match &val_features {
            Some(features) => Some(fit_gate(
                config,
                &self.classes,
                &self.test_spec,
                net.as_ref(),
                best.device(),
                features,
            )?),
            None => None,
        };
        let accepted = match gate.as_ref().zip(val_features.as_ref()) {
            Some((gate, features)) => gate.accepts(features)?,
            None => Vec::new(),
        };
        // Exported models are traced on the CPU, where every interface loads them.
        best.set_device(Device::Cpu);
        let mut calibration = calibrate(
            &val_logits,
            val_truth,
            &self.classes,
            config.melanoma_sensitivity,
            &accepted,
        );
        calibration.dermoscopy_gate = gate.as_ref().map(gate::Gate::manifest);
        state.seconds = self.previous_seconds + self.started.elapsed().as_secs_f64();
        let metadata = export::export(export::Export {
            config,
            classes: &self.classes,
            spec: self.test_spec,
            calibration,
            state: &state,
            net: net.as_mut(),
            gate,
            val_images: &val_images,
            network_from: None,
        })?;
        Ok(TrainOutcome { metadata, state })
    }
}

/// Fits the dermoscopy gate (see [`gate`]): on the fitting set `config.gate_set` when there is
/// one, else v4.1's distance to up to [`gate::PER_CLASS`] training images per class (read
/// again at the exported input size), with limits set on `val_features`.
pub(crate) fn fit_gate(
    config: &TrainConfig,
    classes: &[LesionClass],
    spec: &InputSpec,
    net: &dyn Net,
    device: Device,
    val_features: &Tensor,
) -> Result<gate::Gate> {
    let fitted = match &config.gate_set {
        Some(set) => fit_head_or_distance(set, spec, net, device, val_features)?,
        None => fit_distance(config, classes, spec, net, device, val_features)?,
    };
    let accepted = fitted.accepts(val_features)?;
    eprintln!(
        "dermoscopy gate: refuses {} of {} val images",
        accepted.iter().filter(|&&a| !a).count(),
        accepted.len()
    );
    Ok(fitted)
}

fn fit_distance(
    config: &TrainConfig,
    classes: &[LesionClass],
    spec: &InputSpec,
    net: &dyn Net,
    device: Device,
    val_features: &Tensor,
) -> Result<gate::Gate> {
    let mut samples = read_splits(config)?.train;
    let mut taken = std::collections::HashMap::new();
    samples.retain(|s| {
        let n = taken.entry(s.label.clone()).or_insert(0);
        *n += 1;
        *n <= gate::PER_CLASS
    });
    let set = Split::load(&samples, classes, spec)?;
    let (_, features) = outputs(net, &set.images, device);
    let features = features.context("the network lost its features")?;
    let distance = gate::Mahalanobis::fit(&features, &set.truth)?;
    let val_scores = Vec::<f32>::try_from(distance.scores(val_features))?;
    eprintln!(
        "dermoscopy gate: distance fitted on {} training images",
        samples.len()
    );
    Ok(gate::Gate::Distance {
        threshold: gate::val_quantile(&val_scores, gate::VAL_REFUSED),
        distance,
    })
}

/// The head on every image of the fitting set; the distance on its dermoscopy, one class
/// mean per source and lesion class; the distance's limit on `val_features`.
fn fit_head_or_distance(
    set: &Path,
    spec: &InputSpec,
    net: &dyn Net,
    device: Device,
    val_features: &Tensor,
) -> Result<gate::Gate> {
    let rows = crate::data::read_gate_set(set)?;
    let features = features_of(net, &rows, spec, device)?;
    let other: Vec<bool> = rows.iter().map(|r| r.group.is_none()).collect();
    let head = gate::LinearHead::fit(&features, &other)?;
    let mut groups: Vec<&str> = rows.iter().filter_map(|r| r.group.as_deref()).collect();
    groups.sort_unstable();
    groups.dedup();
    let dermoscopy: Vec<i64> = (0..rows.len() as i64)
        .filter(|&i| !other[i as usize])
        .collect();
    let truth: Vec<usize> = rows
        .iter()
        .filter_map(|r| r.group.as_deref())
        .map(|g| groups.binary_search(&g).expect("collected above"))
        .collect();
    let distance = gate::Mahalanobis::fit(
        &features.index_select(0, &Tensor::from_slice(&dermoscopy)),
        &truth,
    )?;
    let val_scores = Vec::<f32>::try_from(distance.scores(val_features))?;
    let limit = gate::val_quantile(&val_scores, gate::DISTANCE_VAL_REFUSED);
    eprintln!(
        "dermoscopy gate: head fitted on {} dermoscopy and {} other images, distance on {} \
         class means, limit {limit:.1}",
        dermoscopy.len(),
        rows.len() - dermoscopy.len(),
        groups.len()
    );
    Ok(gate::Gate::HeadOrDistance {
        head,
        distance,
        limit,
    })
}

/// The pooled features of the images `rows` names, decoded a chunk at a time (the fitting
/// set is larger than memory would like as one tensor).
fn features_of(
    net: &dyn Net,
    rows: &[crate::data::GateSample],
    spec: &InputSpec,
    device: Device,
) -> Result<Tensor> {
    let mut features = Vec::new();
    let progress = crate::progress::bar(rows.len() as u64, "gate features");
    for chunk in rows.chunks(512) {
        let samples: Vec<Sample> = chunk.iter().map(|r| r.sample.clone()).collect();
        let images = load_images(&samples, spec, skinlesion_core::available_cores())?;
        let (_, f) = outputs(net, &images, device);
        features.push(f.context("the network does not expose its features")?);
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    Ok(Tensor::cat(&features, 0))
}

/// The `train` and `val` rows of every source.
pub(crate) struct Splits {
    /// Every source's `train` rows (the first `max_train_images` of them).
    pub train: Vec<Sample>,
    /// Every source's `val` rows, source by source.
    pub val: Vec<Sample>,
    /// Where each source's rows lie in `val`.
    pub val_sources: Vec<Range<usize>>,
}

impl Splits {
    /// The calibration source's `val` rows.
    pub fn calibration_val(&self) -> &[Sample] {
        &self.val[self.val_sources[0].clone()]
    }
}

/// Reads every source's labels file (`--labels` with its `--images`).
pub(crate) fn read_splits(config: &TrainConfig) -> Result<Splits> {
    let mut splits = Splits {
        train: Vec::new(),
        val: Vec::new(),
        val_sources: Vec::new(),
    };
    for (labels, images) in config.labels.iter().zip(&config.images) {
        let all = read_fitting_labels(labels, images)?;
        if all.iter().all(|s| s.split.is_none()) {
            bail!(
                "{}: training needs a `split` column with train and val rows",
                labels.display()
            );
        }
        let with = |split| {
            filter_split(all.clone(), Some(split)).with_context(|| labels.display().to_string())
        };
        splits.train.extend(with("train")?);
        let start = splits.val.len();
        splits.val.extend(with("val")?);
        splits.val_sources.push(start..splits.val.len());
    }
    if let Some(n) = config.max_train_images {
        splits.train.truncate(n);
    }
    Ok(splits)
}

fn announce(config: &TrainConfig, classes: &[LesionClass], splits: &Splits, bf16: bool) {
    let codes: Vec<_> = classes.iter().map(|c| c.code()).collect();
    let val: Vec<String> = splits
        .val_sources
        .iter()
        .map(|r| r.len().to_string())
        .collect();
    eprintln!(
        "training {} on {} images ({} classes: {}), validating on {} (by source), {} threads, \
         {}",
        config.architecture,
        splits.train.len(),
        classes.len(),
        codes.join(" "),
        val.join(" + "),
        skinlesion_core::available_cores(),
        if bf16 { "bfloat16 autocast" } else { "fp32" }
    );
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

/// How many training images each class has.
fn class_counts(truth: &[usize], classes: usize) -> Vec<usize> {
    let mut counts = vec![0; classes];
    for &t in truth {
        counts[t] += 1;
    }
    counts
}

/// How many images of each class one epoch trains on: all of them, or at most `cap` a class
/// (the subset [`epoch_order`] draws).
fn epoch_class_counts(truth: &[usize], classes: usize, cap: Option<usize>) -> Vec<usize> {
    let counts = class_counts(truth, classes);
    counts
        .into_iter()
        .map(|n| cap.map_or(n, |c| n.min(c)))
        .collect()
}

/// The images of one epoch, shuffled for (seed, epoch): every image, or with a class cap at
/// most `cap` of each class, a different random subset of the larger classes each epoch.
fn epoch_order(truth: &[usize], cap: Option<usize>, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order = permutation(truth.len(), seed, epoch);
    if let Some(cap) = cap {
        let mut taken = vec![0usize; truth.iter().max().map_or(0, |&m| m + 1)];
        order.retain(|&i| {
            taken[truth[i]] += 1;
            taken[truth[i]] <= cap
        });
    }
    order
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

/// Logits of the network (evaluation mode) for every image, in chunks, with its pooled features
/// (N×D, on the CPU) if it exposes them.
pub(crate) fn outputs(
    net: &dyn Net,
    images: &Tensor,
    device: Device,
) -> (Vec<Vec<f32>>, Option<Tensor>) {
    let chunk = 128;
    let n = images.size()[0];
    let mut logits = Vec::with_capacity(n as usize);
    let mut features = Vec::new();
    tch::no_grad(|| {
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let batch = images.narrow(0, start, len).to_device(device);
            let l = match net.logits_and_features(&batch) {
                Some((l, f)) => {
                    features.push(f.to_device(Device::Cpu));
                    l
                }
                None => net.forward_t(&batch, false),
            };
            logits.extend(rows(&l.to_device(Device::Cpu)));
            start += len;
        }
    });
    let features = (!features.is_empty()).then(|| Tensor::cat(&features, 0));
    (logits, features)
}

/// The rows of an N×C tensor.
fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    let width = t.size()[1] as usize;
    let flat = Vec::<f32>::try_from(t.flatten(0, -1)).expect("float rows");
    flat.chunks(width).map(<[f32]>::to_vec).collect()
}

/// Logits of the network (evaluation mode) for every image, in chunks.
fn logits(net: &dyn ModuleT, images: &Tensor, device: Device) -> Vec<Vec<f32>> {
    let chunk = 128;
    let n = images.size()[0];
    let mut out = Vec::with_capacity(n as usize);
    tch::no_grad(|| {
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let batch = images.narrow(0, start, len).to_device(device);
            out.extend(rows(&net.forward_t(&batch, false).to_device(Device::Cpu)));
            start += len;
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_class_cap_takes_another_subset_of_the_large_classes_each_epoch() {
        let truth: Vec<usize> = [vec![0; 50], vec![1; 8], vec![2; 20]].concat();
        let all = epoch_order(&truth, None, 7, 0);
        assert_eq!(all.len(), 78);
        let capped = |epoch| epoch_order(&truth, Some(10), 7, epoch);
        let first = capped(0);
        let per_class =
            |order: &[usize]| class_counts(&order.iter().map(|&i| truth[i]).collect::<Vec<_>>(), 3);
        assert_eq!(per_class(&first), [10, 8, 10]);
        // What the prior and the step count are computed from is what an epoch draws.
        assert_eq!(epoch_class_counts(&truth, 3, Some(10)), per_class(&first));
        assert_eq!(epoch_class_counts(&truth, 3, None), per_class(&all));
        assert_eq!(first, capped(0));
        let second = capped(1);
        assert_eq!(per_class(&second), [10, 8, 10]);
        let mut a: Vec<_> = first.iter().filter(|&&i| truth[i] == 0).collect();
        let mut b: Vec<_> = second.iter().filter(|&&i| truth[i] == 0).collect();
        a.sort();
        b.sort();
        assert_ne!(a, b, "another subset of class 0");
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

    /// The shared data's fixed splits, as training reads them from both sources: a change in
    /// either labels file would silently move images between training and validation.
    #[test]
    fn both_sources_are_read_in_their_fixed_splits() {
        use skinlesion_core::testing::{ham10000_dir, second_source_dir};
        let mut config = config::tests::good();
        let (ham, second) = (ham10000_dir(), second_source_dir());
        config.labels = vec![ham.join("labels.csv"), second.join("labels.csv")];
        config.images = vec![ham.join("images"), second.join("images")];
        let splits = read_splits(&config).unwrap();
        assert_eq!(
            (splits.train.len(), splits.val.len()),
            (7528 + 1493, 1018 + 497)
        );
        assert_eq!(splits.val_sources, [0..1018, 1018..1515]);
        assert_eq!(splits.calibration_val().len(), 1018);
        let count = |rows: &[Sample], label: &str| rows.iter().filter(|s| s.label == label).count();
        let (second_train, second_val) = (&splits.train[7528..], &splits.val[1018..]);
        let counts = |rows| ["MEL", "NV", "BKL"].map(|l| count(rows, l));
        assert_eq!(counts(second_train), [278, 1024, 191]);
        assert_eq!(counts(second_val), [92, 342, 63]);
        assert!(second_val.iter().all(|s| s.path.starts_with(&second)));
        // `--max-train-images` takes the first source's images first.
        config.max_train_images = Some(10);
        assert_eq!(read_splits(&config).unwrap().train.len(), 10);
    }

    #[test]
    fn an_unusable_gpu_is_refused_before_any_file_is_read() {
        if tch::Cuda::is_available() {
            return; // this machine could train there
        }
        let mut config = config::tests::good();
        config.device = skinlesion_core::Device::Cuda(0);
        let err = train(&config, false).err().unwrap();
        let core = err.downcast_ref::<skinlesion_core::Error>().unwrap();
        assert_eq!(core.kind(), skinlesion_core::ErrorKind::Config, "{err}");
    }

    #[test]
    fn invalid_settings_are_refused_before_any_file_is_read() {
        // These paths do not exist.
        let mut config = config::tests::good();
        config.epochs = 0;
        let err = train(&config, false).err().unwrap();
        assert_eq!(
            err.downcast_ref::<InvalidSetting>().unwrap().setting,
            "--epochs"
        );
    }
}
