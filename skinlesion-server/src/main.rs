//! `skinlesion-server`: the original app's HTTP API and web page, on hyper.
//!
//! Research and education only; not a medical device.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use skinlesion_core::image::{DynamicImage, RgbImage};
use skinlesion_core::{find_shipped_model, shipped_model_candidates};
use skinlesion_core::{Classifier, Device, Precision, DISCLAIMER};
use tokio::net::TcpListener;

use hyper::header::HeaderValue;
use skinlesion_server::app::{AppState, Limits};
use skinlesion_server::auth::{Access, ApiTokens};
use skinlesion_server::batcher::{BatchOptions, Batcher};
use skinlesion_server::linger::Linger;
use skinlesion_server::metrics::{Metrics, ModelLabels};
use skinlesion_server::tls::{Tls, TlsFiles};

/// Serves skinlesion over HTTP: the web page and the API listed below.
///
/// Research and education only; not a medical device.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None, after_help = skinlesion_server::routes::help())]
struct Config {
    /// Model manifest (.json) or weights (.pt). Default: the shipped model, looked for as
    /// models/skinlesion-vN.json in the working directory, then in models/ beside the
    /// executable or any folder above it, then in share/skinlesion/models/ above it.
    #[arg(long, env = "SKINLESION_MODEL")]
    model: Option<PathBuf>,
    /// Address to listen on. Any address but loopback serves other machines and needs
    /// --api-tokens-file (or an explicit --no-auth): uploads are patient images.
    #[arg(long, env = "SKINLESION_HOST", default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Bearer tokens that may use the endpoints marked `token` below: one per line (at
    /// least 16 characters; `#` starts a comment), reread on SIGHUP.
    #[arg(long, env = "SKINLESION_API_TOKENS_FILE")]
    api_tokens_file: Option<PathBuf>,
    /// TLS certificate chain (PEM): serve HTTPS (TLS 1.2 and 1.3; HTTP/2 and HTTP/1.1 by
    /// ALPN). Reread with the key on SIGHUP, for new connections.
    #[arg(long, env = "SKINLESION_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "SKINLESION_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve a non-loopback address without authentication (e.g. behind a proxy that does it).
    #[arg(long, conflicts_with = "api_tokens_file")]
    no_auth: bool,
    /// The one browser origin whose pages may call the API (CORS), e.g.
    /// https://viewer.example.org. Off by default.
    #[arg(long, env = "SKINLESION_CORS_ORIGIN")]
    cors_origin: Option<String>,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "SKINLESION_PORT", default_value_t = 5001)]
    port: u16,
    /// Inference device: cpu, cuda, cuda:N or auto.
    #[arg(long, env = "SKINLESION_DEVICE", default_value = "auto")]
    device: Device,
    /// Arithmetic: auto, fp32, bf16 or bf16-checked (bf16, close calls re-run in fp32). auto
    /// runs the model's bf16 network, checked or not, where this CPU computes bfloat16
    /// natively and its recorded agreement with fp32 meets the library's bar; /ready and
    /// /metrics say which runs.
    #[arg(long, env = "SKINLESION_PRECISION", default_value = "auto")]
    precision: Precision,
    /// Forward passes run at once, each on its own thread (default: one per available core on
    /// a CPU, one on a GPU; on 2 cores two single-threaded passes served more requests per
    /// second than one pass on two threads at every load measured).
    #[arg(long, env = "SKINLESION_WORKERS")]
    workers: Option<usize>,
    /// libtorch intra-op threads of each forward pass (default: one on a CPU, where the
    /// workers already use every core; half the available cores on a GPU).
    #[arg(long, env = "SKINLESION_THREADS")]
    threads: Option<usize>,
    /// libtorch threads of a forward pass that runs alone (no other pass running, nothing
    /// queued, no other request being decoded). Default: every core on a CPU (on the 2-core
    /// machine measured, a lone request took 8.2 ms p50 instead of 10.5 in bf16-checked and
    /// 14.7 instead of 24.5 in fp32, with c=16 unchanged); see benches/RESULTS.md.
    #[arg(long, env = "SKINLESION_LONE_REQUEST_THREADS")]
    lone_request_threads: Option<usize>,
    /// Images decoded and preprocessed at once (default: the available cores).
    #[arg(long, env = "SKINLESION_DECODE_THREADS")]
    decode_threads: Option<usize>,
    /// Most images in one forward pass. Small by default: v4's depthwise convolutions are
    /// memory-bound on a CPU, so larger batches are slower per image (measured in-process on
    /// 2 cores: 61, 59, 50, 42, 27, 21 images/s at batch 1, 2, 4, 8, 16, 32). Raise it on a GPU.
    #[arg(long, env = "SKINLESION_MAX_BATCH", default_value_t = 2)]
    max_batch: usize,
    /// Most milliseconds the first image of a batch waits for others. 0 (the default) adds no
    /// latency: a batch is whatever queued up while the previous forward pass ran, which under
    /// load fills batches by itself (the load benchmark measured 5 ms of waiting as pure
    /// added latency at low concurrency).
    #[arg(long, env = "SKINLESION_MAX_WAIT_MS", default_value_t = 0)]
    max_wait_ms: u64,
    /// Images that may wait for inference; beyond that, requests get 503 at once.
    #[arg(long, env = "SKINLESION_QUEUE_SIZE", default_value_t = 256)]
    queue_size: usize,
    /// Most bytes in a request body (default 20 MB).
    #[arg(long, env = "SKINLESION_BODY_LIMIT", default_value_t = 20_000_000)]
    body_limit: u64,
    /// Most bytes of a refused request's body still read (and thrown away) so that a client
    /// still sending sees its answer (413 and others) instead of a connection reset.
    #[arg(long, env = "SKINLESION_LINGER_BYTES", default_value_t = 64_000_000)]
    linger_bytes: u64,
    /// Most seconds spent reading a refused request's body before the connection is closed.
    #[arg(long, env = "SKINLESION_LINGER_S", default_value_t = 10)]
    linger_s: u64,
    /// Most megapixels an uploaded image may declare.
    #[arg(long, env = "SKINLESION_MAX_MEGAPIXELS", default_value_t = 50)]
    max_megapixels: u64,
    /// Most files in one /predict/batch request.
    #[arg(long, env = "SKINLESION_MAX_FILES", default_value_t = 32)]
    max_files: usize,
    /// Most milliseconds a request waits for its prediction before 503.
    #[arg(long, env = "SKINLESION_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    request_timeout_ms: u64,
    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM.
    #[arg(long, env = "SKINLESION_SHUTDOWN_GRACE_S", default_value_t = 30)]
    shutdown_grace_s: u64,
}

/// A lone pass's libtorch threads when `--lone-request-threads` is not given: every core on a
/// CPU, the busy passes' count on a GPU (where the device, not the threads, does the work).
fn default_lone_threads(classifier: &Classifier, cores: usize) -> usize {
    match classifier.device() {
        Device::Cpu => cores,
        _ => classifier.threads(),
    }
}

fn main() -> ExitCode {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let exposure = match exposure(&config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(model) = config.model.clone().or_else(find_shipped_model) else {
        eprintln!(
            "error: no --model given and the shipped model is in none of: {}",
            shipped_model_candidates()
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return ExitCode::FAILURE;
    };
    let cores = skinlesion_core::available_cores();
    let workers = config
        .workers
        .unwrap_or_else(|| config.device.preferred_workers(cores));
    let default_threads = if workers > 1 { 1 } else { (cores / 2).max(1) };
    let classifier = Classifier::builder(&model)
        .device(config.device)
        .precision(config.precision)
        .threads(config.threads.unwrap_or(default_threads))
        .max_pixels(config.max_megapixels.saturating_mul(1_000_000))
        .max_bytes(config.body_limit)
        .build();
    let classifier = match classifier {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("error: cannot load the model {}: {e}", model.display());
            return ExitCode::FAILURE;
        }
    };
    let metrics = Arc::new(Metrics::new(config.max_batch).with_model(ModelLabels {
        name: classifier.metadata().name.clone(),
        version: classifier.metadata().version.clone(),
        precision: classifier.precision().to_string(),
        device: classifier.device().to_string(),
    }));
    let inference = Arc::clone(&classifier);
    let options = BatchOptions {
        workers,
        max_batch: config.max_batch,
        max_wait: Duration::from_millis(config.max_wait_ms),
        queue_size: config.queue_size,
        lone_threads: config
            .lone_request_threads
            .unwrap_or_else(|| default_lone_threads(&classifier, cores))
            .max(1),
        busy_threads: classifier.threads(),
    };
    tracing::info!(
        workers,
        lone_threads = options.lone_threads,
        "inference workers"
    );
    let (batcher, inference_threads) = Batcher::start(
        move |images: &[_], threads| inference.classify_prepared_on_threads(images, threads),
        options,
        Arc::clone(&metrics),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let served = runtime.block_on(serve(config, classifier, batcher, metrics, cores, exposure));
    // Dropping the runtime drops every task and with them every handle to the batcher, so the
    // inference threads finish their batches and free the model. Wait for them: a model freed
    // while `exit` tears libtorch down crashed the server at shutdown.
    drop(runtime);
    if !inference_threads.join() {
        eprintln!("error: the inference thread panicked");
        return ExitCode::FAILURE;
    }
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    config: Config,
    classifier: Arc<Classifier>,
    batcher: Batcher,
    metrics: Arc<Metrics>,
    cores: usize,
    Exposure {
        access,
        cors_origin,
        tls,
    }: Exposure,
) -> std::io::Result<()> {
    let meta = classifier.metadata();
    tracing::info!(
        model = %classifier.manifest_path().display(),
        name = %meta.name,
        version = %meta.version,
        sha256 = %meta.weights.sha256,
        device = %classifier.device(),
        precision = %classifier.precision(),
        threads = classifier.threads(),
        "model loaded"
    );
    let state = AppState::new(
        Arc::clone(&classifier),
        batcher,
        metrics,
        Limits {
            body_limit: config.body_limit,
            max_files: config.max_files.max(1),
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            linger: Linger {
                bytes: config.linger_bytes,
                time: Duration::from_secs(config.linger_s),
            },
        },
        config.decode_threads.unwrap_or(cores),
        access,
    );
    let state = Arc::new(match cors_origin {
        Some(origin) => state.with_cors_origin(origin),
        None => state,
    });
    tracing::info!(authentication = %state.access.describe(), "access control");
    tokio::spawn(reload_on_hangup(Arc::clone(&state), tls.clone()));

    let listener = TcpListener::bind(SocketAddr::new(config.host, config.port)).await?;
    let address = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Tests and scripts read this line to find an ephemeral port.
    println!("listening on {scheme}://{address}");
    tracing::info!(%address, "{DISCLAIMER}");

    // Warm-up: one pass through the batcher, the requests' own path, before /ready says yes
    // (a pass run on a blocking-pool thread would give that thread a libgomp team: see the
    // batcher's note on its wide lane).
    let warm = Arc::clone(&state);
    tokio::spawn(async move {
        let grey = DynamicImage::ImageRgb8(RgbImage::from_pixel(64, 64, [128, 128, 128].into()));
        let prepared = warm.classifier.prepare(&grey).map_err(|e| e.to_string());
        let on_its_way = warm.batcher.preparing();
        let submitted = prepared
            .and_then(|p| (warm.batcher.submit(p, on_its_way)).map_err(|e| format!("{e:?}")));
        let answered = match submitted {
            Ok(answer) => answer.await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match answered.and_then(|a| a.map_err(|e| e.to_string())) {
            Ok(_) => warm.ready.store(true, Ordering::Release),
            Err(e) => tracing::error!(error = %e, "warm-up inference failed"),
        }
    });

    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // E.g. out of file descriptors: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (state, watcher) = (Arc::clone(&state), graceful.watcher());
                let acceptor = tls.as_ref().map(|t| t.acceptor());
                tokio::spawn(async move {
                    let served = match acceptor {
                        None => {
                            let io = TokioIo::new(stream);
                            watcher.watch(skinlesion_server::connection(state, io)).await
                        }
                        Some(acceptor) => {
                            let Some(stream) = handshake(acceptor, stream).await else {
                                return;
                            };
                            let io = TokioIo::new(stream);
                            watcher.watch(skinlesion_server::connection(state, io)).await
                        }
                    };
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all requests finished"),
        _ = tokio::time::sleep(Duration::from_secs(config.shutdown_grace_s)) => {
            tracing::warn!("grace period over; exiting with requests still open");
        }
    }
    Ok(())
}

/// How the server faces the network: who may call it, which browser origin, and TLS.
struct Exposure {
    access: Access,
    cors_origin: Option<HeaderValue>,
    tls: Option<Arc<Tls>>,
}

/// Reads the exposure settings, refusing unusable ones before the model is loaded.
fn exposure(config: &Config) -> Result<Exposure, String> {
    let cors_origin = match config.cors_origin.as_deref().map(HeaderValue::from_str) {
        None => None,
        Some(Ok(origin)) => Some(origin),
        Some(Err(_)) => {
            return Err("--cors-origin must be an origin such as https://viewer.example.org".into())
        }
    };
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let files = TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            };
            let tls = Tls::load(files).map_err(|e| format!("TLS: {e}"))?;
            Some(Arc::new(tls))
        }
        _ => None,
    };
    Ok(Exposure {
        access: access(config)?,
        cors_origin,
        tls,
    })
}

/// Who may use the protected routes: token holders when a token file is given; anyone on
/// loopback, or anywhere with an explicit --no-auth; otherwise the server does not start.
fn access(config: &Config) -> Result<Access, String> {
    match (&config.api_tokens_file, config.no_auth) {
        (Some(path), _) => ApiTokens::load(path)
            .map(Access::Tokens)
            .map_err(|e| e.to_string()),
        (None, true) => {
            tracing::warn!(host = %config.host, "authentication off (--no-auth)");
            Ok(Access::Open)
        }
        (None, false) if config.host.is_loopback() => Ok(Access::Open),
        (None, false) => Err(format!(
            "{} is reachable from other machines: give --api-tokens-file FILE, or --no-auth to \
             serve without authentication",
            config.host
        )),
    }
}

/// SIGHUP rereads the token file and the TLS certificate; a broken file keeps what is in
/// force. Open connections are not touched.
async fn reload_on_hangup(state: Arc<AppState>, tls: Option<Arc<Tls>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::warn!("no SIGHUP handler: tokens and certificates are read at start-up only");
        return;
    };
    while hangup.recv().await.is_some() {
        if let Access::Tokens(tokens) = &state.access {
            match tokens.reload() {
                Ok(count) => tracing::info!(tokens = count, "reloaded the API tokens"),
                Err(e) => tracing::error!(error = %e, "kept the previous API tokens"),
            }
        }
        if let Some(tls) = &tls {
            match tls.reload() {
                Ok(()) => tracing::info!("reloaded the TLS certificate"),
                Err(e) => tracing::error!(error = %e, "kept the previous TLS certificate"),
            }
        }
    }
}

/// The TLS handshake, bounded in time; a failure (e.g. plain HTTP on the TLS port) only
/// closes that connection.
async fn handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: tokio::net::TcpStream,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            None
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
