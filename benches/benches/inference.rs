//! Inference speed of the shipped model on the CPU.
//!
//! `forward/batch1_1thread` is the target: one preprocessed 1×3×128×128 image through
//! the network on one thread, ≤ 5 ms.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use skinlesion_benches::{data_dir, shipped_model};
use skinlesion_core::{Classifier, Device};

fn forward(c: &mut Criterion) {
    let classifier = Classifier::builder(shipped_model())
        .device(Device::Cpu)
        .threads(1)
        .build()
        .expect("shipped model loads");
    let image = std::fs::read(data_dir().join("images/ISIC_0024306.jpg")).expect("real image");
    let prepared = classifier.prepare(&image).unwrap();
    let mut group = c.benchmark_group("forward");
    group.throughput(Throughput::Elements(1));
    group.bench_function("batch1_1thread", |b| {
        b.iter(|| classifier.logits(std::slice::from_ref(&prepared)).unwrap())
    });
    group.bench_function("classify_bytes_1thread", |b| {
        b.iter_batched(
            || image.clone(),
            |bytes| classifier.classify_bytes(&bytes).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
