//! Benchmarks of skinlesion live in `benches/`; this crate only hosts them.
//! Run them with `cargo bench -p skinlesion-benches`.

use std::path::PathBuf;

pub use skinlesion_core::testing::ham10000_dir as data_dir;

/// The model benchmarked: `$SKINLESION_BENCH_MODEL` (e.g. a candidate before it ships), else
/// the shipped model.
pub fn shipped_model() -> PathBuf {
    std::env::var_os("SKINLESION_BENCH_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(skinlesion_core::testing::shipped_model)
}
