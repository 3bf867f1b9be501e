//! `POST /explain`: the prediction plus where the model looked, the same as the core's
//! `explain_bytes`, with the same errors as `/predict` and its own for a bad `class`.

mod common;

use common::*;
use skinlesion_core::{LesionClass, DISCLAIMER};

/// The multipart body of one image, with a `class` text field when given.
fn form(file: &[u8], class: Option<&str>) -> (String, Vec<u8>) {
    let (content_type, mut body) = multipart(&[("file", file)]);
    if let Some(class) = class {
        let end = format!("--{BOUNDARY}--\r\n");
        body.truncate(body.len() - end.len());
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"class\"\r\n\r\n{class}\r\n{end}"
            )
            .as_bytes(),
        );
    }
    (content_type, body)
}

fn explain(server: &Server, path: &str, file: &[u8], class: Option<&str>) -> HttpResponse {
    let (content_type, body) = form(file, class);
    server.post(path, &content_type, &body)
}

fn heatmap_png(json: &serde_json::Value) -> Vec<u8> {
    use base64::Engine;
    let url = json["explanation"]["heatmap_png"].as_str().unwrap();
    let data = url.strip_prefix("data:image/png;base64,").unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap()
}

/// The same RGBA heatmap, up to one level per channel: the server's single-threaded forward
/// pass rounds its last float bits differently from the test's.
fn assert_same_png(got: &[u8], want: &[u8]) {
    let got = skinlesion_core::image::load_from_memory(got)
        .unwrap()
        .to_rgba8();
    let want = skinlesion_core::image::load_from_memory(want)
        .unwrap()
        .to_rgba8();
    assert_eq!(got.dimensions(), want.dimensions());
    let worst = (got.as_raw().iter().zip(want.as_raw()))
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    assert!(worst <= 1, "heatmaps differ by {worst} levels");
}

#[test]
fn explain_answers_the_prediction_and_the_cores_heatmap() {
    let server = Server::start(&[]);
    let classifier = in_process();
    for id in test_ids(3) {
        let bytes = image(&id);
        let expected = classifier.explain(&bytes, None).unwrap();
        let response = explain(&server, "/explain", &bytes, None);
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.headers["cache-control"], "no-store");
        let json = response.json();
        assert_eq!(json["success"], true);
        assert_prediction_matches(&json["prediction"], expected.prediction());
        let explanation = &json["explanation"];
        assert_eq!(
            explanation["class"],
            expected.prediction().best_guess().code()
        );
        // The original image's size (HAM10000 is 600×450 scaled to 200×150), not the model's.
        let decoded = skinlesion_core::image::load_from_memory(&bytes).unwrap();
        assert_eq!(explanation["width"], decoded.width());
        assert_eq!(explanation["height"], decoded.height());
        assert_same_png(&heatmap_png(&json), &expected.heatmap().to_png());
    }

    // A class the caller names, as a form field or in the query.
    let bytes = image(&test_ids(1)[0]);
    for (path, class) in [("/explain", Some("MEL")), ("/explain?class=BCC", None)] {
        let json = explain(&server, path, &bytes, class).json();
        let code = class.unwrap_or("BCC");
        assert_eq!(json["explanation"]["class"], code);
        let wanted = LesionClass::from_code_or_name(code);
        let expected = classifier.explain(&bytes, wanted).unwrap();
        assert_same_png(&heatmap_png(&json), &expected.heatmap().to_png());
    }
    assert!(DISCLAIMER.contains("not a medical device"));
}

#[test]
fn every_bad_explain_request_gets_its_status_and_the_server_keeps_serving() {
    let server = Server::start(&["--body-limit", "300000"]);
    let good = image(&test_ids(1)[0]);
    let cases: Vec<(&str, HttpResponse, u16)> = vec![
        (
            "unknown class",
            explain(&server, "/explain", &good, Some("XYZ")),
            400,
        ),
        (
            "Unknown is no class",
            explain(&server, "/explain", &good, Some("UNK")),
            400,
        ),
        (
            "unknown class in the query",
            explain(&server, "/explain?class=melanomaa", &good, None),
            400,
        ),
        (
            "no file",
            server.post(
                "/explain",
                &format!("multipart/form-data; boundary={BOUNDARY}"),
                format!("--{BOUNDARY}--\r\n").as_bytes(),
            ),
            400,
        ),
        (
            "not multipart",
            server.post("/explain", "application/json", b"{}"),
            400,
        ),
        ("empty file", explain(&server, "/explain", b"", None), 400),
        (
            "text file",
            explain(&server, "/explain", b"not an image at all\n", None),
            415,
        ),
        (
            "truncated JPEG",
            explain(&server, "/explain", &good[..good.len() / 2], None),
            400,
        ),
        (
            "100000x100000 PNG header",
            explain(
                &server,
                "/explain",
                &skinlesion_core::testing::png_header_only(100_000, 100_000),
                None,
            ),
            413,
        ),
        (
            "over the body limit",
            explain(&server, "/explain", &vec![7u8; 400_000], None),
            413,
        ),
        ("GET on /explain", server.get("/explain"), 405),
    ];
    for (name, response, status) in cases {
        let message = response.assert_error(status);
        eprintln!("{name}: {status} {message}");
        let ok = explain(&server, "/explain", &good, None);
        assert_eq!(ok.status, 200, "after {name}: {}", ok.text());
    }
    let unknown = explain(&server, "/explain", &good, Some("XYZ")).json();
    assert!(
        unknown["error"].as_str().unwrap().contains("MEL"),
        "the error names the classes it can explain: {unknown}"
    );
}

#[test]
fn a_model_without_class_maps_answers_501_and_still_predicts() {
    let dir = tempfile::tempdir().unwrap();
    let classes = [LesionClass::Melanoma, LesionClass::MelanocyticNevi];
    let manifest = skinlesion_core::testing::write_mean_colour_model(
        dir.path(),
        "no-maps",
        &classes,
        &skinlesion_core::testing::MeanColourWeights::distinct(classes.len()),
        skinlesion_core::testing::small_input(),
        Default::default(),
    )
    .unwrap();
    let server = Server::start(&["--model", manifest.to_str().unwrap()]);
    let good = image(&test_ids(1)[0]);
    let message = explain(&server, "/explain", &good, None).assert_error(501);
    assert!(message.contains("no class maps"), "{message}");
    assert_eq!(server.predict(&[("file", &good)]).status, 200);
}
