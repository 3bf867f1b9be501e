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

    /// An explanation was asked of a model exported without class activation maps (it
    /// classifies, but cannot say where it looked).
    #[error("this model has no class maps: {0}")]
    NoClassMaps(String),

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
        self.kind().is_input_error()
    }

    /// The error's kind: its stable name, code and description, for bindings and logs.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::EmptyInput => ErrorKind::EmptyInput,
            Error::UnsupportedFormat(_) => ErrorKind::UnsupportedFormat,
            Error::Decode(_) => ErrorKind::Decode,
            Error::InputTooLarge { .. } => ErrorKind::InputTooLarge,
            Error::ImageTooLarge { .. } => ErrorKind::ImageTooLarge,
            Error::InvalidPixels(_) => ErrorKind::InvalidPixels,
            Error::ModelNotFound { .. } => ErrorKind::ModelNotFound,
            Error::ModelCorrupt { .. } => ErrorKind::ModelCorrupt,
            Error::ChecksumMismatch { .. } => ErrorKind::ChecksumMismatch,
            Error::MetadataMismatch(_) => ErrorKind::MetadataMismatch,
            Error::Inference(_) => ErrorKind::Inference,
            Error::Config(_) => ErrorKind::Config,
            Error::Io { .. } => ErrorKind::Io,
            Error::NoClassMaps(_) => ErrorKind::NoClassMaps,
        }
    }
}

/// An error may have to reach several callers (every request of a failed batch), but
/// `std::io::Error` is not `Clone`: the copy keeps its kind and message.
impl Clone for Error {
    fn clone(&self) -> Self {
        match self {
            Error::EmptyInput => Error::EmptyInput,
            Error::UnsupportedFormat(m) => Error::UnsupportedFormat(m.clone()),
            Error::Decode(m) => Error::Decode(m.clone()),
            &Error::InputTooLarge { bytes, max_bytes } => Error::InputTooLarge { bytes, max_bytes },
            &Error::ImageTooLarge {
                width,
                height,
                max_pixels,
            } => Error::ImageTooLarge {
                width,
                height,
                max_pixels,
            },
            Error::InvalidPixels(m) => Error::InvalidPixels(m.clone()),
            Error::ModelNotFound { path } => Error::ModelNotFound { path: path.clone() },
            Error::ModelCorrupt { path, reason } => Error::ModelCorrupt {
                path: path.clone(),
                reason: reason.clone(),
            },
            Error::ChecksumMismatch {
                path,
                expected,
                actual,
            } => Error::ChecksumMismatch {
                path: path.clone(),
                expected: expected.clone(),
                actual: actual.clone(),
            },
            Error::MetadataMismatch(m) => Error::MetadataMismatch(m.clone()),
            Error::Inference(m) => Error::Inference(m.clone()),
            Error::Config(m) => Error::Config(m.clone()),
            Error::NoClassMaps(m) => Error::NoClassMaps(m.clone()),
            Error::Io { path, source } => Error::Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
        }
    }
}

/// What kind of failure an [`Error`] is: the one table every interface maps from (the C status
/// codes, the Python exception classes, the HTTP status), so a new kind is added here once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    EmptyInput,
    UnsupportedFormat,
    Decode,
    InputTooLarge,
    ImageTooLarge,
    InvalidPixels,
    ModelNotFound,
    ModelCorrupt,
    ChecksumMismatch,
    MetadataMismatch,
    Inference,
    Config,
    Io,
    NoClassMaps,
}

impl ErrorKind {
    /// Every kind, in code order.
    pub const ALL: [ErrorKind; 14] = [
        ErrorKind::EmptyInput,
        ErrorKind::UnsupportedFormat,
        ErrorKind::Decode,
        ErrorKind::InputTooLarge,
        ErrorKind::ImageTooLarge,
        ErrorKind::InvalidPixels,
        ErrorKind::ModelNotFound,
        ErrorKind::ModelCorrupt,
        ErrorKind::ChecksumMismatch,
        ErrorKind::MetadataMismatch,
        ErrorKind::Inference,
        ErrorKind::Config,
        ErrorKind::Io,
        ErrorKind::NoClassMaps,
    ];

    /// `(name, code, description)`: one row of the table.
    const fn row(self) -> (&'static str, u32, &'static str) {
        match self {
            ErrorKind::EmptyInput => ("empty_input", 3, "empty input"),
            ErrorKind::UnsupportedFormat => ("unsupported_format", 4, "unsupported image format"),
            ErrorKind::Decode => ("decode", 5, "undecodable image"),
            ErrorKind::InputTooLarge => ("input_too_large", 6, "input too large"),
            ErrorKind::ImageTooLarge => ("image_too_large", 7, "image too large"),
            ErrorKind::InvalidPixels => ("invalid_pixels", 8, "invalid pixel buffer"),
            ErrorKind::ModelNotFound => ("model_not_found", 9, "model not found"),
            ErrorKind::ModelCorrupt => ("model_corrupt", 10, "corrupt model"),
            ErrorKind::ChecksumMismatch => ("checksum_mismatch", 11, "model checksum mismatch"),
            ErrorKind::MetadataMismatch => ("metadata_mismatch", 12, "model metadata mismatch"),
            ErrorKind::Inference => ("inference", 13, "inference failed"),
            ErrorKind::Config => ("config", 14, "invalid configuration"),
            ErrorKind::Io => ("io", 15, "I/O error"),
            // 16 is the C API's own (a caught panic).
            ErrorKind::NoClassMaps => ("no_class_maps", 17, "model has no class maps"),
        }
    }

    /// A stable, machine-readable name, e.g. `"decode"`.
    pub const fn name(self) -> &'static str {
        self.row().0
    }

    /// A stable number, unique per kind (the C API's status code; 0–2 and 16 are the C API's
    /// own).
    pub const fn code(self) -> u32 {
        self.row().1
    }

    /// A short description, e.g. `"undecodable image"`.
    pub const fn description(self) -> &'static str {
        self.row().2
    }

    /// The kind with this [`ErrorKind::code`].
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }

    /// True when the input image (not the model or the machine) is at fault.
    pub const fn is_input_error(self) -> bool {
        matches!(
            self,
            ErrorKind::EmptyInput
                | ErrorKind::UnsupportedFormat
                | ErrorKind::Decode
                | ErrorKind::InputTooLarge
                | ErrorKind::ImageTooLarge
                | ErrorKind::InvalidPixels
        )
    }

    /// True when the model (missing, corrupt, inconsistent, or lacking what was asked of it)
    /// is at fault.
    pub const fn is_model_error(self) -> bool {
        matches!(
            self,
            ErrorKind::ModelNotFound
                | ErrorKind::ModelCorrupt
                | ErrorKind::ChecksumMismatch
                | ErrorKind::MetadataMismatch
                | ErrorKind::NoClassMaps
        )
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_unique_name_and_code() {
        let mut names: Vec<_> = ErrorKind::ALL.iter().map(|k| k.name()).collect();
        let mut codes: Vec<_> = ErrorKind::ALL.iter().map(|k| k.code()).collect();
        names.sort();
        names.dedup();
        codes.sort();
        codes.dedup();
        assert_eq!(names.len(), ErrorKind::ALL.len());
        assert_eq!(codes.len(), ErrorKind::ALL.len());
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_code(kind.code()), Some(kind));
            assert!(!(kind.is_input_error() && kind.is_model_error()), "{kind}");
        }
        assert_eq!(ErrorKind::from_code(0), None);
    }

    #[test]
    fn a_cloned_error_keeps_its_kind_and_message() {
        let io = Error::Io {
            path: "x.jpg".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        };
        let errors = [io, Error::Decode("bad huffman".into()), Error::EmptyInput];
        for e in errors {
            let copy = e.clone();
            assert_eq!(copy.kind(), e.kind());
            assert_eq!(copy.to_string(), e.to_string());
        }
    }
}
