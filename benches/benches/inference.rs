//! Speed of the library on the CPU with the shipped model (or `$SKINLESION_BENCH_MODEL`) and
//! real HAM10000 images.
//!
//! - `preprocess/*`: decode + resize + normalise one image on one thread, for a real 200×150
//!   JPEG and a 3000×2000 JPEG (a real image upscaled, as a phone or dermatoscope camera gives).
//! - `forward/batch{1,8,32}_1thread`: the network alone (images/s via throughput);
//!   `batch1_1thread` is the model card's target (≤ 5 ms).
//! - `overhead/*`: `Classifier::classify` of encoded bytes end to end against the same steps done by hand
//!   with `image` and `tch` (decode, resize, normalise, forward, softmax): the library's
//!   overhead is the ratio of the two.
//! - `batch_threads/*`: `classify_batch` of 32 encoded images with 1 thread and with every core.
//! - `large_jpeg/*`: `classify` of a real image enlarged to 1920×1440 and 4032×3024 JPEGs (a
//!   phone dermatoscope's sizes), decoded at a reduced DCT scale as the library does, against
//!   the same image decoded in full first (what it did before): the ratio is the gain.
//! - `precision/*`: `classify` of one real 200×150 image's bytes, and the forward pass alone,
//!   on one thread with the model's fp32 and bf16 networks (the bf16 one where the model has
//!   one); the ratio is what bf16 gains on this CPU (native only with AVX512-BF16).
//! - `precision_mix/*`: `classify` of 48 real images' bytes one by one (32 HAM10000 `val`, 16
//!   second-source `val`), one thread, in fp32, bf16 and bf16-checked: bf16-checked re-runs
//!   its close calls in fp32, so its cost depends on how many a set has, which one image
//!   cannot show.
//! - `explain/*`: `explain` against `classify` of the bytes of one real 200×150 image on one
//!   thread, and with the heatmap's PNG (what `POST /explain` sends): the cost of an
//!   explanation is the ratio (target ≤ 1.15).
//!
//! - `dicom/*`: `classify` of a real HAM10000 JPEG against the same JPEG wrapped byte for byte
//!   as JPEG-in-DICOM, and of its pixels as a PNG against the same pixels as uncompressed RGB
//!   DICOM (the test fixtures, `skinlesion_core::testing::dicom_fixtures`), one thread: what
//!   reading DICOM costs over the same pixels in a plain file (target ≤ 1.2×).
//!
//! libtorch's thread count is one per process, so each group builds its classifier right
//! before measuring.

use std::io::Cursor;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use skinlesion_benches::{data_dir, shipped_model};
use skinlesion_core::image::{self, imageops::FilterType, ImageFormat};
use skinlesion_core::testing::many_scan_jpeg;
use skinlesion_core::training::preprocess;
use skinlesion_core::{available_cores, Classifier, Device, Precision};
use tch::{CModule, Kind, Tensor};

fn classifier(threads: usize) -> Classifier {
    Classifier::builder(shipped_model())
        .device(Device::Cpu)
        .threads(threads)
        .build()
        .expect("the shipped model loads")
}

fn real_jpeg() -> Vec<u8> {
    std::fs::read(data_dir().join("images/ISIC_0024306.jpg")).expect("a real image")
}

/// A real lesion image upscaled to 3000×2000 and re-encoded as JPEG (quality 90).
fn large_jpeg() -> Vec<u8> {
    enlarged_jpeg(3000, 2000)
}

/// A real lesion image upscaled to `width`×`height` and re-encoded as JPEG (quality 90).
fn enlarged_jpeg(width: u32, height: u32) -> Vec<u8> {
    let small = image::load_from_memory(&real_jpeg()).unwrap();
    let large = small
        .resize_exact(width, height, FilterType::Triangle)
        .to_rgb8();
    let mut out = Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&large)
        .unwrap();
    assert_eq!(
        image::guess_format(out.get_ref()).unwrap(),
        ImageFormat::Jpeg
    );
    out.into_inner()
}

/// The first `n` test-split images, encoded.
fn test_jpegs(n: usize) -> Vec<Vec<u8>> {
    skinlesion_core::testing::ham10000_sample("test", n)
        .iter()
        .map(|i| std::fs::read(&i.path).unwrap())
        .collect()
}

fn preprocessing(c: &mut Criterion) {
    let classifier = classifier(1);
    let spec = &classifier.metadata().input;
    let limits = *classifier.decode_limits();
    let mut group = c.benchmark_group("preprocess");
    group.throughput(Throughput::Elements(1));
    for (name, bytes) in [
        ("jpeg_200x150", real_jpeg()),
        ("jpeg_3000x2000", large_jpeg()),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| preprocess(&bytes, spec, &limits).unwrap())
        });
    }
    // The scan limit (issue #49): at it, the most work a 12-megapixel JPEG may ask for; past
    // it, refused from the markers alone.
    let at_limit = many_scan_jpeg(4032, 3024, limits.max_jpeg_scans as usize);
    group.bench_function("jpeg_4032x3024_at_scan_limit", |b| {
        b.iter(|| preprocess(&at_limit, spec, &limits).unwrap())
    });
    let over = many_scan_jpeg(4032, 3024, 2647);
    group.bench_function("jpeg_4032x3024_2647_scans_refused", |b| {
        b.iter(|| preprocess(&over, spec, &limits).unwrap_err())
    });
    group.finish();
}

fn forward(c: &mut Criterion) {
    let classifier = classifier(1);
    let images = test_jpegs(32);
    let prepared: Vec<_> = images
        .iter()
        .map(|b| classifier.prepare(b).unwrap())
        .collect();
    let mut group = c.benchmark_group("forward");
    for batch in [1usize, 8, 32] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("batch{batch}_1thread"), |b| {
            b.iter(|| classifier.logits(&prepared[..batch]).unwrap())
        });
    }
    group.finish();
}

/// The steps of classification written directly against `image` and `tch`, without the
/// library: no limits, no EXIF, no validation, no calibration beyond the softmax.
struct ByHand {
    module: CModule,
    width: u32,
    height: u32,
    mean: [f32; 3],
    std: [f32; 3],
}

impl ByHand {
    fn new(classifier: &Classifier) -> Self {
        let spec = &classifier.metadata().input;
        let mut module = CModule::load(shipped_model().with_extension("pt")).unwrap();
        module.set_eval();
        Self {
            module,
            width: spec.width,
            height: spec.height,
            mean: spec.mean,
            std: spec.std,
        }
    }

    fn classify(&self, bytes: &[u8]) -> Vec<f32> {
        let rgb = image::load_from_memory(bytes)
            .unwrap()
            .resize_exact(self.width, self.height, FilterType::Triangle)
            .to_rgb8();
        let (w, h) = (i64::from(self.width), i64::from(self.height));
        let hwc = Tensor::from_slice(rgb.as_raw())
            .view([h, w, 3])
            .to_kind(Kind::Float)
            / 255.0;
        let mean = Tensor::from_slice(&self.mean);
        let std = Tensor::from_slice(&self.std);
        let input = ((hwc - mean) / std).permute([2, 0, 1]).unsqueeze(0);
        let logits = tch::no_grad(|| self.module.forward_ts(&[input]).unwrap());
        Vec::<f32>::try_from(logits.softmax(1, Kind::Float).flatten(0, -1)).unwrap()
    }
}

fn overhead(c: &mut Criterion) {
    let classifier = classifier(1);
    let by_hand = ByHand::new(&classifier);
    let bytes = real_jpeg();
    let mut group = c.benchmark_group("overhead");
    group.throughput(Throughput::Elements(1));
    group.bench_function("classify_bytes", |b| {
        b.iter(|| classifier.classify(&bytes).unwrap())
    });
    group.bench_function("by_hand_tch", |b| b.iter(|| by_hand.classify(&bytes)));
    group.finish();
}

fn batch_threads(c: &mut Criterion) {
    let images = test_jpegs(32);
    let mut group = c.benchmark_group("batch_threads");
    group.throughput(Throughput::Elements(images.len() as u64));
    let mut thread_counts = vec![1, available_cores()];
    thread_counts.dedup();
    for threads in thread_counts {
        let classifier = classifier(threads);
        group.bench_function(format!("classify_batch32_{threads}threads"), |b| {
            b.iter(|| classifier.classify_batch(&images))
        });
    }
    group.finish();
}

fn large_jpeg_decoding(c: &mut Criterion) {
    let classifier = classifier(1);
    let mut group = c.benchmark_group("large_jpeg");
    group.throughput(Throughput::Elements(1));
    for (width, height) in [(1920, 1440), (4032, 3024)] {
        let bytes = enlarged_jpeg(width, height);
        group.bench_function(format!("classify_{width}x{height}_scaled_decode"), |b| {
            b.iter(|| classifier.classify(&bytes).unwrap())
        });
        group.bench_function(format!("classify_{width}x{height}_full_decode"), |b| {
            b.iter(|| {
                let full = classifier.decode(&bytes).unwrap();
                classifier.classify(&*full).unwrap()
            })
        });
    }
    group.finish();
}

/// The benchmarked model on one thread in `precision`; `None` (and a line saying so) when
/// the model does not offer it.
fn in_precision(group: &str, precision: Precision) -> Option<Classifier> {
    let built = Classifier::builder(shipped_model())
        .device(Device::Cpu)
        .threads(1)
        .precision(precision)
        .build();
    if let Err(e) = &built {
        eprintln!("{group}/{precision}: skipped: {e}");
    }
    built.ok()
}

fn precision(c: &mut Criterion) {
    let bytes = real_jpeg();
    let mut group = c.benchmark_group("precision");
    group.throughput(Throughput::Elements(1));
    for precision in [Precision::Fp32, Precision::Bf16] {
        let Some(classifier) = in_precision("precision", precision) else {
            continue;
        };
        let prepared = [classifier.prepare(&bytes).unwrap()];
        group.bench_function(format!("classify_bytes_{precision}"), |b| {
            b.iter(|| classifier.classify(&bytes).unwrap())
        });
        group.bench_function(format!("forward_{precision}"), |b| {
            b.iter(|| classifier.logits(&prepared).unwrap())
        });
    }
    group.finish();
}

fn precision_mix(c: &mut Criterion) {
    use skinlesion_core::testing::{ham10000_images, second_source_images};
    // The first of each `val` in file order: the mix of close calls a real set has.
    let val = |images: Vec<skinlesion_core::testing::LabelledImage>| {
        images.into_iter().filter(|i| i.split == "val")
    };
    let images: Vec<Vec<u8>> = (val(ham10000_images()).take(32))
        .chain(val(second_source_images()).take(16))
        .map(|i| std::fs::read(&i.path).expect("a real image"))
        .collect();
    let mut group = c.benchmark_group("precision_mix");
    group.throughput(Throughput::Elements(images.len() as u64));
    group.sample_size(10);
    for precision in [Precision::Fp32, Precision::Bf16, Precision::Bf16Checked] {
        let Some(classifier) = in_precision("precision_mix", precision) else {
            continue;
        };
        group.bench_function(format!("classify_48_images_{precision}"), |b| {
            b.iter(|| {
                for bytes in &images {
                    classifier.classify(bytes).unwrap();
                }
            })
        });
    }
    group.finish();
}

fn explain(c: &mut Criterion) {
    let classifier = classifier(1);
    let bytes = real_jpeg();
    let mut group = c.benchmark_group("explain");
    group.throughput(Throughput::Elements(1));
    group.bench_function("classify_bytes", |b| {
        b.iter(|| classifier.classify(&bytes).unwrap())
    });
    group.bench_function("explain_bytes", |b| {
        b.iter(|| classifier.explain(&bytes, None).unwrap())
    });
    group.bench_function("explain_bytes_png", |b| {
        b.iter(|| {
            let explained = classifier.explain(&bytes, None).unwrap();
            explained.heatmap().to_png()
        })
    });
    group.finish();
}

fn dicom(c: &mut Criterion) {
    let classifier = classifier(1);
    let fixtures = skinlesion_core::testing::dicom_fixtures();
    let read = |path: &std::path::Path| std::fs::read(path).unwrap();
    let rgb = read(&fixtures.path("ham-0-rgb.dcm"));
    let pixels = classifier.decode(&rgb).unwrap();
    let mut png = Cursor::new(Vec::new());
    pixels.write_to(&mut png, ImageFormat::Png).unwrap();
    let pairs = [
        ("jpeg", read(&fixtures.jpegs[0])),
        ("jpeg_in_dicom", read(&fixtures.path("ham-0.dcm"))),
        ("png", png.into_inner()),
        ("uncompressed_dicom", rgb),
    ];
    let mut group = c.benchmark_group("dicom");
    group.throughput(Throughput::Elements(1));
    for (name, bytes) in &pairs {
        group.bench_function(format!("classify_{name}"), |b| {
            b.iter(|| classifier.classify(bytes).unwrap())
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    preprocessing,
    forward,
    overhead,
    batch_threads,
    large_jpeg_decoding,
    precision,
    precision_mix,
    explain,
    dicom
);
criterion_main!(benches);
