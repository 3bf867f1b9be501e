//! The server's state and its one entry point: find the route, check its token, run its
//! handler inside a panic guard, add the headers, record metrics and a log line.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, EXPECT, ORIGIN};
use hyper::{Method, Request, Version};
use skinlesion_core::Classifier;
use tokio::sync::Semaphore;

pub use crate::errors::ApiError;
pub use crate::responses::Reply;

use crate::auth::Access;
use crate::batcher::Batcher;
use crate::headers::{cors_preflight, harden};
use crate::linger::{Linger, LingeringBody};
use crate::metrics::Metrics;
use crate::routes::{self, Auth, Route};

/// Serving limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most bytes a request body may have.
    pub body_limit: u64,
    /// Most files in one `/predict/batch` request.
    pub max_files: usize,
    /// How long a request may wait for its prediction.
    pub request_timeout: Duration,
    /// How much of a refused request's body is still read, so that its client sees the answer.
    pub linger: Linger,
}

pub struct AppState {
    pub classifier: Arc<Classifier>,
    pub batcher: Batcher,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// Decoding and preprocessing are CPU-bound: at most this many at once.
    pub decode_slots: Semaphore,
    /// Set once the model has run a warm-up forward pass.
    pub ready: AtomicBool,
    /// Who may use the routes that see images or server internals.
    pub access: Access,
    /// The one browser origin allowed to call the API from its pages (`--cors-origin`).
    pub cors_origin: Option<HeaderValue>,
    next_request: AtomicU64,
}

impl AppState {
    pub fn new(
        classifier: Arc<Classifier>,
        batcher: Batcher,
        metrics: Arc<Metrics>,
        limits: Limits,
        decode_threads: usize,
        access: Access,
    ) -> Self {
        Self {
            classifier,
            batcher,
            metrics,
            limits,
            decode_slots: Semaphore::new(decode_threads.max(1)),
            ready: AtomicBool::new(false),
            access,
            cors_origin: None,
            next_request: AtomicU64::new(1),
        }
    }

    /// Lets pages from `origin` (e.g. `https://viewer.example.org`) call the API.
    pub fn with_cors_origin(self, origin: HeaderValue) -> Self {
        Self {
            cors_origin: Some(origin),
            ..self
        }
    }
}

/// The one entry point: routes, answers every failure as JSON, records metrics and a log line.
pub async fn handle(state: Arc<AppState>, request: Request<Incoming>) -> Result<Reply, Infallible> {
    let started = Instant::now();
    let id = state.next_request.fetch_add(1, Ordering::Relaxed);
    let method = request.method().clone();
    let upload_bytes = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let route = routes::find(request.uri().path());
    let label = routes::label(route);
    let origin = request.headers().get(ORIGIN).cloned();
    let request = lingering(request, state.limits.linger);
    let answer = dispatch(Arc::clone(&state), route, request);
    let mut response = answer_panics(id, label, answer).await;
    harden(
        &mut response,
        route,
        state.cors_origin.as_ref(),
        origin.as_ref(),
    );
    let status = response.status().as_u16();
    let seconds = started.elapsed().as_secs_f64();
    state.metrics.observe(label, status, seconds);
    tracing::info!(
        request_id = id,
        %method,
        route = label,
        status,
        latency_ms = (seconds * 1000.0 * 10.0).round() / 10.0,
        upload_bytes,
        "request"
    );
    Ok(response)
}

/// The request with a body that is drained if a handler refuses it unread.
fn lingering(request: Request<Incoming>, linger: Linger) -> Request<LingeringBody> {
    let awaits_continue = request
        .headers()
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let linger = (request.version() < Version::HTTP_2).then_some(linger);
    request.map(|body| LingeringBody::new(body, linger, awaits_continue))
}

/// Runs a handler, answering a panic inside it as a 500 JSON error: one bad request costs
/// neither its client the answer nor the server anything else.
async fn answer_panics(
    id: u64,
    route: &'static str,
    handler: impl std::future::Future<Output = Result<Reply, ApiError>>,
) -> Reply {
    std::panic::AssertUnwindSafe(handler)
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            tracing::error!(request_id = id, route, "handler panicked");
            Err(ApiError::internal(
                "internal error while handling the request",
            ))
        })
        .unwrap_or_else(ApiError::into_response)
}

/// The route's answer: a CORS preflight, the token check, the method check, then its handler.
async fn dispatch(
    state: Arc<AppState>,
    route: Option<&'static Route>,
    request: Request<LingeringBody>,
) -> Result<Reply, ApiError> {
    let Some(route) = route else {
        return Err(ApiError::not_found(request.uri().path()));
    };
    let method = request.method();
    // A CORS preflight carries no credentials, so it is answered before authentication.
    if *method == Method::OPTIONS && state.cors_origin.is_some() {
        return Ok(cors_preflight(route));
    }
    if route.auth == Auth::Token {
        (state.access)
            .authorize(request.headers())
            .map_err(ApiError::unauthorized)?;
    }
    if !route.methods.accepts(method) {
        return Err(ApiError::method_not_allowed(method, route));
    }
    (route.handler)(state, request).await
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use hyper::header::CONTENT_TYPE;
    use hyper::StatusCode;
    use serde_json::json;

    use super::*;
    use crate::responses::json_response;

    async fn body_json(response: Reply) -> serde_json::Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_panicking_handler_is_answered_500_json() {
        let response = answer_panics(7, "/predict", async {
            panic!("injected fault in a handler");
        })
        .await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.headers()[CONTENT_TYPE],
            HeaderValue::from_static("application/json")
        );
        assert_eq!(
            body_json(response).await,
            json!({ "success": false, "error": "internal error while handling the request" })
        );
    }

    #[tokio::test]
    async fn handler_errors_and_answers_pass_through_unchanged() {
        let error = answer_panics(8, "/predict", async {
            Err(ApiError::bad_request("no file"))
        })
        .await;
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            body_json(error).await,
            json!({ "success": false, "error": "no file" })
        );
        let ok = answer_panics(9, "/health", async {
            Ok(json_response(
                StatusCode::OK,
                &json!({ "status": "healthy" }),
            ))
        })
        .await;
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(body_json(ok).await, json!({ "status": "healthy" }));
    }
}
