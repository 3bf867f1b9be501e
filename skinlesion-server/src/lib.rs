//! The request handling of `skinlesion-server`, as a library: the binary (`src/main.rs`) serves
//! it over TCP, and the fuzz targets drive the same path over in-memory connections.
//!
//! [`app`] parses each request into a typed [`app::Route`] and answers it with one exhaustive
//! `match`; library errors become HTTP statuses from the core's [`skinlesion_core::ErrorKind`]
//! alone. [`batcher`] groups prepared images into forward passes and answers each with the
//! core's typed result; [`metrics`] renders Prometheus text.
//!
//! Research and education only; not a medical device.

pub mod app;
pub mod auth;
pub mod batcher;
pub mod linger;
pub mod metrics;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{service_fn, Service};
use hyper::Request;
use hyper_util::rt::TokioTimer;

use crate::app::{AppState, Reply};

/// One HTTP/1.1 connection over `io`, answered by [`app::handle`].
pub fn connection<I>(
    state: Arc<AppState>,
    io: I,
) -> http1::Connection<
    I,
    impl Service<
            Request<Incoming>,
            Response = Reply,
            Error = Infallible,
            Future = impl Future<Output = Result<Reply, Infallible>> + Send,
        > + Send,
>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
{
    let service = service_fn(move |request| app::handle(Arc::clone(&state), request));
    http1::Builder::new()
        .timer(TokioTimer::new())
        // Slow clients cannot hold connections open by trickling headers.
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(io, service)
}
