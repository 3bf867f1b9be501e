//! The network: a TorchScript module, its output columns, and writing an artifact.

use std::io::Cursor;
use std::path::Path;

use sha2::{Digest, Sha256};
use tch::{CModule, Kind, Tensor};

use crate::error::{Error, Result};
use crate::preprocess::channels_last;

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
    /// C: the logits come first.
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
pub(super) fn first_line(e: &tch::TchError) -> String {
    let text = e.to_string();
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("unknown libtorch error")
        .trim()
        .to_owned()
}
