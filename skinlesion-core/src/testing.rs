//! Tiny models with known weights, for testing code built on this crate without a trained
//! model or Python.
//!
//! [`write_mean_colour_model`] writes a real artifact whose network is traced with libtorch: it
//! averages each input channel over the image and applies a linear layer, so its logits can be
//! computed exactly from the preprocessed input. The data helpers find the HAM10000 images the
//! workspace's tests read and build hostile inputs.

mod many_scans;

pub use many_scans::many_scan_jpeg;

use std::path::{Path, PathBuf};
use std::str::FromStr;

use tch::{CModule, Kind, Tensor};

use crate::error::Result;
use crate::model::{
    write_artifact, Calibration, ModelMetadata, WeightsFormat, WeightsRef, MANIFEST_FORMAT,
};
use crate::preprocess::{InputSpec, ResizePolicy};
use crate::taxonomy::LesionClass;

/// A small input spec (64×64, ImageNet normalisation) for fast tests.
pub fn small_input() -> InputSpec {
    InputSpec {
        width: 64,
        height: 64,
        resize: ResizePolicy::Stretch,
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        colour_constancy: Default::default(),
    }
}

/// Weights of the mean-colour model: `logits = mean_rgb(x) · weight + bias`, with `weight` of
/// shape 3 × `outputs` (row-major) and `bias` of length `outputs`.
#[derive(Debug, Clone)]
pub struct MeanColourWeights {
    /// 3 × `outputs`, row-major.
    pub weight: Vec<f32>,
    /// One per output.
    pub bias: Vec<f32>,
}

impl MeanColourWeights {
    /// Distinct, deterministic weights for `outputs` classes.
    pub fn distinct(outputs: usize) -> Self {
        let weight = (0..3 * outputs)
            .map(|i| ((i * 37 % 17) as f32 - 8.0) / 4.0)
            .collect();
        let bias = (0..outputs).map(|i| (i as f32 - 3.0) / 10.0).collect();
        Self { weight, bias }
    }

    /// The logits this model gives for a preprocessed N×3×H×W input, computed directly.
    pub fn logits(&self, input: &Tensor) -> Tensor {
        let (weight, bias) = self.tensors();
        Self::apply(input, &weight, &bias)
    }

    fn tensors(&self) -> (Tensor, Tensor) {
        let outputs = self.bias.len() as i64;
        let weight = Tensor::from_slice(&self.weight).view([3, outputs]);
        (weight, Tensor::from_slice(&self.bias))
    }

    fn apply(input: &Tensor, weight: &Tensor, bias: &Tensor) -> Tensor {
        input
            .mean_dim(&[2i64, 3][..], false, Kind::Float)
            .matmul(weight)
            + bias
    }
}

/// Traces the mean-colour network with `outputs` outputs.
pub fn mean_colour_module(weights: &MeanColourWeights, input: &InputSpec) -> Result<CModule> {
    let example = Tensor::zeros(
        [1, 3, i64::from(input.height), i64::from(input.width)],
        (Kind::Float, tch::Device::Cpu),
    );
    // Constants must exist before tracing starts: a tensor created from host memory inside the
    // trace is recorded as an uninitialised buffer.
    let (weight, bias) = weights.tensors();
    CModule::create_by_tracing("MeanColour", "forward", &[example], &mut |xs| {
        vec![MeanColourWeights::apply(&xs[0], &weight, &bias)]
    })
    .map_err(|e| crate::Error::Inference(format!("tracing the test model failed: {e}")))
}

/// Traces the mean-colour network with a gate score as the column after its logits: the squared
/// distance of the input's mean (normalised) colour from `centre`, so that images of one
/// colour pass and others are refused ([`crate::GateScore::Mahalanobis`] in the manifest).
pub fn gated_mean_colour_module(
    weights: &MeanColourWeights,
    input: &InputSpec,
    centre: [f32; 3],
) -> Result<CModule> {
    let example = Tensor::zeros(
        [1, 3, i64::from(input.height), i64::from(input.width)],
        (Kind::Float, tch::Device::Cpu),
    );
    let (weight, bias) = weights.tensors();
    let centre = Tensor::from_slice(&centre).view([1, 3]);
    CModule::create_by_tracing("GatedMeanColour", "forward", &[example], &mut |xs| {
        let mean = xs[0].mean_dim(&[2i64, 3][..], false, Kind::Float);
        let offset = &mean - &centre;
        let score = (&offset * &offset).sum_dim_intlist(1, true, Kind::Float);
        vec![Tensor::cat(
            &[MeanColourWeights::apply(&xs[0], &weight, &bias), score],
            1,
        )]
    })
    .map_err(|e| crate::Error::Inference(format!("tracing the test model failed: {e}")))
}

/// Writes the gated mean-colour model (see [`gated_mean_colour_module`]) at `dir/name.json`;
/// `calibration` should carry the gate.
pub fn write_gated_mean_colour_model(
    dir: &Path,
    name: &str,
    classes: &[LesionClass],
    weights: &MeanColourWeights,
    centre: [f32; 3],
    calibration: Calibration,
) -> Result<PathBuf> {
    let input = small_input();
    let module = gated_mean_colour_module(weights, &input, centre)?;
    write_test_model(
        dir,
        name,
        &module,
        test_metadata(classes, input, calibration),
    )
}

/// Metadata for a test model over `classes`.
pub fn test_metadata(
    classes: &[LesionClass],
    input: InputSpec,
    calibration: Calibration,
) -> ModelMetadata {
    ModelMetadata {
        format: MANIFEST_FORMAT.into(),
        name: "mean-colour-test".into(),
        version: "0.0.0-test".into(),
        architecture: "mean-colour-linear".into(),
        classes: classes.to_vec(),
        input,
        calibration,
        class_maps: None,
        other_precisions: Vec::new(),
        weights: WeightsRef {
            file: String::new(),
            format: WeightsFormat::TorchScript,
            sha256: String::new(),
        },
        provenance: Default::default(),
    }
}

/// Writes a mean-colour model artifact at `dir/name.json` (+ `.pt`); returns the manifest path.
pub fn write_mean_colour_model(
    dir: &Path,
    name: &str,
    classes: &[LesionClass],
    weights: &MeanColourWeights,
    input: InputSpec,
    calibration: Calibration,
) -> Result<PathBuf> {
    let module = mean_colour_module(weights, &input)?;
    write_test_model(
        dir,
        name,
        &module,
        test_metadata(classes, input, calibration),
    )
}

fn write_test_model(
    dir: &Path,
    name: &str,
    module: &CModule,
    metadata: ModelMetadata,
) -> Result<PathBuf> {
    let manifest = dir.join(format!("{name}.json"));
    write_artifact(module, metadata, &manifest)?;
    Ok(manifest)
}

/// The manifest of the model this repository ships (`models/`), which the workspace's tests and
/// benchmarks exercise: the one place that names it.
pub fn shipped_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(crate::model::SHIPPED_MODEL)
}

/// The HAM10000 folder the tests read: `SKINLESION_DATA`, else `../shared/data/ham10000`
/// beside the repository.
pub fn ham10000_dir() -> PathBuf {
    let dir = std::env::var_os("SKINLESION_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/ham10000")
        });
    assert!(
        dir.join("labels.csv").exists(),
        "HAM10000 not found at {} (set SKINLESION_DATA)",
        dir.display()
    );
    dir
}

/// One row of HAM10000's `labels.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledImage {
    /// The image id (`ISIC_…`).
    pub id: String,
    /// Its diagnosis.
    pub class: LesionClass,
    /// `train`, `val` or `test`.
    pub split: String,
    /// The image file.
    pub path: PathBuf,
}

/// Every labelled HAM10000 image, in file order.
pub fn ham10000_images() -> Vec<LabelledImage> {
    labelled_images(&ham10000_dir())
}

/// The second source's folder (`../shared/data/isic2017`, ISIC 2017: MEL, NV, BKL from other
/// clinics); `SKINLESION_SECOND_SOURCE` overrides where it is.
pub fn second_source_dir() -> PathBuf {
    std::env::var_os("SKINLESION_SECOND_SOURCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| ham10000_dir().join("../isic2017"))
}

/// The second source's labelled images, in file order.
pub fn second_source_images() -> Vec<LabelledImage> {
    labelled_images(&second_source_dir())
}

/// PH2's folder (`../shared/data/ph2`, a third hospital: MEL and NV, for validation only);
/// `SKINLESION_PH2` overrides where it is.
pub fn ph2_dir() -> PathBuf {
    std::env::var_os("SKINLESION_PH2")
        .map(PathBuf::from)
        .unwrap_or_else(|| ham10000_dir().join("../ph2"))
}

/// The rows of `DIR/labels.csv` (columns `image_id`, `label`, `split`, found by name).
fn labelled_images(dir: &Path) -> Vec<LabelledImage> {
    let labels = std::fs::read_to_string(dir.join("labels.csv"))
        .unwrap_or_else(|e| panic!("{}/labels.csv: {e}", dir.display()));
    let mut lines = labels.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("{}/labels.csv has no {name} column", dir.display()))
    };
    let (id, label, split) = (column("image_id"), column("label"), column("split"));
    lines
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            LabelledImage {
                id: f[id].to_owned(),
                class: LesionClass::from_str(f[label]).expect("an ISIC label"),
                split: f[split].to_owned(),
                path: dir.join("images").join(format!("{}.jpg", f[id])),
            }
        })
        .collect()
}

/// `n` images of one split, taking the classes in turn so that every class appears early.
pub fn ham10000_sample(split: &str, n: usize) -> Vec<LabelledImage> {
    let mut by_class: Vec<Vec<LabelledImage>> = vec![Vec::new(); LesionClass::ALL.len()];
    for image in ham10000_images().into_iter().filter(|i| i.split == split) {
        let slot = LesionClass::ALL
            .iter()
            .position(|c| *c == image.class)
            .expect("class");
        by_class[slot].push(image);
    }
    let mut out = Vec::new();
    for round in 0..by_class.iter().map(Vec::len).max().unwrap_or(0) {
        for images in &by_class {
            if out.len() < n {
                out.extend(images.get(round).cloned());
            }
        }
    }
    out
}

/// A valid 45-byte PNG that declares `width` × `height` pixels: a decompression-bomb header.
pub fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    let idat = [0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01];
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(&b"IHDR"[..], &ihdr[..]), (b"IDAT", &idat), (b"IEND", &[])] {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let body = [kind, data].concat();
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    out
}

/// Deterministic pseudo-random bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// DICOM fixtures from `tests/reference/dicom_fixtures.py` (pydicom in the project venv):
/// pydicom's colour test files with pydicom's own pixels, HAM10000 images wrapped as
/// JPEG-in-DICOM with identifiers that must never come out, and refusals. See the script.
#[derive(Debug)]
pub struct DicomFixtures {
    /// The folder they are in (`fixtures.json` lists the colour ones).
    pub dir: PathBuf,
    /// The HAM10000 JPEGs that `ham-0.dcm`, `ham-1.dcm`, … wrap byte for byte.
    pub jpegs: Vec<PathBuf>,
    /// The identifiers the wrapped files carry (name, ID, birth date, accession number).
    pub identifiers: Vec<String>,
}

impl DicomFixtures {
    /// A fixture by file name.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The DICOM fixtures, written once per script version under the workspace's `target/` (in a
/// temporary folder renamed into place, so concurrent test processes never read half of it).
pub fn dicom_fixtures() -> &'static DicomFixtures {
    static FIXTURES: std::sync::OnceLock<DicomFixtures> = std::sync::OnceLock::new();
    FIXTURES.get_or_init(write_dicom_fixtures)
}

fn write_dicom_fixtures() -> DicomFixtures {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("tests/reference/dicom_fixtures.py");
    let jpegs: Vec<PathBuf> = ham10000_sample("test", 2)
        .into_iter()
        .map(|i| i.path)
        .collect();
    let source = std::fs::read(&script).expect("the fixture script");
    let version = &crate::model::sha256_hex(&source)[..12];
    let dir = root.join(format!("../target/dicom-fixtures-{version}"));
    if !dir.join("fixtures.json").exists() {
        let scratch = dir.with_extension(format!("tmp{}", std::process::id()));
        let python = root.join("../.venv/bin/python");
        assert!(
            python.exists(),
            "no project venv: run `bash scripts/setup.sh`"
        );
        let status = std::process::Command::new(python)
            .arg(&script)
            .arg(&scratch)
            .args(&jpegs)
            .status()
            .expect("run the DICOM fixture script");
        assert!(status.success(), "{} failed", script.display());
        // Another process may have won the race: its folder is as good.
        if std::fs::rename(&scratch, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&scratch);
        }
    }
    let listing = std::fs::read_to_string(dir.join("fixtures.json")).expect("fixtures.json");
    let listing: serde_json::Value = serde_json::from_str(&listing).expect("fixtures.json");
    let identifiers = listing["identifiers"].as_array().expect("identifiers");
    DicomFixtures {
        identifiers: identifiers
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        dir,
        jpegs,
    }
}

/// How many threads the process gained while `work` ran on a fresh thread (Linux: counts
/// `/proc/self/task`). The fresh thread stays alive while the count is taken, so only threads
/// that outlive `work` (a libgomp team, say) count. Run it alone in its test binary: other
/// tests' threads would count too.
pub fn threads_started_by(work: impl FnOnce() + Send) -> usize {
    let count = || std::fs::read_dir("/proc/self/task").map_or(0, |tasks| tasks.count());
    let (done, finished) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        s.spawn(move || {
            let before = count();
            work();
            let _ = done.send(before);
            let _ = released.recv();
        });
        let before = finished.recv().expect("the work panicked");
        let after = count();
        drop(release);
        after.saturating_sub(before)
    })
}
