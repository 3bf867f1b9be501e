//! DICOM through every endpoint: a wrapped HAM JPEG answers as the JPEG does, the answer's
//! `dicom` object names no patient, refusals are typed 4xx, and no log line holds anything of
//! a DICOM header.

mod common;

use common::*;
use skinlesion_core::testing::dicom_fixtures;

fn dicom(name: &str) -> Vec<u8> {
    std::fs::read(dicom_fixtures().path(name)).unwrap()
}

/// One `file` part sent as `application/dicom` (the page and PACS gateways name it so).
fn dicom_part(data: &[u8]) -> (String, Vec<u8>) {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"lesion.dcm\"\r\n\
         Content-Type: application/dicom\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

#[test]
fn dicom_is_answered_as_the_jpeg_it_wraps_on_every_endpoint() {
    let fixtures = dicom_fixtures();
    let server = Server::start(&[]);
    let jpeg = std::fs::read(&fixtures.jpegs[0]).unwrap();
    let wrapped = dicom("ham-0.dcm");
    let from_jpeg = server.predict(&[("file", &jpeg)]).json()["prediction"].clone();
    let (content_type, body) = dicom_part(&wrapped);
    let from_dicom = server.post("/predict", &content_type, &body).json()["prediction"].clone();
    for key in ["class_name", "confidence", "all_predictions", "ood_score"] {
        assert_eq!(from_dicom[key], from_jpeg[key], "{key}");
    }
    let info = &from_dicom["dicom"];
    assert_eq!(info["sop_class"], "Dermoscopic Photography Image Storage");
    assert_eq!(info["modality"], "DMS");
    assert_eq!(info["body_site"], "Upper arm");
    assert!(from_jpeg.get("dicom").is_none());

    let (content_type_batch, body_batch) = multipart(&[("file", &wrapped), ("file", &jpeg)]);
    let batch = server
        .post("/predict/batch", &content_type_batch, &body_batch)
        .json();
    let results = batch["predictions"].as_array().unwrap();
    assert_eq!(results[0]["prediction"]["dicom"], *info);
    // A batch of two runs another forward than one image alone: the same answer, rounded
    // differently in the last float bits on some CPUs (AVX2's fp32 kernels).
    let (in_batch, alone) = (
        results[0]["prediction"]["all_predictions"]
            .as_object()
            .unwrap(),
        from_jpeg["all_predictions"].as_object().unwrap(),
    );
    assert_eq!(in_batch.len(), alone.len());
    for (class, p) in alone {
        let q = in_batch[class].as_f64().unwrap();
        assert!(
            (p.as_f64().unwrap() - q).abs() < 1e-5,
            "{class}: {p} vs {q}"
        );
    }
    assert!(results[1]["prediction"].get("dicom").is_none());

    let explained = server.post("/explain", &content_type, &body).json();
    assert_eq!(explained["prediction"]["dicom"], *info);
    let preview = explained["explanation"]["image_png"].as_str().unwrap();
    assert!(preview.starts_with("data:image/png;base64,"));
    let (content_type_jpeg, body_jpeg) = multipart(&[("file", &jpeg)]);
    let jpeg_explained = server
        .post("/explain", &content_type_jpeg, &body_jpeg)
        .json();
    assert!(jpeg_explained["explanation"].get("image_png").is_none());
    let heatmap = |e: &serde_json::Value| e["explanation"]["heatmap_png"].clone();
    assert_eq!(heatmap(&explained), heatmap(&jpeg_explained));

    let answered = format!("{from_dicom}{explained}{batch}");
    let log = server.stderr.lock().unwrap().clone();
    for identifier in &fixtures.identifiers {
        assert!(
            !answered.contains(identifier.as_str()),
            "{identifier} answered"
        );
        assert!(!log.contains(identifier.as_str()), "{identifier} logged");
    }
    for header_value in ["Upper arm", "045Y", "Dermoscopic", "1.2.840.10008"] {
        assert!(!log.contains(header_value), "{header_value} logged:\n{log}");
    }
}

#[test]
fn dicom_that_cannot_be_classified_is_a_typed_4xx() {
    let server = Server::start(&[]);
    let cases = [
        ("mr-16bit.dcm", 400, "not a colour photograph"),
        ("rgb-16bit.dcm", 400, "bit depth"),
        ("no-pixels.dcm", 400, "without pixel data"),
        ("jpeg-ls.dcm", 415, "JPEG-LS"),
        ("examples_ybr_color.dcm", 400, "30 frames"),
    ];
    for (name, status, says) in cases {
        let (content_type, body) = dicom_part(&dicom(name));
        let error = server
            .post("/predict", &content_type, &body)
            .assert_error(status);
        assert!(error.contains(says), "{name}: {error}");
    }
}
