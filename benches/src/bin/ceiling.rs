//! The in-process ceiling for the server load benchmark: what the library does with no HTTP in
//! the way, on the same machine, model and images.
//!
//!   ceiling [SECONDS] [BATCH]
//!
//! Prints one JSON object: `images_per_s` (decode + preprocess on every core, then one batched
//! forward, repeated for SECONDS) and `single_ms_p50`/`single_ms_p99` (one `classify_bytes` at a
//! time, the latency a lone request could at best see).
use std::time::{Duration, Instant};

use skinlesion_benches::shipped_model;
use skinlesion_core::testing::ham10000_sample;
use skinlesion_core::{available_cores, Classifier, Device};

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args.next().map_or(10.0, |s| s.parse().expect("SECONDS"));
    let batch: usize = args.next().map_or(32, |s| s.parse().expect("BATCH"));
    let images: Vec<Vec<u8>> = ham10000_sample("test", 64)
        .iter()
        .map(|i| std::fs::read(&i.path).expect("a real image"))
        .collect();
    let classifier = Classifier::builder(shipped_model())
        .device(Device::Cpu)
        .threads(available_cores())
        .build()
        .expect("the shipped model loads");

    // Throughput: batches of real images, decoded in parallel, one forward pass each.
    let until = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut done = 0usize;
    while start.elapsed() < until {
        let first = done % images.len();
        let chunk: Vec<&Vec<u8>> = (0..batch)
            .map(|i| &images[(first + i) % images.len()])
            .collect();
        let results = classifier.classify_batch_bytes(&chunk);
        assert!(results.iter().all(Result::is_ok));
        done += chunk.len();
    }
    let images_per_s = done as f64 / start.elapsed().as_secs_f64();

    // Latency: one image at a time.
    let mut latencies = Vec::new();
    let start = Instant::now();
    while start.elapsed() < until / 2 || latencies.len() < 100 {
        let bytes = &images[latencies.len() % images.len()];
        let t = Instant::now();
        classifier.classify_bytes(bytes).expect("classifies");
        latencies.push(t.elapsed().as_secs_f64() * 1e3);
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    println!(
        "{{\"images_per_s\": {images_per_s:.1}, \"batch\": {batch}, \"threads\": {}, \
         \"single_ms_p50\": {:.3}, \"single_ms_p99\": {:.3}, \"single_samples\": {}}}",
        available_cores(),
        pct(0.5),
        pct(0.99),
        latencies.len()
    );
}
