//! # skinlesion-core
//!
//! Classifies dermoscopic images of skin lesions into the ISIC 2019 categories (melanoma, basal
//! cell carcinoma, squamous cell carcinoma, actinic keratosis, benign keratosis, dermatofibroma,
//! melanocytic nevi, vascular lesion), abstaining as "Unknown" when the calibrated confidence is
//! too low.
//!
//! **Research and education only. This is not a medical device and must not be used for
//! diagnosis; a lesion that worries you needs a dermatologist.**
//!
//! ```no_run
//! use skinlesion_core::Classifier;
//!
//! let classifier = Classifier::load("models/skinlesion-v5.json")?;
//! let prediction = classifier.classify("lesion.jpg")?;
//! println!("{}", serde_json::to_string_pretty(&prediction).unwrap());
//! # Ok::<(), skinlesion_core::Error>(())
//! ```
//!
//! The pieces: [`LesionClass`] (the taxonomy), [`Classifier`] (load a model; classify and
//! explain any [`ImageInput`]: bytes, a file, a decoded image or raw pixels, one or a batch),
//! [`Prediction`] (the answer, with [`UnknownReason`] when it abstains), [`Explanation`] (where
//! the model looked), [`ModelMetadata`] and [`Calibration`] (the model artifact's manifest and
//! the one rule from logits to an answer), [`Error`] and [`ErrorKind`] (the table the C,
//! Python and HTTP interfaces are generated or mapped from).
//!
//! Features: `training` opens what training and evaluation need beyond this (tensors in and
//! out, the preprocessing steps one by one, writing artifacts; it moves with `tch`, so it is
//! not part of the stable API); `testing` offers tiny models with known weights and the
//! workspace's data paths for tests built on this crate.

#![deny(missing_docs)]

mod classifier;
mod dicom;
mod error;
mod explain;
mod input;
mod model;
mod precision;
mod prediction;
mod preprocess;
mod taxonomy;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(feature = "training")]
pub mod training;

pub use classifier::{
    available_cores, with_threads, Classifier, ClassifierBuilder, Device, PreparedImage,
};
pub use dicom::DicomInfo;
pub use error::{Error, ErrorFamily, ErrorKind, Result};
pub use explain::{ClassMap, Explanation, Heatmap};
pub use input::ImageInput;
pub use model::{
    find_shipped_model, shipped_model_candidates, Agreement, Calibration, ClassMaps, DecisionRule,
    DermoscopyGate, GateScore, Margins, ModelMetadata, PrecisionWeights, Recheck, WeightsFormat,
    WeightsRef, SHIPPED_MODEL,
};
pub use precision::{
    cpu_has_bf16, cpu_runs_bf16_convolutions, Precision, AUTO_BALANCED_ACCURACY_DIFFERENCE,
    AUTO_SAME_ANSWER, AUTO_SAME_GATE,
};
pub use prediction::{Prediction, UnknownReason};
pub use preprocess::{
    ColourConstancy, DecodeLimits, InputSpec, PixelFormat, RawPixels, ResizePolicy,
};
pub use taxonomy::{LesionClass, Malignancy};

/// The image crate this crate decodes with, re-exported for [`ImageInput::Decoded`].
pub use image;

/// The statement every interface shows.
pub const DISCLAIMER: &str = "skinlesion is a research and education tool, not a medical device. \
It does not diagnose. Anyone worried about a skin lesion should see a dermatologist.";

/// The README's Rust examples, compiled as doctests so they cannot rot.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
