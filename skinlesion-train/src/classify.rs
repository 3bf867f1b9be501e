//! `classify`: files or folders of images → one CSV row or JSON line per image on stdout.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use skinlesion_core::{Classifier, LesionClass};

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
    if format == Format::Csv {
        let mut header = String::from("file,class,class_name,is_cancerous,confidence");
        for c in &classes {
            header.push_str(&format!(",p_{}", c.code()));
        }
        writeln!(out, "{header},error")?;
    }
    let progress = crate::progress::bar(images.len() as u64, "classifying");
    if images.len() <= batch_size {
        progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut failures = 0;
    for chunk in images.chunks(batch_size.max(1)) {
        for (path, result) in chunk.iter().zip(classifier.classify_batch_paths(chunk)) {
            let file = path.display().to_string();
            match (&result, format) {
                (Ok(p), Format::Jsonl) => {
                    let mut value = serde_json::to_value(p)?;
                    value["file"] = file.into();
                    value["class"] = p.class().code().into();
                    writeln!(out, "{value}")?;
                }
                (Ok(p), Format::Csv) => {
                    let mut row = format!(
                        "{},{},{},{},{:.6}",
                        csv_field(&file),
                        p.class().code(),
                        csv_field(p.class().name()),
                        p.is_cancerous(),
                        p.confidence()
                    );
                    for c in &classes {
                        row.push_str(&format!(",{:.6}", p.probability(*c).unwrap_or(0.0)));
                    }
                    writeln!(out, "{row},")?;
                }
                (Err(e), _) => {
                    failures += 1;
                    eprintln!("{file}: {e}");
                    match format {
                        Format::Jsonl => writeln!(
                            out,
                            "{}",
                            serde_json::json!({ "file": file, "error": e.to_string() })
                        )?,
                        Format::Csv => writeln!(
                            out,
                            "{},,,,{},{}",
                            csv_field(&file),
                            ",".repeat(classes.len()),
                            csv_field(&e.to_string())
                        )?,
                    }
                }
            }
        }
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    Ok(failures)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}
