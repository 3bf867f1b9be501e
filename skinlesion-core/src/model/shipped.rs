//! The model this release ships and where applications look for it. Build scripts read
//! `SHIPPED_MODEL` from this file's text: keep its line as it is.

use std::path::{Path, PathBuf};

/// The manifest of the model this release ships, in the repository's `models/` folder: the
/// one place that names it.
pub const SHIPPED_MODEL: &str = "skinlesion-v5.json";

/// Where an application looks for [`SHIPPED_MODEL`] when the user names no model, in order:
/// `models/` in the working directory; then `models/` beside the running executable or in any
/// folder above it (a cargo build tree runs `target/release/NAME`); then
/// `share/skinlesion/models/` above it (an installed `PREFIX/bin/NAME`).
pub fn shipped_model_candidates() -> Vec<PathBuf> {
    let mut candidates = vec![Path::new("models").join(SHIPPED_MODEL)];
    let exe = std::env::current_exe().and_then(|p| p.canonicalize());
    if let Some(dir) = exe.as_deref().ok().and_then(Path::parent) {
        for above in dir.ancestors() {
            candidates.push(above.join("models").join(SHIPPED_MODEL));
            candidates.push(above.join("share/skinlesion/models").join(SHIPPED_MODEL));
        }
    }
    candidates
}

/// The first of [`shipped_model_candidates`] that exists.
pub fn find_shipped_model() -> Option<PathBuf> {
    shipped_model_candidates().into_iter().find(|p| p.is_file())
}
