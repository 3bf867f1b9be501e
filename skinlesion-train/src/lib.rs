//! Training, calibration and evaluation of skinlesion models.
//!
//! Research and education only; not a medical device.

pub mod classify;
pub mod data;
pub mod evaluate;
pub mod metrics;
pub mod nets;
pub mod plots;
pub mod progress;
pub mod train;
