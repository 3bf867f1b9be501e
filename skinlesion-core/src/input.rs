//! What `classify` and `explain` accept: one image in any form a caller may hold it.

use std::path::{Path, PathBuf};

use image::DynamicImage;

use crate::preprocess::RawPixels;

/// One image in any form a caller may hold it. [`crate::Classifier::classify`] and
/// [`crate::Classifier::explain`] take anything that converts into it: encoded bytes
/// (`&[u8]`, `&Vec<u8>`, `&[u8; N]`), a file (`&Path`, `&PathBuf`, `&str`, `&String`), a
/// decoded `&DynamicImage`, or [`RawPixels`].
#[derive(Debug, Clone, Copy)]
pub enum ImageInput<'a> {
    /// Encoded bytes: JPEG, PNG, TIFF, BMP, WebP or GIF.
    Encoded(&'a [u8]),
    /// Raw interleaved 8-bit pixels.
    Pixels(RawPixels<'a>),
    /// An already decoded image.
    Decoded(&'a DynamicImage),
    /// An image file to read.
    File(&'a Path),
}

impl<'a> From<&'a [u8]> for ImageInput<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        Self::Encoded(bytes)
    }
}

impl<'a, const N: usize> From<&'a [u8; N]> for ImageInput<'a> {
    fn from(bytes: &'a [u8; N]) -> Self {
        Self::Encoded(bytes)
    }
}

impl<'a> From<&'a Vec<u8>> for ImageInput<'a> {
    fn from(bytes: &'a Vec<u8>) -> Self {
        Self::Encoded(bytes)
    }
}

impl<'a> From<&'a Path> for ImageInput<'a> {
    fn from(path: &'a Path) -> Self {
        Self::File(path)
    }
}

impl<'a> From<&'a PathBuf> for ImageInput<'a> {
    fn from(path: &'a PathBuf) -> Self {
        Self::File(path)
    }
}

/// A string is a file path (`classifier.classify("lesion.jpg")`), never image bytes.
impl<'a> From<&'a str> for ImageInput<'a> {
    fn from(path: &'a str) -> Self {
        Self::File(Path::new(path))
    }
}

impl<'a> From<&'a String> for ImageInput<'a> {
    fn from(path: &'a String) -> Self {
        Self::File(Path::new(path))
    }
}

impl<'a> From<&'a DynamicImage> for ImageInput<'a> {
    fn from(image: &'a DynamicImage) -> Self {
        Self::Decoded(image)
    }
}

impl<'a> From<RawPixels<'a>> for ImageInput<'a> {
    fn from(pixels: RawPixels<'a>) -> Self {
        Self::Pixels(pixels)
    }
}

/// For batches held as a slice of inputs.
impl<'a> From<&ImageInput<'a>> for ImageInput<'a> {
    fn from(input: &ImageInput<'a>) -> Self {
        *input
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_form_converts_to_its_own_kind_of_input() {
        let bytes = vec![1u8, 2, 3];
        let image = DynamicImage::new_rgb8(2, 2);
        let path = PathBuf::from("lesion.jpg");
        let text = String::from("lesion.jpg");
        assert!(matches!(ImageInput::from(&bytes), ImageInput::Encoded(b) if b == [1, 2, 3]));
        assert!(matches!(
            ImageInput::from(&bytes[..]),
            ImageInput::Encoded(_)
        ));
        assert!(matches!(ImageInput::from(&[0u8; 4]), ImageInput::Encoded(b) if b.len() == 4));
        assert!(matches!(ImageInput::from(&image), ImageInput::Decoded(_)));
        for input in [
            ImageInput::from(&path),
            ImageInput::from(path.as_path()),
            ImageInput::from("lesion.jpg"),
            ImageInput::from(&text),
        ] {
            assert!(matches!(input, ImageInput::File(p) if p == Path::new("lesion.jpg")));
        }
    }
}
