//! The server over real TCP sockets: a running `skinlesion-server` with the shipped model and
//! real HAM10000 images, every endpoint, every bad input, concurrency and graceful shutdown.

mod common;

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::*;

// One function: one server started once, every endpoint checked against the original shape.
#[test]
fn every_endpoint_answers_in_the_original_shape() {
    let server = Server::start(&[]);
    let classifier = in_process();

    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert!(page.headers["content-type"].starts_with("text/html"));
    let html = page.text();
    assert!(html.contains("Analyze Image") && html.contains("Not a medical device"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page must work offline"
    );

    let health = server.get("/health");
    assert_eq!(health.status, 200);
    assert_eq!(
        health.json(),
        serde_json::json!({"status": "healthy", "model_loaded": true})
    );
    assert_eq!(server.get("/live").json()["status"], "alive");
    let ready = server.get("/ready").json();
    assert_eq!(ready["status"], "ready");
    assert_eq!(
        ready["classes"].as_array().unwrap().len(),
        classifier.classes().len()
    );
    let gate = classifier.metadata().calibration.dermoscopy_gate.as_ref();
    assert_eq!(
        ready["dermoscopy_gate"],
        serde_json::to_value(gate).unwrap()
    );
    assert_eq!(ready["dermoscopy_gate"]["score"], "dermoscopy_head");
    // The server's `auto` resolves as the library's does on this machine.
    assert_eq!(ready["precision"], classifier.precision().to_string());
    let openapi = server.get("/openapi.yaml");
    assert_eq!(openapi.status, 200);
    assert!(openapi.text().contains("/predict/batch"));

    let ids = test_ids(8);
    for id in &ids {
        let bytes = image(id);
        let response = server.predict(&[("file", &bytes)]);
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.headers["content-type"], "application/json");
        let json = response.json();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["success", "prediction"]);
        assert_eq!(json["success"], true);
        assert_prediction_matches(&json["prediction"], &classifier.classify(&bytes).unwrap());
    }

    // Batch: one result per file, in order, a bad file answered in its place.
    let files: Vec<Vec<u8>> = ids[..3].iter().map(|id| image(id)).collect();
    let (content_type, body) = multipart(&[
        ("file", &files[0]),
        ("file", b"not an image"),
        ("file", &files[1]),
        ("file", &files[2]),
    ]);
    let batch = server.post("/predict/batch", &content_type, &body);
    assert_eq!(batch.status, 200, "{}", batch.text());
    let results = batch.json()["predictions"].as_array().unwrap().clone();
    assert_eq!(results.len(), 4);
    assert_eq!(results[1]["success"], false);
    assert_eq!(results[1]["status"], 415);
    for (result, bytes) in [&results[0], &results[2], &results[3]]
        .into_iter()
        .zip(&files)
    {
        assert_eq!(result["success"], true);
        assert_prediction_matches(&result["prediction"], &classifier.classify(bytes).unwrap());
    }

    let metrics = server.get("/metrics").text();
    assert!(
        metrics.contains("skinlesion_http_requests_total{route=\"/predict\",status=\"200\"} 8"),
        "{metrics}"
    );
    assert!(metrics.contains("skinlesion_inference_batch_size_count"));
    assert!(metrics.contains("skinlesion_inference_queue_depth"));
    assert!(metrics.contains("skinlesion_http_request_duration_seconds_bucket"));
    let info = format!("precision=\"{}\"", classifier.precision());
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("skinlesion_model_info{") && l.contains(&info)),
        "{metrics}"
    );
}

/// Whether the server's log has `text` (its stderr is read on another thread: give it a moment).
fn logged(server: &Server, text: &str) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !server.stderr.lock().unwrap().contains(text) {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    true
}

#[test]
fn precision_is_chosen_at_start_up_and_reported() {
    let offers_bf16 = !in_process().metadata().other_precisions.is_empty();
    let server = Server::start(&["--precision", "fp32"]);
    assert_eq!(server.get("/ready").json()["precision"], "fp32");
    // A lone pass takes every core, in every precision.
    let cores = skinlesion_core::available_cores();
    assert!(logged(&server, &format!("lone_threads={cores}")));
    drop(server);
    let bf16 = [
        skinlesion_core::Precision::Bf16,
        skinlesion_core::Precision::Bf16Checked,
    ];
    let runs_bf16 = skinlesion_core::cpu_runs_bf16_convolutions();
    if offers_bf16 && !runs_bf16 {
        // An AVX2-only CPU: the server refuses to start, saying why.
        let refused = Command::new(env!("CARGO_BIN_EXE_skinlesion-server"))
            .args(["--port", "0", "--device", "cpu", "--precision", "bf16"])
            .output()
            .unwrap();
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("cannot run the model's bf16 network"),
            "{stderr}"
        );
    }
    for precision in bf16.into_iter().filter(|_| offers_bf16 && runs_bf16) {
        let name = precision.to_string();
        let server = Server::start(&["--precision", &name]);
        assert_eq!(server.get("/ready").json()["precision"], name.as_str());
        let lone = format!("lone_threads={cores}");
        assert!(logged(&server, &lone), "{name}");
        let bytes = image(&test_ids(1)[0]);
        let expected = skinlesion_core::Classifier::builder(model())
            .device(skinlesion_core::Device::Cpu)
            .precision(precision)
            .build()
            .unwrap()
            .classify(&bytes)
            .unwrap();
        let answer = server.predict(&[("file", &bytes)]).json();
        assert_prediction_matches(&answer["prediction"], &expected);
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_skinlesion-server"))
        .args(["--port", "0", "--precision", "fp16"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("auto, fp32, bf16 or bf16-checked"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn every_bad_input_gets_its_status_and_the_server_keeps_serving() {
    let server = Server::start(&["--body-limit", "300000"]);
    let good = image(&test_ids(1)[0]);
    let check_still_serving = || {
        let ok = server.predict(&[("file", &good)]);
        assert_eq!(ok.status, 200, "{}", ok.text());
    };
    let mut png = Vec::new();
    skinlesion_core::image::load_from_memory(&good)
        .unwrap()
        .write_to(
            &mut std::io::Cursor::new(&mut png),
            skinlesion_core::image::ImageFormat::Png,
        )
        .unwrap();

    // 12 megapixels in 2647 valid scans: refused from its markers, before any decoding.
    let many_scans = skinlesion_core::testing::many_scan_jpeg(4032, 3024, 2647);
    let cases: Vec<(&str, HttpResponse, u16)> = vec![
        ("no body", server.post("/predict", &format!("multipart/form-data; boundary={BOUNDARY}"), b""), 400),
        ("not multipart", server.post("/predict", "application/json", b"{}"), 400),
        ("wrong field name", server.predict(&[("image", &good)]), 400),
        ("empty file", server.predict(&[("file", b"")]), 400),
        ("text file", server.predict(&[("file", b"this is a text file, not an image\n")]), 415),
        ("truncated JPEG", server.predict(&[("file", &good[..good.len() / 2])]), 400),
        ("truncated PNG", server.predict(&[("file", &png[..png.len() / 2])]), 400),
        ("JPEG with 2647 scans", server.predict(&[("file", &many_scans)]), 400),
        ("100000x100000 PNG header", server.predict(&[("file", &skinlesion_core::testing::png_header_only(100_000, 100_000))]), 413),
        // Refused from the headers alone: the body is never sent.
        ("declared body over the limit", server.send(format!("POST /predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: 400000\r\n\r\n").as_bytes()), 413),
        ("broken multipart boundary", server.post("/predict", "multipart/form-data; boundary=abc", b"--abc\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nxx"), 400),
        ("GET on /predict", server.get("/predict"), 405),
        ("unknown path", server.get("/upload"), 404),
        ("DELETE on /health", server.send(b"DELETE /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), 405),
    ];
    for (name, response, status) in cases {
        let message = response.assert_error(status);
        eprintln!("{name}: {status} {message}");
        check_still_serving();
    }
    assert_eq!(server.get("/predict").headers["allow"], "POST");

    // Over the limit while streaming, with no Content-Length to refuse it up front.
    let (content_type, body) = multipart(&[("file", &vec![1u8; 400_000])]);
    let mut raw = format!(
        "POST /predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(16_384) {
        raw.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        raw.extend_from_slice(chunk);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    server.send(&raw).assert_error(413);
    check_still_serving();

    // The log has the request metadata and nothing of the images.
    let log = server.stderr.lock().unwrap().clone();
    assert!(
        log.contains("route=\"/predict\"") || log.contains("route=/predict"),
        "{log}"
    );
    assert!(
        !log.contains("this is a text file"),
        "upload content leaked into the log"
    );
}

#[test]
fn concurrent_requests_are_batched_and_answered_correctly() {
    let server = Server::start(&["--max-batch", "16", "--max-wait-ms", "20"]);
    let classifier = in_process();
    let ids = test_ids(16);
    let expected: Vec<_> = ids
        .iter()
        .map(|id| classifier.classify(&image(id)).unwrap())
        .collect();
    let addr = server.addr;
    std::thread::scope(|s| {
        for t in 0..64 {
            let (ids, expected) = (&ids, &expected);
            s.spawn(move || {
                let i = t % ids.len();
                let response = predict_raw(addr, &image(&ids[i]));
                assert_eq!(response.status, 200, "{}", response.text());
                assert_prediction_matches(&response.json()["prediction"], &expected[i]);
            });
        }
    });
    let metrics = server.get("/metrics").text();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in {metrics}"))
    };
    let (passes, images) = (
        value("skinlesion_inference_batch_size_count"),
        value("skinlesion_inference_batch_size_sum"),
    );
    // 64 images, plus the warm-up's one, which goes through the batcher as requests do.
    assert_eq!(images, 65.0);
    assert!(
        passes < images,
        "no batching happened: {passes} passes for {images} images"
    );
}

/// POST /predict of one image on a fresh connection.
fn predict_raw(addr: std::net::SocketAddr, jpeg: &[u8]) -> HttpResponse {
    let (content_type, body) = multipart(&[("file", jpeg)]);
    post(addr, "/predict", &content_type, &body)
}

#[test]
fn a_full_queue_answers_503_with_retry_after_and_recovers() {
    // One waiting image at most and one image per forward pass: a burst must overflow.
    let server = Server::start(&["--queue-size", "1", "--max-batch", "1"]);
    // A real image shrunk to a tiny PNG: it decodes in microseconds while every forward pass
    // still costs the full network, so the burst outpaces inference and the queue fills. (A
    // full-size JPEG decodes about as fast as one inference thread classifies, and the queue
    // then filled only sometimes.)
    let full = skinlesion_core::image::load_from_memory(&image(&test_ids(1)[0])).unwrap();
    let mut png = Vec::new();
    full.thumbnail_exact(20, 15)
        .write_to(
            &mut std::io::Cursor::new(&mut png),
            skinlesion_core::image::ImageFormat::Png,
        )
        .unwrap();
    let expected = in_process().classify(&png).unwrap();
    let addr = server.addr;
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..48)
            .map(|_| {
                let (png, expected) = (&png, &expected);
                s.spawn(move || {
                    let response = predict_raw(addr, png);
                    match response.status {
                        200 => assert_prediction_matches(&response.json()["prediction"], expected),
                        503 => {
                            let message = response.assert_error(503);
                            assert!(message.contains("overloaded"), "{message}");
                            assert_eq!(
                                response.headers.get("retry-after").map(String::as_str),
                                Some("1")
                            );
                        }
                        other => panic!("unexpected status {other}: {}", response.text()),
                    }
                    response.status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        statuses.contains(&503),
        "the burst never filled the queue: {statuses:?}"
    );
    assert!(
        statuses.contains(&200),
        "nothing was served during the burst"
    );
    // Once the burst is over, every request is served again.
    for _ in 0..5 {
        let response = predict_raw(addr, &png);
        assert_eq!(response.status, 200, "{}", response.text());
        assert_prediction_matches(&response.json()["prediction"], &expected);
    }
}

#[test]
fn images_past_the_request_timeout_answer_503_and_the_server_keeps_serving() {
    // 16 images need tens of milliseconds of inference on any CPU: far past 1 ms.
    let server = Server::start(&["--request-timeout-ms", "1", "--max-batch", "16"]);
    let jpegs: Vec<Vec<u8>> = test_ids(16).iter().map(|id| image(id)).collect();
    let files: Vec<(&str, &[u8])> = jpegs.iter().map(|j| ("file", j.as_slice())).collect();
    let (content_type, body) = multipart(&files);
    let response = server.post("/predict/batch", &content_type, &body);
    assert_eq!(response.status, 200, "{}", response.text());
    // Each image waits on its own deadline: those not answered within 1 ms are 503 items.
    let items = response.json()["predictions"].as_array().unwrap().clone();
    assert_eq!(items.len(), 16);
    let timed_out = items
        .iter()
        .filter(|item| {
            item["success"] == false
                && item["status"] == 503
                && item["error"]
                    .as_str()
                    .unwrap()
                    .contains("no answer within 1 ms")
        })
        .count();
    let answered = items.iter().filter(|item| item["success"] == true).count();
    assert_eq!(timed_out + answered, 16, "{items:?}");
    assert!(
        timed_out > 0,
        "16 images answered within 1 ms each: {items:?}"
    );
    assert_eq!(server.get("/health").status, 200);
}

#[test]
fn sigterm_finishes_in_flight_requests_then_exits_cleanly() {
    // A long batching window keeps the request in flight when the signal arrives.
    let mut server = Server::start(&["--max-batch", "64", "--max-wait-ms", "1500"]);
    let addr = server.addr;
    let bytes = image(&test_ids(1)[0]);
    let in_flight = std::thread::spawn(move || predict_raw(addr, &bytes));
    std::thread::sleep(Duration::from_millis(400));
    let status = server.terminate();
    let response = in_flight.join().unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(status.success(), "exit status {status:?}");
    assert!(
        TcpStream::connect(addr).is_err(),
        "still accepting after shutdown"
    );
}

#[test]
fn sigterm_after_keep_alive_load_exits_cleanly() {
    // What this checks: 64 keep-alive clients, then SIGTERM, then exit status 0. (A release
    // server once crashed here when its inference thread freed the model while `exit` tore
    // libtorch down; that race needs wrk's timing to show, so the load benchmark is what fails
    // on it. This test does not claim to reproduce it.)
    let mut server = Server::start(&[]);
    let addr = server.addr;
    let (content_type, body) = multipart(&[("file", &image(&test_ids(1)[0]))]);
    let raw = post_request("/predict", &content_type, &body, true);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..64)
        .map(|_| {
            let (raw, stop) = (raw.clone(), stop.clone());
            // Each client keeps one connection busy, then closes it, as a load generator does.
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                let mut answered = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let reply = exchange(&mut stream, &raw);
                    assert!(reply.starts_with(b"HTTP/1.1 200"), "{reply:?}");
                    answered += 1;
                }
                answered
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(2000));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answered: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(answered > 0);
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?} after SIGTERM");
}

#[test]
fn a_missing_or_corrupt_model_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let run = |model: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_skinlesion-server"))
            .arg("--model")
            .arg(model)
            // The fp32 network's weights are the ones cut short below (`auto` may load the
            // bf16 network first, which this folder lacks).
            .args(["--port", "0", "--precision", "fp32"])
            .output()
            .unwrap()
    };
    let missing = run(&dir.path().join("absent.json"));
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("model not found"));

    std::fs::copy(model(), dir.path().join("m.json")).unwrap();
    // The weights the manifest names, truncated.
    let weights = std::fs::read(model().with_extension("pt")).unwrap();
    std::fs::write(
        dir.path()
            .join(model().with_extension("pt").file_name().unwrap()),
        &weights[..weights.len() / 2],
    )
    .unwrap();
    let corrupt = run(&dir.path().join("m.json"));
    assert!(!corrupt.status.success());
    assert!(String::from_utf8_lossy(&corrupt.stderr).contains("checksum mismatch"));
}

#[test]
fn without_model_the_shipped_one_is_found_above_the_executable_whatever_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_skinlesion-server"))
        .args(["--port", "0", "--device", "cpu"])
        .env_remove("SKINLESION_MODEL")
        .env("RUST_LOG", "info")
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(line.starts_with("listening on http://"), "{line:?} {log}");
    let shipped = model().canonicalize().unwrap();
    assert!(log.contains(&shipped.display().to_string()), "{log}");
}
