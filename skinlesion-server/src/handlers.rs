//! One function per endpoint (the route table in [`crate::routes`] says which is which).
//! Uploaded images stay in memory and never reach a log line.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use hyper::{Request, StatusCode};
use skinlesion_core::{LesionClass, Prediction, DISCLAIMER};

use crate::app::AppState;
use crate::batcher::SubmitError;
use crate::errors::ApiError;
use crate::form::{query_value, read_form};
use crate::headers::PAGE;
use crate::linger::LingeringBody;
use crate::responses::{
    json_response, text_response, BatchEntry, BatchPredicted, Explained, Health, Heatmap, Live,
    Predicted, Ready, Reply,
};

const OPENAPI: &str = include_str!("../openapi.yaml");

type Handled = Result<Reply, ApiError>;

pub async fn page(_: Arc<AppState>, _: Request<LingeringBody>) -> Handled {
    Ok(text_response("text/html; charset=utf-8", PAGE))
}

pub async fn openapi(_: Arc<AppState>, _: Request<LingeringBody>) -> Handled {
    Ok(text_response("application/yaml", OPENAPI))
}

pub async fn health(_: Arc<AppState>, _: Request<LingeringBody>) -> Handled {
    let body = Health {
        status: "healthy",
        model_loaded: true,
    };
    Ok(json_response(StatusCode::OK, &body))
}

pub async fn live(_: Arc<AppState>, _: Request<LingeringBody>) -> Handled {
    Ok(json_response(StatusCode::OK, &Live { status: "alive" }))
}

pub async fn metrics(state: Arc<AppState>, _: Request<LingeringBody>) -> Handled {
    Ok(text_response(
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        state.metrics.render(),
    ))
}

pub async fn ready(state: Arc<AppState>, _: Request<LingeringBody>) -> Handled {
    if !state.ready.load(Ordering::Acquire) {
        return Err(ApiError::unavailable("the model is warming up"));
    }
    let meta = state.classifier.metadata();
    let body = Ready {
        status: "ready",
        model: &meta.name,
        version: &meta.version,
        classes: &meta.classes,
        precision: state.classifier.precision(),
        dermoscopy_gate: meta.calibration.dermoscopy_gate.as_ref(),
        disclaimer: DISCLAIMER,
    };
    Ok(json_response(StatusCode::OK, &body))
}

pub async fn predict(state: Arc<AppState>, request: Request<LingeringBody>) -> Handled {
    let form = read_form(request, state.limits.body_limit, 1).await?;
    let file = form.files.into_iter().next().ok_or_else(no_file)?;
    let prediction = classify(&state, file).await?;
    let body = Predicted {
        success: true,
        prediction: &prediction,
    };
    Ok(json_response(StatusCode::OK, &body))
}

pub async fn predict_batch(state: Arc<AppState>, request: Request<LingeringBody>) -> Handled {
    let limits = &state.limits;
    let files = read_form(request, limits.body_limit, limits.max_files)
        .await?
        .files;
    if files.is_empty() {
        return Err(no_file());
    }
    // All files go to the batcher together, so they can share forward passes.
    let results =
        futures_util::future::join_all(files.into_iter().map(|f| classify(&state, f))).await;
    let predictions = results
        .into_iter()
        .map(|r| match r {
            Ok(prediction) => BatchEntry::Predicted {
                success: true,
                prediction,
            },
            Err(e) => BatchEntry::Failed {
                success: false,
                error: e.message,
                status: e.status.as_u16(),
            },
        })
        .collect();
    let body = BatchPredicted {
        success: true,
        predictions,
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// `POST /explain`: the prediction and where the model looked, as a heatmap PNG over the
/// image's own pixels. Decoding and the forward pass run together on the blocking pool
/// (within the decode slots), not through the batcher: an explanation needs the class maps
/// of its own pass. The pass runs on one libtorch thread: a blocking-pool thread that ran a
/// multi-threaded pass would keep a libgomp team, which slows every multi-threaded pass.
pub async fn explain(state: Arc<AppState>, request: Request<LingeringBody>) -> Handled {
    let queried = query_value(request.uri().query(), "class");
    let form = read_form(request, state.limits.body_limit, 1).await?;
    let class = match form.class.or(queried) {
        Some(code) => Some(parse_class(&state, &code)?),
        None => None,
    };
    let file = form.files.into_iter().next().ok_or_else(no_file)?;
    let _slot = decode_slot(&state).await?;
    let classifier = Arc::clone(&state.classifier);
    let explained = tokio::task::spawn_blocking(move || {
        let explanation =
            skinlesion_core::with_threads(1, || classifier.explain(&file[..], class))??;
        let png = explanation.heatmap().to_png();
        // A browser cannot draw DICOM: the page previews the pixels the model saw.
        let image_png = match explanation.prediction().dicom() {
            Some(_) => Some(png_of(&*classifier.decode(&file[..])?)?),
            None => None,
        };
        Ok::<_, skinlesion_core::Error>((explanation, png, image_png))
    });
    let (explanation, png, image_png) = explained
        .await
        .map_err(|_| ApiError::internal("explaining failed internally"))??;
    let body = Explained {
        success: true,
        prediction: explanation.prediction(),
        explanation: Heatmap::new(&explanation, &png, image_png.as_deref()),
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// An image as PNG bytes.
fn png_of(image: &skinlesion_core::image::DynamicImage) -> Result<Vec<u8>, skinlesion_core::Error> {
    let mut out = std::io::Cursor::new(Vec::new());
    let format = skinlesion_core::image::ImageFormat::Png;
    image
        .to_rgb8()
        .write_to(&mut out, format)
        .map_err(|e| skinlesion_core::Error::Inference(format!("PNG encoding failed: {e}")))?;
    Ok(out.into_inner())
}

/// A class code or name, else 400 naming the model's classes (a class the model was not
/// trained on is the core's `ClassNotInModel`, also 400).
fn parse_class(state: &AppState, code: &str) -> Result<LesionClass, ApiError> {
    LesionClass::from_code_or_name(code)
        .filter(|&c| c != LesionClass::Unknown)
        .ok_or_else(|| {
            let codes: Vec<_> = state
                .classifier
                .classes()
                .iter()
                .map(|c| c.code())
                .collect();
            ApiError::bad_request(format!(
                "unknown class {code:?}: this model can explain {}",
                codes.join(", ")
            ))
        })
}

fn no_file() -> ApiError {
    ApiError::bad_request(
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
    let preparing = state.batcher.preparing();
    let slot = decode_slot(state).await?;
    let classifier = Arc::clone(&state.classifier);
    let prepared = tokio::task::spawn_blocking(move || classifier.prepare(&file[..]))
        .await
        .map_err(|_| ApiError::internal("image decoding failed internally"))??;
    drop(slot);
    let answer = state.batcher.submit(prepared, preparing);
    let answer = answer.map_err(|e| match e {
        SubmitError::Full => ApiError::unavailable("the server is overloaded; retry shortly"),
        SubmitError::Closed => ApiError::unavailable("inference is not running"),
    })?;
    match tokio::time::timeout(state.limits.request_timeout, answer).await {
        Err(_) => Err(ApiError::unavailable(format!(
            "no answer within {} ms; the server is busy",
            state.limits.request_timeout.as_millis()
        ))),
        Ok(Err(_)) => Err(ApiError::internal("inference stopped before answering")),
        Ok(Ok(result)) => Ok(result?),
    }
}
