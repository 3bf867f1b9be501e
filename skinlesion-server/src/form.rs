//! Reading what a client sends besides the path: the multipart form and the query string.

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::BodyStream;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, StatusCode};

use crate::errors::ApiError;
use crate::linger::LingeringBody;

/// What a multipart body holds that a handler reads.
pub struct Form {
    /// The `file` fields, in order.
    pub files: Vec<Bytes>,
    /// The `class` field, if sent (`/explain`).
    pub class: Option<String>,
}

/// Reads the multipart body in memory, keeping the `file` fields (at most `max_files`) and
/// the `class` field. Refuses a declared length over `limit` before reading, and enforces
/// it while streaming.
pub async fn read_form(
    request: Request<LingeringBody>,
    limit: u64,
    max_files: usize,
) -> Result<Form, ApiError> {
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
            .ok_or_else(|| ApiError::bad_request("invalid Content-Length"))?;
        if length > limit {
            return Err(too_large());
        }
    }
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        ApiError::bad_request(
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
        other => ApiError::bad_request(format!("malformed multipart body: {other}")),
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
                return Err(ApiError::bad_request(format!(
                    "at most {max_files} file(s) per request"
                )));
            }
            Some("file") => form.files.push(data),
            Some("class") => {
                let text = std::str::from_utf8(&data)
                    .map_err(|_| ApiError::bad_request("the field `class` is not text"))?;
                form.class = Some(text.trim().to_owned());
            }
            _ => {}
        }
    }
    Ok(form)
}

/// The value of `key` in a query string, percent- and `+`-decoded as browsers encode forms
/// (`class=Benign+keratosis`, `class=Benign%20keratosis`); the first one wins.
pub fn query_value(query: Option<&str>, key: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_decoded_as_browsers_encode_them() {
        for query in [
            "class=Benign+keratosis",
            "class=Benign%20keratosis",
            "x=1&class=Benign%20keratosis&class=MEL",
        ] {
            assert_eq!(
                query_value(Some(query), "class").as_deref(),
                Some("Benign keratosis"),
                "{query}"
            );
        }
        assert_eq!(
            query_value(Some("cl%61ss=MEL"), "class").as_deref(),
            Some("MEL")
        );
        assert_eq!(query_value(Some("klass=MEL"), "class"), None);
        assert_eq!(query_value(None, "class"), None);
        // Invalid escapes stay as sent rather than failing: the class lookup then names them.
        assert_eq!(
            query_value(Some("class=%ZZ"), "class").as_deref(),
            Some("%ZZ")
        );
    }
}
