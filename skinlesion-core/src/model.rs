//! The model artifact: network weights plus the metadata needed to use them correctly.
//!
//! An artifact is two files side by side:
//!
//! - `NAME.pt`: the network, a TorchScript module mapping a N×3×H×W `f32` batch to N×C logits,
//!   then one out-of-distribution score when the manifest has a [`DermoscopyGate`] scored by
//!   the network, then C·h·w class activation maps when the manifest has [`ClassMaps`];
//! - `NAME.json`: the manifest ([`ModelMetadata`]): class list in output order, input size and
//!   normalisation, calibration (softmax temperature, class prior, "Unknown" threshold, the
//!   out-of-distribution gate), version, and the SHA-256 of `NAME.pt`.
//!
//! Loading verifies the weights against the manifest's checksum and runs one dry forward pass to
//! check that the output width equals the class count, so a manifest that belongs to other
//! weights fails loudly instead of mislabelling predictions. The weights format lives behind
//! [`Model`] alone, so that moving from TorchScript (deprecated upstream) to another format
//! touches only this file.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tch::{CModule, Kind, Tensor};

use crate::error::{Error, Result};
use crate::prediction::Prediction;
use crate::preprocess::{channels_last, InputSpec};
use crate::taxonomy::LesionClass;

/// The manifest format this version of the library writes.
///
/// Format 2 puts the operating point into the class prior, so that the answer is always the most
/// probable class shown (no `decision_bias`), and may carry a [`DermoscopyGate`].
pub const MANIFEST_FORMAT: &str = "skinlesion-model/2";

/// Format 1 (v1–v4.0): answers by `logits + decision_bias`, no gate. Still read, unchanged.
pub const MANIFEST_FORMAT_1: &str = "skinlesion-model/1";

/// The manifest of the model this release ships, in the repository's `models/` folder: the
/// one place that names it.
pub const SHIPPED_MODEL: &str = "skinlesion-v4.3.json";

/// Where an application looks for [`SHIPPED_MODEL`] when the user names no model, in order:
/// `models/` in the working directory; then `models/` beside the running executable or in any
/// folder above it (a cargo build tree runs `target/release/NAME`); then
/// `share/skinlesion/models/` above it (an installed `PREFIX/bin/NAME`).
pub fn shipped_model_candidates() -> Vec<PathBuf> {
    let mut candidates = vec![Path::new("models").join(SHIPPED_MODEL)];
    let exe = std::env::current_exe().and_then(|p| p.canonicalize());
    if let Some(dir) = exe.as_deref().ok().and_then(Path::parent) {
        for above in dir.ancestors() {
            candidates.push(above.join("models").join(SHIPPED_MODEL));
            candidates.push(above.join("share/skinlesion/models").join(SHIPPED_MODEL));
        }
    }
    candidates
}

/// The first of [`shipped_model_candidates`] that exists.
pub fn find_shipped_model() -> Option<PathBuf> {
    shipped_model_candidates().into_iter().find(|p| p.is_file())
}

/// Contents of a model's manifest (`NAME.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelMetadata {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// Short model name, e.g. `"skinlesion-resnet"`.
    pub name: String,
    /// Model version, e.g. `"1.0.0"`.
    pub version: String,
    /// Network architecture, for people (e.g. `"resnet-lite-128"`).
    pub architecture: String,
    /// The classes the network was trained on, in the order of its outputs.
    pub classes: Vec<LesionClass>,
    pub input: InputSpec,
    pub calibration: Calibration,
    /// The class activation maps the network returns with its logits; `None` for models
    /// exported without them (they classify, but cannot explain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_maps: Option<ClassMaps>,
    pub weights: WeightsRef,
    /// Free-form provenance (training data, licence, metrics); not interpreted.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub provenance: serde_json::Map<String, serde_json::Value>,
}

/// Post-hoc calibration, fitted on validation data: the whole rule from one forward pass to an
/// answer.
///
/// Probabilities are `softmax(logits / temperature + log_prior)`, and the answer is the most
/// probable class: the bars a user sees and the class named always tell one story. `log_prior`
/// is the operating point: the class prior the probabilities are for. A network trained with a
/// class-balanced loss gives balanced probabilities with no prior (rare cancers are not drowned
/// out by common nevi), and raising melanoma's prior moves the operating point towards more
/// melanomas found at the cost of more false alarms. The temperature is fitted on validation
/// with each class weighted equally, so the probabilities are calibrated for that population.
///
/// Before any of that, the [`DermoscopyGate`] refuses images that do not look like the
/// dermoscopy the model was trained on; below `unknown_threshold` the lesion classes are too
/// uncertain to name one. Both answers are Unknown, each with its reason.
///
/// Format-1 manifests (see [`MANIFEST_FORMAT_1`]) answered the largest `logit + decision_bias`
/// instead, which need not be the most probable class; they still load and answer as before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// Softmax temperature.
    pub temperature: f32,
    /// When the calibrated probability of the answer is below this, the answer is Unknown.
    pub unknown_threshold: f32,
    /// Per-class log prior in the model's output order; empty for none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_prior: Vec<f32>,
    /// Format 1 only: per-class offset added to the logits when choosing the answer (never to
    /// the probabilities). Empty in format 2, whose answer is the most probable class.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decision_bias: Vec<f32>,
    /// Refuses what is not dermoscopy; `None` for models without one (every format-1 model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dermoscopy_gate: Option<DermoscopyGate>,
}

/// The out-of-distribution gate: an image whose score is above `threshold` does not look like
/// the dermoscopy the model was trained on, and is answered Unknown (`not_dermoscopy`) whatever
/// its lesion probabilities. Fitted on training and validation dermoscopy only: the threshold
/// refuses a set share of validation images (see the model card).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DermoscopyGate {
    /// How the score is computed; larger is less like training dermoscopy.
    pub score: GateScore,
    /// Scores above this are refused.
    pub threshold: f32,
}

/// Class activation maps (Zhou et al. 2016): for a network that ends in global average
/// pooling and a linear layer, class c's map is Σ_k w_ck · A_k over the last feature maps A,
/// so that its mean plus the layer's bias is exactly c's logit. The network returns one
/// `height`×`width` map per class, row-major, after its other outputs, from the same forward
/// pass that classifies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassMaps {
    /// Map width in cells (one cell covers the input width / `width`).
    pub width: u32,
    /// Map height in cells.
    pub height: u32,
    /// The linear layer's bias, per class in output order: a map's mean plus this is the logit.
    pub bias: Vec<f32>,
}

impl ClassMaps {
    /// Values per class.
    pub fn cells(&self) -> usize {
        self.width as usize * self.height as usize
    }
}

/// An out-of-distribution score. Each comes from the one forward pass that classifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GateScore {
    /// Computed by the network, as the column after its logits: the smallest squared
    /// Mahalanobis distance of the pooled features to a training class mean (shared
    /// covariance).
    #[serde(rename = "mahalanobis")]
    Mahalanobis,
    /// Computed by the network, as the column after its logits: the larger of two margins,
    /// so that either refuses. A linear head's log-odds that the pooled features are not
    /// dermoscopy (fitted against photographs, X-rays and generated images, with dermoscopy
    /// of several sources and devices), and the log of the squared Mahalanobis distance to
    /// the nearest training class mean over its limit (what is far from every dermoscopy the
    /// head saw). 0 is where either rule starts refusing.
    #[serde(rename = "dermoscopy_head")]
    DermoscopyHead,
    /// The free energy of the logits, `-temperature · logsumexp(logits / temperature)`: needs
    /// no second output, so any model may have this gate.
    #[serde(rename = "energy")]
    Energy,
}

impl GateScore {
    /// Whether the network must return this score (as the column after its logits).
    pub fn from_network(self) -> bool {
        match self {
            GateScore::Mahalanobis | GateScore::DermoscopyHead => true,
            GateScore::Energy => false,
        }
    }
}

impl Calibration {
    /// The calibrated probabilities of one row of logits, `softmax(logits / temperature +
    /// log_prior)`, computed in `f64`. Training, evaluation and serving all call this.
    pub fn probabilities(&self, logits: &[f32]) -> Vec<f64> {
        let scaled = self.scaled(logits);
        let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let exp: Vec<f64> = scaled.iter().map(|l| (l - max).exp()).collect();
        let sum: f64 = exp.iter().sum();
        exp.iter().map(|e| e / sum).collect()
    }

    fn scaled(&self, logits: &[f32]) -> Vec<f64> {
        let temperature = f64::from(self.temperature);
        logits
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                f64::from(l) / temperature + self.log_prior.get(i).map_or(0.0, |&p| f64::from(p))
            })
            .collect()
    }

    /// The index of the answer for one row of logits (the first on ties): the most probable
    /// class, or for a format-1 calibration with a `decision_bias` the largest `logit + bias`.
    pub fn decision(&self, logits: &[f32]) -> usize {
        let scores: Vec<f64> = match self.decision_bias.is_empty() {
            true => self.scaled(logits),
            false => logits
                .iter()
                .zip(&self.decision_bias)
                .map(|(&l, &b)| f64::from(l + b))
                .collect(),
        };
        let mut best = 0;
        for (i, &score) in scores.iter().enumerate() {
            if score > scores[best] {
                best = i;
            }
        }
        best
    }

    /// The gate's score for one row of logits and the network's own score (its second output,
    /// if it has one); `None` without a gate.
    pub fn gate_score(&self, logits: &[f32], network_score: Option<f32>) -> Option<f32> {
        let gate = self.dermoscopy_gate.as_ref()?;
        match gate.score {
            // A missing network score fails closed: NaN is above no threshold, so refused.
            GateScore::Mahalanobis | GateScore::DermoscopyHead => {
                Some(network_score.unwrap_or(f32::NAN))
            }
            GateScore::Energy => Some(self.energy(logits)),
        }
    }

    /// `-T · logsumexp(logits / T)`: low for inputs like the training data.
    pub fn energy(&self, logits: &[f32]) -> f32 {
        let t = f64::from(self.temperature);
        let scaled: Vec<f64> = logits.iter().map(|&l| f64::from(l) / t).collect();
        let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = scaled.iter().map(|l| (l - max).exp()).sum();
        (-t * (max + sum.ln())) as f32
    }

    /// The whole rule for one row of logits of a network trained on `classes` (in output
    /// order), with the network's out-of-distribution score if it returns one: calibrated
    /// probabilities, the answer, Unknown when the gate refuses the image or the answer is
    /// below the threshold.
    pub fn prediction(
        &self,
        classes: &[LesionClass],
        logits: &[f32],
        network_score: Option<f32>,
    ) -> Prediction {
        let probabilities = self.probabilities(logits);
        let prediction = Prediction::with_decision(
            classes
                .iter()
                .copied()
                .zip(probabilities.iter().map(|&p| p as f32)),
            classes[self.decision(logits)],
            self.unknown_threshold,
        );
        match (
            self.gate_score(logits, network_score),
            &self.dermoscopy_gate,
        ) {
            (Some(score), Some(gate)) => prediction.gated(score, gate.threshold),
            _ => prediction,
        }
    }
}

impl Default for Calibration {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            unknown_threshold: 0.0,
            log_prior: Vec::new(),
            decision_bias: Vec::new(),
            dermoscopy_gate: None,
        }
    }
}

/// Where the weights are and what they must hash to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsRef {
    /// File name, relative to the manifest's folder.
    pub file: String,
    /// How the weights are stored.
    pub format: WeightsFormat,
    /// Lower-case hex SHA-256 of the weights file.
    pub sha256: String,
}

/// How a model's weights are stored. Serialised as in the manifest (`"torchscript"`); a
/// manifest naming another format is refused as corrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WeightsFormat {
    /// A TorchScript module (`torch.jit.save` / `CModule::save`).
    #[serde(rename = "torchscript")]
    TorchScript,
}

impl ModelMetadata {
    /// Checks the metadata's internal consistency (not yet against the network).
    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(Error::MetadataMismatch(msg));
        if self.format != MANIFEST_FORMAT && self.format != MANIFEST_FORMAT_1 {
            return fail(format!(
                "manifest format {:?}, this library reads {MANIFEST_FORMAT:?} and \
                 {MANIFEST_FORMAT_1:?}",
                self.format
            ));
        }
        if self.classes.is_empty() {
            return fail("the class list is empty".into());
        }
        if self.classes.contains(&LesionClass::Unknown) {
            return fail("Unknown is an abstention and cannot be a trained class".into());
        }
        let mut seen = self.classes.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != self.classes.len() {
            return fail(format!("duplicate classes in {:?}", self.classes));
        }
        let c = &self.calibration;
        if !(c.temperature.is_finite() && c.temperature > 0.0) {
            return fail(format!("temperature {} must be > 0", c.temperature));
        }
        if !(0.0..=1.0).contains(&c.unknown_threshold) {
            return fail(format!(
                "unknown_threshold {} must be within 0..=1",
                c.unknown_threshold
            ));
        }
        if !(c.log_prior.is_empty() || c.log_prior.len() == self.classes.len())
            || c.log_prior.iter().any(|v| !v.is_finite())
        {
            return fail(format!(
                "log_prior must be empty or {} finite values, one per class",
                self.classes.len()
            ));
        }
        if !(c.decision_bias.is_empty() || c.decision_bias.len() == self.classes.len())
            || c.decision_bias.iter().any(|v| !v.is_finite())
        {
            return fail(format!(
                "decision_bias must be empty or {} finite values, one per class",
                self.classes.len()
            ));
        }
        if self.format == MANIFEST_FORMAT && !c.decision_bias.is_empty() {
            return fail(format!(
                "{MANIFEST_FORMAT} has no decision_bias: its operating point is in log_prior"
            ));
        }
        if self.format == MANIFEST_FORMAT_1 && c.dermoscopy_gate.is_some() {
            return fail(format!("{MANIFEST_FORMAT_1} has no dermoscopy_gate"));
        }
        if let Some(gate) = &c.dermoscopy_gate {
            if !gate.threshold.is_finite() {
                return fail(format!("gate threshold {} must be finite", gate.threshold));
            }
        }
        if let Some(maps) = &self.class_maps {
            if maps.cells() == 0
                || maps.bias.len() != self.classes.len()
                || maps.bias.iter().any(|b| !b.is_finite())
            {
                return fail(format!(
                    "class_maps need a positive size and {} finite biases, one per class",
                    self.classes.len()
                ));
            }
        }
        let sha = &self.weights.sha256;
        if sha.len() != 64
            || !sha
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return fail(format!("sha256 {sha:?} is not 64 lower-case hex digits"));
        }
        if self.weights.file.is_empty() || Path::new(&self.weights.file).components().count() != 1 {
            return fail(format!(
                "weights file {:?} must be a plain file name beside the manifest",
                self.weights.file
            ));
        }
        self.input.validate()
    }
}

/// Where a model's files are, resolved from what a user passed.
#[derive(Debug, Clone)]
pub struct ModelPaths {
    pub manifest: PathBuf,
    pub weights: PathBuf,
}

/// Reads and validates a manifest. `path` may name the manifest (`.json`) or the weights (`.pt`,
/// whose manifest is the same name with `.json`).
pub fn read_metadata(path: &Path) -> Result<(ModelMetadata, ModelPaths)> {
    let manifest = if path.extension().is_some_and(|e| e == "json") {
        path.to_path_buf()
    } else {
        path.with_extension("json")
    };
    if !path.exists() {
        return Err(Error::ModelNotFound {
            path: path.to_path_buf(),
        });
    }
    if !manifest.exists() {
        return Err(Error::ModelCorrupt {
            path: path.to_path_buf(),
            reason: format!(
                "no manifest at {}: every model needs its metadata (classes, input, calibration, checksum)",
                manifest.display()
            ),
        });
    }
    let text = std::fs::read_to_string(&manifest).map_err(|source| Error::Io {
        path: manifest.clone(),
        source,
    })?;
    let mut metadata: ModelMetadata =
        serde_json::from_str(&text).map_err(|e| Error::ModelCorrupt {
            path: manifest.clone(),
            reason: format!("invalid manifest JSON: {e}"),
        })?;
    metadata.validate()?;
    if metadata.format == MANIFEST_FORMAT_1 && metadata.calibration.decision_bias.is_empty() {
        // Format 1 answered the largest logit, not the most probable class: keep its answers.
        metadata.calibration.decision_bias = vec![0.0; metadata.classes.len()];
    }
    let weights = manifest
        .parent()
        .unwrap_or(Path::new("."))
        .join(&metadata.weights.file);
    Ok((metadata, ModelPaths { manifest, weights }))
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A loaded network. The only type that knows the weights are TorchScript.
#[derive(Debug)]
pub struct Model {
    module: CModule,
    device: tch::Device,
}

impl Model {
    /// Loads weights whose SHA-256 must equal `expected_sha256`. The verified bytes are the
    /// bytes loaded: the file is read once.
    pub fn load(path: &Path, expected_sha256: &str, device: tch::Device) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => Error::ModelNotFound {
                path: path.to_path_buf(),
            },
            _ => Error::Io {
                path: path.to_path_buf(),
                source,
            },
        })?;
        let actual = sha256_hex(&bytes);
        if actual != expected_sha256 {
            return Err(Error::ChecksumMismatch {
                path: path.to_path_buf(),
                expected: expected_sha256.to_owned(),
                actual,
            });
        }
        let mut module =
            CModule::load_data_on_device(&mut Cursor::new(bytes), device).map_err(|e| {
                Error::ModelCorrupt {
                    path: path.to_path_buf(),
                    reason: format!("not a loadable TorchScript module: {}", first_line(&e)),
                }
            })?;
        module.set_eval();
        Ok(Self { module, device })
    }

    /// One forward pass over a N×3×H×W batch: its N×K output as an `f32` tensor on the CPU
    /// (see [`Outputs::split`]).
    pub fn forward(&self, batch: &Tensor) -> Result<Tensor> {
        tch::no_grad(|| {
            let input = match self.device {
                tch::Device::Cpu => channels_last(batch),
                _ => batch.to_device(self.device),
            };
            let output = self
                .module
                .forward_ts(&[input])
                .map_err(|e| Error::Inference(first_line(&e)))?;
            Ok(output.to_kind(Kind::Float).to_device(tch::Device::Cpu))
        })
    }

    pub fn device(&self) -> tch::Device {
        self.device
    }
}

/// What one forward pass gives.
#[derive(Debug)]
pub struct Outputs {
    /// N×C logits.
    pub logits: Tensor,
    /// N out-of-distribution scores, from a network that computes them
    /// ([`GateScore::from_network`]).
    pub gate_scores: Option<Tensor>,
    /// N×C×h×w class activation maps, from a network exported with them ([`ClassMaps`]).
    pub class_maps: Option<Tensor>,
}

/// Which columns a network's output has besides the C logits, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLayout {
    pub classes: usize,
    /// One gate score column.
    pub gate_score: bool,
    /// C maps of height × width cells, as (height, width).
    pub class_maps: Option<(u32, u32)>,
}

impl OutputLayout {
    /// The columns of one image's output.
    pub fn width(&self) -> i64 {
        let maps = self.class_maps.map_or(0, |(h, w)| h as usize * w as usize);
        (self.classes * (1 + maps) + usize::from(self.gate_score)) as i64
    }

    fn describe(&self) -> String {
        let mut parts = vec![format!("{} classes", self.classes)];
        if self.gate_score {
            parts.push("gate score".into());
        }
        if let Some((h, w)) = self.class_maps {
            parts.push(format!("{h}×{w} class maps"));
        }
        parts.join(" and ")
    }
}

impl Outputs {
    /// Splits a network's N×K output (a traced module has a single output): the C logits,
    /// then a gate score column, then the class maps, as `layout` says.
    pub fn split(output: Tensor, layout: OutputLayout) -> Result<Self> {
        let width = output.size().get(1).copied().unwrap_or(-1);
        let expected = layout.width();
        if output.dim() != 2 || width != expected {
            return Err(Error::MetadataMismatch(format!(
                "the network outputs shape {:?}, but the manifest's {} need N×{expected}",
                output.size(),
                layout.describe()
            )));
        }
        let classes = layout.classes as i64;
        let gate = i64::from(layout.gate_score);
        Ok(Self {
            logits: output.narrow(1, 0, classes),
            gate_scores: layout.gate_score.then(|| output.select(1, classes)),
            class_maps: layout.class_maps.map(|(h, w)| {
                let (h, w) = (i64::from(h), i64::from(w));
                output
                    .narrow(1, classes + gate, classes * h * w)
                    .view([-1, classes, h, w])
            }),
        })
    }
}

/// libtorch errors carry a C++ backtrace; the first line says what went wrong.
fn first_line(e: &tch::TchError) -> String {
    let text = e.to_string();
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("unknown libtorch error")
        .trim()
        .to_owned()
}

/// Writes a model artifact: `module` as `<manifest stem>.pt` beside `manifest_path`, then the
/// manifest with the weights' checksum filled in. Returns the metadata as written.
///
/// This is how training produces models; `metadata.weights` is overwritten.
pub fn write_artifact(
    module: &CModule,
    mut metadata: ModelMetadata,
    manifest_path: &Path,
) -> Result<ModelMetadata> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let weights_path = manifest_path.with_extension("pt");
    let file_name = weights_path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Config(format!("bad model path {}", manifest_path.display())))?
        .to_owned();
    if let Some(dir) = manifest_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    module.save(&weights_path).map_err(|e| Error::Io {
        path: weights_path.clone(),
        source: std::io::Error::other(first_line(&e)),
    })?;
    let bytes = std::fs::read(&weights_path).map_err(io(&weights_path))?;
    metadata.format = MANIFEST_FORMAT.to_owned();
    metadata.weights = WeightsRef {
        file: file_name,
        format: WeightsFormat::TorchScript,
        sha256: sha256_hex(&bytes),
    };
    metadata.validate()?;
    let json = serde_json::to_string_pretty(&metadata).expect("metadata serializes");
    std::fs::write(manifest_path, json + "\n").map_err(io(manifest_path))?;
    Ok(metadata)
}
