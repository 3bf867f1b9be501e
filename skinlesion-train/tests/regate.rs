//! `regate` on the shipped model: its network with the features exposed
//! (`scripts/expose_features.py`, run with the project venv's Python), a small real fitting
//! set, and the artifact it writes: the same logits and class maps, a head gate, and an
//! Unknown threshold that answers the stated share of validation.

use std::path::{Path, PathBuf};
use std::process::Command;

use skinlesion_core::testing::{ham10000_dir, ham10000_images, shipped_model};
use skinlesion_core::{Classifier, Device, GateScore, Precision, UnknownReason};
use skinlesion_train::train::regate::{regate, RegateConfig};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// 12 HAM10000 `train` images and 12 not-dermoscopy `train` images, by absolute path.
fn fitting_set(dir: &Path) -> PathBuf {
    let mut csv = String::from("file,dermoscopy,label,source,variant\n");
    for image in ham10000_images()
        .iter()
        .filter(|i| i.split == "train")
        .step_by(97)
        .take(12)
    {
        let path = image.path.canonicalize().unwrap();
        csv += &format!(
            "{},1,{},ham10000,original\n",
            path.display(),
            image.class.code()
        );
    }
    let negatives = ham10000_dir().join("../not-dermoscopy");
    let labels = std::fs::read_to_string(negatives.join("labels.csv")).unwrap();
    for line in labels
        .lines()
        .skip(1)
        .filter(|l| l.contains(",train,"))
        .step_by(20)
        .take(12)
    {
        let file = line.split(',').next().unwrap();
        let path = negatives.join("images").join(file).canonicalize().unwrap();
        csv += &format!("{},0,,natural,original\n", path.display());
    }
    let path = dir.join("gate.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

/// HAM10000's labels with every 5th `val` row (204; the refit and the checks classify each
/// three times) and a few `train` rows (read, not used: the gate's set is its own).
fn val_subset(dir: &Path) -> PathBuf {
    let labels = std::fs::read_to_string(ham10000_dir().join("labels.csv")).unwrap();
    let mut lines = labels.lines();
    let mut csv = format!("{}\n", lines.next().unwrap());
    let rows: Vec<&str> = lines.collect();
    let train = rows.iter().filter(|l| l.contains(",train,")).take(8);
    let val = rows.iter().filter(|l| l.contains(",val,")).step_by(5);
    for line in train.chain(val) {
        csv += line;
        csv.push('\n');
    }
    let path = dir.join("labels.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

#[test]
fn regate_keeps_the_network_and_refits_the_gate_and_unknown_rule() {
    let dir = tempfile::tempdir().unwrap();
    let network = dir.path().join("features.pt");
    let status = Command::new(repo().join(".venv/bin/python"))
        .arg(repo().join("scripts/expose_features.py"))
        .arg(shipped_model())
        .arg(&network)
        .status()
        .unwrap();
    assert!(status.success());
    let output = dir.path().join("regated.json");
    let data = ham10000_dir();
    let labels = val_subset(dir.path());
    let metadata = regate(&RegateConfig {
        model: shipped_model(),
        network,
        gate_set: fitting_set(dir.path()),
        output: output.clone(),
        model_version: "9.9.9".into(),
        labels: Some(labels.clone()),
        images: Some(data.join("images")),
    })
    .unwrap();
    let gate = metadata.calibration.dermoscopy_gate.clone().unwrap();
    assert_eq!(
        (gate.score, gate.threshold),
        (GateScore::DermoscopyHead, 0.0)
    );
    assert!(metadata.provenance["network_from"]
        .as_str()
        .unwrap()
        .contains("same network"));

    // fp32 both: `auto` may run the shipped model's bf16 network, which regate does not carry.
    let cpu = |path: &Path| {
        Classifier::builder(path)
            .device(Device::Cpu)
            .precision(Precision::Fp32)
            .build()
            .unwrap()
    };
    let (shipped, regated) = (cpu(&shipped_model()), cpu(&output));
    assert_eq!(
        shipped.metadata().calibration.temperature,
        metadata.calibration.temperature
    );
    let val: Vec<PathBuf> = std::fs::read_to_string(&labels)
        .unwrap()
        .lines()
        .filter(|l| l.contains(",val,"))
        .map(|l| {
            data.join("images")
                .join(format!("{}.jpg", l.split(',').next().unwrap()))
        })
        .collect();
    assert_eq!(val.len(), 204);
    let (mut accepted, mut answered) = (0, 0);
    for chunk in val.chunks(64) {
        let a = shipped.classify_batch(chunk);
        let b = regated.classify_batch(chunk);
        for (a, b) in a.into_iter().zip(b) {
            let (a, b) = (a.unwrap(), b.unwrap());
            // The same network and calibration: the same best guess and probabilities.
            assert_eq!(a.best_guess(), b.best_guess());
            assert!((a.confidence() - b.confidence()).abs() < 1e-4);
            if b.unknown_reason() != Some(UnknownReason::NotDermoscopy) {
                accepted += 1;
                answered += usize::from(!b.is_unknown());
            }
        }
    }
    // The stated coverage (95 %) of what this small gate accepts.
    let coverage = answered as f64 / accepted as f64;
    assert!((0.95..0.96).contains(&coverage), "{answered} of {accepted}");
}
