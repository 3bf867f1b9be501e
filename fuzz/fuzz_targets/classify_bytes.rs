//! Encoded bytes → decode (any format, EXIF, limits) → preprocess → forward → calibration.
//! Every input must give a prediction or a typed error, never a panic or a hang.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use skinlesion_core::Classifier;

fuzz_target!(|data: &[u8]| {
    static CLASSIFIER: OnceLock<Classifier> = OnceLock::new();
    let classifier = CLASSIFIER.get_or_init(skinlesion_fuzz::classifier);
    if let Ok(prediction) = classifier.classify(data) {
        skinlesion_fuzz::check(&prediction);
    }
});
