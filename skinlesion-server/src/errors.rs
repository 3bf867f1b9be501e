//! Every failure a client sees: a status and `{"success": false, "error": "..."}`.

use hyper::header::{HeaderValue, ALLOW, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Method, StatusCode};
use skinlesion_core::{Error as CoreError, ErrorFamily, ErrorKind};

use crate::auth::Denied;
use crate::responses::{json_response, Failed, Reply};
use crate::routes::Route;

/// An error answered as `{"success": false, "error": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    retry_after: Option<u64>,
    /// `WWW-Authenticate` of a 401.
    challenge: Option<&'static str>,
    /// `Allow` of a 405.
    allow: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
            challenge: None,
            allow: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    pub(crate) fn unauthorized(denied: Denied) -> Self {
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

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }

    pub(crate) fn not_found(path: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("no such endpoint: {path}"))
    }

    pub(crate) fn method_not_allowed(method: &Method, route: &Route) -> Self {
        let allowed = route.methods.allow();
        Self {
            allow: Some(allowed),
            ..Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not allowed on {}; use {allowed}", route.path),
            )
        }
    }

    pub fn into_response(self) -> Reply {
        let mut response = json_response(
            self.status,
            &Failed {
                success: false,
                error: &self.message,
            },
        );
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(challenge) = self.challenge {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        if let Some(allowed) = self.allow {
            headers.insert(ALLOW, HeaderValue::from_static(allowed));
        }
        response
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        Self::new(status_for(e.kind()), e.to_string())
    }
}

/// The HTTP status for a kind of library error: the client's fault (the image or the request)
/// is 4xx, ours 5xx; a few kinds have a more precise status.
pub fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::UnsupportedFormat | ErrorKind::UnsupportedTransferSyntax => {
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        }
        ErrorKind::InputTooLarge | ErrorKind::ImageTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        // The server's model cannot do what was asked; no request can change that.
        ErrorKind::NoClassMaps => StatusCode::NOT_IMPLEMENTED,
        _ => match kind.family() {
            ErrorFamily::Input | ErrorFamily::Request => StatusCode::BAD_REQUEST,
            ErrorFamily::Model | ErrorFamily::Machine => StatusCode::INTERNAL_SERVER_ERROR,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_error_kind_maps_to_a_status_by_whose_fault_it_is() {
        for &kind in ErrorKind::ALL {
            let status = status_for(kind);
            let clients = matches!(kind.family(), ErrorFamily::Input | ErrorFamily::Request);
            assert_eq!(status.is_client_error(), clients, "{kind}: {status}");
            assert!(status.is_client_error() || status.is_server_error());
        }
    }
}
