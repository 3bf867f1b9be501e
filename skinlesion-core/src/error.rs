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
    InputTooLarge {
        /// The input's length.
        bytes: u64,
        /// The limit.
        max_bytes: u64,
    },

    /// The image declares more pixels than the configured limit; refused before decoding.
    #[error(
        "image too large: {width}x{height} is {} pixels, the limit is {max_pixels} pixels",
        (*width as u64) * (*height as u64)
    )]
    ImageTooLarge {
        /// The declared width in pixels.
        width: u32,
        /// The declared height in pixels.
        height: u32,
        /// The limit on width × height.
        max_pixels: u64,
    },

    /// Raw pixel input whose dimensions, stride or length do not agree.
    #[error("invalid pixel buffer: {0}")]
    InvalidPixels(String),

    /// A DICOM object that holds no image (a structured report, a presentation state, …).
    #[error("DICOM object without pixel data: a {sop_class} object holds no image")]
    NoPixelData {
        /// The object's SOP class, by its standard name where known.
        sop_class: String,
    },

    /// A DICOM object whose pixels are encoded in a way this build cannot decode.
    #[error("unsupported DICOM transfer syntax: {name} ({uid})")]
    UnsupportedTransferSyntax {
        /// The transfer syntax UID.
        uid: String,
        /// Its name.
        name: String,
    },

    /// A DICOM object that is not a colour photograph (an X-ray, CT or MR slice, a palette
    /// image): the model reads colour photographs only.
    #[error(
        "not a colour photograph: photometric interpretation {photometric} with \
         {samples_per_pixel} sample(s) per pixel; the model reads RGB or YCbCr photographs"
    )]
    NotColourPhotograph {
        /// The Photometric Interpretation (0028,0004), `none` when absent.
        photometric: String,
        /// Samples per Pixel (0028,0002).
        samples_per_pixel: u32,
    },

    /// A DICOM object whose samples are not 8 bits.
    #[error(
        "unsupported bit depth: {bits_allocated} bits allocated, {bits_stored} stored per \
         sample; the model reads 8-bit colour"
    )]
    UnsupportedBitDepth {
        /// Bits Allocated (0028,0100).
        bits_allocated: u32,
        /// Bits Stored (0028,0101).
        bits_stored: u32,
    },

    /// A DICOM object with several frames (a video, a series in one object): each answer is
    /// about one picture, so it is refused rather than reduced to one frame unasked.
    #[error("multi-frame DICOM object with {frames} frames: classify one frame at a time")]
    MultiFrame {
        /// Number of Frames (0028,0008).
        frames: u32,
    },

    /// No model file at the given path.
    #[error("model not found: {}", path.display())]
    ModelNotFound {
        /// The path as given.
        path: PathBuf,
    },

    /// The model or its metadata cannot be read or parsed.
    #[error("corrupt model {}: {reason}", path.display())]
    ModelCorrupt {
        /// The manifest or weights file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The weights file is not the one the metadata was written for.
    #[error(
        "checksum mismatch for {}: metadata says sha256 {expected}, file has {actual}",
        path.display()
    )]
    ChecksumMismatch {
        /// The weights file.
        path: PathBuf,
        /// The SHA-256 the manifest names.
        expected: String,
        /// The file's SHA-256.
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

    /// A class was asked for (e.g. to explain) that the model was not trained on.
    #[error(
        "class not in model: {} is not among the classes the model was trained on ({})",
        class.code(),
        codes(trained)
    )]
    ClassNotInModel {
        /// The class asked for.
        class: crate::LesionClass,
        /// The classes the model was trained on, in output order.
        trained: Vec<crate::LesionClass>,
    },

    /// Reading a file failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
}

/// ISIC codes, comma-separated.
fn codes(classes: &[crate::LesionClass]) -> String {
    let codes: Vec<_> = classes.iter().map(|c| c.code()).collect();
    codes.join(", ")
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
            Error::NoPixelData { .. } => ErrorKind::NoPixelData,
            Error::UnsupportedTransferSyntax { .. } => ErrorKind::UnsupportedTransferSyntax,
            Error::NotColourPhotograph { .. } => ErrorKind::NotColourPhotograph,
            Error::UnsupportedBitDepth { .. } => ErrorKind::UnsupportedBitDepth,
            Error::MultiFrame { .. } => ErrorKind::MultiFrame,
            Error::ModelNotFound { .. } => ErrorKind::ModelNotFound,
            Error::ModelCorrupt { .. } => ErrorKind::ModelCorrupt,
            Error::ChecksumMismatch { .. } => ErrorKind::ChecksumMismatch,
            Error::MetadataMismatch(_) => ErrorKind::MetadataMismatch,
            Error::Inference(_) => ErrorKind::Inference,
            Error::Config(_) => ErrorKind::Config,
            Error::Io { .. } => ErrorKind::Io,
            Error::NoClassMaps(_) => ErrorKind::NoClassMaps,
            Error::ClassNotInModel { .. } => ErrorKind::ClassNotInModel,
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
            Error::NoPixelData { sop_class } => Error::NoPixelData {
                sop_class: sop_class.clone(),
            },
            Error::UnsupportedTransferSyntax { uid, name } => Error::UnsupportedTransferSyntax {
                uid: uid.clone(),
                name: name.clone(),
            },
            Error::NotColourPhotograph {
                photometric,
                samples_per_pixel,
            } => Error::NotColourPhotograph {
                photometric: photometric.clone(),
                samples_per_pixel: *samples_per_pixel,
            },
            &Error::UnsupportedBitDepth {
                bits_allocated,
                bits_stored,
            } => Error::UnsupportedBitDepth {
                bits_allocated,
                bits_stored,
            },
            &Error::MultiFrame { frames } => Error::MultiFrame { frames },
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
            Error::ClassNotInModel { class, trained } => Error::ClassNotInModel {
                class: *class,
                trained: trained.clone(),
            },
            Error::Io { path, source } => Error::Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
        }
    }
}

/// Who has to act on a failure: the grouping every interface derives its classes from (Python's
/// exception bases, the HTTP status family).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorFamily {
    /// The input image is at fault (empty, unsupported, corrupt, too large, malformed pixels).
    Input,
    /// The request asks what the model cannot give (e.g. a class it was not trained on).
    Request,
    /// The model is missing, corrupt, inconsistent, or lacks what was asked of it.
    Model,
    /// The machine: inference, configuration, files.
    Machine,
}

/// Defines [`ErrorKind`] and its table from one list: each row is the kind, its stable code
/// (the C status), its stable name, family, short description, one-sentence explanation (the
/// C and Python documentation), its C status name and its Python exception class.
macro_rules! error_kinds {
    ($($kind:ident = $code:literal, $name:literal, $family:ident, $description:literal,
       $explanation:literal, c: $c:ident, python: $python:ident;)*) => {
        /// What kind of failure an [`Error`] is: the one table every interface is generated or
        /// mapped from (the C status enum, the Python exception classes and their stubs, the
        /// HTTP status), so a new kind is one row here plus its tests.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorKind {
            $(#[doc = $explanation] $kind,)*
        }

        impl ErrorKind {
            /// Every kind, in code order.
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$kind),*];

            const fn row(self) -> Row {
                match self {
                    $(ErrorKind::$kind => Row {
                        code: $code,
                        name: $name,
                        family: ErrorFamily::$family,
                        description: $description,
                        explanation: $explanation,
                        c_name: stringify!($c),
                        python: stringify!($python),
                    },)*
                }
            }
        }
    };
}

/// One row of the [`ErrorKind`] table.
struct Row {
    code: u32,
    name: &'static str,
    family: ErrorFamily,
    description: &'static str,
    explanation: &'static str,
    c_name: &'static str,
    python: &'static str,
}

// Codes 0-2 and 16 are the C API's own (success, a NULL or malformed argument, a caught panic).
error_kinds! {
    EmptyInput = 3, "empty_input", Input, "empty input",
        "The image has no bytes.",
        c: EmptyInput, python: EmptyInputError;
    UnsupportedFormat = 4, "unsupported_format", Input, "unsupported image format",
        "The bytes are not in a supported image format (JPEG, PNG, TIFF, BMP, WebP, GIF, DICOM).",
        c: UnsupportedFormat, python: UnsupportedFormatError;
    Decode = 5, "decode", Input, "undecodable image",
        "The image is corrupt or truncated.",
        c: DecodeError, python: DecodeError;
    InputTooLarge = 6, "input_too_large", Input, "input too large",
        "The encoded image is larger than the configured byte limit (max_bytes).",
        c: InputTooLarge, python: InputTooLargeError;
    ImageTooLarge = 7, "image_too_large", Input, "image too large",
        "The image has more pixels than the configured limit (max_pixels); refused before decoding.",
        c: ImageTooLarge, python: ImageTooLargeError;
    InvalidPixels = 8, "invalid_pixels", Input, "invalid pixel buffer",
        "Raw pixels whose width, height, stride, layout and buffer length disagree.",
        c: InvalidPixels, python: InvalidPixelsError;
    ModelNotFound = 9, "model_not_found", Model, "model not found",
        "No model at the given path.",
        c: ModelNotFound, python: ModelNotFoundError;
    ModelCorrupt = 10, "model_corrupt", Model, "corrupt model",
        "The model or its metadata cannot be read or parsed.",
        c: ModelCorrupt, python: ModelCorruptError;
    ChecksumMismatch = 11, "checksum_mismatch", Model, "model checksum mismatch",
        "The weights file does not match the checksum in the model's metadata.",
        c: ChecksumMismatch, python: ChecksumMismatchError;
    MetadataMismatch = 12, "metadata_mismatch", Model, "model metadata mismatch",
        "The model's metadata and its network disagree.",
        c: MetadataMismatch, python: MetadataMismatchError;
    Inference = 13, "inference", Machine, "inference failed",
        "The forward pass failed.",
        c: InferenceError, python: InferenceError;
    Config = 14, "config", Machine, "invalid configuration",
        "An option cannot be used here (e.g. an unknown device, or CUDA without a GPU).",
        c: ConfigError, python: ConfigError;
    Io = 15, "io", Machine, "I/O error",
        "A file could not be read.",
        c: IoError, python: ImageReadError;
    NoClassMaps = 17, "no_class_maps", Model, "model has no class maps",
        "The model was exported without class activation maps: it classifies but cannot explain.",
        c: NoClassMaps, python: NoClassMapsError;
    ClassNotInModel = 18, "class_not_in_model", Request, "class not in model",
        "A class was asked for that the model was not trained on.",
        c: ClassNotInModel, python: ClassNotInModelError;
    NoPixelData = 19, "no_pixel_data", Input, "DICOM object without pixel data",
        "The DICOM object holds no image (e.g. a structured report).",
        c: NoPixelData, python: NoPixelDataError;
    UnsupportedTransferSyntax = 20, "unsupported_transfer_syntax", Input,
        "unsupported DICOM transfer syntax",
        "The DICOM pixels are encoded in a transfer syntax this build cannot decode (e.g. JPEG-LS).",
        c: UnsupportedTransferSyntax, python: UnsupportedTransferSyntaxError;
    NotColourPhotograph = 21, "not_colour_photograph", Input, "not a colour photograph",
        "The DICOM image is not a colour photograph (monochrome or palette; e.g. an X-ray).",
        c: NotColourPhotograph, python: NotColourPhotographError;
    UnsupportedBitDepth = 22, "unsupported_bit_depth", Input, "unsupported bit depth",
        "The DICOM image's samples are not 8 bits.",
        c: UnsupportedBitDepth, python: UnsupportedBitDepthError;
    MultiFrame = 23, "multi_frame", Input, "multi-frame DICOM object",
        "The DICOM object holds several frames; one picture is classified at a time.",
        c: MultiFrame, python: MultiFrameError;
}

impl ErrorKind {
    /// A stable, machine-readable name, e.g. `"decode"`.
    pub const fn name(self) -> &'static str {
        self.row().name
    }

    /// A stable number, unique per kind (the C API's status code; 0–2 and 16 are the C API's
    /// own).
    pub const fn code(self) -> u32 {
        self.row().code
    }

    /// A short description, e.g. `"undecodable image"`.
    pub const fn description(self) -> &'static str {
        self.row().description
    }

    /// One sentence for documentation, e.g. `"The image is corrupt or truncated."`.
    pub const fn explanation(self) -> &'static str {
        self.row().explanation
    }

    /// Who has to act on it.
    pub const fn family(self) -> ErrorFamily {
        self.row().family
    }

    /// The C API's name of the status, e.g. `"DecodeError"` (`SKINLESION_STATUS_DECODE_ERROR`).
    pub const fn c_name(self) -> &'static str {
        self.row().c_name
    }

    /// The Python binding's exception class, e.g. `"DecodeError"`.
    pub const fn python_exception(self) -> &'static str {
        self.row().python
    }

    /// The kind with this [`ErrorKind::code`].
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.code() == code)
    }

    /// The kind with this [`ErrorKind::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.name() == name)
    }

    /// True when the input image (not the model or the machine) is at fault.
    pub const fn is_input_error(self) -> bool {
        matches!(self.family(), ErrorFamily::Input)
    }

    /// True when the model (missing, corrupt, inconsistent, or lacking what was asked of it)
    /// is at fault.
    pub const fn is_model_error(self) -> bool {
        matches!(self.family(), ErrorFamily::Model)
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
        for &kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_code(kind.code()), Some(kind));
            assert_eq!(ErrorKind::from_name(kind.name()), Some(kind));
            assert!(kind.explanation().ends_with('.'), "{kind}");
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
