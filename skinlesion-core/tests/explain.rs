//! Explanations of the shipped model, with checks that would fail if the maps were wrong:
//! exact (a map's mean plus the bias is the logit), mirror-consistent, localised (a lesion
//! pasted into one quadrant of a skin-coloured canvas is where the heat is) and faithful
//! (greying the hottest pixels lowers the class's probability far more than greying random
//! ones). Measured on real validation images, never one.

use skinlesion_core::image::{imageops, DynamicImage, Rgb, RgbImage};
use skinlesion_core::testing::{ham10000_sample, write_mean_colour_model, MeanColourWeights};
use skinlesion_core::{
    Classifier, Device, Error, Explanation, LesionClass, Precision, PreparedImage,
};

/// The fp32 network: these checks were measured on its maps. Under `auto` on a CPU with
/// AVX512-BF16 the maps come from the bf16 network, whose rounding breaks mirror symmetry by
/// about 1 % and localises worse (0.525 / 0.478 against the bounds below, measured
/// 2026-12-07); that is an open finding, not what these tests pin.
fn classifier() -> Classifier {
    Classifier::builder(skinlesion_core::testing::shipped_model())
        .device(Device::Cpu)
        .precision(Precision::Fp32)
        .threads(1)
        .build()
        .unwrap()
}

fn val_images(n: usize) -> Vec<DynamicImage> {
    ham10000_sample("val", n)
        .iter()
        .map(|i| skinlesion_core::image::open(&i.path).unwrap())
        .collect()
}

/// Share of the heatmap's total inside the rectangle (x0, y0, width, height).
fn mass_inside(explanation: &Explanation, (x0, y0, w, h): (u32, u32, u32, u32)) -> f64 {
    let heat = explanation.heatmap();
    let (mut inside, mut total) = (0.0, 0.0);
    for y in 0..heat.height() {
        for x in 0..heat.width() {
            let v = f64::from(heat.get(x, y));
            total += v;
            if (x0..x0 + w).contains(&x) && (y0..y0 + h).contains(&y) {
                inside += v;
            }
        }
    }
    inside / total.max(f64::MIN_POSITIVE)
}

#[test]
fn each_map_is_exact_and_in_the_images_own_pixels() {
    let classifier = classifier();
    let maps = classifier.metadata().class_maps.clone().unwrap();
    assert_eq!((maps.width, maps.height), (6, 6));
    for image in val_images(24) {
        let prepared = classifier.prepare(&image).unwrap();
        let logits = classifier.logits(&[prepared]).unwrap();
        let logits = Vec::<f32>::try_from(logits.flatten(0, -1)).unwrap();
        let prediction = classifier.classify(&image).unwrap();
        for (i, &class) in classifier.classes().iter().enumerate() {
            let explained = classifier.explain(&image, Some(class)).unwrap();
            assert_eq!(explained.class(), class);
            assert_eq!(explained.prediction(), &prediction);
            let map = explained.class_map();
            assert_eq!((map.width(), map.height()), (6, 6));
            assert!(
                (map.logit() - logits[i]).abs() < 1e-4,
                "{class}: mean + bias {} vs logit {}",
                map.logit(),
                logits[i]
            );
            let heat = explained.heatmap();
            assert_eq!(
                (heat.width(), heat.height()),
                (image.width(), image.height())
            );
            assert!(heat.values().iter().all(|v| (0.0..=1.0).contains(v)));
        }
        // Unasked, the class is the best guess.
        let explained = classifier.explain(&image, None).unwrap();
        assert_eq!(explained.class(), prediction.best_guess());
    }
}

#[test]
fn the_maps_of_a_mirrored_image_are_the_mirrored_maps() {
    let classifier = classifier();
    for image in val_images(8) {
        // Exactly, for the mirrored network input (the mirror averaging is traced in).
        let input = classifier.prepare(&image).unwrap();
        let flipped = PreparedImage::from_tensor(input.tensor().flip([3]));
        let maps = classifier
            .forward(&[input, flipped])
            .unwrap()
            .class_maps
            .unwrap();
        let diff = (maps.get(0) - maps.get(1).flip([2]))
            .abs()
            .max()
            .double_value(&[]);
        assert!(diff < 1e-4, "mirrored input: maps differ by {diff}");
        // Closely, for the mirrored image (resizing a mirrored image rounds a little
        // differently).
        let mirrored = image.fliph();
        for class in [LesionClass::Melanoma, LesionClass::MelanocyticNevi] {
            let a = classifier.explain(&image, Some(class)).unwrap();
            let b = classifier.explain(&mirrored, Some(class)).unwrap();
            let (a, b) = (a.class_map(), b.class_map());
            let w = a.width() as usize;
            let scale = a.values().iter().fold(1.0f32, |m, v| m.max(v.abs()));
            for (row_a, row_b) in a.values().chunks(w).zip(b.values().chunks(w)) {
                for (x, value) in row_a.iter().enumerate() {
                    let diff = (value - row_b[w - 1 - x]).abs() / scale;
                    assert!(diff < 1e-2, "{class}: {value} vs {}", row_b[w - 1 - x]);
                }
            }
        }
    }
}

/// The lesion image at half size in one quadrant of a canvas of its own border colour.
fn pasted(image: &DynamicImage, quadrant: u32) -> (DynamicImage, (u32, u32, u32, u32)) {
    let rgb = image.to_rgb8();
    let (w, h) = rgb.dimensions();
    let border: Vec<&Rgb<u8>> = (0..w)
        .flat_map(|x| [rgb.get_pixel(x, 0), rgb.get_pixel(x, h - 1)])
        .collect();
    let skin = Rgb(std::array::from_fn(|c| {
        let mut values: Vec<u8> = border.iter().map(|p| p[c]).collect();
        values.sort_unstable();
        values[values.len() / 2]
    }));
    let mut canvas = RgbImage::from_pixel(w, h, skin);
    let small = imageops::resize(&rgb, w / 2, h / 2, imageops::FilterType::Triangle);
    let (x0, y0) = ((quadrant % 2) * (w / 2), (quadrant / 2) * (h / 2));
    imageops::overlay(&mut canvas, &small, x0.into(), y0.into());
    (DynamicImage::ImageRgb8(canvas), (x0, y0, w / 2, h / 2))
}

/// (mean share of the heat in the pasted lesion's quadrant, images with more than half).
fn localisation(images: &[DynamicImage], source: &str) -> (f64, usize) {
    let classifier = classifier();
    let mut shares = Vec::new();
    for (i, image) in images.iter().enumerate() {
        let (canvas, quadrant) = pasted(image, i as u32 % 4);
        let explained = classifier.explain(&canvas, None).unwrap();
        shares.push(mass_inside(&explained, quadrant));
    }
    let mean = shares.iter().sum::<f64>() / shares.len() as f64;
    let majority = shares.iter().filter(|&&s| s > 0.5).count();
    eprintln!(
        "{source}: heat in the lesion's quadrant: mean {mean:.3}, > 0.5 in {majority} of {}; \
         {shares:.2?}",
        shares.len()
    );
    (mean, majority)
}

#[test]
fn a_lesion_pasted_into_one_quadrant_draws_the_heat_there() {
    let (mean, majority) = localisation(&val_images(24), "HAM10000 val");
    // A quarter of the canvas: 0.25 if the map ignored where the lesion is.
    assert!(mean >= LOCALISATION_MEAN, "mean share {mean:.3}");
    assert!(majority * 4 >= 24 * 3, "{majority} of 24");
}

/// Measured on these 24 val images: mean share 0.706, above 0.5 for 20 of 24 (v4.2); v5
/// 0.743, 22 of 24.
const LOCALISATION_MEAN: f64 = 0.5;

/// The same check on other clinics' dermoscopy (8 second-source val images of each of MEL,
/// NV, BKL), where v4.x's maps were weaker: the bound is what v5 measured, less a margin.
#[test]
fn the_heat_follows_the_lesion_on_the_second_source_too() {
    let mut images = Vec::new();
    for class in [
        LesionClass::Melanoma,
        LesionClass::MelanocyticNevi,
        LesionClass::BenignKeratosis,
    ] {
        let chosen = skinlesion_core::testing::second_source_images()
            .into_iter()
            .filter(|i| i.split == "val" && i.class == class)
            .take(8);
        images.extend(chosen.map(|i| skinlesion_core::image::open(&i.path).unwrap()));
    }
    let (mean, majority) = localisation(&images, "second-source val");
    assert!(
        mean >= SECOND_SOURCE_LOCALISATION_MEAN,
        "mean share {mean:.3}"
    );
    assert!(majority >= SECOND_SOURCE_MAJORITY, "{majority} of 24");
}

/// v5 (trained on the second source's `train` too) measured a mean share of 0.780, above 0.5
/// for 23 of 24; v4.3 0.556, 12 of 24 (weaker off-source, as the held-out clinics showed).
/// Bounds a little under v5's, above anything v4.3 reached.
const SECOND_SOURCE_LOCALISATION_MEAN: f64 = 0.7;
const SECOND_SOURCE_MAJORITY: usize = 20;

/// `image` with the pixels at `indices` (row-major) set to mid grey.
fn greyed(image: &DynamicImage, indices: &[usize]) -> DynamicImage {
    let mut rgb = image.to_rgb8();
    let w = rgb.width() as usize;
    for &i in indices {
        rgb.put_pixel((i % w) as u32, (i / w) as u32, Rgb([128; 3]));
    }
    DynamicImage::ImageRgb8(rgb)
}

#[test]
fn greying_the_hottest_pixels_lowers_the_class_far_more_than_random_ones() {
    let classifier = classifier();
    let mut rng = 0x5eed_u64;
    let (mut hot_drops, mut random_drops) = (Vec::new(), Vec::new());
    for image in val_images(56) {
        let explained = classifier.explain(&image, None).unwrap();
        let class = explained.class();
        let before = explained.prediction().probability(class).unwrap();
        let heat = explained.heatmap().values();
        let n = heat.len() / 5;
        let mut order: Vec<usize> = (0..heat.len()).collect();
        order.sort_by(|&a, &b| heat[b].total_cmp(&heat[a]));
        // The control: as many pixels, ranked by a random map of the same 6×6 cells (a fixed
        // LCG: the same every run), so that it too greys out blobs, not scattered pixels
        // (salt noise would change every texture in the image and test something else).
        let cells: Vec<u64> = (0..36)
            .map(|_| {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                rng >> 33
            })
            .collect();
        let (w, h) = (image.width() as usize, image.height() as usize);
        let cell = |i: usize| cells[(i / w * 6 / h) * 6 + (i % w * 6 / w)];
        let mut random: Vec<usize> = (0..heat.len()).collect();
        random.sort_by_key(|&i| std::cmp::Reverse(cell(i)));
        let after = |pixels: &[usize]| {
            let p = classifier.classify(&greyed(&image, pixels)).unwrap();
            p.probability(class).unwrap()
        };
        hot_drops.push(f64::from(before - after(&order[..n])));
        random_drops.push(f64::from(before - after(&random[..n])));
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (hot, random) = (mean(&hot_drops), mean(&random_drops));
    let wins = hot_drops
        .iter()
        .zip(&random_drops)
        .filter(|(h, r)| h > r)
        .count();
    eprintln!(
        "probability drop: hottest 20% {hot:.3}, random 20% {random:.3}; hottest larger on {wins} of {}",
        hot_drops.len()
    );
    assert!(
        hot >= FAITHFUL_RATIO * random.max(0.0) && hot > random + 0.05,
        "{hot} vs {random}"
    );
    assert!(
        wins * 4 >= hot_drops.len() * 3,
        "{wins} of {}",
        hot_drops.len()
    );
}

/// Measured on these 56 val images (v4.2): the class's probability drops by 0.380 when its
/// hottest 20 % is greyed, by 0.137 for 20 % in random cells (2.8×), hottest larger for 48 of
/// 56; v5: 0.449 against 0.231 (1.9×), 49 of 56 (its probabilities fall further under any
/// greying). A map no better than chance gives about 1×.
/// (Greying 20 % scattered single pixels drops it by 0.377 too: salt noise over the whole
/// lesion destroys its texture everywhere, which is why the control greys whole cells.)
const FAITHFUL_RATIO: f64 = 1.5;

#[test]
fn bad_requests_get_the_same_typed_errors_as_classify() {
    let classifier = classifier();
    let bad: [&[u8]; 3] = [
        b"",
        b"not an image",
        &skinlesion_core::testing::png_header_only(90_000, 90_000),
    ];
    for bytes in bad {
        let classified = classifier.classify(bytes).unwrap_err();
        let explained = classifier.explain(bytes, None).unwrap_err();
        assert_eq!(explained.kind(), classified.kind());
        assert_eq!(explained.to_string(), classified.to_string());
    }
    let missing = classifier.explain("no/such/image.jpg", None).unwrap_err();
    assert_eq!(
        missing.kind(),
        classifier.classify("no/such/image.jpg").unwrap_err().kind()
    );
    let unknown = classifier
        .explain(&val_images(1)[0], Some(LesionClass::Unknown))
        .unwrap_err();
    assert!(
        matches!(
            unknown,
            Error::ClassNotInModel {
                class: LesionClass::Unknown,
                ..
            }
        ),
        "{unknown}"
    );
    assert_eq!(unknown.kind(), skinlesion_core::ErrorKind::ClassNotInModel);
    assert!(
        unknown.to_string().contains("MEL"),
        "names what it can explain: {unknown}"
    );
    assert!(!classifier.can_explain(LesionClass::Unknown));
    assert!(LesionClass::ALL
        .iter()
        .filter(|&&c| c != LesionClass::Unknown)
        .all(|&c| classifier.can_explain(c)));

    // A batch: each input its own result, the good ones explained as alone.
    let good = std::fs::read(&ham10000_sample("val", 1)[0].path).unwrap();
    let inputs = [
        skinlesion_core::ImageInput::Encoded(&good),
        skinlesion_core::ImageInput::Encoded(b"junk"),
    ];
    let results = classifier.explain_batch(inputs, None);
    assert_eq!(results.len(), 2);
    let alone = classifier.explain(&good, None).unwrap();
    assert_eq!(results[0].as_ref().unwrap().heatmap(), alone.heatmap());
    assert!(results[1].is_err());
}

#[test]
fn a_model_without_class_maps_cannot_explain_but_still_classifies() {
    let dir = tempfile::tempdir().unwrap();
    let classes = [LesionClass::Melanoma, LesionClass::MelanocyticNevi];
    let manifest = write_mean_colour_model(
        dir.path(),
        "no-maps",
        &classes,
        &MeanColourWeights::distinct(2),
        skinlesion_core::testing::small_input(),
        Default::default(),
    )
    .unwrap();
    let classifier = Classifier::builder(&manifest)
        .device(Device::Cpu)
        .build()
        .unwrap();
    let image = &val_images(1)[0];
    classifier.classify(image).unwrap();
    let e = classifier.explain(image, None).unwrap_err();
    assert!(matches!(e, Error::NoClassMaps(_)), "{e}");
    assert_eq!(e.kind(), skinlesion_core::ErrorKind::NoClassMaps);
    assert!(e.to_string().contains("no class maps"), "{e}");
    assert!(!classifier.can_explain(LesionClass::Melanoma));
}
