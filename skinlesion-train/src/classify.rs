//! `classify`: files or folders of images → one CSV row or JSON line per image on stdout.

use std::borrow::Cow;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use skinlesion_core::image::DynamicImage;
use skinlesion_core::{Classifier, Error as CoreError, ImageInput, LesionClass, Prediction};

/// Output formats of `classify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

const IMAGE_EXTENSIONS: [&str; 11] = [
    "jpg", "jpeg", "png", "tif", "tiff", "bmp", "webp", "gif", "jfif", "dcm", "dicom",
];

/// The image files among `inputs`: files as given, folders searched recursively (sorted).
pub fn collect_images(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            walk(input, &mut out)?;
        } else if input.exists() {
            out.push(input.clone());
        } else {
            bail!("{}: no such file or folder", input.display());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, out)?;
        } else if is_image_file(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// An image by its extension, or a DICOM file by the `DICM` marker after its 128-byte preamble
/// whatever its name (PACS exports name files by instance UID: `1.2.826.0.1.3680043…`).
fn is_image_file(path: &Path) -> bool {
    let extension = path.extension().and_then(|e| e.to_str());
    if extension.is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())) {
        return true;
    }
    let mut head = [0u8; 132];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head));
    read.is_ok() && &head[128..] == b"DICM"
}

/// Classifies every image and writes the results; returns how many could not be classified
/// (each reported on stderr and as a row with an `error`). With `explain`, also writes each
/// image with the heatmap of its best guess laid over it, as a PNG in that folder (named
/// after the image; the `overlay` column or key says which).
pub fn classify(
    classifier: &Classifier,
    images: &[PathBuf],
    format: Format,
    batch_size: usize,
    explain: Option<&Path>,
    out: &mut impl Write,
) -> Result<usize> {
    let classes: Vec<LesionClass> = LesionClass::ALL
        .into_iter()
        .filter(|c| classifier.classes().contains(c))
        .collect();
    let mut overlays = match explain {
        Some(dir) => Some(Overlays::new(classifier, dir)?),
        None => None,
    };
    let mut sink = match format {
        Format::Csv => Sink::csv(out, &classes, overlays.is_some())?,
        Format::Jsonl => Sink::Jsonl(out),
    };
    let progress = crate::progress::bar(images.len() as u64, "classifying");
    if images.len() <= batch_size {
        progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut failures = 0;
    for chunk in images.chunks(batch_size.max(1)) {
        let results = match &mut overlays {
            Some(overlays) => overlays.explain(chunk)?,
            None => (classifier.classify_batch(chunk).into_iter())
                .map(|r| r.map(|p| (p, None)))
                .collect(),
        };
        for (path, result) in chunk.iter().zip(results) {
            let file = path.display().to_string();
            if let Err(e) = &result {
                failures += 1;
                eprintln!("{file}: {e}");
            }
            sink.write(&file, &result, &classes)?;
        }
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    sink.finish()?;
    Ok(failures)
}

/// A prediction, and where its overlay was written.
type Row = (Prediction, Option<PathBuf>);

/// `classify --explain`: explanations and their overlay files.
struct Overlays<'a> {
    classifier: &'a Classifier,
    dir: PathBuf,
    /// Names already written this run: a second `a.jpg` from another folder gets `a-2.png`.
    taken: HashSet<String>,
}

impl<'a> Overlays<'a> {
    fn new(classifier: &'a Classifier, dir: &Path) -> Result<Self> {
        // Fails now, before any work, on a model that cannot explain.
        if classifier.metadata().class_maps.is_none() {
            bail!(skinlesion_core::Error::NoClassMaps(format!(
                "{} cannot explain its answers (no class maps); drop --explain",
                classifier.manifest_path().display()
            )));
        }
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the --explain folder {}", dir.display()))?;
        Ok(Self {
            classifier,
            dir: dir.to_path_buf(),
            taken: HashSet::new(),
        })
    }

    /// Explains a chunk of files with one forward pass and writes their overlays.
    fn explain(&mut self, paths: &[PathBuf]) -> Result<Vec<Result<Row, CoreError>>> {
        let decoded: Vec<Result<DynamicImage, CoreError>> = paths
            .iter()
            .map(|p| {
                self.classifier
                    .decode(ImageInput::File(p))
                    .map(Cow::into_owned)
            })
            .collect();
        // A file that failed to decode stands in as an empty input; its own error is kept.
        let inputs: Vec<ImageInput<'_>> = (decoded.iter())
            .map(|d| {
                d.as_ref()
                    .map_or(ImageInput::Encoded(&[]), ImageInput::Decoded)
            })
            .collect();
        let explained = self.classifier.explain_batch(&inputs, None);
        let mut rows = Vec::with_capacity(paths.len());
        for ((path, image), explanation) in paths.iter().zip(decoded).zip(explained) {
            let row = match (image, explanation) {
                (Err(e), _) | (Ok(_), Err(e)) => Err(e),
                (Ok(image), Ok(explanation)) => {
                    let file = self.name(path);
                    explanation
                        .heatmap()
                        .overlay(&image)
                        .save(&file)
                        .with_context(|| format!("cannot write the overlay {}", file.display()))?;
                    Ok((explanation.prediction().clone(), Some(file)))
                }
            };
            rows.push(row);
        }
        Ok(rows)
    }

    /// `DIR/STEM.png`, with `-2`, `-3`… for stems already used in this run.
    fn name(&mut self, image: &Path) -> PathBuf {
        let stem = image
            .file_stem()
            .map_or("image".into(), |s| s.to_string_lossy());
        let mut name = format!("{stem}.png");
        let mut n = 1;
        while !self.taken.insert(name.clone()) {
            n += 1;
            name = format!("{stem}-{n}.png");
        }
        self.dir.join(name)
    }
}

/// Where the rows go: a CSV table (header, then one row per image, `error` empty on success)
/// or JSON lines (the prediction object plus `file` and `class`, or `file` and `error`).
enum Sink<'a, W: Write> {
    /// The writer and the header's width.
    Csv(Box<csv::Writer<&'a mut W>>, usize),
    Jsonl(&'a mut W),
}

impl<'a, W: Write> Sink<'a, W> {
    fn csv(out: &'a mut W, classes: &[LesionClass], overlays: bool) -> Result<Self> {
        let mut writer = csv::Writer::from_writer(out);
        let fixed = [
            "file",
            "class",
            "class_name",
            "is_cancerous",
            "confidence",
            "unknown_reason",
            "ood_score",
        ];
        let probabilities = classes.iter().map(|c| c.probability_column());
        let header: Vec<String> = fixed
            .into_iter()
            .map(str::to_owned)
            .chain(probabilities)
            .chain(["error".to_owned()])
            .chain(overlays.then(|| "overlay".to_owned()))
            .collect();
        writer.write_record(&header)?;
        Ok(Self::Csv(Box::new(writer), header.len()))
    }

    fn write(
        &mut self,
        file: &str,
        result: &Result<Row, CoreError>,
        classes: &[LesionClass],
    ) -> Result<()> {
        match (self, result) {
            (Self::Jsonl(out), Ok((p, overlay))) => {
                let mut value = serde_json::to_value(p)?;
                value["file"] = file.into();
                value["class"] = p.class().code().into();
                if let Some(overlay) = overlay {
                    value["overlay"] = overlay.display().to_string().into();
                }
                writeln!(out, "{value}")?;
            }
            (Self::Jsonl(out), Err(e)) => {
                let value = serde_json::json!({ "file": file, "error": e.to_string() });
                writeln!(out, "{value}")?;
            }
            (Self::Csv(writer, _), Ok((p, overlay))) => {
                let mut row = vec![
                    file.to_owned(),
                    p.class().code().to_owned(),
                    p.class().name().to_owned(),
                    p.is_cancerous().to_string(),
                    format!("{:.6}", p.confidence()),
                    p.unknown_reason().map_or("", |r| r.code()).to_owned(),
                    p.ood_score().map_or(String::new(), |v| format!("{v:.3}")),
                ];
                row.extend(
                    classes
                        .iter()
                        .map(|c| format!("{:.6}", p.probability(*c).unwrap_or(0.0))),
                );
                row.push(String::new());
                row.extend(overlay.as_ref().map(|o| o.display().to_string()));
                writer.write_record(&row)?;
            }
            (Self::Csv(writer, width), Err(e)) => {
                let mut row = vec![file.to_owned()];
                row.extend(std::iter::repeat_n(String::new(), 6 + classes.len()));
                row.push(e.to_string());
                // An error row of an --explain run has an empty overlay.
                row.resize(*width, String::new());
                writer.write_record(&row)?;
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        match self {
            Self::Csv(mut writer, _) => writer.flush()?,
            Self::Jsonl(out) => out.flush()?,
        }
        Ok(())
    }
}
