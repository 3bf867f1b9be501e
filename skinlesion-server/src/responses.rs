//! The JSON bodies the API answers with, one type each (their shapes are `openapi.yaml`'s).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Serialize;
use skinlesion_core::{DermoscopyGate, Explanation, LesionClass, Precision, Prediction};

pub type Reply = Response<Full<Bytes>>;

/// `{"success": false, "error": ...}`.
#[derive(Serialize)]
pub struct Failed<'a> {
    pub success: bool,
    pub error: &'a str,
}

/// `POST /predict`.
#[derive(Serialize)]
pub struct Predicted<'a> {
    pub success: bool,
    pub prediction: &'a Prediction,
}

/// `POST /predict/batch`: one entry per file, in order.
#[derive(Serialize)]
pub struct BatchPredicted {
    pub success: bool,
    pub predictions: Vec<BatchEntry>,
}

/// One file of a batch: its prediction, or the error and the status it alone would get.
#[derive(Serialize)]
#[serde(untagged)]
pub enum BatchEntry {
    Predicted {
        success: bool,
        prediction: Prediction,
    },
    Failed {
        success: bool,
        error: String,
        status: u16,
    },
}

/// `POST /explain`.
#[derive(Serialize)]
pub struct Explained<'a> {
    pub success: bool,
    pub prediction: &'a Prediction,
    pub explanation: Heatmap,
}

/// The class map of one class as a PNG over the uploaded image.
#[derive(Serialize)]
pub struct Heatmap {
    pub class: &'static str,
    pub width: u32,
    pub height: u32,
    /// `data:image/png;base64,…`
    pub heatmap_png: String,
    /// The decoded image as `data:image/png;base64,…`, only for a DICOM upload (which a
    /// browser cannot draw): the page previews it under the heatmap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_png: Option<String>,
}

impl Heatmap {
    pub fn new(explanation: &Explanation, png: &[u8], image_png: Option<&[u8]>) -> Self {
        let heatmap = explanation.heatmap();
        Self {
            class: explanation.class().code(),
            width: heatmap.width(),
            height: heatmap.height(),
            heatmap_png: data_url(png),
            image_png: image_png.map(data_url),
        }
    }
}

fn data_url(png: &[u8]) -> String {
    use base64::Engine;
    let base64 = base64::engine::general_purpose::STANDARD.encode(png);
    format!("data:image/png;base64,{base64}")
}

/// `GET /health`, the original app's.
#[derive(Serialize)]
pub struct Health {
    pub status: &'static str,
    pub model_loaded: bool,
}

/// `GET /live`.
#[derive(Serialize)]
pub struct Live {
    pub status: &'static str,
}

/// `GET /ready`.
#[derive(Serialize)]
pub struct Ready<'a> {
    pub status: &'static str,
    pub model: &'a str,
    pub version: &'a str,
    pub classes: &'a [LesionClass],
    /// The arithmetic the network runs in: `fp32`, `bf16` or `bf16-checked`.
    pub precision: Precision,
    /// How to read a prediction's `ood_score` (null: the model has no gate).
    pub dermoscopy_gate: Option<&'a DermoscopyGate>,
    pub disclaimer: &'static str,
}

/// `body` as JSON with `status`.
pub fn json_response(status: StatusCode, body: &impl Serialize) -> Reply {
    // These types serialise infallibly (string keys only); the fallback keeps a bug a 500.
    let (status, body) = match serde_json::to_vec(body) {
        Ok(body) => (status, body),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"success":false,"error":"internal error while writing the answer"}"#.to_vec(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A text body of `content_type`.
pub fn text_response(content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(Full::new(body.into()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
