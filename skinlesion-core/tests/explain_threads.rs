//! An explanation run through `with_threads(1, …)` on a fresh thread starts no libtorch
//! threads, however many the classifier runs on: what a server's blocking pool needs (see
//! `threads.rs` for why a thread team there slows the whole process).
//! One test in its own binary: it counts the process's threads.

use std::sync::mpsc;

use skinlesion_core::testing::{ham10000_sample, shipped_model};
use skinlesion_core::{with_threads, Classifier, Device};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn an_explanation_on_one_thread_starts_no_libtorch_threads() {
    let classifier = Classifier::builder(shipped_model())
        .device(Device::Cpu)
        .threads(2)
        .build()
        .unwrap();
    let bytes = std::fs::read(&ham10000_sample("test", 1)[0].path).unwrap();
    let (explained, counted) = mpsc::channel();
    let (checked, wait) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let (classifier, bytes) = (&classifier, &bytes);
        s.spawn(move || {
            let before = threads();
            let explanation = with_threads(1, || classifier.explain(&bytes[..], None));
            explanation.unwrap().unwrap();
            explained.send(before).unwrap();
            wait.recv().unwrap();
        });
        let before = counted.recv().unwrap();
        let after = threads();
        // Released before asserting: a failed assertion must not leave the thread waiting.
        checked.send(()).unwrap();
        assert_eq!(after, before, "the explanation started threads");
    });
    let zero = with_threads(0, || ()).unwrap_err();
    assert_eq!(zero.kind(), skinlesion_core::ErrorKind::Config, "{zero}");
}
