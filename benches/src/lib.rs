//! Benchmarks of skinlesion live in `benches/`; this crate only hosts them.
//! Run them with `cargo bench -p skinlesion-benches`.

use std::path::PathBuf;

/// The shipped model's manifest.
pub fn shipped_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/skinlesion-v1.json")
}

/// `../shared/data/ham10000` beside the repository (override with `SKINLESION_DATA`).
pub fn data_dir() -> PathBuf {
    std::env::var_os("SKINLESION_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/ham10000")
        })
}
