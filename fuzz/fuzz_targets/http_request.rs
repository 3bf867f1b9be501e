//! Raw bytes as an HTTP/1.1 connection to the server's real request path (hyper's parser,
//! routing, authentication, multipart, limits, decode, batching, inference) over an in-memory stream. Any
//! input must get well-formed answers or a closed connection: never a panic, a hang, or a 500.
#![no_main]

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use skinlesion_server::app::{AppState, Limits};
use skinlesion_server::auth::{Access, ApiTokens};
use skinlesion_server::batcher::{BatchOptions, Batcher};
use skinlesion_server::linger::Linger;
use skinlesion_server::metrics::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn server() -> (tokio::runtime::Runtime, Arc<AppState>) {
    let classifier = Arc::new(skinlesion_fuzz::classifier());
    let metrics = Arc::new(Metrics::new(4));
    let inference = Arc::clone(&classifier);
    // The inference thread lives as long as the process: the state is never dropped.
    let options = BatchOptions {
        workers: 1,
        max_batch: 4,
        max_wait: Duration::ZERO,
        queue_size: 16,
        lone_threads: 1,
        busy_threads: 1,
    };
    let (batcher, _inference_threads) = Batcher::start(
        move |images: &[_], threads| inference.classify_prepared_on_threads(images, threads),
        options,
        Arc::clone(&metrics),
    );
    let limits = Limits {
        body_limit: 1 << 20,
        max_files: 4,
        request_timeout: Duration::from_secs(5),
        // In memory, a refused body is all there already: draining it costs next to nothing.
        linger: Linger::default(),
    };
    // Authentication on, as on any exposed server: the seeds carry this token
    // (seed_corpus.py), so the fuzzer explores both sides of the check.
    let tokens =
        std::env::temp_dir().join(format!("skinlesion-fuzz-tokens-{}", std::process::id()));
    std::fs::write(&tokens, "fuzz-token-0123456789\n").expect("token file");
    let access = Access::Tokens(ApiTokens::load(&tokens).expect("fuzz token"));
    let _ = std::fs::remove_file(&tokens);
    let state = Arc::new(AppState::new(
        classifier, batcher, metrics, limits, 1, access,
    ));
    state.ready.store(true, Ordering::Release);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    (runtime, state)
}

fuzz_target!(|data: &[u8]| {
    static SERVER: OnceLock<(tokio::runtime::Runtime, Arc<AppState>)> = OnceLock::new();
    let (runtime, state) = SERVER.get_or_init(server);
    let answer = runtime.block_on(async {
        let (mut client, server_side) = tokio::io::duplex(64 * 1024);
        let connection = tokio::spawn(skinlesion_server::connection(
            Arc::clone(state),
            TokioIo::new(server_side),
        ));
        let exchange = async {
            let (mut reader, mut writer) = tokio::io::split(&mut client);
            let write = async {
                // The server may answer and close before reading everything: not an error.
                let _ = writer.write_all(data).await;
                let _ = writer.shutdown().await;
            };
            let mut answer = Vec::new();
            let read = reader.read_to_end(&mut answer);
            let (_, read) = tokio::join!(write, read);
            read.map(|_| answer)
        };
        let answer = tokio::time::timeout(Duration::from_secs(20), exchange)
            .await
            .expect("the server hung on this input");
        connection.abort();
        answer.unwrap_or_default()
    });
    // HTTP/2 by prior knowledge: the server's answer opens with its SETTINGS frame (its
    // statuses are HPACK-coded, so the 500 check below covers HTTP/1 only).
    if data.starts_with(H2_PREFACE) {
        assert!(
            answer.is_empty() || answer.get(3) == Some(&0x04),
            "not HTTP/2 framing"
        );
        return;
    }
    // Every answer is HTTP (1.0 requests are answered in 1.0) and none is a server fault.
    if !answer.is_empty() {
        assert!(
            answer.starts_with(b"HTTP/1.1 ") || answer.starts_with(b"HTTP/1.0 "),
            "not an HTTP answer: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    let fault = |w: &[u8]| w == b"HTTP/1.1 500 " || w == b"HTTP/1.0 500 ";
    assert!(
        !answer.windows(13).any(fault),
        "a 500: {}",
        String::from_utf8_lossy(&answer)
    );
});
