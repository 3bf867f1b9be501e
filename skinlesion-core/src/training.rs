//! What training and evaluation need beyond the public API (feature `training`): the
//! preprocessing steps one by one, tensors in and out of a [`Classifier`], and writing model
//! artifacts. It exposes `tch` types, so it moves with the `tch` version and is not part of
//! the stable API.

use tch::Tensor;

use crate::classifier::{Classifier, Device, PreparedImage};
use crate::error::Result;
use crate::prediction::Prediction;

pub use crate::dicom::decode_first_frame as decode_dicom_first_frame;
pub use crate::explain::png;
pub use crate::model::{
    read_metadata, sha256_hex, write_artifact, AgreementTally, ModelPaths, OutputLayout, Outputs,
    MANIFEST_FORMAT, MANIFEST_FORMAT_1,
};
pub use crate::preprocess::{
    center_crop_box, channels_last, decode_image, decode_image_covering, image_from_pixels,
    normalize, prepare_parallel, preprocess, preprocess_image, read_image_file, resize_rgb,
};

/// The libtorch device `device` runs on (`Auto` resolved as loading a classifier does).
pub fn resolve_device(device: Device) -> Result<tch::Device> {
    device.resolve()
}

impl PreparedImage {
    /// Wraps a 1×3×H×W `f32` tensor that [`preprocess_image`] produced; for callers that
    /// preprocess themselves.
    pub fn from_tensor(tensor: Tensor) -> Self {
        Self {
            tensor,
            dicom: None,
        }
    }

    /// The 1×3×H×W input tensor.
    pub fn tensor(&self) -> &Tensor {
        &self.tensor
    }
}

impl Classifier {
    /// Everything one forward pass gives: the raw logits and, from a network that returns
    /// them, the gate scores and class maps.
    pub fn forward(&self, images: &[PreparedImage]) -> Result<Outputs> {
        self.run(images)
    }

    /// The raw, uncalibrated N×C logits of one forward pass (for evaluation and calibration).
    pub fn logits(&self, images: &[PreparedImage]) -> Result<Tensor> {
        Ok(self.run(images)?.logits)
    }

    /// Calibrated predictions from raw N×C logits of this model (a model whose gate needs the
    /// network's own scores refuses every image this way: use
    /// [`Classifier::predictions_from_outputs`]).
    pub fn predictions_from_logits(&self, logits: &Tensor) -> Result<Vec<Prediction>> {
        self.predictions(&Outputs {
            logits: logits.shallow_clone(),
            gate_scores: None,
            class_maps: None,
        })
    }

    /// Calibrated, gated predictions from one forward pass of this model.
    pub fn predictions_from_outputs(&self, outputs: &Outputs) -> Result<Vec<Prediction>> {
        self.predictions(outputs)
    }

    /// One forward pass's outputs image by image: each row of logits, with the gate score
    /// when the network returns one (what [`crate::Calibration::margins`] reads).
    pub fn rows_from_outputs(&self, outputs: &Outputs) -> Result<Vec<(Vec<f32>, Option<f32>)>> {
        self.rows(outputs)
    }
}
