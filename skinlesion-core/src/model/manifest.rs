//! The manifest (`NAME.json`): what it holds, where the shipped one is, how it is checked.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Margins;
use crate::error::{Error, Result};
use crate::precision::Precision;
use crate::preprocess::InputSpec;
use crate::taxonomy::LesionClass;

/// The manifest format this version of the library writes.
///
/// Format 2 puts the operating point into the class prior, so that the answer is always the most
/// probable class shown (no `decision_bias`), and may carry a [`DermoscopyGate`].
pub const MANIFEST_FORMAT: &str = "skinlesion-model/2";

/// Format 1 (v1–v4.0): answers by `logits + decision_bias`, no gate. Still read, unchanged.
pub const MANIFEST_FORMAT_1: &str = "skinlesion-model/1";

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
    /// The network's input size and normalisation.
    pub input: InputSpec,
    /// The rule from logits to an answer, fitted on validation data.
    pub calibration: Calibration,
    /// The class activation maps the network returns with its logits; `None` for models
    /// exported without them (they classify, but cannot explain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_maps: Option<ClassMaps>,
    /// The weights file and its checksum (the fp32 network).
    pub weights: WeightsRef,
    /// The same network traced for other arithmetic (bf16), each with how often its answers
    /// equal the fp32 network's, measured when it was added; empty for fp32 only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_precisions: Vec<PrecisionWeights>,
    /// Free-form provenance (training data, licence, metrics); not interpreted.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub provenance: serde_json::Map<String, serde_json::Value>,
}

/// Post-hoc calibration, fitted on validation data: the whole rule from one forward pass to an
/// answer.
///
/// Probabilities are `softmax(logits / temperature + log_prior)`, and the answer is the most
/// probable class, or, when the manifest names the [`DecisionRule::TwoStep`] rule, the class
/// the clinical two-step algorithm picks from those same probabilities. `log_prior`
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
    /// How the answer is chosen from the probabilities: the most probable class unless the
    /// manifest names another rule (format 2 only).
    #[serde(default, skip_serializing_if = "DecisionRule::is_most_probable")]
    pub decision_rule: DecisionRule,
}

/// How the answer is chosen from the calibrated probabilities `p` (format 2).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "rule", deny_unknown_fields)]
pub enum DecisionRule {
    /// The most probable class.
    #[default]
    #[serde(rename = "most_probable")]
    MostProbable,
    /// The two-step algorithm of dermoscopy. First melanocytic or not: the lesion is
    /// melanocytic when `ln(p(MEL) + p(NV)) + melanocytic_bias` is at least the log
    /// probability of every other class. Then a melanocytic lesion is melanoma when `p(MEL) ≥
    /// p(NV)` (melanoma's log prior is the operating point of this step), and any other lesion
    /// is its most probable non-melanocytic class. Off-source, classes outside the two take and
    /// give probability unpredictably; the melanoma-against-nevus ratio does not depend on
    /// them.
    #[serde(rename = "two_step")]
    TwoStep {
        /// The melanoma output's index in the model's class order.
        melanoma_output: usize,
        /// The melanocytic nevus output's index.
        nevus_output: usize,
        /// Added to the melanocytic group's log probability in the first step.
        melanocytic_bias: f32,
    },
}

impl DecisionRule {
    /// Whether this is the default rule (the most probable class).
    pub fn is_most_probable(&self) -> bool {
        *self == DecisionRule::MostProbable
    }

    /// The two-step rule for a model trained on `classes`; an error when they lack melanoma,
    /// nevi or any other class.
    pub fn two_step(classes: &[LesionClass], melanocytic_bias: f32) -> Result<Self> {
        let position = |class| classes.iter().position(|&c| c == class);
        match (
            position(LesionClass::Melanoma),
            position(LesionClass::MelanocyticNevi),
        ) {
            (Some(melanoma_output), Some(nevus_output)) if classes.len() > 2 => {
                Ok(DecisionRule::TwoStep {
                    melanoma_output,
                    nevus_output,
                    melanocytic_bias,
                })
            }
            _ => Err(Error::MetadataMismatch(format!(
                "the two-step rule needs melanoma, nevi and another class, not {classes:?}"
            ))),
        }
    }

    fn validate(&self, classes: &[LesionClass]) -> Result<()> {
        match *self {
            DecisionRule::MostProbable => Ok(()),
            DecisionRule::TwoStep {
                melanoma_output,
                nevus_output,
                melanocytic_bias,
            } => {
                let expected = DecisionRule::two_step(classes, melanocytic_bias)?;
                if !melanocytic_bias.is_finite() || expected != *self {
                    return Err(Error::MetadataMismatch(format!(
                        "two_step names outputs {melanoma_output} and {nevus_output} with bias \
                         {melanocytic_bias}; melanoma and nevi are outputs {:?} and {:?} of {classes:?}",
                        classes.iter().position(|&c| c == LesionClass::Melanoma),
                        classes.iter().position(|&c| c == LesionClass::MelanocyticNevi),
                    )));
                }
                Ok(())
            }
        }
    }
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

/// The network in another arithmetic than fp32: its weights and its measured agreement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrecisionWeights {
    /// The arithmetic (only [`Precision::Bf16`] is valid here).
    pub precision: Precision,
    /// Its weights file and checksum.
    pub weights: WeightsRef,
    /// How far its answers are from the fp32 network's on validation images; `None` until
    /// measured (`skinlesion-train add-precision` measures, then records it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<Agreement>,
    /// The fp32 recheck of this network's close calls ([`Precision::Bf16Checked`]); `None`
    /// until `skinlesion-train add-precision` fits it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recheck: Option<Recheck>,
}

/// Which answers of a bf16 network are re-run in fp32, and what that gives: an image is
/// rechecked when any of its [`Margins`] is at most the band's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recheck {
    /// Each band is this quantile of how far bf16 moved that margin's quantity on the
    /// measuring images.
    pub quantile: f64,
    /// The bands.
    pub bands: Margins,
    /// Share of the measuring images rechecked.
    pub rechecked: f64,
    /// The checked answers against fp32's on the same images.
    pub agreement: Agreement,
}

/// How often a network in another precision gives the fp32 network's answers, on the same
/// prepared images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agreement {
    /// Which images, for people (e.g. `"HAM10000 val + ISIC 2017 val"`).
    pub images: String,
    /// How many.
    pub count: u64,
    /// Share with the same answer: the same class, or Unknown for the same reason.
    pub same_answer: f64,
    /// Share with the same dermoscopy-gate decision (1 for a model without a gate).
    pub same_gate: f64,
    /// The largest difference of any class probability over all images.
    pub max_probability_difference: f32,
    /// Balanced accuracy of the fp32 network's best guesses (abstention ignored).
    pub balanced_accuracy_fp32: f64,
    /// The same for this network.
    pub balanced_accuracy: f64,
}

impl Agreement {
    /// The header of the Markdown table whose rows [`Agreement`]'s `Display` writes.
    pub const TABLE_HEADER: &'static str = "| images | count | same answer | same gate decision \
         | largest probability difference | balanced accuracy fp32 / other |";
}

/// One Markdown table row: images, count, same answer, same gate, largest probability
/// difference, balanced accuracies (the model card's table).
impl std::fmt::Display for Agreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "| {} | {} | {:.4} | {:.4} | {:.3} | {:.4} / {:.4} |",
            self.images,
            self.count,
            self.same_answer,
            self.same_gate,
            self.max_probability_difference,
            self.balanced_accuracy_fp32,
            self.balanced_accuracy
        )
    }
}

impl WeightsRef {
    fn validate(&self) -> Result<()> {
        let sha = &self.sha256;
        if sha.len() != 64
            || !sha
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(Error::MetadataMismatch(format!(
                "sha256 {sha:?} is not 64 lower-case hex digits"
            )));
        }
        if self.file.is_empty() || Path::new(&self.file).components().count() != 1 {
            return Err(Error::MetadataMismatch(format!(
                "weights file {:?} must be a plain file name beside the manifest",
                self.file
            )));
        }
        Ok(())
    }
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
    /// The weights of the network in `precision` (fp32: [`ModelMetadata::weights`]); `None`
    /// when the artifact does not offer it.
    pub fn weights_for(&self, precision: Precision) -> Option<&WeightsRef> {
        match precision {
            Precision::Fp32 => Some(&self.weights),
            _ => self
                .other_precisions
                .iter()
                .find(|o| o.precision == precision.network())
                .map(|o| &o.weights),
        }
    }

    /// Reads and checks a model's manifest without loading its network: what a scheduler or a
    /// catalogue needs (name, version, classes) at the cost of one small file. `path` names the
    /// manifest (`.json`) or the weights beside it (`.pt`); the weights are not read, so their
    /// checksum is verified only by [`crate::Classifier::load`].
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        Ok(read_metadata(path.as_ref())?.0)
    }

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
        if self.format == MANIFEST_FORMAT_1 && !c.decision_rule.is_most_probable() {
            return fail(format!("{MANIFEST_FORMAT_1} has no decision_rule"));
        }
        c.decision_rule.validate(&self.classes)?;
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
        self.weights.validate()?;
        for (i, other) in self.other_precisions.iter().enumerate() {
            if other.precision != Precision::Bf16
                || self.other_precisions[..i]
                    .iter()
                    .any(|o| o.precision == other.precision)
            {
                return fail(format!(
                    "other_precisions may hold one bf16 network, not {:?}",
                    other.precision
                ));
            }
            other.weights.validate()?;
            if let Some(recheck) = &other.recheck {
                let b = &recheck.bands;
                let bands_ok = [b.answer, b.confidence, b.gate]
                    .iter()
                    .all(|x| x.is_finite() && *x >= 0.0);
                if !(bands_ok && recheck.quantile > 0.0 && recheck.quantile <= 1.0) {
                    return fail(format!(
                        "the bf16 recheck needs finite bands of 0 or more and a quantile in \
                         (0, 1], not {:?} at {}",
                        recheck.bands, recheck.quantile
                    ));
                }
            }
        }
        self.input.validate()
    }
}

/// Where a model's files are, resolved from what a user passed.
#[derive(Debug, Clone)]
pub struct ModelPaths {
    /// The manifest (`NAME.json`).
    pub manifest: PathBuf,
    /// The weights the manifest names, beside it.
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
