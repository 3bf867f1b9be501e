//! Export: the trained network traced into a model artifact the library loads.

use std::path::Path;

use anyhow::{bail, Result};
use skinlesion_core::training::{write_artifact, MANIFEST_FORMAT};
use skinlesion_core::{ClassMaps, ModelMetadata, WeightsFormat, WeightsRef};

use crate::nets::Net;
use skinlesion_core::{Calibration, Classifier, InputSpec, LesionClass, PreparedImage};
use tch::{CModule, Tensor};

use super::calibrate::UNKNOWN_COVERAGE;
use super::checkpoint::TrainState;
use super::config::TrainConfig;
use super::gate::Gate;

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
    /// The dermoscopy gate, traced in as the network's second output (the calibration holds
    /// its threshold).
    pub gate: Option<Gate>,
    /// Validation images: one traces the network, a few check the written artifact.
    pub val_images: &'a Tensor,
    /// Where the network came from when it was not trained by this run (`regate`).
    pub network_from: Option<String>,
}

/// Traces the network into a TorchScript artifact at `config.output`, with its manifest, and
/// checks that the library, loading it, reproduces the trained network.
pub fn export(e: Export<'_>) -> Result<ModelMetadata> {
    let check = e.val_images.narrow(0, 0, e.val_images.size()[0].min(16));
    let expected = tch::no_grad(|| run(e.net, e.gate.as_ref(), &check));
    e.net.fold_batch_norm();
    let example = e.val_images.narrow(0, 0, 1);
    let module = trace(e.net, e.gate.as_ref(), &example)?;
    let class_maps = class_maps(e.net, &example)?;
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
        class_maps,
        other_precisions: Vec::new(),
        weights: WeightsRef {
            file: String::new(),
            format: WeightsFormat::TorchScript,
            sha256: String::new(),
        },
        provenance: provenance(e.config, e.state, e.gate.as_ref(), e.network_from)?,
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

/// What the exported network returns (a traced module has a single output): N×C logits,
/// then with a gate its score as one more column, then for a network that has them its C
/// class activation maps, flattened (see `skinlesion_core::training::OutputLayout`).
fn run(net: &dyn Net, gate: Option<&Gate>, x: &Tensor) -> Tensor {
    if let Some(e) = net.explained(x) {
        let mut columns = vec![e.logits];
        columns.extend(gate.map(|g| g.scores(&e.features).unsqueeze(1)));
        columns.push(e.maps.flatten(1, -1));
        return Tensor::cat(&columns, 1);
    }
    match gate.zip(net.logits_and_features(x)) {
        Some((gate, (logits, features))) => {
            Tensor::cat(&[logits, gate.scores(&features).unsqueeze(1)], 1)
        }
        None => net.forward_t(x, false),
    }
}

/// What the manifest says of the maps `run` returns: their size on `example`, the head's bias.
fn class_maps(net: &dyn Net, example: &Tensor) -> Result<Option<ClassMaps>> {
    let Some(explained) = tch::no_grad(|| net.explained(example)) else {
        return Ok(None);
    };
    let (_, _, height, width) = explained.maps.size4()?;
    let bias = match net.class_bias() {
        Some(b) => Vec::<f32>::try_from(b.to_kind(tch::Kind::Float))?,
        None => vec![0.0; explained.logits.size()[1] as usize],
    };
    Ok(Some(ClassMaps {
        width: u32::try_from(width)?,
        height: u32::try_from(height)?,
        bias,
    }))
}

fn trace(net: &dyn Net, gate: Option<&Gate>, example: &Tensor) -> Result<CModule> {
    Ok(tch::no_grad(|| {
        CModule::create_by_tracing(
            "SkinLesionNet",
            "forward",
            &[example.shallow_clone()],
            &mut |xs| vec![run(net, gate, &xs[0])],
        )
    })?)
}

/// What the manifest records about how the model was made (not interpreted by the library).
fn provenance(
    config: &TrainConfig,
    state: &TrainState,
    gate: Option<&Gate>,
    network_from: Option<String>,
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
            "Unknown (low confidence) when the calibrated top probability is below the threshold \
             that answers at least {:.0}% of the validation images the dermoscopy gate accepts",
            UNKNOWN_COVERAGE * 100.0
        )),
    );
    if let Some(gate) = gate {
        provenance.insert("dermoscopy_gate_rule".into(), gate.rule().into());
    }
    if let Some(from) = network_from {
        provenance.insert("network_from".into(), from.into());
    }
    Ok(provenance)
}

/// The exported artifact, loaded through the library, must reproduce the trained network's
/// `expected` logits (and gate scores) for the images `batch`: folding and tracing change no
/// answer.
fn check_reproduces(expected: &Tensor, batch: &Tensor, manifest: &Path) -> Result<()> {
    let classifier = Classifier::builder(manifest)
        .device(skinlesion_core::Device::Cpu)
        .build()?;
    let prepared: Vec<_> = (0..batch.size()[0])
        .map(|i| PreparedImage::from_tensor(batch.narrow(0, i, 1)))
        .collect();
    let exported = classifier.forward(&prepared)?;
    let classes = exported.logits.size()[1];
    let diff = (expected.narrow(1, 0, classes) - exported.logits)
        .abs()
        .max()
        .double_value(&[]);
    if diff > 1e-4 {
        bail!("the exported model's logits differ from the trained one's by {diff}");
    }
    if let Some(got) = exported.gate_scores {
        let want = expected.select(1, classes);
        // Distances run into the thousands: compare relative to their size.
        let diff = ((&want - &got).abs() / (want.abs() + 1.0))
            .max()
            .double_value(&[]);
        if diff > 1e-3 {
            bail!("the exported model's gate scores differ from the trained one's by {diff}");
        }
    }
    if let Some(got) = exported.class_maps {
        let width = expected.size()[1];
        let cells = got.numel() as i64 / batch.size()[0];
        let want = expected.narrow(1, width - cells, cells);
        let diff = (want - got.flatten(1, -1)).abs().max().double_value(&[]);
        if diff > 1e-4 {
            bail!("the exported model's class maps differ from the trained one's by {diff}");
        }
    }
    Ok(())
}
