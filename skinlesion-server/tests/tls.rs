//! HTTPS and HTTP/2 against a running `skinlesion-server`: a certificate generated in the
//! test, HTTP/1.1 and HTTP/2 chosen by ALPN, HTTP/2 in clear by prior knowledge, plain HTTP
//! on the TLS port, and a certificate reload on SIGHUP.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use common::*;

/// A fresh self-signed certificate for `localhost` and its key, written into `dir`.
fn certificate(dir: &Path) -> (PathBuf, PathBuf, String) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let pem = generated.cert.pem();
    std::fs::write(&cert, &pem).unwrap();
    std::fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
    (cert, key, pem)
}

fn https_server(cert: &Path, key: &Path) -> Server {
    Server::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ])
}

/// A client that trusts only `cert_pem` and offers `alpn`.
fn client(cert_pem: &str, alpn: &[u8]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(config))
}

type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

async fn tls_connect(addr: SocketAddr, connector: &TlsConnector) -> std::io::Result<TlsStream> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await
}

/// One HTTP/1.1 or HTTP/2 client connection over any stream.
enum Client {
    Http1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Client {
    async fn http1<S>(io: S) -> Client
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (send, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .unwrap();
        tokio::spawn(connection);
        Client::Http1(send)
    }

    async fn http2<S>(io: S) -> Client
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (send, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
                .await
                .unwrap();
        tokio::spawn(connection);
        Client::Http2(send)
    }

    async fn send(&mut self, request: Request<Full<Bytes>>) -> (StatusCode, Version, Bytes) {
        let response = match self {
            // An HTTP/1 connection takes the next request only once it has finished the last
            // response (sending earlier fails with "connection was not ready").
            Client::Http1(s) => {
                s.ready().await.unwrap();
                s.send_request(request).await.unwrap()
            }
            Client::Http2(s) => s.send_request(request).await.unwrap(),
        };
        let (status, version) = (response.status(), response.version());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, version, body)
    }

    async fn get(&mut self, path: &str) -> (StatusCode, Version, Bytes) {
        let request = Request::get(format!("https://localhost{path}"))
            .header("host", "localhost")
            .body(Full::default())
            .unwrap();
        self.send(request).await
    }

    async fn predict(&mut self, file: &[u8]) -> (StatusCode, Version, serde_json::Value) {
        let (content_type, body) = multipart(&[("file", file)]);
        let request = Request::post("https://localhost/predict")
            .header("host", "localhost")
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let (status, version, body) = self.send(request).await;
        (status, version, serde_json::from_slice(&body).unwrap())
    }
}

async fn wait_until_ready(addr: SocketAddr, connector: &TlsConnector) {
    for _ in 0..400 {
        if let Ok(stream) = tls_connect(addr, connector).await {
            if Client::http1(stream).await.get("/ready").await.0 == StatusCode::OK {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the HTTPS server never became ready");
}

// One function: one HTTPS server, asked over HTTP/1.1, over HTTP/2, and in plain HTTP.
#[tokio::test(flavor = "multi_thread")]
async fn https_serves_http1_and_http2_by_alpn_and_refuses_plain_http_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, pem) = certificate(dir.path());
    let server = https_server(&cert, &key);
    let http1 = client(&pem, b"http/1.1");
    wait_until_ready(server.addr, &http1).await;
    let jpeg = image(&test_ids(1)[0]);

    let mut c = Client::http1(tls_connect(server.addr, &http1).await.unwrap()).await;
    let (status, version, body) = c.get("/health").await;
    assert_eq!((status, version), (StatusCode::OK, Version::HTTP_11));
    assert!(String::from_utf8_lossy(&body).contains("healthy"));
    let (status, _, json) = c.predict(&jpeg).await;
    assert_eq!((status, &json["success"]), (StatusCode::OK, &true.into()));

    let stream = tls_connect(server.addr, &client(&pem, b"h2"))
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut c = Client::http2(stream).await;
    let (status, version, _) = c.get("/health").await;
    assert_eq!((status, version), (StatusCode::OK, Version::HTTP_2));
    let (status, _, json) = c.predict(&jpeg).await;
    assert_eq!((status, &json["success"]), (StatusCode::OK, &true.into()));

    // Plain HTTP on the TLS port: no HTTP answer, the connection just closes.
    let mut plain = std::net::TcpStream::connect(server.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/"), "answered in clear");
    let mut c = Client::http1(tls_connect(server.addr, &http1).await.unwrap()).await;
    assert_eq!(c.get("/live").await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_certificate_for_new_connections_and_open_ones_carry_on() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, old_pem) = certificate(dir.path());
    let server = https_server(&cert, &key);
    let old = client(&old_pem, b"http/1.1");
    wait_until_ready(server.addr, &old).await;
    let mut open = Client::http1(tls_connect(server.addr, &old).await.unwrap()).await;
    assert_eq!(open.get("/live").await.0, StatusCode::OK);

    let (_, _, new_pem) = certificate(dir.path());
    let hup = Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let new = client(&new_pem, b"http/1.1");
    let mut reloaded = false;
    for _ in 0..100 {
        if tls_connect(server.addr, &new).await.is_ok() {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reloaded, "new connections never got the new certificate");
    assert!(tls_connect(server.addr, &old).await.is_err());
    // The connection opened before the reload is still served.
    assert_eq!(open.get("/live").await.0, StatusCode::OK);
    let log = server.stderr.lock().unwrap().clone();
    assert!(log.contains("reloaded the TLS certificate"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_in_clear_by_prior_knowledge_has_the_same_routes_and_limits() {
    let server = Server::start(&["--body-limit", "100000"]);
    let mut c = Client::http2(TcpStream::connect(server.addr).await.unwrap()).await;
    let (status, version, _) = c.get("/health").await;
    assert_eq!((status, version), (StatusCode::OK, Version::HTTP_2));
    let (status, _, json) = c.predict(&image(&test_ids(1)[0])).await;
    assert_eq!((status, &json["success"]), (StatusCode::OK, &true.into()));
    let (status, _, json) = c.predict(&vec![0u8; 200_000]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{json}");
    assert_eq!(json["success"], false);
    // The connection survives a refused stream.
    assert_eq!(c.get("/live").await.0, StatusCode::OK);
}

#[test]
fn an_unusable_certificate_or_key_stops_start_up_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _, _) = certificate(dir.path());
    let absent = dir.path().join("absent-key.pem");
    let output = Command::new(env!("CARGO_BIN_EXE_skinlesion-server"))
        .args(["--port", "0", "--device", "cpu", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&absent)
        .arg("--model")
        .arg(model())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("absent-key.pem"), "{stderr}");
}
