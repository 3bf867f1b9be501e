//! Makes binaries that link libtorch runnable without `LD_LIBRARY_PATH`, and makes the CUDA
//! backend really linked when the libtorch in use has one.
//!
//! Workspace crates that build binaries replay the same arguments through the shared build
//! script `scripts/libtorch-link-args.rs`.
use std::path::Path;

fn main() {
    // torch-sys (links = "tch") exports the directory it linked libtorch from.
    let Some(lib_dir) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") else {
        return; // doc-only builds of torch-sys export nothing
    };
    let lib_dir = Path::new(&lib_dir);
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    check_version(lib_dir);

    // Binaries run without LD_LIBRARY_PATH. Nothing we call references a libtorch_cuda symbol,
    // so the linker's default `--as-needed` would drop it and CUDA would silently be unusable:
    // link it explicitly. (rustc's `-as-needed` link modifier would propagate, but is unstable.)
    let mut args = vec![format!("-Wl,-rpath,{}", lib_dir.display())];
    if lib_dir.join("libtorch_cuda.so").exists() {
        args.push("-Wl,--no-as-needed,-ltorch_cuda,--as-needed".to_owned());
    }
    // Link arguments apply only to this package's own targets; dependents that build binaries
    // read them back as DEP_SKINLESION_LINK_ARGS (tab-separated) and replay them.
    for arg in &args {
        println!("cargo:rustc-link-arg={arg}");
    }
    println!("cargo:link_args={}", args.join("\t"));
    // The C library's pkg-config file names libtorch's directory for static linking.
    println!("cargo:libtorch_lib={}", lib_dir.display());
}

/// A pip-installed torch has no `build-version` file, so torch-sys cannot check the version
/// when `LIBTORCH` points into it; check `torch/version.py` here instead.
fn check_version(lib_dir: &Path) {
    let version_py = lib_dir.join("../version.py");
    println!("cargo:rerun-if-changed={}", version_py.display());
    let Ok(text) = std::fs::read_to_string(&version_py) else {
        return; // a plain libtorch distribution: torch-sys checked `build-version` itself
    };
    let found = text
        .lines()
        .find_map(|l| l.strip_prefix("__version__ = "))
        .map(|v| {
            v.trim_matches(['\'', '"'])
                .split('+')
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_default();
    let Some(expected) = pinned_torch_version() else {
        return; // built outside the workspace (e.g. from crates.io): torch-sys's own check applies
    };
    if found != expected && std::env::var_os("LIBTORCH_BYPASS_VERSION_CHECK").is_none() {
        panic!(
            "libtorch at {} is torch {found}, but the workspace pins torch {expected}; \
             run `bash scripts/setup.sh`",
            lib_dir.display()
        );
    }
}

/// `torch` from `[workspace.metadata.libtorch]` in the workspace manifest: the single pin.
fn pinned_torch_version() -> Option<String> {
    let manifest = Path::new(&std::env::var_os("CARGO_MANIFEST_DIR")?).join("../Cargo.toml");
    println!("cargo:rerun-if-changed={}", manifest.display());
    let text = std::fs::read_to_string(manifest).ok()?;
    let table = text.split("[workspace.metadata.libtorch]").nth(1)?;
    table
        .lines()
        .take_while(|l| !l.starts_with('['))
        .find_map(|l| l.trim().strip_prefix("torch")?.trim().strip_prefix('='))
        .map(|v| v.trim().trim_matches('"').to_owned())
}
