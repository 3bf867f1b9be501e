//! Explanations: where the model looked.
//!
//! A model exported with [`ClassMaps`] returns, from the forward pass that classifies, one class
//! activation map per class at the resolution of its last feature maps (6×6 for the shipped
//! model). [`Explanation`] holds the prediction, the raw map of one class (exact: its mean plus
//! the head's bias is that class's logit) and a [`Heatmap`] of it in the original image's pixels
//! (the resize policy undone), with a colour rendering and an overlay for people.

use image::{DynamicImage, Rgb, RgbImage, Rgba, RgbaImage};

use crate::classifier::Classifier;
use crate::dicom::DicomInfo;
use crate::error::{Error, Result};
use crate::input::ImageInput;
use crate::model::ClassMaps;
use crate::prediction::Prediction;
use crate::preprocess::{center_crop_box, InputSpec, ResizePolicy};
use crate::taxonomy::LesionClass;

/// A prediction with the evidence for one class.
#[derive(Debug, Clone)]
pub struct Explanation {
    prediction: Prediction,
    class: LesionClass,
    class_map: ClassMap,
    heatmap: Heatmap,
}

impl Explanation {
    pub(crate) fn new(
        prediction: Prediction,
        class: LesionClass,
        class_map: ClassMap,
        heatmap: Heatmap,
    ) -> Self {
        Self {
            prediction,
            class,
            class_map,
            heatmap,
        }
    }

    /// The prediction, exactly as `classify` gives it.
    pub fn prediction(&self) -> &Prediction {
        &self.prediction
    }

    /// The class explained: the one asked for, else the prediction's best guess (its most
    /// probable class, also when the answer is Unknown).
    pub fn class(&self) -> LesionClass {
        self.class
    }

    /// The class's raw map at the network's resolution, in logit units.
    pub fn class_map(&self) -> &ClassMap {
        &self.class_map
    }

    /// The map in the original image's pixels, in [0, 1].
    pub fn heatmap(&self) -> &Heatmap {
        &self.heatmap
    }
}

/// One class's activation map at the network's resolution: the evidence each region of the
/// (resized) input adds to the class's logit. Its mean plus `bias` is the logit.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassMap {
    width: u32,
    height: u32,
    values: Vec<f32>,
    bias: f32,
}

impl ClassMap {
    pub(crate) fn new(maps: &ClassMaps, class_index: usize, values: Vec<f32>) -> Self {
        debug_assert_eq!(values.len(), maps.cells());
        Self {
            width: maps.width,
            height: maps.height,
            values,
            bias: maps.bias[class_index],
        }
    }

    /// Width in cells.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in cells.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Row-major values, `height` rows of `width`.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The head's bias for this class.
    pub fn bias(&self) -> f32 {
        self.bias
    }

    /// The mean plus the bias: the class's (uncalibrated) logit.
    pub fn logit(&self) -> f32 {
        let sum: f64 = self.values.iter().map(|&v| f64::from(v)).sum();
        (sum / self.values.len() as f64) as f32 + self.bias
    }

    /// The heatmap over an image of `width`×`height` pixels that was resized by `input`:
    /// positive evidence only (a region arguing against the class is cold, not hot), scaled
    /// so the hottest cell is 1, bilinearly interpolated between cell centres; outside a
    /// centre crop, 0.
    pub fn heatmap(&self, input: &InputSpec, width: u32, height: u32) -> Heatmap {
        let top = self.values.iter().copied().fold(0.0f32, f32::max);
        let scale = if top > 0.0 { 1.0 / top } else { 0.0 };
        let heat: Vec<f32> = self.values.iter().map(|&v| v.max(0.0) * scale).collect();
        let (x0, y0, cw, ch) = match input.resize {
            ResizePolicy::Stretch => (0, 0, width, height),
            ResizePolicy::CenterCrop => center_crop_box(width, height, input.width, input.height),
        };
        let mut values = vec![0.0; width as usize * height as usize];
        let xs = axis(self.width, cw);
        let ys = axis(self.height, ch);
        for (dy, &(r0, r1, fy)) in ys.iter().enumerate() {
            let row = &mut values[(y0 as usize + dy) * width as usize..][..width as usize];
            for (dx, &(c0, c1, fx)) in xs.iter().enumerate() {
                let at = |r: usize, c: usize| heat[r * self.width as usize + c];
                let top = at(r0, c0) * (1.0 - fx) + at(r0, c1) * fx;
                let bottom = at(r1, c0) * (1.0 - fx) + at(r1, c1) * fx;
                row[x0 as usize + dx] = top * (1.0 - fy) + bottom * fy;
            }
        }
        Heatmap {
            width,
            height,
            values,
        }
    }
}

/// For each of `pixels` output positions along an axis of `cells` map cells: the two cells to
/// interpolate between and the weight of the second (half-pixel centres, clamped at the edges,
/// as `align_corners = false`).
fn axis(cells: u32, pixels: u32) -> Vec<(usize, usize, f32)> {
    let last = cells as usize - 1;
    (0..pixels)
        .map(|p| {
            let at = ((p as f64 + 0.5) * cells as f64 / pixels as f64 - 0.5).max(0.0);
            let first = (at.floor() as usize).min(last);
            ((first), (first + 1).min(last), (at - first as f64) as f32)
        })
        .collect()
}

/// Where a class map is hot, in an image's own pixels: `width`×`height` values in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Heatmap {
    width: u32,
    height: u32,
    values: Vec<f32>,
}

impl Heatmap {
    /// Width in pixels (the image's own).
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels (the image's own).
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Row-major values, `height` rows of `width`.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The value at pixel (x, y).
    pub fn get(&self, x: u32, y: u32) -> f32 {
        self.values[y as usize * self.width as usize + x as usize]
    }

    /// The map in colour (cold blue → hot red, the "jet" scale dermatology papers use), with
    /// alpha growing with the heat so that it can be laid over the image as it is.
    pub fn to_rgba(&self) -> RgbaImage {
        RgbaImage::from_fn(self.width, self.height, |x, y| {
            let heat = self.get(x, y);
            let [r, g, b] = jet(heat);
            Rgba([r, g, b, (heat * 200.0).round() as u8])
        })
    }

    /// [`Heatmap::to_rgba`] encoded as PNG, e.g. for a web page to lay over the image.
    pub fn to_png(&self) -> Vec<u8> {
        png(&self.to_rgba())
    }

    /// [`Heatmap::overlay`] encoded as PNG.
    pub fn overlay_png(&self, image: &DynamicImage) -> Vec<u8> {
        png(&self.overlay(image))
    }

    /// `image` with the coloured map blended over it (half and half where the map is hottest).
    /// `image` must be the one explained (same size), else the map is stretched over it.
    pub fn overlay(&self, image: &DynamicImage) -> RgbImage {
        let base = image.to_rgb8();
        let (w, h) = base.dimensions();
        RgbImage::from_fn(w, h, |x, y| {
            let hx = (u64::from(x) * u64::from(self.width) / u64::from(w)) as u32;
            let hy = (u64::from(y) * u64::from(self.height) / u64::from(h)) as u32;
            let heat = self.get(hx, hy);
            let colour = jet(heat);
            let alpha = 0.5 * heat;
            let Rgb(pixel) = *base.get_pixel(x, y);
            Rgb(std::array::from_fn(|c| {
                (f32::from(pixel[c]) * (1.0 - alpha) + f32::from(colour[c]) * alpha).round() as u8
            }))
        })
    }
}

/// An image encoded as PNG, in memory.
pub fn png<P>(image: &image::ImageBuffer<P, Vec<u8>>) -> Vec<u8>
where
    P: image::Pixel<Subpixel = u8> + image::PixelWithColorType,
{
    let mut out = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("PNG encoding into memory cannot fail");
    out
}

/// The jet colour scale at `t` in [0, 1].
fn jet(t: f32) -> [u8; 3] {
    let t = t.clamp(0.0, 1.0);
    let channel = |centre: f32| ((1.5 - (4.0 * t - centre).abs()).clamp(0.0, 1.0) * 255.0) as u8;
    [channel(3.0), channel(2.0), channel(1.0)]
}

impl Classifier {
    /// Classifies one image (any [`ImageInput`] form, as [`Classifier::classify`] takes)
    /// and explains one class: `class`, else the best guess.
    pub fn explain<'a>(
        &self,
        input: impl Into<ImageInput<'a>>,
        class: Option<LesionClass>,
    ) -> Result<Explanation> {
        let mut out = self.explain_batch([input.into()], class);
        out.pop()
            .unwrap_or_else(|| Err(Error::Inference("no explanation for the image".into())))
    }

    /// Explains many images with one forward pass over those that can be read and decoded;
    /// each input gets its own result, in order. An unusable `class` or a model without maps
    /// fails every input alike.
    pub fn explain_batch<'a, I: Into<ImageInput<'a>>>(
        &self,
        inputs: impl IntoIterator<Item = I>,
        class: Option<LesionClass>,
    ) -> Vec<Result<Explanation>> {
        let inputs: Vec<ImageInput<'a>> = inputs.into_iter().map(Into::into).collect();
        let checked = self.class_maps().and_then(|maps| {
            let index = class.map(|c| self.class_index(c)).transpose()?;
            Ok((maps, index))
        });
        let (maps, index) = match checked {
            Ok(ok) => ok,
            Err(e) => return inputs.iter().map(|_| Err(e.clone())).collect(),
        };
        let decoded: Vec<Result<(DynamicImage, Option<DicomInfo>)>> = inputs
            .iter()
            .map(|&i| {
                let (image, dicom) = self.decode_covering(i, None)?;
                Ok((image.into_owned(), dicom))
            })
            .collect();
        let good: Vec<&DynamicImage> = decoded.iter().flatten().map(|(image, _)| image).collect();
        let mut explained = match self.explain_decoded(&good, maps, index) {
            Ok(e) => e.into_iter(),
            Err(e) => return decoded.into_iter().map(|d| d.and(Err(e.clone()))).collect(),
        };
        decoded
            .into_iter()
            .map(|d| {
                let (_, dicom) = d?;
                let mut explanation = explained.next().ok_or_else(|| {
                    Error::Inference("the forward pass explained fewer images".into())
                })?;
                explanation.prediction.dicom = dicom.map(Box::new);
                Ok(explanation)
            })
            .collect()
    }

    /// The manifest's class maps, or why this model cannot explain.
    fn class_maps(&self) -> Result<&ClassMaps> {
        self.metadata().class_maps.as_ref().ok_or_else(|| {
            Error::NoClassMaps(format!(
                "{} {} was exported without them; re-export it with this version of \
                 skinlesion-train to explain its answers",
                self.metadata().name,
                self.metadata().version
            ))
        })
    }

    /// The output index of a class the caller names: one the model was trained on.
    fn class_index(&self, class: LesionClass) -> Result<usize> {
        self.classes()
            .iter()
            .position(|&c| c == class)
            .ok_or_else(|| Error::ClassNotInModel {
                class,
                trained: self.classes().to_vec(),
            })
    }

    fn explain_decoded(
        &self,
        images: &[&DynamicImage],
        maps: &ClassMaps,
        class: Option<usize>,
    ) -> Result<Vec<Explanation>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let prepared = self.prepare_batch(images.iter().copied());
        let prepared = prepared.into_iter().collect::<Result<Vec<_>>>()?;
        let (outputs, predictions) = self.answer(&prepared)?;
        let all_maps = outputs
            .class_maps
            .as_ref()
            .ok_or_else(|| Error::Inference("the network returned no class maps".into()))?;
        let spec = &self.metadata().input;
        images
            .iter()
            .zip(predictions)
            .enumerate()
            .map(|(i, (image, prediction))| {
                let index = match class {
                    Some(index) => index,
                    None => self.class_index(prediction.best_guess())?,
                };
                let values =
                    Vec::<f32>::try_from(all_maps.get(i as i64).get(index as i64).flatten(0, -1))
                        .map_err(|e| Error::Inference(e.to_string()))?;
                let class_map = ClassMap::new(maps, index, values);
                let heatmap = class_map.heatmap(spec, image.width(), image.height());
                Ok(Explanation::new(
                    prediction,
                    self.classes()[index],
                    class_map,
                    heatmap,
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::ColourConstancy;

    fn spec(resize: ResizePolicy) -> InputSpec {
        InputSpec {
            width: 4,
            height: 4,
            resize,
            mean: [0.5; 3],
            std: [0.5; 3],
            colour_constancy: ColourConstancy::None,
        }
    }

    fn map(values: Vec<f32>, side: u32) -> ClassMap {
        ClassMap {
            width: side,
            height: side,
            values,
            bias: 0.5,
        }
    }

    #[test]
    fn the_logit_is_the_mean_plus_the_bias() {
        assert_eq!(map(vec![1.0, 2.0, 3.0, -2.0], 2).logit(), 1.5);
    }

    #[test]
    fn the_heatmap_keeps_positive_evidence_scaled_to_one() {
        let heat = map(vec![-4.0, 2.0, 0.0, 1.0], 2).heatmap(&spec(ResizePolicy::Stretch), 2, 2);
        assert_eq!(heat.values(), &[0.0, 1.0, 0.0, 0.5]);
        let cold = map(vec![-1.0; 4], 2).heatmap(&spec(ResizePolicy::Stretch), 3, 3);
        assert!(cold.values().iter().all(|&v| v == 0.0));
    }

    #[test]
    fn a_stretched_map_interpolates_between_cell_centres() {
        // One hot cell of four, over an 8×4 image: its quadrant is hot, the far one cold.
        let heat = map(vec![1.0, 0.0, 0.0, 0.0], 2).heatmap(&spec(ResizePolicy::Stretch), 8, 4);
        assert_eq!((heat.width(), heat.height()), (8, 4));
        assert_eq!(heat.get(0, 0), 1.0);
        assert_eq!(heat.get(7, 3), 0.0);
        assert!(heat.get(3, 1) > heat.get(4, 1));
        assert!(heat.values().iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn a_centre_crop_leaves_the_cut_margins_cold() {
        // A 12×4 image cropped to its centre 4×4 (the model's square input).
        let heat = map(vec![1.0; 4], 2).heatmap(&spec(ResizePolicy::CenterCrop), 12, 4);
        for y in 0..4 {
            assert_eq!(heat.get(0, y), 0.0);
            assert_eq!(heat.get(3, y), 0.0);
            assert_eq!(heat.get(4, y), 1.0);
            assert_eq!(heat.get(7, y), 1.0);
            assert_eq!(heat.get(8, y), 0.0);
        }
    }

    #[test]
    fn the_overlay_colours_only_where_the_map_is_hot() {
        let heat = map(vec![1.0, 0.0, 0.0, 0.0], 2).heatmap(&spec(ResizePolicy::Stretch), 8, 8);
        let grey = DynamicImage::ImageRgb8(RgbImage::from_pixel(8, 8, Rgb([128; 3])));
        let overlay = heat.overlay(&grey);
        assert_eq!(overlay.get_pixel(7, 7), &Rgb([128; 3]));
        assert_ne!(overlay.get_pixel(0, 0), &Rgb([128; 3]));
        assert_eq!(heat.to_rgba().get_pixel(7, 7)[3], 0);
        assert_eq!(heat.to_rgba().get_pixel(0, 0)[3], 200);
    }
}
