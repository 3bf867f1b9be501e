//! Labelled image sets: reading label CSVs and decoding images once into memory.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use skinlesion_core::training::{
    decode_image, prepare_parallel, preprocess_image, read_image_file,
};
use skinlesion_core::DecodeLimits;
use skinlesion_core::InputSpec;
use tch::Tensor;

/// One labelled image.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub path: PathBuf,
    /// The label as written in the CSV (an ISIC code or name, or a coarser label for `evaluate`).
    pub label: String,
    /// `train` / `val` / `test` when the CSV has a `split` column.
    pub split: Option<String>,
}

/// Reads a labels CSV in one of two forms, told apart by the header:
///
/// - HAM10000 (`../shared/data/ham10000/labels.csv`): columns `image_id`, `label`, `split`
///   (others ignored); images are `IMAGES/<image_id>.jpg`;
/// - generic: columns `file`, `label`, optional `split`; `file` is relative to `IMAGES` (or
///   absolute).
pub fn read_labels(csv_path: &Path, images: &Path) -> Result<Vec<Sample>> {
    let mut reader = csv::Reader::from_path(csv_path)
        .with_context(|| format!("reading {}", csv_path.display()))?;
    let headers = reader.headers()?.clone();
    let col = |name: &str| headers.iter().position(|h| h.trim() == name);
    let label =
        col("label").with_context(|| format!("{} has no `label` column", csv_path.display()))?;
    let split = col("split");
    let (file_col, ham) = match (col("image_id"), col("file")) {
        (Some(c), _) => (c, true),
        (None, Some(c)) => (c, false),
        _ => bail!(
            "{}: expected an `image_id` (HAM10000) or `file` column",
            csv_path.display()
        ),
    };
    let mut samples = Vec::new();
    for (line, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("{} row {}", csv_path.display(), line + 2))?;
        let file = record.get(file_col).unwrap_or("").trim();
        let label = record.get(label).unwrap_or("").trim();
        if file.is_empty() || label.is_empty() {
            bail!(
                "{} row {}: empty file or label",
                csv_path.display(),
                line + 2
            );
        }
        let path = if ham {
            images.join(format!("{file}.jpg"))
        } else {
            images.join(file)
        };
        samples.push(Sample {
            path,
            label: label.to_owned(),
            split: split
                .and_then(|c| record.get(c))
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty()),
        });
    }
    Ok(samples)
}

/// Data sets that only measure: no path that trains or fits anything (weights, temperature,
/// operating point, decision rule, gate, Unknown threshold, bf16 recheck bands) may read
/// them. PH2 (`../shared/data/ph2`) is the one source no model here has seen, and it stays
/// so only if no code fits anything to it.
pub const VALIDATION_ONLY: [&str; 1] = ["ph2"];

/// The data set a path belongs to, when it lies in a folder [`VALIDATION_ONLY`] names.
pub fn validation_only_set(path: &Path) -> Option<&'static str> {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    absolute.components().find_map(|c| {
        let name = c.as_os_str().to_string_lossy().to_lowercase();
        VALIDATION_ONLY.iter().copied().find(|v| *v == name)
    })
}

/// Refuses a path that belongs to a validation-only data set, for a fitting path.
pub fn refuse_validation_only(path: &Path) -> Result<()> {
    match validation_only_set(path) {
        Some(set) => bail!(
            "{} belongs to {set}, which is for validation only: nothing is trained or fitted on it",
            path.display()
        ),
        None => Ok(()),
    }
}

/// [`read_labels`] for a path that trains or fits: refuses validation-only data sets, by the
/// labels file and by each image.
pub fn read_fitting_labels(csv_path: &Path, images: &Path) -> Result<Vec<Sample>> {
    refuse_validation_only(csv_path)?;
    refuse_validation_only(images)?;
    let samples = read_labels(csv_path, images)?;
    for s in &samples {
        refuse_validation_only(&s.path)?;
    }
    Ok(samples)
}

/// A labelled set's name for people: the labels file's folder (`ham10000`, `isic2017`).
pub fn source_name(labels: &Path) -> String {
    labels.parent().and_then(Path::file_name).map_or_else(
        || labels.display().to_string(),
        |n| n.to_string_lossy().into(),
    )
}

/// Keeps the samples of one split (all when `split` is `None`).
pub fn filter_split(samples: Vec<Sample>, split: Option<&str>) -> Result<Vec<Sample>> {
    let Some(split) = split else {
        return Ok(samples);
    };
    let kept: Vec<_> = samples
        .into_iter()
        .filter(|s| s.split.as_deref() == Some(split))
        .collect();
    if kept.is_empty() {
        bail!("no samples in split {split:?}");
    }
    Ok(kept)
}

/// Decodes and preprocesses every image once, on all cores, into one N×3×H×W tensor, with the
/// library's own preprocessing and parallel preparation, so training sees exactly what
/// inference sees.
pub fn load_images(samples: &[Sample], spec: &InputSpec, threads: usize) -> Result<Tensor> {
    let limits = DecodeLimits::default();
    let progress = crate::progress::bar(samples.len() as u64, "decoding");
    let prepared = prepare_parallel(samples, threads, |sample| {
        let bytes = read_image_file(&sample.path, &limits)?;
        let image = decode_image(&bytes, &limits)?;
        progress.inc(1);
        Ok(preprocess_image(&image, spec))
    });
    progress.finish_and_clear();
    let tensors = samples
        .iter()
        .zip(prepared)
        .map(|(sample, t)| t.with_context(|| format!("loading {}", sample.path.display())))
        .collect::<Result<Vec<_>>>()?;
    if tensors.is_empty() {
        bail!("no images to load");
    }
    Ok(Tensor::cat(&tensors, 0))
}

/// One image of the dermoscopy gate's fitting set.
#[derive(Debug, Clone, PartialEq)]
pub struct GateSample {
    pub sample: Sample,
    /// `source/label` for dermoscopy (one class mean each), `None` for other images.
    pub group: Option<String>,
}

/// Reads the gate's fitting set (`scripts/gate_fit_set.py`): columns `file` (relative to the
/// CSV's folder), `dermoscopy` (1 or 0), `label` (the lesion class of dermoscopy), `source`.
pub fn read_gate_set(csv_path: &Path) -> Result<Vec<GateSample>> {
    #[derive(serde::Deserialize)]
    struct Row {
        file: PathBuf,
        dermoscopy: u8,
        label: String,
        source: String,
    }
    refuse_validation_only(csv_path)?;
    let folder = csv_path.parent().unwrap_or(Path::new("."));
    let mut reader = csv::Reader::from_path(csv_path)
        .with_context(|| format!("reading {}", csv_path.display()))?;
    let mut rows = Vec::new();
    for (line, row) in reader.deserialize::<Row>().enumerate() {
        let row = row.with_context(|| format!("{} row {}", csv_path.display(), line + 2))?;
        let group = match (row.dermoscopy, row.label.trim()) {
            (0, _) => None,
            (1, label) if !label.is_empty() => Some(format!("{}/{label}", row.source)),
            _ => bail!(
                "{} row {}: dermoscopy must be 1 (with a label) or 0",
                csv_path.display(),
                line + 2
            ),
        };
        refuse_validation_only(&folder.join(&row.file))?;
        rows.push(GateSample {
            sample: Sample {
                path: folder.join(row.file),
                label: row.label,
                split: None,
            },
            group,
        });
    }
    if rows.is_empty() {
        bail!("{}: no images", csv_path.display());
    }
    Ok(rows)
}
