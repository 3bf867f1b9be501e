//! Image decoding and preprocessing: the one path from an image to the network's input tensor,
//! shared by inference and training so the two cannot drift apart.
//!
//! [`decode`] turns untrusted bytes into an upright image within [`DecodeLimits`] (a large
//! JPEG at a reduced scale through [`jpeg_reduced`]); [`pixels`]
//! takes raw buffers from callers that decoded already; [`transform`] is the one resize
//! ([`resample`]'s arithmetic), colour-constancy and normalisation step; [`parallel`] prepares
//! a batch on scoped threads.

mod decode;
mod jpeg_reduced;
mod parallel;
mod pixels;
mod resample;
mod transform;

pub(crate) use decode::decode_with_header;
pub use decode::{decode_image, decode_image_covering, read_image_file, DecodeLimits};
pub use parallel::prepare_parallel;
pub use pixels::{PixelFormat, RawPixels};
pub use transform::{
    center_crop_box, channels_last, preprocess_image, ColourConstancy, InputSpec, ResizePolicy,
};
#[cfg(feature = "training")]
pub use {
    pixels::image_from_pixels,
    transform::{normalize, preprocess, resize_rgb},
};
