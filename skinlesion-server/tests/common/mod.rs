//! Shared by the server's tests: start a real `skinlesion-server`, and a small HTTP/1.1 client
//! that can also send malformed requests.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use skinlesion_core::{Classifier, Device};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub use skinlesion_core::testing::shipped_model as model;

pub fn image(id: &str) -> Vec<u8> {
    std::fs::read(skinlesion_core::testing::ham10000_dir().join(format!("images/{id}.jpg")))
        .unwrap()
}

/// Test-split image ids, the classes taken in turn.
pub fn test_ids(n: usize) -> Vec<String> {
    skinlesion_core::testing::ham10000_sample("test", n)
        .into_iter()
        .map(|i| i.id)
        .collect()
}

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    pub fn start(args: &[&str]) -> Server {
        Self::start_with(args, |_| {})
    }

    /// Like `start`, after `customise` has set up the command (working directory, environment).
    pub fn start_with(args: &[&str], customise: impl FnOnce(&mut Command)) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_skinlesion-server"));
        // The shipped model unless the test names another.
        if !args.contains(&"--model") {
            command.arg("--model").arg(model());
        }
        command
            .args(["--port", "0", "--device", "cpu"])
            .args(args)
            .env("RUST_LOG", "info");
        customise(&mut command);
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let https = line.starts_with("listening on https://");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .or_else(|| line.trim().strip_prefix("listening on https://"))
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = std::sync::Arc::clone(&stderr);
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let server = Server {
            child,
            addr,
            stderr,
        };
        if https {
            return server; // plain HTTP cannot ask; the TLS tests wait themselves
        }
        // Ready once the warm-up forward pass has run.
        for _ in 0..200 {
            if server.get("/ready").status == 200 {
                return server;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("server never became ready");
    }

    pub fn send(&self, raw: &[u8]) -> HttpResponse {
        send(self.addr, raw)
    }

    pub fn get(&self, path: &str) -> HttpResponse {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
    }

    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> HttpResponse {
        post(self.addr, path, content_type, body)
    }

    pub fn predict(&self, files: &[(&str, &[u8])]) -> HttpResponse {
        let (content_type, body) = multipart(files);
        self.post("/predict", &content_type, &body)
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// An error answer: the status, `success: false` and a message.
    pub fn assert_error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}", self.text());
        let json = self.json();
        assert_eq!(json["success"], false);
        let message = json["error"].as_str().unwrap().to_owned();
        assert!(!message.is_empty());
        message
    }
}

/// A POST with a body, on a fresh connection.
pub fn post(addr: SocketAddr, path: &str, content_type: &str, body: &[u8]) -> HttpResponse {
    send(addr, &post_request(path, content_type, body, false))
}

/// A POST with a body and `Authorization: Bearer token`, on a fresh connection.
pub fn post_with_token(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: &[u8],
    token: &str,
) -> HttpResponse {
    let mut raw = post_request(path, content_type, body, false);
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 2;
    let header = format!("Authorization: Bearer {token}\r\n");
    raw.splice(head_end..head_end, header.into_bytes());
    send(addr, &raw)
}

/// The bytes of a POST with a body; `keep_alive` leaves out `Connection: close`.
pub fn post_request(path: &str, content_type: &str, body: &[u8], keep_alive: bool) -> Vec<u8> {
    let connection = if keep_alive {
        ""
    } else {
        "Connection: close\r\n"
    };
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\n{connection}Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

/// One HTTP/1.1 exchange on a fresh connection (the request says `Connection: close`).
pub fn send(addr: SocketAddr, raw: &[u8]) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    parse_response(&exchange(&mut stream, raw))
}

/// Writes one request on `stream` and reads its raw response (empty if the peer closed), so a
/// caller can keep the connection alive for the next one.
pub fn exchange(stream: &mut TcpStream, raw: &[u8]) -> Vec<u8> {
    // Write and read at once: a server may answer (413) before reading the whole body.
    let Ok(mut writer) = stream.try_clone() else {
        return Vec::new();
    };
    let raw = raw.to_vec();
    let writing = std::thread::spawn(move || {
        let _ = writer.write_all(&raw);
    });
    // Read until the response is complete (by Content-Length or the chunked terminator):
    // some peers (chromedriver) keep the connection open despite `Connection: close`.
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
        if response_complete(&bytes) {
            break;
        }
    }
    let _ = writing.join();
    bytes
}

fn response_complete(bytes: &[u8]) -> bool {
    let Some(split) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&bytes[..split]).to_ascii_lowercase();
    let body = &bytes[split + 4..];
    if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return body.len() >= len;
    }
    head.contains("transfer-encoding: chunked") && body.ends_with(b"0\r\n\r\n")
}

pub fn parse_response(bytes: &[u8]) -> HttpResponse {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(bytes)));
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = bytes[split + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|t| t == "chunked")
    {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

pub fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16)
                .unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[line_end + 2..line_end + 2 + size]);
        data = &data[line_end + 4 + size..];
    }
}

pub const BOUNDARY: &str = "----skinlesion-test-boundary";

pub fn multipart(files: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let names: Vec<String> = (0..files.len()).map(|i| format!("image{i}.jpg")).collect();
    let parts: Vec<(&str, &str, &[u8])> = files
        .iter()
        .zip(&names)
        .map(|((field, data), name)| (*field, name.as_str(), *data))
        .collect();
    multipart_parts(&parts)
}

/// A multipart body of (field, file name, data) parts, and its content type.
pub fn multipart_parts(parts: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    let mut body = Vec::new();
    for (field, name, data) in parts {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\nContent-Type: image/jpeg\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

pub fn in_process() -> Classifier {
    Classifier::builder(model())
        .device(Device::Cpu)
        .build()
        .unwrap()
}

/// Field by field: the shape of the original API, and the same numbers as in-process.
pub fn assert_prediction_matches(json: &serde_json::Value, expected: &skinlesion_core::Prediction) {
    let object = json.as_object().unwrap();
    let keys: Vec<&str> = object.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "class_name",
            "is_cancerous",
            "confidence",
            "all_predictions",
            "unknown_reason",
            "ood_score"
        ]
    );
    let reason = expected.unknown_reason().map(|r| r.code());
    assert_eq!(json["unknown_reason"].as_str(), reason);
    match expected.ood_score() {
        Some(score) => {
            let got = json["ood_score"].as_f64().unwrap();
            // Batched with other requests: float sums in another order.
            let tolerance = 1e-5 * f64::from(score).abs().max(1.0);
            assert!(
                (got - f64::from(score)).abs() <= tolerance,
                "{got} vs {score}"
            );
        }
        None => assert!(json["ood_score"].is_null()),
    }
    assert_eq!(json["class_name"], expected.class().name());
    assert_eq!(json["is_cancerous"], expected.is_cancerous());
    let confidence = json["confidence"].as_f64().unwrap();
    assert!((confidence - f64::from(expected.confidence())).abs() < 1e-6);
    let all = json["all_predictions"].as_object().unwrap();
    let names: Vec<&str> = all.keys().map(String::as_str).collect();
    let expected_names: Vec<&str> = expected
        .probabilities()
        .iter()
        .map(|(c, _)| c.name())
        .collect();
    assert_eq!(names, expected_names, "stable class order");
    for (class, p) in expected.probabilities() {
        let got = all[class.name()].as_f64().unwrap();
        assert!((got - f64::from(*p)).abs() < 1e-6, "{class}: {got} vs {p}");
    }
    let sum: f64 = all.values().map(|v| v.as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-4);
}

/// A JSON request over the same minimal client (for WebDriver).
pub fn json_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> serde_json::Value {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let response = send(addr, raw.as_bytes());
    let json = response.json();
    assert!(
        response.status < 300,
        "{method} {path}: {} {json}",
        response.status
    );
    json
}
