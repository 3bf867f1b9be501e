//! Refused uploads over real sockets, as clients that write the whole body before reading
//! (Python's `urllib`, a browser) send them: each must read its 413, not a reset.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// Writes `head` and `body_len` bytes of body on one thread, then reads the whole answer.
fn write_everything_then_read(server: &Server, head: &str, body_len: usize) -> HttpResponse {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'x'; 1 << 20];
    let mut left = body_len;
    while left > 0 {
        let n = left.min(chunk.len());
        stream
            .write_all(&chunk[..n])
            .expect("the server stopped reading a refused body");
        left -= n;
    }
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .expect("the answer was lost");
    parse_response(&answer)
}

fn post_head(content_length: usize) -> String {
    format!(
        "POST /predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {content_length}\r\n\r\n"
    )
}

#[test]
fn a_client_writing_a_declared_30_mb_body_before_reading_gets_the_413_json() {
    let server = Server::start(&[]);
    let length = 30_000_000;
    let message = write_everything_then_read(&server, &post_head(length), length).assert_error(413);
    assert!(message.contains("20000000"), "{message}");
}

#[test]
fn a_client_writing_a_chunked_body_past_the_limit_before_reading_gets_the_413_json() {
    // No Content-Length: the limit is only found while streaming, mid-body.
    let server = Server::start(&["--body-limit", "1000000"]);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "POST /predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let part = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n\r\n"
    );
    let mut body = part.into_bytes();
    body.resize(8_000_000, b'x');
    for chunk in body.chunks(65_536) {
        stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .unwrap();
        stream.write_all(chunk).unwrap();
        stream.write_all(b"\r\n").unwrap();
    }
    stream.write_all(b"0\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    parse_response(&answer).assert_error(413);
}

#[test]
fn expect_100_continue_over_the_limit_gets_the_413_before_any_body_is_sent() {
    let server = Server::start(&[]);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = post_head(30_000_000).replace("\r\n\r\n", "\r\nExpect: 100-continue\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    // Not one body byte is sent: the final answer must come without it, and not a 100.
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let response = parse_response(&answer);
    response.assert_error(413);
}

/// Resident memory of a process, in bytes (Linux).
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[test]
fn a_client_that_never_stops_sending_is_cut_off_at_the_bound_without_memory_growing() {
    let server = Server::start(&["--linger-bytes", "8000000", "--linger-s", "20"]);
    let before = resident_bytes(server.child.id());
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(post_head(10_000_000_000).as_bytes())
        .unwrap();
    let chunk = vec![b'x'; 1 << 16];
    let started = Instant::now();
    let mut sent = 0u64;
    while stream.write_all(&chunk).is_ok() {
        sent += chunk.len() as u64;
        assert!(sent < 200_000_000, "the server kept reading a refused body");
    }
    // Cut off by the byte bound (plus what socket buffers hold), not the 20 s one.
    assert!(sent >= 8_000_000, "cut off after only {sent} bytes");
    assert!(started.elapsed() < Duration::from_secs(15));
    let growth = resident_bytes(server.child.id()).saturating_sub(before);
    assert!(
        growth < 32_000_000,
        "resident memory grew by {growth} bytes"
    );
    // The server keeps serving.
    assert_eq!(server.get("/live").status, 200);
}

#[test]
fn a_refused_body_is_drained_on_every_route_that_does_not_read_it() {
    // A POST where no POST is allowed is answered 405 before its body is read.
    let server = Server::start(&[]);
    let length = 5_000_000;
    let head = format!(
        "POST /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {length}\r\n\r\n"
    );
    write_everything_then_read(&server, &head, length).assert_error(405);
}
