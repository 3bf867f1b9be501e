//! The shipped model's bf16 network against its fp32 one on real images, where this CPU runs
//! bfloat16 natively (elsewhere bf16 is emulated: slow, and not what `auto` would run).
//!
//! The manifest records the agreement measured over the whole of HAM10000 `val` and the
//! second source's `val` (`skinlesion-train add-precision`); these tests hold a sample to it,
//! and hold `auto` to the library's bar. `SKINLESION_PRECISION_IMAGES=N` measures N images of
//! each set instead of 24 and prints the rows of the model card's table (`--nocapture`).

use skinlesion_core::testing::{ham10000_sample, second_source_images, shipped_model};
use skinlesion_core::training::AgreementTally;
use skinlesion_core::{
    cpu_has_bf16, cpu_runs_bf16_convolutions, Agreement, Classifier, Device, Error, ModelMetadata,
    Precision, Recheck,
};

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

fn recorded_recheck() -> Recheck {
    let metadata = ModelMetadata::read(shipped_model()).unwrap();
    (metadata.other_precisions.iter())
        .find_map(|o| o.recheck.clone())
        .expect("the shipped bf16 network has recheck bands")
}

/// Up to `n` images of each measured set: HAM10000 `val` and `test`, the second source's `val`.
fn sample_sets(n: usize) -> [(&'static str, Vec<skinlesion_core::testing::LabelledImage>); 3] {
    [
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
    ]
}

fn sample_size(default: usize) -> usize {
    std::env::var("SKINLESION_PRECISION_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn auto_runs_bf16_only_where_native_and_close_enough() {
    let expected = match cpu_has_bf16() {
        true if recorded().close_enough_for_auto() => Precision::Bf16,
        true if recorded_recheck().agreement.close_enough_for_auto() => Precision::Bf16Checked,
        _ => Precision::Fp32,
    };
    assert_eq!(classifier(Precision::Auto).precision(), expected);
    if cpu_runs_bf16_convolutions() {
        assert_eq!(classifier(Precision::Bf16).precision(), Precision::Bf16);
    } else {
        // An AVX2-only CPU: asked for, bf16 is refused with the reason, not a model error.
        let e = Classifier::builder(shipped_model())
            .device(Device::Cpu)
            .precision(Precision::Bf16)
            .build()
            .unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e}");
        assert!(
            e.to_string()
                .contains("cannot run the model's bf16 network"),
            "{e}"
        );
    }
}

#[test]
fn bf16_answers_as_recorded_on_real_images() {
    if !cpu_has_bf16() {
        eprintln!("skipped: this CPU has no native bfloat16 (AVX512-BF16)");
        return;
    }
    let (fp32, bf16) = (classifier(Precision::Fp32), classifier(Precision::Bf16));
    let sets = sample_sets(sample_size(24));
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
    if !cpu_runs_bf16_convolutions() {
        eprintln!("skipped: this CPU cannot run bfloat16 convolutions (no AVX-512)");
        return;
    }
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

/// bf16-checked answers each image with fp32's prediction exactly when bf16's answer lies
/// within the recorded bands of a boundary, else with bf16's; and agrees with fp32 as recorded.
#[test]
fn bf16_checked_reruns_the_close_calls_in_fp32() {
    if !cpu_has_bf16() {
        eprintln!("skipped: this CPU has no native bfloat16 (AVX512-BF16)");
        return;
    }
    let [fp32, bf16, checked] =
        [Precision::Fp32, Precision::Bf16, Precision::Bf16Checked].map(classifier);
    assert_eq!(checked.precision(), Precision::Bf16Checked);
    let (recheck, calibration) = (recorded_recheck(), &fp32.metadata().calibration);
    let mut tally = AgreementTally::new(fp32.classes());
    let mut rechecked = 0;
    for image in sample_sets(sample_size(40))
        .into_iter()
        .flat_map(|(_, images)| images)
    {
        // One image a pass: the same passes give the same numbers (a batch of another size
        // may differ in the last bits), so equality is exact.
        let prepared = [fp32.prepare(&image.path).unwrap()];
        let rows = bf16
            .rows_from_outputs(&bf16.forward(&prepared).unwrap())
            .unwrap();
        let [a, b, c] = [&fp32, &bf16, &checked].map(|m| m.classify_prepared(&prepared).unwrap());
        let close = (calibration.margins(&rows[0].0, rows[0].1)).within(&recheck.bands);
        rechecked += usize::from(close);
        let expected = if close { &a[0] } else { &b[0] };
        assert_eq!(&c[0], expected, "{}", image.path.display());
        tally.add(Some(image.class), &a[0], &c[0]);
    }
    let measured = tally.agreement("sample");
    eprintln!("{measured}\n{rechecked} rechecked");
    assert!(rechecked > 0, "no image of the sample was a close call");
    assert!(
        measured.same_answer >= recheck.agreement.same_answer - 0.03,
        "{measured:?} vs recorded {:?}",
        recheck.agreement
    );
}
