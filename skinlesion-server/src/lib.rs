//! The request handling of `skinlesion-server`, as a library: the binary (`src/main.rs`) serves
//! it over TCP or TLS ([`tls`]), and the fuzz targets drive the same path over in-memory connections.
//!
//! [`routes`] is the table of endpoints (path, methods, token, caching, handler) that
//! [`app::handle`] dispatches by; [`handlers`] answer with the typed bodies of [`responses`];
//! library errors become HTTP statuses from the core's [`skinlesion_core::ErrorKind`] alone
//! ([`errors`]). [`batcher`] groups prepared images into forward passes and answers each with the
//! core's typed result; [`metrics`] renders Prometheus text.
//!
//! Research and education only; not a medical device.

pub mod app;
pub mod auth;
pub mod batcher;
pub mod errors;
mod form;
mod handlers;
mod headers;
pub mod linger;
pub mod metrics;
pub mod responses;
pub mod routes;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::{service_fn, Service};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

use crate::app::{AppState, Reply};

/// One connection over `io`, HTTP/1.1 or HTTP/2 (by ALPN over TLS, or by the HTTP/2 preface
/// in clear), answered by [`app::handle`] with the same routes and limits either way.
pub fn connection<I>(
    state: Arc<AppState>,
    io: I,
) -> auto::Connection<
    'static,
    I,
    impl Service<
            Request<Incoming>,
            Response = Reply,
            Error = Infallible,
            Future = impl Future<Output = Result<Reply, Infallible>> + Send,
        > + Clone
        + Send,
    TokioExecutor,
>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |request| app::handle(Arc::clone(&state), request));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Slow clients cannot hold connections open by trickling headers.
        .header_read_timeout(Duration::from_secs(30));
    builder
        .http2()
        .timer(TokioTimer::new())
        // Each stream can hold an upload in memory: bound them per connection.
        .max_concurrent_streams(32)
        .keep_alive_interval(Duration::from_secs(30));
    builder.serve_connection(io, service).into_owned()
}
