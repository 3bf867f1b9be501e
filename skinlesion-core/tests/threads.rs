//! Preparing an image starts no libtorch threads. libgomp (libtorch's OpenMP) keeps a thread
//! team for every thread that has run a parallel region, and once the teams outnumber the
//! cores every multi-threaded pass in the process runs about 2× slower (benches/RESULTS.md):
//! a server prepares on many threads and runs its passes on others.
//! One test in its own binary: it counts the process's threads.

use std::sync::mpsc;

use skinlesion_core::testing::{ham10000_sample, shipped_model};
use skinlesion_core::{Classifier, Device};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn preparing_an_image_starts_no_libtorch_threads() {
    let classifier = Classifier::builder(shipped_model())
        .device(Device::Cpu)
        .threads(2)
        .build()
        .unwrap();
    let bytes = std::fs::read(&ham10000_sample("test", 1)[0].path).unwrap();
    let (prepared, counted) = mpsc::channel();
    let (checked, wait) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        // A fresh thread, as a server's blocking pool has: libtorch gives it the process's
        // thread count (2) for any parallel region it runs.
        let (classifier, bytes) = (&classifier, &bytes);
        s.spawn(move || {
            let before = threads();
            classifier.prepare(&bytes[..]).unwrap();
            prepared.send(before).unwrap();
            wait.recv().unwrap();
        });
        let before = counted.recv().unwrap();
        let after = threads();
        // Released before asserting: a failed assertion must not leave the thread waiting.
        checked.send(()).unwrap();
        assert_eq!(after, before, "preparing an image started threads");
    });
}
