//! The shipped model's bf16 network against its fp32 one on real images, where this CPU runs
//! bfloat16 natively (elsewhere bf16 is emulated: slow, and not what `auto` would run).
//!
//! The manifest records the agreement measured over the whole of HAM10000 `val` and the
//! second source's `val` (`skinlesion-train add-precision`); these tests hold a sample to it,
//! and hold `auto` to the library's bar. `SKINLESION_PRECISION_IMAGES=N` measures N images of
//! each set instead of 24 and prints the rows of the model card's table (`--nocapture`).

use skinlesion_core::testing::{ham10000_sample, second_source_images, shipped_model};
use skinlesion_core::training::AgreementTally;
use skinlesion_core::{cpu_has_bf16, Agreement, Classifier, Device, ModelMetadata, Precision};

fn classifier(precision: Precision) -> Classifier {
    Classifier::builder(shipped_model())
        .device(Device::Cpu)
        .precision(precision)
        .build()
        .unwrap()
}

fn recorded() -> Agreement {
    let metadata = ModelMetadata::read(shipped_model()).unwrap();
    let bf16 = metadata
        .other_precisions
        .iter()
        .find(|o| o.precision == Precision::Bf16)
        .expect("the shipped model offers a bf16 network");
    bf16.agreement.clone().expect("with its agreement measured")
}

#[test]
fn auto_runs_bf16_only_where_native_and_close_enough() {
    let expected = if cpu_has_bf16() && recorded().close_enough_for_auto() {
        Precision::Bf16
    } else {
        Precision::Fp32
    };
    assert_eq!(classifier(Precision::Auto).precision(), expected);
    assert_eq!(classifier(Precision::Bf16).precision(), Precision::Bf16);
}

#[test]
fn bf16_answers_as_recorded_on_real_images() {
    if !cpu_has_bf16() {
        eprintln!("skipped: this CPU has no native bfloat16 (AVX512-BF16)");
        return;
    }
    let n = std::env::var("SKINLESION_PRECISION_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let (fp32, bf16) = (classifier(Precision::Fp32), classifier(Precision::Bf16));
    let sets = [
        ("HAM10000 val", ham10000_sample("val", n)),
        ("HAM10000 test", ham10000_sample("test", n)),
        (
            "second-source val",
            second_source_images()
                .into_iter()
                .filter(|i| i.split == "val")
                .take(n)
                .collect(),
        ),
    ];
    let recorded = recorded();
    let mut all = AgreementTally::new(fp32.classes());
    for (name, images) in sets {
        let mut set = AgreementTally::new(fp32.classes());
        for image in &images {
            let prepared = fp32.prepare(&image.path).unwrap();
            let a = &fp32
                .classify_prepared(std::slice::from_ref(&prepared))
                .unwrap()[0];
            let b = &bf16
                .classify_prepared(std::slice::from_ref(&prepared))
                .unwrap()[0];
            set.add(Some(image.class), a, b);
            all.add(Some(image.class), a, b);
        }
        eprintln!("{}", set.agreement(name));
    }
    let measured = all.agreement("sample");
    // A sample of 3×24 images: wide enough margins that only a real change fails.
    assert!(
        measured.same_answer >= recorded.same_answer - 0.05,
        "{measured:?} vs recorded {recorded:?}"
    );
    assert!(measured.same_gate >= 0.98, "{measured:?}");
    assert!(
        measured.max_probability_difference <= 2.0 * recorded.max_probability_difference,
        "{measured:?} vs recorded {recorded:?}"
    );
    assert!(
        (measured.balanced_accuracy - measured.balanced_accuracy_fp32).abs() <= 0.03,
        "{measured:?}"
    );
}

#[test]
fn bf16_explains_where_fp32_does() {
    let (fp32, bf16) = (classifier(Precision::Fp32), classifier(Precision::Bf16));
    let image = skinlesion_core::image::open(&ham10000_sample("val", 1)[0].path).unwrap();
    let a = fp32.explain(&image, None).unwrap();
    let b = bf16.explain(&image, Some(a.class())).unwrap();
    let (a, b) = (a.class_map().values(), b.class_map().values());
    assert_eq!(a.len(), b.len());
    // The maps are computed in fp32 from bf16 features: the same picture, rounded.
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    let (ma, mb) = (mean(a), mean(b));
    let cov: f32 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let var = |v: &[f32], m: f32| v.iter().map(|x| (x - m) * (x - m)).sum::<f32>();
    let correlation = cov / (var(a, ma) * var(b, mb)).sqrt();
    assert!(correlation > 0.95, "heatmap correlation {correlation}");
}
