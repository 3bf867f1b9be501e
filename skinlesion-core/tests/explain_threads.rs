//! An explanation run through `with_threads(1, …)` on a fresh thread starts no libtorch
//! threads, however many the classifier runs on: what a server's blocking pool needs (see
//! `threads.rs` for why a thread team there slows the whole process).
//! One test in its own binary: it counts the process's threads.

use skinlesion_core::testing::{ham10000_sample, shipped_model, threads_started_by};
use skinlesion_core::{with_threads, Classifier, Device, ErrorKind};

#[test]
fn an_explanation_on_one_thread_starts_no_libtorch_threads() {
    let classifier = Classifier::builder(shipped_model())
        .device(Device::Cpu)
        .threads(2)
        .build()
        .unwrap();
    let bytes = std::fs::read(&ham10000_sample("test", 1)[0].path).unwrap();
    let started = threads_started_by(|| {
        let explained = with_threads(1, || classifier.explain(&bytes[..], None));
        explained.unwrap().unwrap();
    });
    assert_eq!(started, 0, "the explanation started threads");
    let zero = with_threads(0, || ()).unwrap_err();
    assert_eq!(zero.kind(), ErrorKind::Config, "{zero}");
}
