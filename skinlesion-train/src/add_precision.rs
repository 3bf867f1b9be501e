//! `add-precision`: adds a model's bf16 network (`scripts/bf16_network.py`) to its manifest,
//! with how often its answers equal the fp32 network's on labelled images, and the bands of
//! its fp32 recheck (`bf16-checked`) with how often the checked answers equal fp32's.
//!
//! Both networks classify the same prepared images (decoding is shared, so only the
//! arithmetic differs); the library offers the bf16 network only once the manifest lists it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use skinlesion_core::training::{read_metadata, sha256_hex, AgreementTally};
use skinlesion_core::{
    Agreement, Calibration, Classifier, Device, LesionClass, Margins, ModelMetadata, Precision,
    PrecisionWeights, Prediction, Recheck, WeightsFormat, WeightsRef,
};

use crate::data::{filter_split, read_fitting_labels, source_name};

/// Images per forward pass while measuring (the answers do not depend on it).
const BATCH: usize = 16;

/// What `add-precision` needs.
#[derive(Debug, Clone, clap::Args)]
pub struct AddPrecisionConfig {
    /// The model's manifest; rewritten with the bf16 network in `other_precisions`.
    #[arg(long)]
    pub model: PathBuf,
    /// The bf16 network, beside the manifest (default: `NAME.bf16.pt`).
    #[arg(long)]
    pub network: Option<PathBuf>,
    /// Labels CSV of images to measure on (repeatable, each with its --images).
    #[arg(long, required = true)]
    pub labels: Vec<PathBuf>,
    /// The folder of the images of the --labels at the same position.
    #[arg(long, required = true)]
    pub images: Vec<PathBuf>,
    /// The split of every labels file to measure on.
    #[arg(long, default_value = "val")]
    pub split: String,
    /// Each recheck band is this quantile of how far bf16 moved its margin's quantity on
    /// the measuring images: higher rechecks more images and agrees more often.
    #[arg(long, default_value_t = 0.9)]
    pub recheck_quantile: f64,
    /// Measure the recheck with the bands the manifest already records instead of fitting
    /// new ones (e.g. on `--split test --dry-run`, images the bands never saw).
    #[arg(long)]
    pub keep_recheck: bool,
    /// Measure and print, but leave the manifest as it is.
    #[arg(long)]
    pub dry_run: bool,
}

/// Measures the bf16 network against fp32 on each labelled set, prints a row per set and,
/// unless `dry_run`, records the agreement over all of them in the manifest.
pub fn add_precision(config: &AddPrecisionConfig) -> Result<Agreement> {
    if config.labels.len() != config.images.len() {
        bail!("give one --images per --labels");
    }
    let q = config.recheck_quantile;
    if !(q > 0.0 && q <= 1.0) {
        bail!("--recheck-quantile must be in (0, 1], not {q}");
    }
    let (mut metadata, paths) = read_metadata(&config.model)?;
    let kept = (metadata.other_precisions.first()).and_then(|o| o.recheck.clone());
    if config.keep_recheck && kept.is_none() {
        bail!(
            "--keep-recheck: {} records no recheck bands",
            paths.manifest.display()
        );
    }
    let network = config
        .network
        .clone()
        .unwrap_or_else(|| paths.manifest.with_extension("bf16.pt"));
    metadata.other_precisions = vec![bf16_entry(&network, &paths.manifest)?];
    // The library loads the bf16 network only through a manifest: measure with a draft one.
    let draft = paths.manifest.with_extension("add-precision.json");
    write_manifest(&draft, &metadata)?;
    let measured = measure(config, &draft, &metadata);
    std::fs::remove_file(&draft).ok();
    let images = measured?;
    let bands = match (config.keep_recheck, &kept) {
        (true, Some(kept)) => kept.bands,
        _ => fit_bands(&images, q),
    };
    let (agreement, recheck) = report(config, &metadata.classes, &images, bands);
    if !config.dry_run {
        metadata.other_precisions[0].agreement = Some(agreement.clone());
        metadata.other_precisions[0].recheck = Some(recheck);
        write_manifest(&paths.manifest, &metadata)?;
        eprintln!("recorded in {}", paths.manifest.display());
    }
    Ok(agreement)
}

fn bf16_entry(network: &Path, manifest: &Path) -> Result<PrecisionWeights> {
    let beside = manifest.parent().unwrap_or(Path::new("."));
    let file = network
        .file_name()
        .and_then(|n| n.to_str())
        .context("the network has no file name")?;
    if beside.join(file).canonicalize().ok() != network.canonicalize().ok() {
        bail!(
            "{} must be beside the manifest {}",
            network.display(),
            manifest.display()
        );
    }
    let bytes = std::fs::read(network).with_context(|| format!("reading {}", network.display()))?;
    Ok(PrecisionWeights {
        precision: Precision::Bf16,
        weights: WeightsRef {
            file: file.to_owned(),
            format: WeightsFormat::TorchScript,
            sha256: sha256_hex(&bytes),
        },
        agreement: None,
        recheck: None,
    })
}

fn write_manifest(path: &Path, metadata: &ModelMetadata) -> Result<()> {
    let json = serde_json::to_string_pretty(metadata)?;
    std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
}

/// One measured image: its set, true class, both answers, how close bf16's answer came to a
/// boundary, and how far bf16 moved each margin's quantity.
struct Measured {
    set: usize,
    truth: Option<LesionClass>,
    fp32: Prediction,
    bf16: Prediction,
    margins: Margins,
    shifts: Margins,
}

fn measure(
    config: &AddPrecisionConfig,
    manifest: &Path,
    metadata: &ModelMetadata,
) -> Result<Vec<Measured>> {
    let load = |precision| {
        Classifier::builder(manifest)
            .device(Device::Cpu)
            .precision(precision)
            .build()
    };
    let (fp32, bf16) = (load(Precision::Fp32)?, load(Precision::Bf16)?);
    let calibration = &metadata.calibration;
    let mut measured = Vec::new();
    for (set, (labels, images)) in config.labels.iter().zip(&config.images).enumerate() {
        let samples = filter_split(read_fitting_labels(labels, images)?, Some(&config.split))?;
        for chunk in samples.chunks(BATCH) {
            let prepared = fp32
                .prepare_batch(chunk.iter().map(|s| s.path.as_path()))
                .into_iter()
                .zip(chunk)
                .map(|(p, s)| p.with_context(|| format!("preparing {}", s.path.display())))
                .collect::<Result<Vec<_>>>()?;
            let (a, b) = (fp32.forward(&prepared)?, bf16.forward(&prepared)?);
            let rows = (fp32.rows_from_outputs(&a)?, bf16.rows_from_outputs(&b)?);
            let answers = (
                fp32.predictions_from_outputs(&a)?,
                bf16.predictions_from_outputs(&b)?,
            );
            let each =
                (chunk.iter().zip(rows.0).zip(rows.1)).zip(answers.0.into_iter().zip(answers.1));
            for (((sample, r32), r16), (p32, p16)) in each {
                measured.push(Measured {
                    set,
                    truth: sample.label.parse::<LesionClass>().ok(),
                    fp32: p32,
                    bf16: p16,
                    margins: calibration.margins(&r16.0, r16.1),
                    shifts: shifts(calibration, &r32, &r16),
                });
            }
        }
    }
    Ok(measured)
}

fn shifts(
    calibration: &Calibration,
    fp32: &(Vec<f32>, Option<f32>),
    bf16: &(Vec<f32>, Option<f32>),
) -> Margins {
    calibration.margin_shifts((&fp32.0, fp32.1), (&bf16.0, bf16.1))
}

/// Each band: the `quantile` of how far bf16 moved its quantity over the images.
fn fit_bands(images: &[Measured], quantile: f64) -> Margins {
    let band = |get: fn(&Margins) -> f64| {
        let mut moved: Vec<f64> = images
            .iter()
            .map(|m| get(&m.shifts))
            .filter(|x| x.is_finite())
            .collect();
        moved.sort_by(f64::total_cmp);
        let at = ((moved.len() as f64 * quantile).ceil() as usize).clamp(1, moved.len().max(1)) - 1;
        moved.get(at).copied().unwrap_or(0.0)
    };
    Margins {
        answer: band(|m| m.answer),
        confidence: band(|m| m.confidence),
        gate: band(|m| m.gate),
    }
}

/// Prints a row per set and over all of them for bf16 and for bf16 checked with `bands`;
/// returns bf16's agreement over all, and the recheck to record.
fn report(
    config: &AddPrecisionConfig,
    classes: &[LesionClass],
    images: &[Measured],
    bands: Margins,
) -> (Agreement, Recheck) {
    let names: Vec<String> = (config.labels.iter())
        .map(|l| format!("{} {}", source_name(l), config.split))
        .collect();
    let rechecked = |m: &Measured| m.margins.within(&bands);
    // What bf16 answers, or with `checked` what bf16-checked does.
    let tally = |set: Option<usize>, checked: bool| {
        let mut tally = AgreementTally::new(classes);
        for m in images.iter().filter(|m| set.is_none_or(|s| s == m.set)) {
            let answer = if checked && rechecked(m) {
                &m.fp32
            } else {
                &m.bf16
            };
            tally.add(m.truth, &m.fp32, answer);
        }
        tally
    };
    let share = |set: Option<usize>| {
        let of_set: Vec<_> = images
            .iter()
            .filter(|m| set.is_none_or(|s| s == m.set))
            .collect();
        of_set.iter().filter(|m| rechecked(m)).count() as f64 / of_set.len().max(1) as f64
    };
    eprintln!("{}", Agreement::TABLE_HEADER);
    let all = names.join(" + ");
    // A row per set, then one over all of them where there are several.
    let several = names.len() > 1;
    let sets = (0..names.len()).filter(|_| several).map(Some).chain([None]);
    for set in sets.clone() {
        let name = set.map_or(all.as_str(), |s| names[s].as_str());
        eprintln!("{}", tally(set, false).agreement(format!("{name}, bf16")));
    }
    for set in sets {
        let name = set.map_or(all.as_str(), |s| names[s].as_str());
        let label = format!(
            "{name}, bf16-checked ({:.1} % rechecked)",
            100.0 * share(set)
        );
        eprintln!("{}", tally(set, true).agreement(label));
    }
    eprintln!(
        "recheck bands (quantile {}): {bands:?}",
        config.recheck_quantile
    );
    let recheck = Recheck {
        quantile: config.recheck_quantile,
        bands,
        rechecked: share(None),
        agreement: tally(None, true).agreement(all.clone()),
    };
    (tally(None, false).agreement(all), recheck)
}
