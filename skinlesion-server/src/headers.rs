//! Headers for browsers and caches, added to every answer.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    HeaderValue, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, CACHE_CONTROL, CONTENT_SECURITY_POLICY,
    CONTENT_TYPE, REFERRER_POLICY, VARY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use hyper::{Response, StatusCode};

use crate::responses::Reply;
use crate::routes::Route;

/// The web page, served by `GET /`.
pub const PAGE: &str = include_str!("../static/index.html");

/// Every answer is never MIME-sniffed and sends no referrer; the route's caching rule
/// applies; a page runs only its own inline script and style and is never framed; a
/// configured CORS origin gets its `Access-Control-Allow-Origin`.
pub fn harden(
    response: &mut Reply,
    route: Option<&Route>,
    cors: Option<&HeaderValue>,
    origin: Option<&HeaderValue>,
) {
    let html = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"text/html"));
    let headers = response.headers_mut();
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if let Some(cache) = route.and_then(|r| r.cache.header()) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    }
    if html {
        headers.insert(CONTENT_SECURITY_POLICY, page_policy().clone());
        headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    if let Some(allowed) = cors {
        headers.append(VARY, HeaderValue::from_static("Origin"));
        if origin == Some(allowed) {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allowed.clone());
        }
    }
}

/// The page's Content-Security-Policy: nothing but its own inline script and style (by
/// hash), previews of the chosen file (`blob:`) and requests to this server. Were the page
/// ever built without either element, the policy allows no script or style at all.
fn page_policy() -> &'static HeaderValue {
    static POLICY: std::sync::OnceLock<HeaderValue> = std::sync::OnceLock::new();
    POLICY.get_or_init(|| {
        let source = |hash: Option<String>| hash.map_or("'none'".to_owned(), |h| format!("'{h}'"));
        let script = source(inline_hash(PAGE, "<script>", "</script>"));
        let style = source(inline_hash(PAGE, "<style>", "</style>"));
        let policy = format!(
            "default-src 'none'; script-src {script}; style-src {style}; img-src blob: data:; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        );
        // Base64 and ASCII only; the fallback is the strictest policy.
        HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("default-src 'none'"))
    })
}

/// `sha256-…` of the text between `open` and `close` in `page`, as CSP hashes it.
fn inline_hash(page: &str, open: &str, close: &str) -> Option<String> {
    use base64::Engine;
    use sha2::Digest;
    let start = page.find(open)? + open.len();
    let end = start + page[start..].find(close)?;
    let digest = sha2::Sha256::digest(&page.as_bytes()[start..end]);
    Some(format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    ))
}

/// The answer to a browser's CORS preflight for `route` (the origin is added by [`harden`]).
pub fn cors_preflight(route: &Route) -> Reply {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(route.methods.allow()),
    );
    headers.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from(600));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(policy.contains("style-src 'sha256-"), "{policy}");
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
    fn a_page_without_the_element_gets_no_hash_instead_of_a_panic() {
        assert_eq!(
            inline_hash("<p>no script</p>", "<script>", "</script>"),
            None
        );
        assert_eq!(
            inline_hash("<script>unclosed", "<script>", "</script>"),
            None
        );
    }
}
