//! Writing a model artifact: how training produces models.

use std::path::Path;

use tch::CModule;

use super::torchscript::first_line;
use super::{sha256_hex, ModelMetadata, WeightsFormat, WeightsRef, MANIFEST_FORMAT};
use crate::error::{Error, Result};

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
    // Networks in other precisions were derived from the weights this replaces.
    metadata.other_precisions.clear();
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
