//! The in-process ceiling for the server load benchmark: what the library does with no HTTP in
//! the way, on the same machine, model and images.
//!
//!   ceiling [SECONDS] [BATCH] [WORKERS] [PRECISION]
//!
//! Prints one JSON object: `images_per_s` (WORKERS threads at once, each decoding and
//! preprocessing BATCH images and running one forward pass on them, repeated for SECONDS; one
//! worker gets every core for libtorch and for decoding, several get one thread each) and
//! `single_ms_p50`/`single_ms_p99` (one `classify` of bytes at a time with the same settings, the
//! latency a lone request could at best see). PRECISION is `fp32` (default) or `bf16`.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use skinlesion_benches::shipped_model;
use skinlesion_core::testing::ham10000_sample;
use skinlesion_core::{available_cores, Classifier, Device, Precision};

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args.next().map_or(10.0, |s| s.parse().expect("SECONDS"));
    let batch: usize = args.next().map_or(32, |s| s.parse().expect("BATCH"));
    let workers: usize = args.next().map_or(1, |s| s.parse().expect("WORKERS"));
    let precision: Precision = args
        .next()
        .map_or(Precision::Fp32, |s| s.parse().expect("PRECISION"));
    let images: Vec<Vec<u8>> = ham10000_sample("test", 64)
        .iter()
        .map(|i| std::fs::read(&i.path).expect("a real image"))
        .collect();
    let threads = if workers > 1 { 1 } else { available_cores() };
    let classifier = Classifier::builder(shipped_model())
        .device(Device::Cpu)
        .threads(threads)
        .precision(precision)
        .build()
        .expect("the shipped model loads");

    let until = Duration::from_secs_f64(seconds);
    let images_per_s = throughput(&classifier, &images, batch, workers, until);
    let latencies = single_latencies(&classifier, &images, until / 2);
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    println!(
        "{{\"images_per_s\": {images_per_s:.1}, \"batch\": {batch}, \"workers\": {workers}, \
         \"threads\": {threads}, \"precision\": \"{precision}\", \"single_ms_p50\": {:.3}, \"single_ms_p99\": {:.3}, \
         \"single_samples\": {}}}",
        pct(0.5),
        pct(0.99),
        latencies.len()
    );
}

/// Images per second of `workers` threads classifying batches of real images for `until`.
fn throughput(
    classifier: &Classifier,
    images: &[Vec<u8>],
    batch: usize,
    workers: usize,
    until: Duration,
) -> f64 {
    let done = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for worker in 0..workers {
            let done = &done;
            scope.spawn(move || {
                let mut next = worker * batch;
                while start.elapsed() < until {
                    let chunk: Vec<&Vec<u8>> = (0..batch)
                        .map(|i| &images[(next + i) % images.len()])
                        .collect();
                    let results = classifier.classify_batch(chunk.iter().copied());
                    assert!(results.iter().all(Result::is_ok));
                    done.fetch_add(chunk.len(), Ordering::Relaxed);
                    next += batch * workers;
                }
            });
        }
    });
    done.into_inner() as f64 / start.elapsed().as_secs_f64()
}

/// Sorted milliseconds of one image at a time, for at least `until` and 100 images.
fn single_latencies(classifier: &Classifier, images: &[Vec<u8>], until: Duration) -> Vec<f64> {
    let mut latencies = Vec::new();
    let start = Instant::now();
    while start.elapsed() < until || latencies.len() < 100 {
        let bytes = &images[latencies.len() % images.len()];
        let t = Instant::now();
        classifier.classify(bytes).expect("classifies");
        latencies.push(t.elapsed().as_secs_f64() * 1e3);
    }
    latencies.sort_by(f64::total_cmp);
    latencies
}
