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
//! let classifier = Classifier::load("models/skinlesion-v4.3.json")?;
//! let prediction = classifier.classify_path("lesion.jpg")?;
//! println!("{}", serde_json::to_string_pretty(&prediction).unwrap());
//! # Ok::<(), skinlesion_core::Error>(())
//! ```
//!
//! The pieces: [`LesionClass`] (the taxonomy), [`Classifier`] (load a model, classify images,
//! bytes, files or batches), [`Prediction`] (the answer), [`preprocess`] (the one preprocessing
//! path, shared with training, and its parallel preparation), [`model`] (the model artifact, its
//! metadata and [`Calibration`], the one home of probabilities, decision and the Unknown rule),
//! [`error`] ([`Error`] and [`ErrorKind`], the table the C, Python and HTTP interfaces map
//! from), [`explain`] (where the model looked: [`Explanation`], [`Heatmap`]). With the `testing` feature, `testing` offers tiny models with known weights and the
//! workspace's data paths for tests built on this crate.

pub mod classifier;
pub mod error;
pub mod explain;
pub mod model;
pub mod prediction;
pub mod preprocess;
pub mod taxonomy;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use classifier::{
    available_cores, Classifier, ClassifierBuilder, Device, ImageInput, PreparedImage,
};
pub use error::{Error, ErrorFamily, ErrorKind, Result};
pub use explain::{ClassMap, Explanation, Heatmap};
pub use model::{Calibration, ClassMaps, DermoscopyGate, GateScore, ModelMetadata};
pub use prediction::{Prediction, UnknownReason};
pub use preprocess::{
    ColourConstancy, DecodeLimits, InputSpec, PixelFormat, RawPixels, ResizePolicy,
};
pub use taxonomy::{LesionClass, Malignancy};

/// The image crate this crate decodes with, re-exported for [`Classifier::classify`]'s argument.
pub use image;
/// The libtorch bindings this crate is built on, re-exported so that dependents (training,
/// tests) use the very same version.
pub use tch;

/// The statement every interface shows.
pub const DISCLAIMER: &str = "skinlesion is a research and education tool, not a medical device. \
It does not diagnose. Anyone worried about a skin lesion should see a dermatologist.";

/// The README's Rust examples, compiled as doctests so they cannot rot.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
