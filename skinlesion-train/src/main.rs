//! `skinlesion-train`: train, evaluate and run skinlesion models from the command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use skinlesion_core::{Classifier, Device, Precision, DISCLAIMER};
use skinlesion_train::add_precision::{add_precision, AddPrecisionConfig};
use skinlesion_train::classify::{classify, collect_images, Format};
use skinlesion_train::evaluate::{evaluate, EvalConfig, LabelMap};
use skinlesion_train::refit_decision::{refit_decision, RefitDecisionConfig};
use skinlesion_train::train::regate::{regate, RegateConfig};
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
    Train(Box<TrainArgs>),
    /// Score a model on a labelled set: metrics.json, predictions.csv, confusion matrix and
    /// reliability diagram PNGs.
    Evaluate(EvaluateArgs),
    /// Classify image files or folders; CSV or JSON lines on stdout.
    Classify(ClassifyArgs),
    /// Re-export a shipped model with its dermoscopy gate and Unknown threshold refitted (its
    /// network and operating point unchanged).
    Regate(RegateConfig),
    /// Re-export a model's manifest (same weights) with the two-step decision (melanocytic or
    /// not, then melanoma or nevus) fitted on its training sources' `val` splits.
    RefitDecision(RefitDecisionConfig),
    /// Add a model's bf16 network (from scripts/bf16_network.py) to its manifest, with how
    /// often its answers equal fp32's on labelled images.
    AddPrecision(AddPrecisionConfig),
}

#[derive(clap::Args)]
struct EvaluateArgs {
    /// Model manifest (.json) or weights (.pt). Default: the shipped model (models/ in the
    /// working directory, or above the executable).
    #[arg(long)]
    model: Option<PathBuf>,
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
    /// Images per forward pass. Default: the device's fastest (1 on a CPU, 64 on a GPU).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: Option<u32>,
    /// auto, fp32, bf16 or bf16-checked: the arithmetic to score (auto: what a server here
    /// runs; metrics.json says which ran).
    #[arg(long, default_value = "auto")]
    precision: Precision,
}

#[derive(clap::Args)]
struct ClassifyArgs {
    /// Image files or folders (searched recursively).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Model manifest (.json) or weights (.pt). Default: the shipped model (models/ in the
    /// working directory, or above the executable).
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "csv")]
    format: Format,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    device: Device,
    /// auto, fp32, bf16 or bf16-checked (auto: bf16, checked or not, where this CPU computes
    /// it natively and the model's recorded agreement meets the library's bar).
    #[arg(long, default_value = "auto")]
    precision: Precision,
    /// Images per forward pass. Default: the device's fastest (1 on a CPU, 64 on a GPU).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: Option<u32>,
    /// Also write each image with where the model looked (the heatmap of its best guess) laid
    /// over it, as OUT_DIR/NAME.png.
    #[arg(long, value_name = "OUT_DIR")]
    explain: Option<PathBuf>,
}

#[derive(clap::Args)]
struct TrainArgs {
    #[command(flatten)]
    config: TrainConfig,
    /// Continue from the checkpoint in --checkpoint-dir.
    #[arg(long)]
    resume: bool,
}

/// The model the user named, else the shipped one.
fn shipped_or(model: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    model
        .or_else(skinlesion_core::find_shipped_model)
        .ok_or_else(|| anyhow::anyhow!("no --model given and the shipped model is not in models/"))
}

/// The summary `evaluate` prints (everything is in metrics.json).
fn report_evaluation(m: &skinlesion_train::evaluate::Metrics, out: &std::path::Path) {
    let share = |r: Option<f64>| r.map_or("n/a".into(), |r| format!("{r:.3}"));
    eprintln!(
        "{} images: balanced accuracy {:.4} (95% interval {:.3}-{:.3}), as served (Unknown \
         wrong) {:.4}, accuracy {:.4}, melanoma sensitivity {}, class-balanced ECE {:.4} -> \
         {:.4}; Unknown {:.1}% (low confidence {:.1}%, not dermoscopy {}); right when \
         answered {}, when low confidence {}; written to {}",
        m.images,
        m.balanced_accuracy,
        m.balanced_accuracy_ci95[0],
        m.balanced_accuracy_ci95[1],
        m.balanced_accuracy_served,
        m.accuracy,
        share(m.melanoma_sensitivity),
        m.class_balanced_ece_before_calibration,
        m.class_balanced_ece_after_calibration,
        100.0 * m.unknown_rate,
        100.0 * m.low_confidence_rate,
        m.not_dermoscopy_rate
            .map_or("n/a: no gate".into(), |r| format!("{:.1}%", 100.0 * r)),
        share(m.accuracy_when_answered),
        share(m.accuracy_when_low_confidence),
        out.display()
    );
    eprintln!("coverage  confidence >=  accuracy  balanced accuracy  (images the gate accepts)");
    for p in &m.coverage_curve {
        eprintln!(
            "{:>8.3}  {:>13.3}  {:>8.3}  {:>17.3}",
            p.coverage, p.confidence_threshold, p.accuracy, p.balanced_accuracy
        );
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(a) => train(&a.config, a.resume).map(|_| ()),
        Command::Regate(a) => regate(&a).map(|_| ()),
        Command::AddPrecision(a) => add_precision(&a).map(|_| ()),
        Command::RefitDecision(a) => refit_decision(&a).map(|_| ()),
        Command::Evaluate(a) => shipped_or(a.model)
            .and_then(|model| {
                evaluate(&EvalConfig {
                    model,
                    labels: a.labels,
                    images: a.images,
                    split: a.split,
                    maps: a.maps,
                    out_dir: a.out.clone(),
                    batch_size: a.batch_size.map(|b| b as usize),
                    precision: a.precision,
                })
            })
            .map(|m| report_evaluation(&m, &a.out)),
        Command::Classify(a) => (|| {
            let model = shipped_or(a.model)?;
            let classifier = Classifier::builder(&model)
                .device(a.device)
                .precision(a.precision)
                .build()?;
            eprintln!("{DISCLAIMER}");
            let images = collect_images(&a.inputs)?;
            let failures = classify(
                &classifier,
                &images,
                a.format,
                a.batch_size
                    .map_or(classifier.device().preferred_batch_size(), |b| b as usize),
                a.explain.as_deref(),
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
