//! Exposing the server: bearer tokens (required off loopback), their reload, and the headers
//! browsers get. Over real sockets, against a running `skinlesion-server`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const TOKEN: &str = "ops-token-0123456789abcdef";

fn request(server: &Server, method: &str, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    server.send(
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n")
            .as_bytes(),
    )
}

fn predict_with(server: &Server, authorization: Option<&str>) -> HttpResponse {
    upload_with(server, "/predict", authorization)
}

fn upload_with(server: &Server, path: &str, authorization: Option<&str>) -> HttpResponse {
    let (content_type, body) = multipart(&[("file", &image(&test_ids(1)[0]))]);
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    server.send(&raw)
}

fn assert_unauthorized(response: &HttpResponse, invalid: bool) {
    response.assert_error(401);
    let challenge = &response.headers["www-authenticate"];
    assert!(challenge.starts_with("Bearer realm="), "{challenge}");
    assert_eq!(challenge.contains("invalid_token"), invalid, "{challenge}");
}

// One function: one server with a token file, every route with no, a wrong and the right
// token, then a token rotation by SIGHUP, then its log.
#[test]
fn with_a_token_file_the_protected_routes_need_a_listed_token_and_reload_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("# ops\n{TOKEN}\n")).unwrap();
    let server = Server::start(&["--api-tokens-file", tokens.to_str().unwrap()]);
    let right = format!("Bearer {TOKEN}");

    assert_unauthorized(&predict_with(&server, None), false);
    assert_unauthorized(
        &predict_with(&server, Some("Bearer wrong-token-0123456789")),
        true,
    );
    assert_unauthorized(
        &predict_with(&server, Some(&format!("Basic {TOKEN}"))),
        false,
    );
    let ok = predict_with(&server, Some(&right));
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["success"], true);
    // An explanation sees the image too.
    assert_unauthorized(&upload_with(&server, "/explain", None), false);
    let explained = upload_with(&server, "/explain", Some(&right));
    assert_eq!(explained.status, 200, "{}", explained.text());
    assert_unauthorized(&request(&server, "GET", "/metrics", &[]), false);
    let metrics = request(&server, "GET", "/metrics", &[("Authorization", &right)]);
    assert_eq!(metrics.status, 200);
    // Orchestrators and browsers reach these without a token.
    for path in ["/live", "/ready", "/health", "/", "/openapi.yaml"] {
        assert_eq!(server.get(path).status, 200, "{path}");
    }

    // Rotation: the new token works and the old one stops, without a restart.
    let rotated = "rotated-token-0123456789abcdef";
    std::fs::write(&tokens, format!("{rotated}\n")).unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let new = format!("Bearer {rotated}");
    let mut reloaded = false;
    for _ in 0..100 {
        if predict_with(&server, Some(&new)).status == 200 {
            reloaded = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(reloaded, "the rotated token was never accepted");
    assert_unauthorized(&predict_with(&server, Some(&right)), true);
    // A broken file on reload keeps the tokens in force.
    std::fs::write(&tokens, "\n").unwrap();
    Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(predict_with(&server, Some(&new)).status, 200);

    let log = server.stderr.lock().unwrap().clone();
    assert!(log.contains("reloaded the API tokens"), "{log}");
    assert!(log.contains("kept the previous API tokens"), "{log}");
    assert!(
        !log.contains(TOKEN) && !log.contains(rotated),
        "a token reached the log"
    );
}

#[test]
fn an_address_reachable_from_other_machines_needs_tokens_or_an_explicit_no_auth() {
    let refused = Command::new(env!("CARGO_BIN_EXE_skinlesion-server"))
        .args([
            "--host", "0.0.0.0", "--port", "0", "--device", "cpu", "--model",
        ])
        .arg(model())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("--api-tokens-file") && stderr.contains("--no-auth"),
        "{stderr}"
    );

    let open = Server::start(&["--host", "0.0.0.0", "--no-auth"]);
    assert_eq!(predict_with(&open, None).status, 200);
    let log = open.stderr.lock().unwrap().clone();
    assert!(log.contains("authentication off (--no-auth)"), "{log}");

    // On loopback (the default) it is off, and the log says so.
    let local = Server::start(&[]);
    assert_eq!(predict_with(&local, None).status, 200);
    let log = local.stderr.lock().unwrap().clone();
    assert!(log.contains("authentication=off"), "{log}");
}

#[test]
fn browsers_get_a_locked_down_page_uncached_predictions_and_cors_only_when_asked() {
    let server = Server::start(&[]);
    let page = server.get("/");
    let policy = &page.headers["content-security-policy"];
    for directive in [
        "default-src 'none'",
        "script-src 'sha256-",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{policy}");
    }
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    assert_eq!(page.headers["referrer-policy"], "no-referrer");
    assert_eq!(page.headers["x-frame-options"], "DENY");
    let prediction = predict_with(&server, None);
    assert_eq!(prediction.headers["cache-control"], "no-store");
    assert_eq!(prediction.headers["x-content-type-options"], "nosniff");
    let origin = ("Origin", "https://viewer.example.org");
    let no_cors = request(&server, "GET", "/health", &[origin]);
    assert!(!no_cors.headers.contains_key("access-control-allow-origin"));
    assert_eq!(
        request(&server, "OPTIONS", "/predict", &[origin]).status,
        405
    );

    let cors = Server::start(&["--cors-origin", "https://viewer.example.org"]);
    let allowed = request(&cors, "GET", "/health", &[origin]);
    assert_eq!(
        allowed.headers["access-control-allow-origin"],
        "https://viewer.example.org"
    );
    assert_eq!(allowed.headers["vary"], "Origin");
    let other = request(
        &cors,
        "GET",
        "/health",
        &[("Origin", "https://evil.example")],
    );
    assert!(!other.headers.contains_key("access-control-allow-origin"));
    let preflight = request(&cors, "OPTIONS", "/predict", &[origin]);
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.headers["access-control-allow-methods"], "POST");
    assert!(preflight.headers["access-control-allow-headers"].contains("authorization"));
}
