//! Training, calibration and evaluation of skinlesion models.
//!
//! [`train`] is the training run (settings, checkpoints, optimiser, weight average,
//! augmentation, calibration and export, each its own module, driven by
//! [`train::Trainer`]); [`nets`] the architectures, each owning its input spec; [`data`] label
//! files and decoding (with the library's preprocessing and parallel preparation); [`metrics`],
//! [`evaluate`] and [`plots`] the scoring; [`classify`] batch classification to CSV or JSON
//! lines; [`refit_decision`] the two-step decision refitted on a model's validation sets. Probabilities and decisions always come from the library's
//! [`skinlesion_core::Calibration`], so what is fitted is what is served.
//!
//! Research and education only; not a medical device.

pub mod add_precision;
pub mod classify;
pub mod data;
pub mod evaluate;
pub mod metrics;
pub mod nets;
pub mod plots;
pub mod progress;
pub mod refit_decision;
pub mod train;

/// libtorch's random generator is one for the process, and unit tests run on several threads:
/// a test that seeds it and checks what it draws, or that draws at all (building a network
/// initialises weights), takes its turn here, or another test's draws land in between.
#[cfg(test)]
pub(crate) fn generator_turn() -> std::sync::MutexGuard<'static, ()> {
    static GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());
    GENERATOR.lock().unwrap_or_else(|e| e.into_inner())
}
