//! Export: the trained network traced into a model artifact the library loads.

use std::path::Path;

use anyhow::{bail, Result};
use skinlesion_core::model::{
    write_artifact, ModelMetadata, WeightsFormat, WeightsRef, MANIFEST_FORMAT,
};

use crate::nets::Net;
use skinlesion_core::tch::{self, CModule, Tensor};
use skinlesion_core::{Calibration, Classifier, InputSpec, LesionClass, PreparedImage};

use super::calibrate::{UNKNOWN_MAX_ABSTAIN, UNKNOWN_MIN_ACCURACY};
use super::checkpoint::TrainState;
use super::config::TrainConfig;

/// What an export needs: the run, its result and the network to trace.
pub struct Export<'a> {
    pub config: &'a TrainConfig,
    pub classes: &'a [LesionClass],
    pub spec: InputSpec,
    pub calibration: Calibration,
    pub state: &'a TrainState,
    /// The network as exported (with mirror averaging when asked for), in evaluation mode;
    /// its batch norms are folded for the export.
    pub net: &'a mut dyn Net,
    /// Validation images: one traces the network, a few check the written artifact.
    pub val_images: &'a Tensor,
}

/// Traces the network into a TorchScript artifact at `config.output`, with its manifest, and
/// checks that the library, loading it, reproduces the trained network.
pub fn export(e: Export<'_>) -> Result<ModelMetadata> {
    let check = e.val_images.narrow(0, 0, e.val_images.size()[0].min(16));
    let expected = tch::no_grad(|| e.net.forward_t(&check, false));
    e.net.fold_batch_norm();
    let module = trace(e.net, &e.val_images.narrow(0, 0, 1))?;
    let metadata = ModelMetadata {
        format: MANIFEST_FORMAT.into(),
        name: e.config.model_name.clone(),
        version: e.config.model_version.clone(),
        architecture: match e.config.tta_mirror {
            true => format!("{}-{}+mirror", e.config.architecture, e.config.test_size()),
            false => format!("{}-{}", e.config.architecture, e.config.test_size()),
        },
        classes: e.classes.to_vec(),
        input: e.spec,
        calibration: e.calibration,
        weights: WeightsRef {
            file: String::new(),
            format: WeightsFormat::TorchScript,
            sha256: String::new(),
        },
        provenance: provenance(e.config, e.state)?,
    };
    let metadata = write_artifact(&module, metadata, &e.config.output)?;
    check_reproduces(&expected, &check, &e.config.output)?;
    eprintln!(
        "wrote {} (sha256 {})",
        e.config.output.display(),
        metadata.weights.sha256
    );
    Ok(metadata)
}

fn trace(net: &dyn Net, example: &Tensor) -> Result<CModule> {
    Ok(tch::no_grad(|| {
        CModule::create_by_tracing(
            "SkinLesionNet",
            "forward",
            &[example.shallow_clone()],
            &mut |xs| vec![net.forward_t(&xs[0], false)],
        )
    })?)
}

/// What the manifest records about how the model was made (not interpreted by the library).
fn provenance(
    config: &TrainConfig,
    state: &TrainState,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    let mut provenance = serde_json::Map::new();
    provenance.insert("training_config".into(), serde_json::to_value(config)?);
    provenance.insert("best_epoch".into(), serde_json::json!(state.best_epoch));
    provenance.insert(
        "val_balanced_accuracy".into(),
        serde_json::json!(state.best_val_balanced_accuracy),
    );
    provenance.insert(
        "training_seconds".into(),
        serde_json::json!(state.seconds.round()),
    );
    provenance.insert(
        "unknown_rule".into(),
        serde_json::json!(format!(
            "Unknown when the calibrated top probability is below the largest threshold t such that \
             validation predictions below t are right less than {:.0}% of the time, abstaining on at \
             most {:.0}% of validation images",
            UNKNOWN_MIN_ACCURACY * 100.0,
            UNKNOWN_MAX_ABSTAIN * 100.0
        )),
    );
    Ok(provenance)
}

/// The exported artifact, loaded through the library, must reproduce the trained network's
/// `expected` logits for the images `batch` (folding and tracing change no answer).
fn check_reproduces(expected: &Tensor, batch: &Tensor, manifest: &Path) -> Result<()> {
    let classifier = Classifier::builder(manifest)
        .device(skinlesion_core::Device::Cpu)
        .build()?;
    let prepared: Vec<_> = (0..batch.size()[0])
        .map(|i| PreparedImage::from_tensor(batch.narrow(0, i, 1)))
        .collect();
    let exported = classifier.logits(&prepared)?;
    let diff = (expected - exported).abs().max().double_value(&[]);
    if diff > 1e-4 {
        bail!("the exported model differs from the trained one by {diff}");
    }
    Ok(())
}
