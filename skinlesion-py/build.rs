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
    for file in ["skinlesion-v3.json", "skinlesion-v3.pt"] {
        let from = models.join(file);
        println!("cargo:rerun-if-changed={}", from.display());
        let to = packaged.join(file);
        let same = std::fs::read(&from).ok() == std::fs::read(&to).ok();
        if !same {
            std::fs::copy(&from, &to).expect("copy the shipped model into the package");
        }
    }
}
