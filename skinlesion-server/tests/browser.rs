//! The web page in a real browser: headless Chromium driven through chromedriver (WebDriver)
//! uploads a real image, clicks "Analyze Image", and the rendered class and bars are checked
//! against in-process classification; the "show where the model looked" toggle must lay the
//! heatmap over the preview and take it away; an API error must be shown to the person.
//! A DICOM file's preview (drawn from the server's decoded pixels) must match its JPEG's.
//! Screenshots are saved to `target/test-artifacts/page.png` and `page-heatmap.png`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/setup.sh` installs them).

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    process: Child,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

impl Driver {
    fn start() -> Driver {
        let binary =
            std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        assert!(
            std::path::Path::new(&binary).exists(),
            "{binary} not found: install Debian's chromium and chromium-driver (bash scripts/setup.sh)"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let process = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                         "--disable-dev-shm-usage", "--disable-component-update", "--no-first-run",
                         "--window-size=900,1400",
                         format!("--user-data-dir={}", profile.path().display())]
            }
        }}});
        let session = json_request(addr, "POST", "/session", Some(&capabilities));
        let session = session["value"]["sessionId"].as_str().unwrap().to_owned();
        Driver {
            process,
            addr,
            session,
            _profile: profile,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        json_request(self.addr, method, &path, body.as_ref())["value"].clone()
    }

    fn find(&self, css: &str) -> String {
        let found = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        found[ELEMENT].as_str().unwrap().to_owned()
    }

    fn text(&self, css: &str) -> String {
        let id = self.find(css);
        self.call("GET", &format!("/element/{id}/text"), None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Waits until the element shows non-empty text.
    fn wait_for_text(&self, css: &str) -> String {
        let started = Instant::now();
        loop {
            let text = self.text(css);
            if !text.is_empty() {
                return text;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{css} stayed empty"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn click(&self, css: &str) {
        let id = self.find(css);
        self.call("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    fn displayed(&self, css: &str) -> bool {
        let id = self.find(css);
        self.call("GET", &format!("/element/{id}/displayed"), None) == json!(true)
    }

    /// What the element shows, as the browser draws it.
    fn element_pixels(&self, css: &str) -> skinlesion_core::image::RgbImage {
        let id = self.find(css);
        let shot = self.call("GET", &format!("/element/{id}/screenshot"), None);
        let png = decode_base64(shot.as_str().unwrap());
        skinlesion_core::image::load_from_memory(&png)
            .unwrap()
            .to_rgb8()
    }

    /// Runs `body` (a function body) in the page and returns its value.
    fn script(&self, body: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": body, "args": []})),
        )
    }

    fn upload_and_analyze(&self, file: &std::path::Path) {
        let input = self.find("#file");
        self.call(
            "POST",
            &format!("/element/{input}/value"),
            Some(json!({"text": file.display().to_string()})),
        );
        let button = self.find("#analyze");
        self.call("POST", &format!("/element/{button}/click"), Some(json!({})));
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| {
            json_request(
                self.addr,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
            )
        });
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

// One function: a user's session in one browser, each step building on the page the last left.
#[test]
fn the_page_classifies_an_uploaded_image_and_shows_errors() {
    let server = Server::start(&[]);
    let driver = Driver::start();
    driver.call(
        "POST",
        "/url",
        Some(json!({"url": format!("http://{}/", server.addr)})),
    );
    assert!(driver.text("main").contains("Not a medical device"));

    // A real image: the rendered answer is the in-process answer, with a bar for every class.
    let id = &test_ids(1)[0];
    let path = skinlesion_core::testing::ham10000_dir()
        .join(format!("images/{id}.jpg"))
        .canonicalize()
        .unwrap();
    let expected = in_process().classify(&path).unwrap();
    driver.upload_and_analyze(&path);
    let class_name = driver.wait_for_text("#class-name");
    assert_eq!(class_name, expected.class().name());
    let bars = driver.call(
        "POST",
        "/elements",
        Some(json!({"using": "css selector", "value": "#bars li"})),
    );
    assert_eq!(
        bars.as_array().unwrap().len(),
        expected.probabilities().len()
    );
    let bar_text = driver.text("#bars");
    for (class, p) in expected.probabilities() {
        assert!(bar_text.contains(class.name()), "{bar_text}");
        assert!(
            bar_text.contains(&format!("{:.1}%", 100.0 * p)),
            "{class}: {bar_text}"
        );
    }
    assert!(driver
        .text("#confidence")
        .contains(&format!("{:.1}%", 100.0 * expected.confidence())));
    let badge = driver.text("#badge");
    if expected.is_cancerous() {
        assert!(badge.contains("see a dermatologist"), "{badge}");
    }
    assert!(driver
        .text("#bars li.answer")
        .starts_with(expected.best_guess().name()));

    // Where the model looked: the toggle lays the map over the preview and takes it away.
    wait_until(&driver, "the map toggle", |d| d.displayed("#show-map"));
    assert!(driver
        .text("#map-class")
        .contains(expected.best_guess().code()));
    assert!(!driver.displayed("#heatmap"));
    let plain = driver.element_pixels("#preview-box");
    driver.click("#show-map");
    wait_until(&driver, "the heatmap", |d| d.displayed("#heatmap"));
    let overlaid = driver.element_pixels("#preview-box");
    driver.click("#show-map");
    wait_until(&driver, "the heatmap hidden", |d| !d.displayed("#heatmap"));
    let hidden_again = driver.element_pixels("#preview-box");
    let changed = mean_difference(&plain, &overlaid);
    assert!(
        changed > 5.0,
        "the overlay changed the preview by only {changed:.2} per channel"
    );
    let restored = mean_difference(&plain, &hidden_again);
    assert!(
        restored < 0.5,
        "hiding the overlay left {restored:.2} per channel"
    );
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    overlaid.save(artifacts.join("page-heatmap.png")).unwrap();

    // A low-confidence abstention (recorded for the shipped model in core's shipped_model.rs):
    // its best guess is the longest bar, and the note explains.
    let path = skinlesion_core::testing::ham10000_dir()
        .join("images/ISIC_0024521.jpg")
        .canonicalize()
        .unwrap();
    let expected = in_process().classify(&path).unwrap();
    assert_eq!(
        expected.unknown_reason(),
        Some(skinlesion_core::UnknownReason::LowConfidence)
    );
    driver.upload_and_analyze(&path);
    wait_until(&driver, "the low-confidence answer", |d| {
        d.text("#class-name") == "Unknown"
            && d.text("#bars li.answer")
                .starts_with(expected.best_guess().name())
    });
    assert!(driver.text("#badge").contains("No confident answer"));
    assert!(driver
        .text("#unknown-note")
        .contains("not confident enough"));
    let first_bar = driver.text("#bars li:first-child");
    assert!(
        first_bar.starts_with(expected.best_guess().name()),
        "{first_bar}"
    );

    // A photograph that is not dermoscopy: said plainly, and no lesion probabilities shown.
    let photo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../skinlesion-core/tests/data/not-dermoscopy/coffee.jpg")
        .canonicalize()
        .unwrap();
    driver.upload_and_analyze(&photo);
    wait_until(&driver, "the not-dermoscopy answer", |d| {
        d.text("#badge") == "Not a dermoscopic image"
    });
    assert!(driver
        .text("#ood-note")
        .contains("does not look like a dermoscopic image of a skin lesion"));
    assert_eq!(
        driver.text("#bars"),
        "",
        "no bars for what is not dermoscopy"
    );
    assert_eq!(driver.text("#unknown-note"), "");
    assert_eq!(driver.text("#confidence"), "");

    // Save what a person sees.
    let shot = driver.call("GET", "/screenshot", None);
    let png = decode_base64(shot.as_str().unwrap());
    assert!(png.starts_with(b"\x89PNG"));
    std::fs::write(artifacts.join("page.png"), &png).unwrap();

    // A file that is not an image: the API's error reaches the person.
    let dir = tempfile::tempdir().unwrap();
    let text_file = dir.path().canonicalize().unwrap().join("notes.txt");
    std::fs::write(&text_file, "not an image").unwrap();
    driver.upload_and_analyze(&text_file);
    let error = driver.wait_for_text("#error");
    assert!(error.contains("unsupported image format"), "{error}");

    dicom_is_previewed_from_the_answer(&driver);
}

/// A browser cannot draw DICOM, so a `.dcm` file's preview is the pixels `/explain` decoded:
/// the page must show the same picture, the same answer and a line naming what the file is as
/// for the JPEG the file wraps, and no such line for the JPEG itself.
fn dicom_is_previewed_from_the_answer(driver: &Driver) {
    let fixtures = skinlesion_core::testing::dicom_fixtures();
    let jpeg = fixtures.jpegs[0].canonicalize().unwrap();
    let expected = in_process().classify(&jpeg).unwrap();
    let mut previews = Vec::new();
    for file in [jpeg, fixtures.path("ham-0.dcm").canonicalize().unwrap()] {
        driver.upload_and_analyze(&file);
        wait_until(driver, "the answer and its map", |d| {
            d.text("#class-name") == expected.class().name() && d.displayed("#show-map")
        });
        wait_until(driver, "the preview drawn", |d| {
            d.script("const p = document.getElementById('preview'); return p.complete && p.naturalWidth > 0;")
                == json!(true)
        });
        previews.push(driver.element_pixels("#preview"));
    }
    let note = driver.text("#dicom-note");
    assert!(
        note.contains("Dermoscopic Photography Image Storage") && note.contains("DMS"),
        "{note}"
    );
    let difference = mean_difference(&previews[0], &previews[1]);
    assert!(
        difference < 3.0,
        "the DICOM preview differs from the JPEG's by {difference:.2} per channel"
    );
    driver.upload_and_analyze(&fixtures.jpegs[0].canonicalize().unwrap());
    wait_until(driver, "the JPEG's answer", |d| d.displayed("#show-map"));
    assert!(!driver.displayed("#dicom-note"), "a JPEG has no DICOM line");
}

/// Mean absolute difference per channel of two screenshots of one element (0–255).
fn mean_difference(
    a: &skinlesion_core::image::RgbImage,
    b: &skinlesion_core::image::RgbImage,
) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let total: u64 = (a.as_raw().iter().zip(b.as_raw()))
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    total as f64 / a.as_raw().len() as f64
}

/// Polls the page until `ready` holds (rendering follows the upload asynchronously).
fn wait_until(driver: &Driver, what: &str, ready: impl Fn(&Driver) -> bool) {
    let started = Instant::now();
    while !ready(driver) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what} did not appear: {}",
            driver.text("#result")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .map(value)
        .collect();
    bytes
        .chunks(4)
        .flat_map(|q| {
            let n = q
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &v)| n | u32::from(v) << (18 - 6 * i));
            let out = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.into_iter().take(q.len().saturating_sub(1))
        })
        .collect()
}
