//! `classify`: files or folders of images → one CSV row or JSON line per image on stdout.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use skinlesion_core::{Classifier, LesionClass, Prediction};

/// Output formats of `classify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

const IMAGE_EXTENSIONS: [&str; 9] = [
    "jpg", "jpeg", "png", "tif", "tiff", "bmp", "webp", "gif", "jfif",
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
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Classifies every image and writes the results; returns how many could not be classified
/// (each reported on stderr and as a row with an `error`).
pub fn classify(
    classifier: &Classifier,
    images: &[PathBuf],
    format: Format,
    batch_size: usize,
    out: &mut impl Write,
) -> Result<usize> {
    let classes: Vec<LesionClass> = LesionClass::ALL
        .into_iter()
        .filter(|c| classifier.classes().contains(c))
        .collect();
    let mut sink = match format {
        Format::Csv => Sink::csv(out, &classes)?,
        Format::Jsonl => Sink::Jsonl(out),
    };
    let progress = crate::progress::bar(images.len() as u64, "classifying");
    if images.len() <= batch_size {
        progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut failures = 0;
    for chunk in images.chunks(batch_size.max(1)) {
        for (path, result) in chunk.iter().zip(classifier.classify_batch_paths(chunk)) {
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

/// Where the rows go: a CSV table (header, then one row per image, `error` empty on success)
/// or JSON lines (the prediction object plus `file` and `class`, or `file` and `error`).
enum Sink<'a, W: Write> {
    Csv(Box<csv::Writer<&'a mut W>>),
    Jsonl(&'a mut W),
}

impl<'a, W: Write> Sink<'a, W> {
    fn csv(out: &'a mut W, classes: &[LesionClass]) -> Result<Self> {
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
        let probabilities = classes.iter().map(|c| format!("p_{}", c.code()));
        let header: Vec<String> = fixed
            .into_iter()
            .map(str::to_owned)
            .chain(probabilities)
            .chain(["error".to_owned()])
            .collect();
        writer.write_record(&header)?;
        Ok(Self::Csv(Box::new(writer)))
    }

    fn write(
        &mut self,
        file: &str,
        result: &Result<Prediction, skinlesion_core::Error>,
        classes: &[LesionClass],
    ) -> Result<()> {
        match (self, result) {
            (Self::Jsonl(out), Ok(p)) => {
                let mut value = serde_json::to_value(p)?;
                value["file"] = file.into();
                value["class"] = p.class().code().into();
                writeln!(out, "{value}")?;
            }
            (Self::Jsonl(out), Err(e)) => {
                let value = serde_json::json!({ "file": file, "error": e.to_string() });
                writeln!(out, "{value}")?;
            }
            (Self::Csv(writer), Ok(p)) => {
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
                writer.write_record(&row)?;
            }
            (Self::Csv(writer), Err(e)) => {
                let mut row = vec![file.to_owned()];
                row.extend(std::iter::repeat_n(String::new(), 6 + classes.len()));
                row.push(e.to_string());
                writer.write_record(&row)?;
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        match self {
            Self::Csv(mut writer) => writer.flush()?,
            Self::Jsonl(out) => out.flush()?,
        }
        Ok(())
    }
}
