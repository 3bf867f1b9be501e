//! `skinlesion-train`: train, evaluate and run skinlesion models from the command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use skinlesion_core::{Classifier, ColourConstancy, Device, DISCLAIMER};
use skinlesion_train::classify::{classify, collect_images, Format};
use skinlesion_train::evaluate::{evaluate, EvalConfig, LabelMap};
use skinlesion_train::train::{train, TrainConfig};

#[derive(Parser)]
#[command(
    version,
    about = "Train, evaluate and run skinlesion models (research use only; not a medical device)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model on a labelled image set and write a calibrated model artifact.
    Train(TrainArgs),
    /// Score a model on a labelled set: metrics.json, predictions.csv, confusion matrix and
    /// reliability diagram PNGs.
    Evaluate(EvaluateArgs),
    /// Classify image files or folders; CSV or JSON lines on stdout.
    Classify(ClassifyArgs),
}

#[derive(clap::Args)]
struct EvaluateArgs {
    /// Model manifest (.json) or weights (.pt).
    #[arg(long, default_value = "models/skinlesion-v3.json")]
    model: PathBuf,
    /// Labels CSV (HAM10000 form or generic file,label[,split]).
    #[arg(long)]
    labels: PathBuf,
    /// Folder of the images the CSV names.
    #[arg(long)]
    images: PathBuf,
    /// Only this split (e.g. `test`); all rows when absent.
    #[arg(long)]
    split: Option<String>,
    /// Score a coarser label set: LABEL=CLASS+CLASS, e.g. `AKIEC=AK+SCC` (repeatable).
    #[arg(long = "map")]
    maps: Vec<LabelMap>,
    /// Output folder.
    #[arg(long, default_value = "artifacts/eval")]
    out: PathBuf,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
}

#[derive(clap::Args)]
struct ClassifyArgs {
    /// Image files or folders (searched recursively).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Model manifest (.json) or weights (.pt).
    #[arg(long, default_value = "models/skinlesion-v3.json")]
    model: PathBuf,
    #[arg(long, value_enum, default_value = "csv")]
    format: Format,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    device: Device,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Labels CSV: HAM10000 form (image_id,label,split,...) or generic (file,label,split).
    #[arg(long)]
    labels: PathBuf,
    /// Folder of the images the CSV names.
    #[arg(long)]
    images: PathBuf,
    /// Output manifest path; the weights go beside it with the `.pt` extension.
    #[arg(long, default_value = "models/skinlesion-v3.json")]
    output: PathBuf,
    /// Checkpoint folder (one checkpoint per epoch, plus the best so far).
    #[arg(long, default_value = "artifacts/checkpoints")]
    checkpoint_dir: PathBuf,
    /// Continue from the checkpoint in --checkpoint-dir.
    #[arg(long)]
    resume: bool,
    /// Network: `resnet-lite` (default), `resnet-lite-deep` (two blocks in the deepest stages) or
    /// `seed` (the original app's CNN, as a baseline).
    #[arg(long, default_value = "resnet-lite")]
    arch: String,
    /// Square input side in pixels.
    #[arg(long, default_value_t = 128)]
    input_size: u32,
    #[arg(long, default_value_t = 60)]
    epochs: usize,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Peak learning rate (AdamW; linear warm-up over one epoch, then cosine decay).
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    #[arg(long, default_value_t = 0.05)]
    weight_decay: f64,
    #[arg(long, default_value_t = 0.05)]
    label_smoothing: f64,
    /// Mixup's α (Beta(α, α) blend of each batch with a shuffled copy); 0 turns it off.
    #[arg(long, default_value_t = 0.0)]
    mixup: f64,
    /// Share of validation melanomas the answer must find (sets the melanoma decision bias;
    /// 0 keeps the balanced decision). Can be changed when re-exporting with --resume.
    #[arg(long, default_value_t = 0.75)]
    melanoma_sensitivity: f64,
    /// Stop when validation balanced accuracy has not improved for this many epochs (the
    /// default runs the whole cosine schedule: its low-learning-rate end is where the best
    /// epochs usually are, and small validation classes make the metric noisy).
    #[arg(long, default_value_t = 60)]
    patience: usize,
    /// Average each image's answer with its mirror image's (test-time augmentation, built
    /// into the exported model: twice the inference work). Can be changed with --resume.
    #[arg(long)]
    tta_mirror: bool,
    /// Colour normalisation of every image, in training and in the exported model:
    /// `none` or `shades-of-gray` (cancels a camera's or lamp's colour cast).
    #[arg(long, default_value = "none")]
    colour_constancy: ColourConstancy,
    /// Random per-channel colour casts in training (white-balance jitter): each channel is
    /// scaled by e^u, u ~ U(-s, s); 0.25 gives gains of 0.78-1.28. 0 turns it off.
    #[arg(long, default_value_t = 0.0)]
    colour_cast: f64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Train on the first N training images only (quick experiments).
    #[arg(long)]
    max_train_images: Option<usize>,
    /// Stop after N optimiser steps in total.
    #[arg(long)]
    max_steps: Option<usize>,
    #[arg(long, default_value = "skinlesion")]
    model_name: String,
    #[arg(long, default_value = "1.0.0")]
    model_version: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(a) => {
            let config = TrainConfig {
                labels: a.labels,
                images: a.images,
                output: a.output,
                checkpoint_dir: a.checkpoint_dir,
                architecture: a.arch,
                input_size: a.input_size,
                epochs: a.epochs,
                batch_size: a.batch_size,
                learning_rate: a.lr,
                weight_decay: a.weight_decay,
                label_smoothing: a.label_smoothing,
                mixup: a.mixup,
                melanoma_sensitivity: a.melanoma_sensitivity,
                tta_mirror: a.tta_mirror,
                colour_constancy: a.colour_constancy,
                colour_cast: a.colour_cast,
                patience: a.patience,
                seed: a.seed,
                max_train_images: a.max_train_images,
                max_steps: a.max_steps,
                model_name: a.model_name,
                model_version: a.model_version,
            };
            train(&config, a.resume).map(|_| ())
        }
        Command::Evaluate(a) => evaluate(&EvalConfig {
            model: a.model,
            labels: a.labels,
            images: a.images,
            split: a.split,
            maps: a.maps,
            out_dir: a.out.clone(),
            batch_size: a.batch_size,
        })
        .map(|m| {
            eprintln!(
                "{} images: balanced accuracy {:.4} (95% interval {:.3}-{:.3}), accuracy {:.4}, \
                 melanoma sensitivity {}, ECE {:.4} -> {:.4}, Unknown {:.1}%; written to {}",
                m.images,
                m.balanced_accuracy,
                m.balanced_accuracy_ci95[0],
                m.balanced_accuracy_ci95[1],
                m.accuracy,
                m.melanoma_sensitivity
                    .map_or("n/a".into(), |s| format!("{s:.4}")),
                m.ece_before_calibration,
                m.ece_after_calibration,
                100.0 * m.unknown_rate,
                a.out.display()
            );
        }),
        Command::Classify(a) => (|| {
            let classifier = Classifier::builder(&a.model).device(a.device).build()?;
            eprintln!("{DISCLAIMER}");
            let images = collect_images(&a.inputs)?;
            let failures = classify(
                &classifier,
                &images,
                a.format,
                a.batch_size,
                &mut std::io::stdout().lock(),
            )?;
            if failures > 0 {
                anyhow::bail!(
                    "{failures} of {} images could not be classified",
                    images.len()
                );
            }
            Ok(())
        })(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
