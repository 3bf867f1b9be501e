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
//!
//! [`manifest`] is what the JSON says and how it is checked; [`decision`] is the whole rule
//! from logits to an answer (probabilities, the one argmax, the gate, Unknown); [`recheck`] how
//! close an answer came to another (for bf16's fp32 recheck); [`torchscript`]
//! is the network itself, its output columns and how training writes an artifact.

#[cfg(feature = "training")]
mod agreement;
#[cfg(feature = "training")]
mod artifact;
mod decision;
mod manifest;
mod recheck;
mod shipped;
mod torchscript;

pub(crate) use decision::most_probable;

/// A calibration for unit tests: temperature 1, Unknown below 0.5, a head gate at 0.
#[cfg(test)]
pub(crate) fn test_calibration() -> Calibration {
    Calibration {
        temperature: 1.0,
        unknown_threshold: 0.5,
        log_prior: Vec::new(),
        decision_bias: Vec::new(),
        dermoscopy_gate: Some(DermoscopyGate {
            score: GateScore::DermoscopyHead,
            threshold: 0.0,
        }),
        decision_rule: DecisionRule::MostProbable,
    }
}
pub use manifest::{
    read_metadata, Agreement, Calibration, ClassMaps, DecisionRule, DermoscopyGate, GateScore,
    ModelMetadata, ModelPaths, PrecisionWeights, Recheck, WeightsFormat, WeightsRef,
};
pub use recheck::Margins;
pub use shipped::{find_shipped_model, shipped_model_candidates, SHIPPED_MODEL};
pub use torchscript::{Model, OutputLayout, Outputs};
#[cfg(feature = "training")]
pub use {
    agreement::AgreementTally,
    artifact::write_artifact,
    manifest::{MANIFEST_FORMAT, MANIFEST_FORMAT_1},
    torchscript::sha256_hex,
};
