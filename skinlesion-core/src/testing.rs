//! Tiny models with known weights, for testing code built on this crate without a trained
//! model or Python.
//!
//! [`write_mean_colour_model`] writes a real artifact whose network is traced with libtorch: it
//! averages each input channel over the image and applies a linear layer, so its logits can be
//! computed exactly from the preprocessed input.

use std::path::{Path, PathBuf};

use tch::{CModule, Kind, Tensor};

use crate::error::Result;
use crate::model::{write_artifact, Calibration, ModelMetadata, WeightsRef, MANIFEST_FORMAT};
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
    }
}

/// Weights of the mean-colour model: `logits = mean_rgb(x) · weight + bias`, with `weight` of
/// shape 3 × `outputs` (row-major) and `bias` of length `outputs`.
#[derive(Debug, Clone)]
pub struct MeanColourWeights {
    pub weight: Vec<f32>,
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
        weights: WeightsRef {
            file: String::new(),
            format: "torchscript".into(),
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
    let manifest = dir.join(format!("{name}.json"));
    write_artifact(
        &module,
        test_metadata(classes, input, calibration),
        &manifest,
    )?;
    Ok(manifest)
}
