//! Routes and handlers. Uploaded images stay in memory and never reach a log line.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use http_body_util::{BodyStream, Full};
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ALLOW, CACHE_CONTROL, CONTENT_LENGTH,
    CONTENT_SECURITY_POLICY, CONTENT_TYPE, EXPECT, ORIGIN, REFERRER_POLICY, RETRY_AFTER, VARY,
    WWW_AUTHENTICATE, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use hyper::{Method, Request, Response, StatusCode, Version};
use serde_json::json;
use skinlesion_core::{
    Classifier, Error as CoreError, ErrorFamily, ErrorKind, Prediction, DISCLAIMER,
};
use tokio::sync::Semaphore;

use crate::auth::{Access, Denied};
use crate::batcher::{Batcher, SubmitError};
use crate::linger::{Linger, LingeringBody};
use crate::metrics::Metrics;

const PAGE: &str = include_str!("../static/index.html");
const OPENAPI: &str = include_str!("../openapi.yaml");

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

pub type Reply = Response<Full<Bytes>>;

/// An error answered as `{"success": false, "error": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
    /// `WWW-Authenticate` of a 401.
    challenge: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
            challenge: None,
        }
    }

    fn unauthorized(denied: Denied) -> Self {
        let (message, challenge) = match denied {
            Denied::Missing => (
                "this route needs an access token: send `Authorization: Bearer TOKEN`",
                r#"Bearer realm="skinlesion""#,
            ),
            Denied::Invalid => (
                "the access token is not valid",
                r#"Bearer realm="skinlesion", error="invalid_token""#,
            ),
        };
        Self {
            challenge: Some(challenge),
            ..Self::new(StatusCode::UNAUTHORIZED, message)
        }
    }

    fn unavailable(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }

    fn into_response(self) -> Reply {
        let mut response = json_response(
            self.status,
            &json!({ "success": false, "error": self.message }),
        );
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(challenge) = self.challenge {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response
    }
}

/// The HTTP status for a kind of library error: the client's fault (the image or the request)
/// is 4xx, ours 5xx; a few kinds have a more precise status.
fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::UnsupportedFormat => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorKind::InputTooLarge | ErrorKind::ImageTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        // The server's model cannot do what was asked; no request can change that.
        ErrorKind::NoClassMaps => StatusCode::NOT_IMPLEMENTED,
        _ => match kind.family() {
            ErrorFamily::Input | ErrorFamily::Request => StatusCode::BAD_REQUEST,
            ErrorFamily::Model | ErrorFamily::Machine => StatusCode::INTERNAL_SERVER_ERROR,
        },
    }
}

fn from_core(e: CoreError) -> ApiError {
    ApiError::new(status_for(e.kind()), e.to_string())
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn text_response(content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(Full::new(body.into()));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
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
    let route = Route::parse(request.uri().path());
    let origin = request.headers().get(ORIGIN).cloned();
    let request = lingering(request, state.limits.linger);
    let mut response = answer_panics(id, route.label(), dispatch(&state, route, request)).await;
    harden(
        &mut response,
        route,
        state.cors_origin.as_ref(),
        origin.as_ref(),
    );
    let status = response.status().as_u16();
    let seconds = started.elapsed().as_secs_f64();
    state.metrics.observe(route.label(), status, seconds);
    tracing::info!(
        request_id = id,
        %method,
        route = route.label(),
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
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error while handling the request",
            ))
        })
        .unwrap_or_else(ApiError::into_response)
}

/// The endpoints, parsed from the request path once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Page,
    Predict,
    PredictBatch,
    Explain,
    Health,
    Live,
    Ready,
    Metrics,
    OpenApi,
    NotFound,
}

impl Route {
    pub const ALL: [Route; 10] = [
        Route::Page,
        Route::Predict,
        Route::PredictBatch,
        Route::Explain,
        Route::Health,
        Route::Live,
        Route::Ready,
        Route::Metrics,
        Route::OpenApi,
        Route::NotFound,
    ];

    pub fn parse(path: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|r| *r != Route::NotFound && r.label() == path)
            .unwrap_or(Route::NotFound)
    }

    /// The route's name in metrics and logs: its path, or "other" (never the raw path, which
    /// a client controls).
    pub fn label(self) -> &'static str {
        match self {
            Route::Page => "/",
            Route::Predict => "/predict",
            Route::PredictBatch => "/predict/batch",
            Route::Explain => "/explain",
            Route::Health => "/health",
            Route::Live => "/live",
            Route::Ready => "/ready",
            Route::Metrics => "/metrics",
            Route::OpenApi => "/openapi.yaml",
            Route::NotFound => "other",
        }
    }

    /// Whether the route needs a token when authentication is on: the ones that see images
    /// or server internals. The page and the API description are public, and orchestrators
    /// probe health, liveness and readiness without credentials.
    pub fn needs_token(self) -> bool {
        match self {
            Route::Predict | Route::PredictBatch | Route::Explain | Route::Metrics => true,
            Route::Page
            | Route::Health
            | Route::Live
            | Route::Ready
            | Route::OpenApi
            | Route::NotFound => false,
        }
    }

    /// The methods the route answers, as the `Allow` header says them.
    fn allowed(self) -> &'static str {
        match self {
            Route::Predict | Route::PredictBatch | Route::Explain => "POST",
            _ => "GET, HEAD",
        }
    }
}

async fn dispatch(
    state: &Arc<AppState>,
    route: Route,
    request: Request<LingeringBody>,
) -> Result<Reply, ApiError> {
    let method = request.method();
    let read = matches!(*method, Method::GET | Method::HEAD);
    let post = *method == Method::POST;
    // A CORS preflight carries no credentials, so it is answered before authentication.
    let preflight = *method == Method::OPTIONS && state.cors_origin.is_some();
    if preflight && route != Route::NotFound {
        return Ok(cors_preflight(route));
    }
    if route.needs_token() {
        let headers = request.headers();
        state
            .access
            .authorize(headers)
            .map_err(ApiError::unauthorized)?;
    }
    match (route, read, post) {
        (Route::NotFound, _, _) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {}", request.uri().path()),
        )),
        (Route::Predict, _, true) => predict(state, request).await,
        (Route::PredictBatch, _, true) => predict_batch(state, request).await,
        (Route::Explain, _, true) => explain(state, request).await,
        (Route::Page, true, _) => Ok(text_response("text/html; charset=utf-8", PAGE)),
        (Route::OpenApi, true, _) => Ok(text_response("application/yaml", OPENAPI)),
        (Route::Health, true, _) => Ok(json_response(
            StatusCode::OK,
            &json!({ "status": "healthy", "model_loaded": true }),
        )),
        (Route::Live, true, _) => Ok(json_response(StatusCode::OK, &json!({ "status": "alive" }))),
        (Route::Ready, true, _) => ready(state),
        (Route::Metrics, true, _) => Ok(text_response(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            state.metrics.render(),
        )),
        (
            Route::Page
            | Route::Predict
            | Route::PredictBatch
            | Route::Explain
            | Route::Health
            | Route::Live
            | Route::Ready
            | Route::Metrics
            | Route::OpenApi,
            _,
            _,
        ) => Ok(method_not_allowed(request.method(), route)),
    }
}

/// Headers for browsers: every answer is never MIME-sniffed and sends no referrer; the page
/// runs only its own inline script and style and is never framed; predictions are never
/// cached; a configured CORS origin gets its `Access-Control-Allow-Origin`.
fn harden(
    response: &mut Reply,
    route: Route,
    cors: Option<&HeaderValue>,
    origin: Option<&HeaderValue>,
) {
    let headers = response.headers_mut();
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    match route {
        Route::Page => {
            headers.insert(CONTENT_SECURITY_POLICY, page_policy().clone());
            headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        }
        Route::Predict | Route::PredictBatch | Route::Explain => {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        Route::Health
        | Route::Live
        | Route::Ready
        | Route::Metrics
        | Route::OpenApi
        | Route::NotFound => {}
    }
    if let Some(allowed) = cors {
        headers.append(VARY, HeaderValue::from_static("Origin"));
        if origin == Some(allowed) {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allowed.clone());
        }
    }
}

/// The page's Content-Security-Policy: nothing but its own inline script and style (by
/// hash), previews of the chosen file (`blob:`) and requests to this server.
fn page_policy() -> &'static HeaderValue {
    static POLICY: std::sync::OnceLock<HeaderValue> = std::sync::OnceLock::new();
    POLICY.get_or_init(|| {
        let script = inline_hash(PAGE, "<script>", "</script>");
        let style = inline_hash(PAGE, "<style>", "</style>");
        let policy = format!(
            "default-src 'none'; script-src '{script}'; style-src '{style}'; img-src blob: data:; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        );
        HeaderValue::from_str(&policy).expect("the policy is ASCII")
    })
}

/// `sha256-…` of the text between `open` and `close` in `page`, as CSP hashes it.
fn inline_hash(page: &str, open: &str, close: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let start = page.find(open).expect("the page has the element") + open.len();
    let end = start + page[start..].find(close).expect("the element is closed");
    let digest = sha2::Sha256::digest(&page.as_bytes()[start..end]);
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The answer to a browser's CORS preflight for `route` (the origin is added by [`harden`]).
fn cors_preflight(route: Route) -> Reply {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(route.allowed()),
    );
    headers.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from(600));
    response
}

fn method_not_allowed(method: &Method, route: Route) -> Reply {
    let allowed = route.allowed();
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{method} is not allowed on {}; use {allowed}",
            route.label()
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allowed));
    response
}

fn ready(state: &AppState) -> Result<Reply, ApiError> {
    if !state.ready.load(Ordering::Acquire) {
        return Err(ApiError::unavailable("the model is warming up"));
    }
    let meta = state.classifier.metadata();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "status": "ready",
            "model": meta.name,
            "version": meta.version,
            "classes": meta.classes,
            // How to read a prediction's ood_score (null: the model has no gate).
            "dermoscopy_gate": meta.calibration.dermoscopy_gate,
            "disclaimer": DISCLAIMER,
        }),
    ))
}

async fn predict(
    state: &Arc<AppState>,
    request: Request<LingeringBody>,
) -> Result<Reply, ApiError> {
    let form = read_form(state, request, 1).await?;
    let file = form.files.into_iter().next().ok_or_else(no_file)?;
    let prediction = classify(state, file).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "success": true, "prediction": prediction }),
    ))
}

async fn predict_batch(
    state: &Arc<AppState>,
    request: Request<LingeringBody>,
) -> Result<Reply, ApiError> {
    let files = read_form(state, request, state.limits.max_files)
        .await?
        .files;
    if files.is_empty() {
        return Err(no_file());
    }
    // All files go to the batcher together, so they can share forward passes.
    let results =
        futures_util::future::join_all(files.into_iter().map(|f| classify(state, f))).await;
    let predictions: Vec<serde_json::Value> = results
        .into_iter()
        .map(|r| match r {
            Ok(p) => json!({ "success": true, "prediction": p }),
            Err(e) => json!({ "success": false, "error": e.message, "status": e.status.as_u16() }),
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "success": true, "predictions": predictions }),
    ))
}

/// `POST /explain`: the prediction and where the model looked, as a heatmap PNG over the
/// image's own pixels. Decoding and the forward pass run together on the blocking pool
/// (within the decode slots), not through the batcher: an explanation needs the class maps
/// of its own pass.
async fn explain(
    state: &Arc<AppState>,
    request: Request<LingeringBody>,
) -> Result<Reply, ApiError> {
    let class = query_class(request.uri().query());
    let form = read_form(state, request, 1).await?;
    let class = match form.class.or(class) {
        Some(code) => Some(parse_class(state, &code)?),
        None => None,
    };
    let file = form.files.into_iter().next().ok_or_else(no_file)?;
    let _slot = decode_slot(state).await?;
    let classifier = Arc::clone(&state.classifier);
    let explained = tokio::task::spawn_blocking(move || {
        let explanation = classifier.explain_bytes(&file, class)?;
        let png = explanation.heatmap().to_png();
        Ok::<_, CoreError>((explanation, png))
    });
    let (explanation, png) = explained
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "explaining failed internally",
            )
        })?
        .map_err(from_core)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "success": true,
            "prediction": explanation.prediction(),
            "explanation": explanation_json(&explanation, &png),
        }),
    ))
}

fn explanation_json(explanation: &skinlesion_core::Explanation, png: &[u8]) -> serde_json::Value {
    use base64::Engine;
    let heatmap = explanation.heatmap();
    json!({
        "class": explanation.class().code(),
        "width": heatmap.width(),
        "height": heatmap.height(),
        "heatmap_png": format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(png)
        ),
    })
}

/// `class=CODE` in a query string.
fn query_class(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("class="))
        .map(str::to_owned)
}

/// A class code or name, else 400 naming the model's classes (a class the model was not
/// trained on is the core's `ClassNotInModel`, also 400).
fn parse_class(state: &AppState, code: &str) -> Result<skinlesion_core::LesionClass, ApiError> {
    let class = skinlesion_core::LesionClass::from_code_or_name(code);
    class
        .filter(|&c| c != skinlesion_core::LesionClass::Unknown)
        .ok_or_else(|| {
            let codes: Vec<_> = state
                .classifier
                .classes()
                .iter()
                .map(|c| c.code())
                .collect();
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "unknown class {code:?}: this model can explain {}",
                    codes.join(", ")
                ),
            )
        })
}

fn no_file() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "no file uploaded: send the image as multipart/form-data in the field `file`",
    )
}

/// One of the decode slots, once the model is warm.
async fn decode_slot(state: &AppState) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
    if !state.ready.load(Ordering::Acquire) {
        return Err(ApiError::unavailable("the model is warming up"));
    }
    (state.decode_slots.acquire().await)
        .map_err(|_| ApiError::unavailable("the server is shutting down"))
}

/// Decodes and preprocesses on the blocking pool, then waits for the batcher's answer.
async fn classify(state: &Arc<AppState>, file: Bytes) -> Result<Prediction, ApiError> {
    let _slot = decode_slot(state).await?;
    let classifier = Arc::clone(&state.classifier);
    let prepared = tokio::task::spawn_blocking(move || classifier.prepare(&file))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "image decoding failed internally",
            )
        })?
        .map_err(from_core)?;
    drop(_slot);
    let answer = state.batcher.submit(prepared).map_err(|e| match e {
        SubmitError::Full => ApiError::unavailable("the server is overloaded; retry shortly"),
        SubmitError::Closed => ApiError::unavailable("inference is not running"),
    })?;
    match tokio::time::timeout(state.limits.request_timeout, answer).await {
        Err(_) => Err(ApiError::unavailable(format!(
            "no answer within {} ms; the server is busy",
            state.limits.request_timeout.as_millis()
        ))),
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "inference stopped before answering",
        )),
        Ok(Ok(Err(e))) => Err(from_core(e)),
        Ok(Ok(Ok(prediction))) => Ok(prediction),
    }
}

/// What a multipart body holds that a handler reads.
struct Form {
    /// The `file` fields, in order.
    files: Vec<Bytes>,
    /// The `class` field, if sent (`/explain`).
    class: Option<String>,
}

/// Reads the multipart body in memory, keeping the `file` fields (at most `max_files`) and
/// the `class` field. Refuses a declared length over the limit before reading, and enforces
/// it while streaming.
async fn read_form(
    state: &AppState,
    request: Request<LingeringBody>,
    max_files: usize,
) -> Result<Form, ApiError> {
    let limit = state.limits.body_limit;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over the limit of {limit} bytes"),
        )
    };
    let headers = request.headers();
    if let Some(length) = headers.get(CONTENT_LENGTH) {
        let length: u64 = length
            .to_str()
            .ok()
            .and_then(|l| l.parse().ok())
            .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "invalid Content-Length"))?;
        if length > limit {
            return Err(too_large());
        }
    }
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "expected a multipart/form-data body with the image in the field `file`",
        )
    })?;
    let body = BodyStream::new(request.into_body())
        .filter_map(|frame| async move { frame.map(|f| f.into_data().ok()).transpose() });
    let constraints =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(limit));
    let mut multipart = multer::Multipart::with_constraints(body, boundary, constraints);
    let multipart_error = |e: multer::Error| match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            too_large()
        }
        other => ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("malformed multipart body: {other}"),
        ),
    };
    let mut form = Form {
        files: Vec::new(),
        class: None,
    };
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().map(str::to_owned);
        let data = field.bytes().await.map_err(multipart_error)?;
        match name.as_deref() {
            Some("file") if form.files.len() == max_files => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("at most {max_files} file(s) per request"),
                ));
            }
            Some("file") => form.files.push(data),
            Some("class") => {
                let text = std::str::from_utf8(&data).map_err(|_| {
                    ApiError::new(StatusCode::BAD_REQUEST, "the field `class` is not text")
                })?;
                form.class = Some(text.trim().to_owned());
            }
            _ => {}
        }
    }
    Ok(form)
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn body_json(response: Reply) -> serde_json::Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn every_route_parses_from_its_own_label_and_nothing_else() {
        for route in Route::ALL {
            if route != Route::NotFound {
                assert_eq!(Route::parse(route.label()), route);
            }
        }
        for path in ["/predict/", "/PREDICT", "/other", "", "/predict/batch/x"] {
            assert_eq!(Route::parse(path), Route::NotFound, "{path}");
        }
    }

    #[test]
    fn the_page_policy_covers_all_of_its_inline_script_and_style() {
        // The policy allows one script and one style block by hash: anything else inline
        // would be blocked by the browser.
        assert_eq!(PAGE.matches("<script").count(), 1);
        assert_eq!(PAGE.matches("<style").count(), 1);
        for attribute in [
            " style=",
            " onclick=",
            " onload=",
            " onerror=",
            "javascript:",
        ] {
            assert!(!PAGE.contains(attribute), "{attribute}");
        }
        let policy = page_policy().to_str().unwrap();
        assert!(policy.contains("script-src 'sha256-"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        // The hash is of the exact text: changing one character changes it.
        let edited = PAGE.replacen("<script>", "<script> ", 1);
        assert_ne!(
            inline_hash(&edited, "<script>", "</script>"),
            inline_hash(PAGE, "<script>", "</script>")
        );
    }

    #[test]
    fn every_core_error_kind_maps_to_a_status_by_whose_fault_it_is() {
        for &kind in ErrorKind::ALL {
            let status = status_for(kind);
            let clients = matches!(kind.family(), ErrorFamily::Input | ErrorFamily::Request);
            assert_eq!(status.is_client_error(), clients, "{kind}: {status}");
            assert!(status.is_client_error() || status.is_server_error());
        }
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
            Err(ApiError::new(StatusCode::BAD_REQUEST, "no file"))
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
