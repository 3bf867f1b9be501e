//! Preparing an image starts no libtorch threads. libgomp (libtorch's OpenMP) keeps a thread
//! team for every thread that has run a parallel region, and once the teams outnumber the
//! cores every multi-threaded pass in the process runs about 2× slower (benches/RESULTS.md):
//! a server prepares on many threads and runs its passes on others.
//! One test in its own binary: it counts the process's threads.

use skinlesion_core::testing::{ham10000_sample, shipped_model, threads_started_by};
use skinlesion_core::{Classifier, Device};

#[test]
fn preparing_an_image_starts_no_libtorch_threads() {
    let classifier = Classifier::builder(shipped_model())
        .device(Device::Cpu)
        .threads(2)
        .build()
        .unwrap();
    let bytes = std::fs::read(&ham10000_sample("test", 1)[0].path).unwrap();
    // A fresh thread, as a server's blocking pool has: libtorch gives it the process's thread
    // count (2) for any parallel region it runs.
    let started = threads_started_by(|| drop(classifier.prepare(&bytes[..]).unwrap()));
    assert_eq!(started, 0, "preparing an image started threads");
}
