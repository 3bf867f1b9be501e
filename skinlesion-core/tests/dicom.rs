//! DICOM in: decoded colours against pydicom's, a wrapped HAM JPEG against the JPEG itself,
//! what the answer carries (and never carries), and a typed refusal for each thing that cannot
//! be classified.

mod common;

use common::*;
use skinlesion_core::testing::{dicom_fixtures, shipped_model, DicomFixtures};
use skinlesion_core::training::decode_dicom_first_frame;
use skinlesion_core::{Classifier, Device, Error, ErrorKind};

fn fixtures() -> &'static DicomFixtures {
    dicom_fixtures()
}

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().path(name)).unwrap()
}

/// Mean and largest absolute difference between two equally long 8-bit buffers.
fn difference(a: &[u8], b: &[u8]) -> (f64, u8) {
    assert_eq!(a.len(), b.len());
    let diffs = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y));
    let (sum, max) = diffs.fold((0u64, 0u8), |(s, m), d| (s + u64::from(d), m.max(d)));
    (sum as f64 / a.len() as f64, max)
}

#[test]
fn every_colour_fixture_decodes_to_pydicoms_pixels() {
    let listing = std::fs::read_to_string(fixtures().path("fixtures.json")).unwrap();
    let listing: serde_json::Value = serde_json::from_str(&listing).unwrap();
    let colour = listing["colour"].as_array().unwrap();
    assert!(colour.len() >= 18, "{} colour fixtures", colour.len());
    let mut failed = Vec::new();
    for fixture in colour {
        let name = fixture["file"].as_str().unwrap();
        let kind = fixture["kind"].as_str().unwrap();
        let image = match decode_dicom_first_frame(&bytes(name)) {
            Ok(image) => image.to_rgb8(),
            Err(e) => {
                failed.push(format!("{name}: {e}"));
                continue;
            }
        };
        let (w, h) = (
            fixture["width"].as_u64().unwrap(),
            fixture["height"].as_u64().unwrap(),
        );
        assert_eq!(
            (u64::from(image.width()), u64::from(image.height())),
            (w, h),
            "{name}"
        );
        let reference = std::fs::read(fixtures().path(&format!("{name}.rgb"))).unwrap();
        let (mean, max) = difference(image.as_raw(), &reference);
        eprintln!("{name:36} {kind:14} mean {mean:.3} max {max}");
        // Two JPEG decoders may round their IDCT and upsampling differently; the rest is exact.
        let within = match kind {
            "jpeg" => mean <= 3.0,
            _ => max == 0,
        };
        if !within {
            failed.push(format!("{name} ({kind}): mean {mean:.3}, max {max}"));
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}

#[test]
fn the_dicom_rs_colour_defects_are_worked_around() {
    // dicom-pixeldata 0.10.1 adds Cb to green for uncompressed YBR_FULL (174 where pydicom
    // gives 130) and fails uncompressed YBR_FULL_422 ("Frame #0 is out of range"); both are
    // decoded here, and must equal pydicom's pixels exactly.
    for name in ["ham-0-ybr.dcm", "SC_ybr_full_422_uncompressed.dcm"] {
        let image = decode_dicom_first_frame(&bytes(name)).unwrap().to_rgb8();
        let reference = std::fs::read(fixtures().path(&format!("{name}.rgb"))).unwrap();
        assert_eq!(difference(image.as_raw(), &reference).1, 0, "{name}");
    }
    // The same pixels stored as RGB decode to the same image as the YBR_FULL copy, within
    // the rounding of one YCbCr round trip.
    let rgb = decode_dicom_first_frame(&bytes("ham-0-rgb.dcm"))
        .unwrap()
        .to_rgb8();
    let ybr = decode_dicom_first_frame(&bytes("ham-0-ybr.dcm"))
        .unwrap()
        .to_rgb8();
    assert!(difference(rgb.as_raw(), ybr.as_raw()).1 <= 2);
}

fn shipped() -> Classifier {
    cpu(&shipped_model())
}

#[test]
fn a_wrapped_ham_jpeg_gives_exactly_the_jpegs_prediction() {
    let classifier = shipped();
    for (i, jpeg) in fixtures().jpegs.iter().enumerate() {
        let dicom = bytes(&format!("ham-{i}.dcm"));
        let from_jpeg = classifier.classify(jpeg).unwrap();
        let from_dicom = classifier.classify(&dicom).unwrap();
        assert_eq!(from_jpeg.class(), from_dicom.class());
        assert_eq!(from_jpeg.probabilities(), from_dicom.probabilities());
        assert_eq!(from_jpeg.ood_score(), from_dicom.ood_score());
        assert!(from_jpeg.dicom().is_none());
        let info = from_dicom.dicom().expect("a DICOM input's answer says so");
        assert_eq!(info.sop_class_uid, "1.2.840.10008.5.1.4.1.1.77.1.7");
        assert_eq!(
            info.sop_class.as_deref(),
            Some("Dermoscopic Photography Image Storage")
        );
        assert_eq!(info.modality.as_deref(), Some("DMS"));
        assert_eq!(info.body_site.as_deref(), Some("Upper arm"));
        assert_eq!(info.laterality.as_deref(), Some("L"));
        assert_eq!(info.patient_age.as_deref(), Some("045Y"));
        assert_eq!(info.patient_sex.as_deref(), Some("F"));
        assert_eq!(info.transfer_syntax_uid, "1.2.840.10008.1.2.4.50");
        // The batch path and the explanation carry the same.
        let batch = classifier.classify_batch([&dicom[..], &std::fs::read(jpeg).unwrap()]);
        assert_eq!(batch[0].as_ref().unwrap(), &from_dicom);
        assert!(batch[1].as_ref().unwrap().dicom().is_none());
        let explained = classifier.explain(&dicom, None).unwrap();
        let explained_jpeg = classifier.explain(jpeg, None).unwrap();
        assert_eq!(explained.prediction(), &from_dicom);
        assert_eq!(explained.heatmap(), explained_jpeg.heatmap());
    }
}

#[test]
fn the_answer_names_no_patient() {
    let classifier = shipped();
    let prediction = classifier.classify(&bytes("ham-0.dcm")).unwrap();
    let json = serde_json::to_string(&prediction).unwrap();
    assert!(json.contains(r#""dicom":{"#), "{json}");
    for identifier in &fixtures().identifiers {
        assert!(
            !json.contains(identifier.as_str()),
            "{identifier} in {json}"
        );
        assert!(!format!("{prediction:?}").contains(identifier.as_str()));
    }
    let back: skinlesion_core::Prediction = serde_json::from_str(&json).unwrap();
    assert_eq!(back.dicom(), prediction.dicom());
    // Other images' answers keep the original shape.
    let jpeg = classifier.classify(&fixtures().jpegs[0]).unwrap();
    assert!(!serde_json::to_string(&jpeg).unwrap().contains("dicom"));
}

fn refusal(classifier: &Classifier, name: &str) -> Error {
    classifier.classify(&bytes(name)).unwrap_err()
}

#[test]
fn what_cannot_be_classified_is_refused_by_name() {
    let classifier = shipped();
    let cases = [
        (
            "mr-16bit.dcm",
            ErrorKind::NotColourPhotograph,
            "MONOCHROME2",
        ),
        (
            "rgb-16bit.dcm",
            ErrorKind::UnsupportedBitDepth,
            "16 bits allocated",
        ),
        ("no-pixels.dcm", ErrorKind::NoPixelData, "Enhanced SR"),
        (
            "jpeg-ls.dcm",
            ErrorKind::UnsupportedTransferSyntax,
            "JPEG-LS",
        ),
        ("examples_ybr_color.dcm", ErrorKind::MultiFrame, "30 frames"),
        ("SC_rgb_rle_2frame.dcm", ErrorKind::MultiFrame, "2 frames"),
    ];
    for (name, kind, says) in cases {
        let e = refusal(&classifier, name);
        assert_eq!(e.kind(), kind, "{name}: {e}");
        assert!(e.is_input_error());
        assert!(e.to_string().contains(says), "{name}: {e}");
    }
    // Broken files: cut short, or the marker and nothing DICOM after it.
    let whole = bytes("ham-0.dcm");
    for cut in [140, 400, whole.len() / 2, whole.len() - 10] {
        let e = classifier.classify(&whole[..cut]).unwrap_err();
        assert!(e.is_input_error(), "cut at {cut}: {e}");
    }
    let mut junk = vec![0u8; 128];
    junk.extend_from_slice(b"DICM");
    junk.extend(noise(500, 7));
    assert_eq!(
        classifier.classify(&junk).unwrap_err().kind(),
        ErrorKind::Decode
    );
}

#[test]
fn the_pixel_limit_holds_before_decoding() {
    let small = Classifier::builder(shipped_model())
        .device(Device::Cpu)
        .threads(1)
        .max_pixels(10_000)
        .build()
        .unwrap();
    for name in ["ham-0.dcm", "ham-0-rgb.dcm"] {
        let e = small.classify(&bytes(name)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ImageTooLarge, "{name}: {e}");
    }
    let e = Classifier::builder(shipped_model())
        .device(Device::Cpu)
        .max_bytes(1000)
        .build()
        .unwrap()
        .classify(&bytes("ham-0.dcm"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InputTooLarge);
}

#[test]
fn a_dicom_file_is_read_from_its_path_whatever_its_name() {
    let classifier = shipped();
    let dir = tempfile::tempdir().unwrap();
    let renamed = dir.path().join("lesion.jpg");
    std::fs::copy(fixtures().path("ham-1.dcm"), &renamed).unwrap();
    let prediction = classifier.classify(&renamed).unwrap();
    assert!(prediction.dicom().is_some());
    let jpeg = classifier.classify(&fixtures().jpegs[1]).unwrap();
    assert_eq!(prediction.probabilities(), jpeg.probabilities());
}
