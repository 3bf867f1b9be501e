//! Links the extension module for a wheel: libtorch comes from the installed `torch` package,
//! found by an rpath relative to the module (`site-packages/skinlesion/` →
//! `site-packages/torch/lib`), never from this checkout. Also copies the shipped model into the
//! package so `skinlesion.Classifier()` works out of the box.
use std::path::Path;

fn main() {
    // The core's arguments minus its absolute rpath into this checkout's venv.
    let args = std::env::var("DEP_SKINLESION_LINK_ARGS").unwrap_or_default();
    for arg in args
        .split('\t')
        .filter(|a| !a.is_empty() && !a.starts_with("-Wl,-rpath,"))
    {
        println!("cargo:rustc-link-arg-cdylib={arg}");
    }
    println!("cargo:rustc-link-arg-cdylib=-Wl,-rpath,$ORIGIN/../torch/lib");

    let Some(manifest_dir) = std::env::var_os("CARGO_MANIFEST_DIR") else {
        return;
    };
    let manifest_dir = Path::new(&manifest_dir);
    let models = manifest_dir.join("../models");
    let packaged = manifest_dir.join("python/skinlesion/models");
    std::fs::create_dir_all(&packaged).expect("create the package's models folder");
    // The core names the shipped model (one place); its weights sit beside it, same stem.
    let core_model = manifest_dir.join("../skinlesion-core/src/model/shipped.rs");
    println!("cargo:rerun-if-changed={}", core_model.display());
    let source = std::fs::read_to_string(&core_model).expect("read the core's model/shipped.rs");
    let manifest = source
        .lines()
        .find_map(|l| l.strip_prefix("pub const SHIPPED_MODEL: &str = \""))
        .and_then(|rest| rest.strip_suffix("\";"))
        .expect("SHIPPED_MODEL in skinlesion-core/src/model/shipped.rs");
    // Its networks: `STEM.pt` (fp32) and `STEM.<precision>.pt` (e.g. bf16), as the manifest
    // names them.
    let stem = manifest.strip_suffix(".json").unwrap_or(manifest);
    let is_network = |name: &str| {
        name.strip_prefix(stem)
            .is_some_and(|rest| rest == ".pt" || (rest.starts_with('.') && rest.ends_with(".pt")))
    };
    let mut files = vec![manifest.to_owned()];
    for entry in std::fs::read_dir(&models).expect("read models/").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_network(&name) {
            files.push(name);
        }
    }
    println!("cargo:rerun-if-changed={}", models.display());
    // Models of earlier releases are not shipped again.
    for stale in std::fs::read_dir(&packaged).into_iter().flatten().flatten() {
        let name = stale.file_name().to_string_lossy().into_owned();
        if !files.contains(&name) && name != ".gitignore" {
            let _ = std::fs::remove_file(stale.path());
        }
    }
    for file in &files {
        let from = models.join(file);
        println!("cargo:rerun-if-changed={}", from.display());
        let to = packaged.join(file);
        let same = std::fs::read(&from).ok() == std::fs::read(&to).ok();
        if !same {
            std::fs::copy(&from, &to).expect("copy the shipped model into the package");
        }
    }
}
