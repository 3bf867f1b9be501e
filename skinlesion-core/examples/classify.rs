//! Classifies image files with a model and prints one JSON prediction per image.
//!
//! `cargo run --release -p skinlesion-core --example classify -- [--model PATH] IMAGE...`
//! (default: the shipped model, found as the server finds it).

use std::process::ExitCode;

use skinlesion_core::{Classifier, DISCLAIMER};

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let shipped = skinlesion_core::find_shipped_model();
    let mut model = shipped.map_or_else(String::new, |p| p.display().to_string());
    if let Some(i) = args.iter().position(|a| a == "--model") {
        if i + 1 >= args.len() {
            eprintln!("--model needs a path");
            return ExitCode::from(2);
        }
        model = args.remove(i + 1);
        args.remove(i);
    }
    if args.is_empty() {
        eprintln!("usage: classify [--model PATH] IMAGE...");
        return ExitCode::from(2);
    }
    let classifier = match Classifier::load(&model) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("{DISCLAIMER}");
    let mut failed = false;
    for path in &args {
        match classifier.classify(path) {
            Ok(p) => println!("{path}\t{}", serde_json::to_string(&p).expect("serializes")),
            Err(e) => {
                eprintln!("{path}: error: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
