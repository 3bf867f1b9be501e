//! The one error type of the library.

use std::path::PathBuf;

/// Everything that can go wrong, one variant per cause a caller may want to tell apart.
///
/// Input problems ([`Error::is_input_error`]) are the caller's to fix (an HTTP server answers them
/// with 4xx); the rest concern the model, the device or the machine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The image data is zero bytes long.
    #[error("empty input: the image has no bytes")]
    EmptyInput,

    /// The bytes are not in an image format this library decodes.
    #[error("unsupported image format: {0}")]
    UnsupportedFormat(String),

    /// The bytes look like a supported format but cannot be decoded (corrupt or truncated).
    #[error("undecodable image: {0}")]
    Decode(String),

    /// The encoded input is longer than the configured limit.
    #[error("input too large: {bytes} bytes, the limit is {max_bytes} bytes")]
    InputTooLarge { bytes: u64, max_bytes: u64 },

    /// The image declares more pixels than the configured limit; refused before decoding.
    #[error(
        "image too large: {width}x{height} is {} pixels, the limit is {max_pixels} pixels",
        (*width as u64) * (*height as u64)
    )]
    ImageTooLarge {
        width: u32,
        height: u32,
        max_pixels: u64,
    },

    /// Raw pixel input whose dimensions, stride or length do not agree.
    #[error("invalid pixel buffer: {0}")]
    InvalidPixels(String),

    /// No model file at the given path.
    #[error("model not found: {}", path.display())]
    ModelNotFound { path: PathBuf },

    /// The model or its metadata cannot be read or parsed.
    #[error("corrupt model {}: {reason}", path.display())]
    ModelCorrupt { path: PathBuf, reason: String },

    /// The weights file is not the one the metadata was written for.
    #[error(
        "checksum mismatch for {}: metadata says sha256 {expected}, file has {actual}",
        path.display()
    )]
    ChecksumMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },

    /// The metadata and the network disagree (e.g. output width vs. class count), or the metadata
    /// is inconsistent in itself.
    #[error("model metadata mismatch: {0}")]
    MetadataMismatch(String),

    /// The forward pass failed.
    #[error("inference failed: {0}")]
    Inference(String),

    /// A requested device or option cannot be used here (e.g. CUDA on a machine without it).
    #[error("invalid configuration: {0}")]
    Config(String),

    /// Reading a file failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// True when the input image (not the model or the machine) is at fault.
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            Error::EmptyInput
                | Error::UnsupportedFormat(_)
                | Error::Decode(_)
                | Error::InputTooLarge { .. }
                | Error::ImageTooLarge { .. }
                | Error::InvalidPixels(_)
        )
    }

    /// A stable, machine-readable name for the variant (for bindings and logs).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::EmptyInput => "empty_input",
            Error::UnsupportedFormat(_) => "unsupported_format",
            Error::Decode(_) => "decode",
            Error::InputTooLarge { .. } => "input_too_large",
            Error::ImageTooLarge { .. } => "image_too_large",
            Error::InvalidPixels(_) => "invalid_pixels",
            Error::ModelNotFound { .. } => "model_not_found",
            Error::ModelCorrupt { .. } => "model_corrupt",
            Error::ChecksumMismatch { .. } => "checksum_mismatch",
            Error::MetadataMismatch(_) => "metadata_mismatch",
            Error::Inference(_) => "inference",
            Error::Config(_) => "config",
            Error::Io { .. } => "io",
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
