//! Benchmarks of skinlesion live in `benches/`; this crate only hosts them.
//! Run them with `cargo bench -p skinlesion-benches`.

pub use skinlesion_core::testing::{ham10000_dir as data_dir, shipped_model};
