//! The `Classifier` API against a traced model with known weights and real HAM10000 images.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use skinlesion_core::image::ImageFormat;
use skinlesion_core::testing::{small_input, write_mean_colour_model, MeanColourWeights};
use skinlesion_core::training::preprocess;
use skinlesion_core::training::sha256_hex;
use skinlesion_core::DecodeLimits;
use skinlesion_core::{
    Calibration, Classifier, Device, Error, ImageInput, LesionClass, PixelFormat, Prediction,
    RawPixels,
};
use tch::{Kind, Tensor};

const CLASSES: [LesionClass; 8] = LesionClass::DIAGNOSES;

struct Fixture {
    _dir: tempfile::TempDir,
    manifest: PathBuf,
    weights: MeanColourWeights,
    calibration: Calibration,
}

fn fixture(calibration: Calibration) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let weights = MeanColourWeights::distinct(CLASSES.len());
    let manifest = write_mean_colour_model(
        dir.path(),
        "model",
        &CLASSES,
        &weights,
        small_input(),
        calibration.clone(),
    )
    .unwrap();
    Fixture {
        _dir: dir,
        manifest,
        weights,
        calibration,
    }
}

fn calibrated() -> Calibration {
    Calibration {
        temperature: 1.5,
        ..Default::default()
    }
}

fn assert_close(a: &Prediction, b: &Prediction) {
    assert_eq!(a.class(), b.class());
    for ((ca, pa), (cb, pb)) in a.probabilities().iter().zip(b.probabilities()) {
        assert_eq!(ca, cb);
        assert!((pa - pb).abs() < 1e-5, "{ca}: {pa} vs {pb}");
    }
}

#[test]
fn classifier_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Classifier>();
}

#[test]
fn probabilities_are_the_calibrated_softmax_of_known_logits() {
    let fx = fixture(calibrated());
    let classifier = cpu(&fx.manifest);
    for path in real_images(8) {
        let bytes = read(&path);
        let prediction = classifier.classify(&bytes).unwrap();

        let input = preprocess(&bytes, &small_input(), &DecodeLimits::default()).unwrap();
        let expected = (fx.weights.logits(&input) / f64::from(fx.calibration.temperature))
            .softmax(1, Kind::Float);
        let expected = Vec::<f32>::try_from(expected.flatten(0, -1)).unwrap();

        let probs = prediction.probabilities();
        assert_eq!(probs.len(), CLASSES.len());
        let sum: f32 = probs.iter().map(|(_, p)| p).sum();
        assert!((sum - 1.0).abs() < 1e-5, "sum {sum}");
        // The model's output order equals LesionClass order here, so the orders line up.
        for ((class, p), (want_class, q)) in probs.iter().zip(CLASSES.iter().zip(&expected)) {
            assert_eq!(class, want_class);
            assert!((p - q).abs() < 1e-6, "{class}: {p} vs {q}");
        }
        let (top, top_p) =
            CLASSES
                .iter()
                .zip(&expected)
                .fold(
                    (CLASSES[0], f32::MIN),
                    |b, (c, p)| if *p > b.1 { (*c, *p) } else { b },
                );
        assert_eq!(prediction.class(), top);
        // (The library computes in f64, the reference here in f32.)
        assert!((prediction.confidence() - top_p).abs() < 1e-6);
        assert_eq!(prediction.is_cancerous(), top.is_cancerous());

        let json = serde_json::to_value(&prediction).unwrap();
        assert_eq!(json["class_name"], top.name());
        assert_eq!(json["is_cancerous"], top.is_cancerous());
        assert_eq!(json["all_predictions"].as_object().unwrap().len(), 8);
        // Stable order on the wire (serde_json::Value would sort the keys, so read the text).
        let text = serde_json::to_string(&prediction).unwrap();
        let positions: Vec<usize> = CLASSES
            .iter()
            .map(|c| text.find(&format!("\"{}\":", c.name())).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
    }
}

#[test]
fn the_answer_is_the_most_probable_class_under_the_prior() {
    let log_prior: Vec<f32> = [0.01f32, 0.05, 0.11, 0.01, 0.11, 0.67, 0.02, 0.02]
        .iter()
        .map(|p| p.ln())
        .collect();
    let fx = fixture(Calibration {
        temperature: 0.8,
        log_prior: log_prior.clone(),
        ..Default::default()
    });
    let classifier = cpu(&fx.manifest);
    for path in real_images(6) {
        let bytes = read(&path);
        let prediction = classifier.classify(&bytes).unwrap();
        let input = preprocess(&bytes, &small_input(), &DecodeLimits::default()).unwrap();
        let logits = fx.weights.logits(&input);
        let expected = (&logits / 0.8 + Tensor::from_slice(&log_prior)).softmax(1, Kind::Float);
        let expected = Vec::<f32>::try_from(expected.flatten(0, -1)).unwrap();
        for ((_, p), q) in prediction.probabilities().iter().zip(&expected) {
            assert!((p - q).abs() < 1e-6);
        }
        let top = (0..8)
            .max_by(|&a, &b| expected[a].total_cmp(&expected[b]))
            .unwrap();
        assert_eq!(prediction.class(), CLASSES[top]);
        assert!((prediction.confidence() - expected[top]).abs() < 1e-6);
    }
    // A prior of the wrong length is refused on load.
    let text = std::fs::read_to_string(&fx.manifest).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    manifest["calibration"]["log_prior"] = serde_json::json!([0.0, 0.0]);
    std::fs::write(&fx.manifest, manifest.to_string()).unwrap();
    assert!(matches!(
        Classifier::load(&fx.manifest),
        Err(Error::MetadataMismatch(_))
    ));
}

#[test]
fn model_output_order_is_mapped_to_the_stable_order() {
    // A model whose outputs come in reverse class order still reports the same classes.
    let dir = tempfile::tempdir().unwrap();
    let mut reversed = CLASSES;
    reversed.reverse();
    let weights = MeanColourWeights::distinct(8);
    let manifest = write_mean_colour_model(
        dir.path(),
        "rev",
        &reversed,
        &weights,
        small_input(),
        calibrated(),
    )
    .unwrap();
    let classifier = cpu(&manifest);
    let bytes = read(&real_images(1)[0]);
    let prediction = classifier.classify(&bytes).unwrap();
    let order: Vec<_> = prediction.probabilities().iter().map(|(c, _)| *c).collect();
    assert_eq!(order, CLASSES);
    let input = preprocess(&bytes, &small_input(), &DecodeLimits::default()).unwrap();
    let logits = Vec::<f32>::try_from(weights.logits(&input).flatten(0, -1)).unwrap();
    let best = (0..8)
        .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
        .unwrap();
    assert_eq!(prediction.best_guess(), reversed[best]);
}

#[test]
fn every_input_kind_agrees() {
    let fx = fixture(calibrated());
    let classifier = cpu(&fx.manifest);
    let paths = real_images(6);
    let images: Vec<_> = paths
        .iter()
        .map(|p| skinlesion_core::image::open(p).unwrap())
        .collect();
    let one_by_one: Vec<_> = paths
        .iter()
        .map(|p| classifier.classify(p).unwrap())
        .collect();

    let batch: Vec<_> = classifier.classify_batch(&images);
    let bytes: Vec<_> = paths.iter().map(read).collect();
    let batch_bytes = classifier.classify_batch(&bytes);
    let batch_paths = classifier.classify_batch(&paths);
    assert_eq!(batch.len(), paths.len());
    for i in 0..paths.len() {
        assert_close(&classifier.classify(&images[i]).unwrap(), &one_by_one[i]);
        assert_close(batch[i].as_ref().unwrap(), &one_by_one[i]);
        assert_close(batch_bytes[i].as_ref().unwrap(), &one_by_one[i]);
        assert_close(batch_paths[i].as_ref().unwrap(), &one_by_one[i]);
    }
    assert!(classifier.classify_batch::<&str>([]).is_empty());

    // Raw pixels: packed RGB, and RGBA with padded rows, as a camera SDK would hand them over.
    let rgb: Vec<_> = images.iter().map(|i| i.to_rgb8()).collect();
    let rgba: Vec<_> = images.iter().map(|i| i.to_rgba8()).collect();
    let padded: Vec<Vec<u8>> = rgba
        .iter()
        .map(|img| {
            let row = img.width() as usize * 4;
            img.as_raw()
                .chunks(row)
                .flat_map(|r| r.iter().copied().chain([7u8; 12]))
                .collect()
        })
        .collect();
    let mut mixed = Vec::new();
    for i in 0..paths.len() {
        let (w, h) = rgb[i].dimensions();
        let packed = RawPixels::packed(rgb[i].as_raw(), w, h, PixelFormat::Rgb8);
        let strided = RawPixels {
            data: &padded[i],
            width: w,
            height: h,
            stride: w as usize * 4 + 12,
            format: PixelFormat::Rgba8,
        };
        assert_close(&classifier.classify(packed).unwrap(), &one_by_one[i]);
        assert_close(&classifier.classify(strided).unwrap(), &one_by_one[i]);
        mixed.push(match i % 4 {
            0 => ImageInput::Encoded(&bytes[i]),
            1 => ImageInput::Pixels(strided),
            2 => ImageInput::Decoded(&images[i]),
            _ => ImageInput::File(&paths[i]),
        });
    }
    for (got, want) in classifier.classify_batch(&mixed).iter().zip(&one_by_one) {
        assert_close(got.as_ref().unwrap(), want);
    }
}

#[test]
fn a_batch_with_bad_inputs_answers_each_one() {
    let fx = fixture(calibrated());
    let classifier = cpu(&fx.manifest);
    let good = read(&real_images(1)[0]);
    let inputs: Vec<Vec<u8>> = vec![good.clone(), Vec::new(), noise(300, 1), good.clone()];
    let results = classifier.classify_batch(&inputs);
    let single = classifier.classify(&good).unwrap();
    assert_close(results[0].as_ref().unwrap(), &single);
    assert!(matches!(results[1], Err(Error::EmptyInput)));
    assert!(matches!(results[2], Err(Error::UnsupportedFormat(_))));
    assert_close(results[3].as_ref().unwrap(), &single);

    let short = [1u8; 10];
    let pixels = |stride| RawPixels {
        data: &short,
        width: 2,
        height: 2,
        stride,
        format: PixelFormat::Rgb8,
    };
    let results = classifier.classify_batch([
        ImageInput::Pixels(pixels(5)),
        ImageInput::Encoded(&good),
        ImageInput::Pixels(pixels(6)),
        ImageInput::File(Path::new("/nonexistent/lesion.jpg")),
    ]);
    assert!(
        matches!(results[0], Err(Error::InvalidPixels(_))),
        "stride < row"
    );
    assert_close(results[1].as_ref().unwrap(), &single);
    assert!(
        matches!(results[2], Err(Error::InvalidPixels(_))),
        "10 < 12 bytes"
    );
    assert!(matches!(results[3], Err(Error::Io { .. })));
}

#[test]
fn many_threads_share_one_classifier() {
    let fx = fixture(calibrated());
    let classifier = Arc::new(cpu(&fx.manifest));
    let paths = real_images(16);
    let expected: Vec<_> = paths
        .iter()
        .map(|p| classifier.classify(p).unwrap())
        .collect();
    std::thread::scope(|s| {
        for t in 0..8 {
            let classifier = Arc::clone(&classifier);
            let (paths, expected) = (&paths, &expected);
            s.spawn(move || {
                for round in 0..4 {
                    let i = (t * 5 + round * 3) % paths.len();
                    let got = classifier.classify(&paths[i]).unwrap();
                    assert_close(&got, &expected[i]);
                    let batch = classifier.classify_batch(&paths[i..(i + 3).min(paths.len())]);
                    assert_close(batch[0].as_ref().unwrap(), &expected[i]);
                }
            });
        }
    });
}

/// Rewrites a fixture's manifest as format 1 with a `decision_bias` (as v1–v4.0 wrote them).
fn as_format_1(manifest: &Path, decision_bias: serde_json::Value) {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["format"] = "skinlesion-model/1".into();
    let calibration = json["calibration"].as_object_mut().unwrap();
    match decision_bias {
        serde_json::Value::Null => calibration.remove("decision_bias"),
        bias => calibration.insert("decision_bias".into(), bias),
    };
    std::fs::write(manifest, json.to_string()).unwrap();
}

#[test]
fn a_format_1_decision_bias_still_moves_the_answer_but_not_the_probabilities() {
    let plain = fixture(calibrated());
    let biased = fixture(calibrated());
    // Far above any logit gap: melanoma always wins the decision.
    as_format_1(
        &biased.manifest,
        serde_json::json!([0, 0, 0, 0, 1e3, 0, 0, 0]),
    );
    assert_eq!(CLASSES[4], LesionClass::Melanoma);
    let (plain, biased_classifier) = (cpu(&plain.manifest), cpu(&biased.manifest));
    for path in real_images(4) {
        let bytes = read(&path);
        let (a, b) = (
            plain.classify(&bytes).unwrap(),
            biased_classifier.classify(&bytes).unwrap(),
        );
        assert_eq!(b.best_guess(), LesionClass::Melanoma);
        assert_eq!(a.probabilities(), b.probabilities());
        assert_eq!(
            b.confidence(),
            b.probability(LesionClass::Melanoma).unwrap()
        );
        assert_eq!(b.ood_score(), None, "format 1 has no gate");
    }
    // A bias of the wrong length is refused on load; format 2 has none at all.
    as_format_1(&biased.manifest, serde_json::json!([1.0]));
    assert!(matches!(
        Classifier::load(&biased.manifest),
        Err(Error::MetadataMismatch(_))
    ));
    as_format_1(
        &biased.manifest,
        serde_json::json!([0, 0, 0, 0, 1, 0, 0, 0]),
    );
    let text = std::fs::read_to_string(&biased.manifest).unwrap();
    let text = text.replace("skinlesion-model/1", "skinlesion-model/2");
    std::fs::write(&biased.manifest, text).unwrap();
    match Classifier::load(&biased.manifest) {
        Err(Error::MetadataMismatch(m)) => assert!(m.contains("log_prior"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_format_1_manifest_without_bias_answers_its_largest_logit_as_before() {
    let log_prior = vec![0.0, 0.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0];
    let fx = fixture(Calibration {
        log_prior: log_prior.clone(),
        ..Default::default()
    });
    as_format_1(&fx.manifest, serde_json::Value::Null);
    let classifier = cpu(&fx.manifest);
    for path in real_images(4) {
        let bytes = read(&path);
        let input = preprocess(&bytes, &small_input(), &DecodeLimits::default()).unwrap();
        let logits = Vec::<f32>::try_from(fx.weights.logits(&input).flatten(0, -1)).unwrap();
        let largest = (0..8)
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap();
        assert_eq!(
            classifier.classify(&bytes).unwrap().best_guess(),
            CLASSES[largest]
        );
    }
}

#[test]
fn low_confidence_is_unknown_with_probabilities_kept() {
    let fx = fixture(Calibration {
        temperature: 50.0, // flattens the distribution: top probability just above 1/8
        unknown_threshold: 0.5,
        ..Default::default()
    });
    let classifier = cpu(&fx.manifest);
    let prediction = classifier.classify(&read(&real_images(1)[0])).unwrap();
    assert_eq!(prediction.class(), LesionClass::Unknown);
    assert!(!prediction.is_cancerous());
    assert!(prediction.confidence() < 0.5 && prediction.confidence() > 0.125);
    assert_ne!(prediction.best_guess(), LesionClass::Unknown);
    assert_eq!(prediction.probabilities().len(), 8);
    assert_eq!(prediction.probability(LesionClass::Unknown), None);
    let json = serde_json::to_value(&prediction).unwrap();
    assert_eq!(json["class_name"], "Unknown");
    assert_eq!(json["is_cancerous"], false);
    assert!(json["all_predictions"].get("Unknown").is_none());
}

// One function: every kind of bad image against one classifier, in the order decoding meets them.
#[test]
fn image_errors_are_typed() {
    let fx = fixture(calibrated());
    let classifier = Classifier::builder(&fx.manifest)
        .device(Device::Cpu)
        .max_bytes(200_000)
        .build()
        .unwrap();
    let jpeg = read(&real_images(1)[0]);

    assert!(matches!(classifier.classify(&[]), Err(Error::EmptyInput)));
    let random = classifier.classify(&noise(4096, 7));
    assert!(
        matches!(random, Err(Error::UnsupportedFormat(_))),
        "{random:?}"
    );
    let text = classifier.classify(b"hello, this is not an image");
    assert!(matches!(text, Err(Error::UnsupportedFormat(_))), "{text:?}");
    let truncated = classifier.classify(&jpeg[..jpeg.len() / 3]);
    assert!(matches!(truncated, Err(Error::Decode(_))), "{truncated:?}");
    let almost = classifier.classify(&jpeg[..jpeg.len() - 2]);
    assert!(matches!(almost, Err(Error::Decode(_))), "{almost:?}");
    let header_only = classifier.classify(&jpeg[..200]);
    assert!(
        matches!(header_only, Err(Error::Decode(_))),
        "{header_only:?}"
    );
    let png = encode(
        &skinlesion_core::image::load_from_memory(&jpeg).unwrap(),
        ImageFormat::Png,
    );
    let truncated_png = classifier.classify(&png[..png.len() / 2]);
    assert!(
        matches!(truncated_png, Err(Error::Decode(_))),
        "{truncated_png:?}"
    );
    // Trailing bytes after a complete JPEG (some cameras append data) are fine.
    let mut trailing = jpeg.clone();
    trailing.extend_from_slice(b"camera maker notes");
    classifier.classify(&trailing).unwrap();

    let bomb = png_header_only(100_000, 100_000);
    assert!(bomb.len() < 100);
    match classifier.classify(&bomb) {
        Err(
            e @ Error::ImageTooLarge {
                width: 100_000,
                height: 100_000,
                ..
            },
        ) => {
            let msg = e.to_string();
            assert!(
                msg.contains("10000000000") && msg.contains("50000000"),
                "{msg}"
            );
            assert!(e.is_input_error());
        }
        other => panic!("expected ImageTooLarge, got {other:?}"),
    }

    match classifier.classify(&vec![0u8; 300_000]) {
        Err(
            e @ Error::InputTooLarge {
                bytes: 300_000,
                max_bytes: 200_000,
            },
        ) => {
            assert!(e.to_string().contains("200000"));
        }
        other => panic!("expected InputTooLarge, got {other:?}"),
    }

    let missing = classifier.classify("/nonexistent/lesion.jpg");
    assert!(matches!(missing, Err(Error::Io { .. })), "{missing:?}");

    // The bad inputs above did not disturb the classifier.
    classifier.classify(&jpeg).unwrap();
}

#[test]
fn decoded_variants_of_a_real_image_agree() {
    let fx = fixture(calibrated());
    let classifier = cpu(&fx.manifest);
    let jpeg = read(&real_images(1)[0]);
    let image = skinlesion_core::image::load_from_memory(&jpeg).unwrap();
    let reference = classifier.classify(&image).unwrap();

    // Lossless re-encodings of the same pixels give the same answer to the last digit.
    let png = encode(&image, ImageFormat::Png);
    assert_eq!(classifier.classify(&png).unwrap(), reference);
    let rgba = encode(&image.to_rgba8().into(), ImageFormat::Png);
    assert_eq!(classifier.classify(&rgba).unwrap(), reference);
    let rgb16 = encode(&image.to_rgb16().into(), ImageFormat::Png);
    assert_eq!(classifier.classify(&rgb16).unwrap(), reference);
    let tiff = encode(&image, ImageFormat::Tiff);
    assert_eq!(classifier.classify(&tiff).unwrap(), reference);
    let bmp = encode(&image, ImageFormat::Bmp);
    assert_eq!(classifier.classify(&bmp).unwrap(), reference);

    // Greyscale: three equal channels, so it equals the RGB image built from the grey one.
    let grey = image.to_luma8();
    let grey_as_rgb = skinlesion_core::image::DynamicImage::ImageLuma8(grey.clone()).to_rgb8();
    let grey16 = encode(
        &skinlesion_core::image::DynamicImage::ImageLuma16(
            skinlesion_core::image::DynamicImage::ImageLuma8(grey.clone()).to_luma16(),
        ),
        ImageFormat::Png,
    );
    let grey_pred = classifier
        .classify(&encode(&grey.into(), ImageFormat::Png))
        .unwrap();
    assert_eq!(
        grey_pred,
        classifier
            .classify(&skinlesion_core::image::DynamicImage::from(grey_as_rgb))
            .unwrap()
    );
    assert_eq!(classifier.classify(&grey16).unwrap(), grey_pred);

    // EXIF orientation: stored sideways, classified upright.
    let rotated = exif_rotated_jpeg(&image);
    let decoded =
        skinlesion_core::training::decode_image(&rotated, &DecodeLimits::default()).unwrap();
    assert_eq!(
        (decoded.width(), decoded.height()),
        (image.width(), image.height())
    );
    let diff = mean_abs_diff(&decoded.to_rgb8(), &image.to_rgb8());
    assert!(diff < 2.0, "upright pixels differ by {diff} on average");
    let ignoring_exif = skinlesion_core::image::load_from_memory(&rotated).unwrap();
    assert_eq!(
        (ignoring_exif.width(), ignoring_exif.height()),
        (image.height(), image.width())
    );
    let upright = classifier.classify(&rotated).unwrap();
    assert_eq!(upright.class(), reference.class());
}

fn mean_abs_diff(
    a: &skinlesion_core::image::RgbImage,
    b: &skinlesion_core::image::RgbImage,
) -> f64 {
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.as_raw().len() as f64
}

#[test]
fn model_errors_are_typed() {
    let fx = fixture(calibrated());
    let dir = fx.manifest.parent().unwrap();
    let weights_path = fx.manifest.with_extension("pt");

    // Missing.
    let missing = Classifier::load(dir.join("absent.json"));
    assert!(
        matches!(missing, Err(Error::ModelNotFound { .. })),
        "{missing:?}"
    );

    // Loading by the weights' path finds the manifest beside it.
    cpu(&weights_path);

    // Weights without a manifest.
    let lonely = dir.join("lonely.pt");
    std::fs::copy(&weights_path, &lonely).unwrap();
    assert!(matches!(
        Classifier::load(&lonely),
        Err(Error::ModelCorrupt { .. })
    ));

    // Manifest that is not JSON, or not ours.
    let broken = dir.join("broken.json");
    std::fs::write(&broken, "{ not json").unwrap();
    assert!(matches!(
        Classifier::load(&broken),
        Err(Error::ModelCorrupt { .. })
    ));
    let text = std::fs::read_to_string(&fx.manifest).unwrap();
    std::fs::write(
        &broken,
        text.replace("skinlesion-model/2", "skinlesion-model/99"),
    )
    .unwrap();
    assert!(matches!(
        Classifier::load(&broken),
        Err(Error::MetadataMismatch(_))
    ));

    // Tampered weights: one byte changed.
    let mut tampered = std::fs::read(&weights_path).unwrap();
    let at = tampered.len() / 2;
    tampered[at] ^= 0x01;
    let tampered_dir = tempfile::tempdir().unwrap();
    std::fs::copy(&fx.manifest, tampered_dir.path().join("model.json")).unwrap();
    std::fs::write(tampered_dir.path().join("model.pt"), &tampered).unwrap();
    match Classifier::load(tampered_dir.path().join("model.json")) {
        Err(Error::ChecksumMismatch {
            expected, actual, ..
        }) => {
            assert_eq!(actual, sha256_hex(&tampered));
            assert_ne!(expected, actual);
        }
        other => panic!("expected ChecksumMismatch, got {other:?}"),
    }

    // Garbage weights whose checksum the manifest does record: corrupt, not a crash.
    let garbage = noise(10_000, 3);
    std::fs::write(tampered_dir.path().join("model.pt"), &garbage).unwrap();
    let manifest_text = text.replace(
        &sha256_hex(&std::fs::read(&weights_path).unwrap()),
        &sha256_hex(&garbage),
    );
    std::fs::write(tampered_dir.path().join("model.json"), manifest_text).unwrap();
    let corrupt = Classifier::load(tampered_dir.path().join("model.json"));
    assert!(
        matches!(corrupt, Err(Error::ModelCorrupt { .. })),
        "{corrupt:?}"
    );
}

#[test]
fn the_weights_format_is_read_as_written_and_others_are_refused() {
    let fx = fixture(calibrated());
    let text = std::fs::read_to_string(&fx.manifest).unwrap();
    let broken = fx.manifest.parent().unwrap().join("onnx.json");
    assert!(text.contains(r#""format": "torchscript""#), "{text}");
    std::fs::write(
        &broken,
        text.replace(r#""format": "torchscript""#, r#""format": "onnx""#),
    )
    .unwrap();
    match Classifier::load(&broken) {
        Err(Error::ModelCorrupt { reason, .. }) => assert!(reason.contains("onnx"), "{reason}"),
        other => panic!("expected ModelCorrupt, got {other:?}"),
    }
}

#[test]
fn output_width_must_match_the_class_list() {
    // A network with 8 outputs described as a 7-class model.
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_mean_colour_model(
        dir.path(),
        "wide",
        &CLASSES[..7],
        &MeanColourWeights::distinct(8),
        small_input(),
        calibrated(),
    )
    .unwrap();
    match Classifier::load(&manifest) {
        Err(Error::MetadataMismatch(msg)) => {
            assert!(msg.contains("[1, 8]") && msg.contains("7 classes"), "{msg}")
        }
        other => panic!("expected MetadataMismatch, got {other:?}"),
    }
}

#[test]
fn configuration_errors_are_typed() {
    let fx = fixture(calibrated());
    let zero = Classifier::builder(&fx.manifest).threads(0).build();
    assert!(matches!(zero, Err(Error::Config(_))));
    let no_pixels = Classifier::builder(&fx.manifest).max_pixels(0).build();
    assert!(matches!(no_pixels, Err(Error::Config(_))));
    if !tch::Cuda::is_available() {
        let gpu = Classifier::builder(&fx.manifest)
            .device(Device::Cuda(0))
            .build();
        assert!(matches!(gpu, Err(Error::Config(_))), "{gpu:?}");
        let auto = Classifier::builder(&fx.manifest)
            .device(Device::Auto)
            .build()
            .unwrap();
        assert_eq!(auto.device(), Device::Cpu);
        assert_eq!(auto.device().to_string(), "cpu");
    }
    assert_eq!("cuda:1".parse::<Device>().unwrap(), Device::Cuda(1));
    assert_eq!("CPU".parse::<Device>().unwrap(), Device::Cpu);
    assert!("tpu".parse::<Device>().is_err());
}

#[test]
fn preferred_batch_size_follows_the_device() {
    assert_eq!(Device::Cpu.preferred_batch_size(), 1);
    assert_eq!(Device::Cuda(1).preferred_batch_size(), 64);
    let gpu = tch::Cuda::is_available();
    assert_eq!(
        Device::Auto.preferred_batch_size(),
        if gpu { 64 } else { 1 }
    );
}

#[test]
fn preferred_workers_follow_the_device() {
    assert_eq!(Device::Cpu.preferred_workers(2), 2);
    assert_eq!(Device::Cpu.preferred_workers(0), 1);
    assert_eq!(Device::Cuda(0).preferred_workers(16), 1);
}

#[test]
fn malformed_logits_are_an_inference_error() {
    let fx = fixture(calibrated());
    let classifier = cpu(&fx.manifest);
    let flat = Tensor::zeros([8], (Kind::Float, tch::Device::Cpu));
    assert!(matches!(
        classifier.predictions_from_logits(&flat),
        Err(Error::Inference(_))
    ));
    let narrow = Tensor::zeros([2, 5], (Kind::Float, tch::Device::Cpu));
    assert!(matches!(
        classifier.predictions_from_logits(&narrow),
        Err(Error::MetadataMismatch(_))
    ));
}

#[test]
fn threads_default_to_the_available_cores() {
    let fx = fixture(calibrated());
    let classifier = Classifier::builder(&fx.manifest)
        .device(Device::Cpu)
        .build()
        .unwrap();
    // (libtorch's own setting is process-wide and other tests here change it concurrently.)
    assert_eq!(classifier.threads(), skinlesion_core::available_cores());
}
