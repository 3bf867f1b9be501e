//! DICOM files → parse, header checks, pixel decoding (JPEG, RLE, JPEG lossless, JPEG 2000,
//! uncompressed, YCbCr) → classify. The input is what follows the `DICM` marker (the target
//! adds the preamble and marker), so every execution reaches the DICOM reader. Every input must
//! give a prediction or a typed error, never a panic or a hang.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use skinlesion_core::Classifier;

fuzz_target!(|data: &[u8]| {
    static CLASSIFIER: OnceLock<Classifier> = OnceLock::new();
    let classifier = CLASSIFIER.get_or_init(skinlesion_fuzz::classifier);
    let mut file = vec![0u8; 128];
    file.extend_from_slice(b"DICM");
    file.extend_from_slice(data);
    if let Ok(prediction) = classifier.classify(&file) {
        skinlesion_fuzz::check(&prediction);
    }
});
