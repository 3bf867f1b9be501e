//! `add-precision`: adds a model's bf16 network (`scripts/bf16_network.py`) to its manifest,
//! with how often its answers equal the fp32 network's on labelled images.
//!
//! Both networks classify the same prepared images (decoding is shared, so only the
//! arithmetic differs); the library offers the bf16 network only once the manifest lists it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use skinlesion_core::training::{read_metadata, sha256_hex, AgreementTally};
use skinlesion_core::{
    Agreement, Classifier, Device, LesionClass, ModelMetadata, Precision, PrecisionWeights,
    WeightsFormat, WeightsRef,
};

use crate::data::{filter_split, read_labels};

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
    let (mut metadata, paths) = read_metadata(&config.model)?;
    let network = config
        .network
        .clone()
        .unwrap_or_else(|| paths.manifest.with_extension("bf16.pt"));
    metadata.other_precisions = vec![bf16_entry(&network, &paths.manifest)?];
    // The library loads the bf16 network only through a manifest: measure with a draft one.
    let draft = paths.manifest.with_extension("add-precision.json");
    write_manifest(&draft, &metadata)?;
    let measured = measure(config, &draft, &metadata.classes);
    std::fs::remove_file(&draft).ok();
    let agreement = measured?;
    if !config.dry_run {
        metadata.other_precisions[0].agreement = Some(agreement.clone());
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
    })
}

fn write_manifest(path: &Path, metadata: &ModelMetadata) -> Result<()> {
    let json = serde_json::to_string_pretty(metadata)?;
    std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
}

fn measure(
    config: &AddPrecisionConfig,
    manifest: &Path,
    classes: &[LesionClass],
) -> Result<Agreement> {
    let load = |precision| {
        Classifier::builder(manifest)
            .device(Device::Cpu)
            .precision(precision)
            .build()
    };
    let (fp32, bf16) = (load(Precision::Fp32)?, load(Precision::Bf16)?);
    let mut all = AgreementTally::new(classes);
    let mut names = Vec::new();
    eprintln!("{}", Agreement::TABLE_HEADER);
    for (labels, images) in config.labels.iter().zip(&config.images) {
        let name = format!("{} {}", set_name(labels), config.split);
        let samples = filter_split(read_labels(labels, images)?, Some(&config.split))?;
        let mut set = AgreementTally::new(classes);
        for chunk in samples.chunks(BATCH) {
            let prepared = fp32
                .prepare_batch(chunk.iter().map(|s| s.path.as_path()))
                .into_iter()
                .zip(chunk)
                .map(|(p, s)| p.with_context(|| format!("preparing {}", s.path.display())))
                .collect::<Result<Vec<_>>>()?;
            let answers = fp32.classify_prepared(&prepared)?;
            let others = bf16.classify_prepared(&prepared)?;
            for ((sample, a), b) in chunk.iter().zip(&answers).zip(&others) {
                let truth = sample.label.parse::<LesionClass>().ok();
                set.add(truth, a, b);
                all.add(truth, a, b);
            }
        }
        eprintln!("{}", set.agreement(name.clone()));
        names.push(name);
    }
    let agreement = all.agreement(names.join(" + "));
    eprintln!("{agreement}");
    Ok(agreement)
}

/// A set's name for people: the labels file's folder (`ham10000`, `isic2017`).
fn set_name(labels: &Path) -> String {
    labels.parent().and_then(Path::file_name).map_or_else(
        || labels.display().to_string(),
        |n| n.to_string_lossy().into(),
    )
}
