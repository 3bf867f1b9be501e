//! Benchmarks of skinlesion live in `benches/`; this crate only hosts them.
//! Run them with `cargo bench -p skinlesion-benches`.

use std::path::PathBuf;

/// The shipped model's manifest.
pub fn shipped_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/skinlesion-v2.json")
}

pub use skinlesion_core::testing::ham10000_dir as data_dir;
