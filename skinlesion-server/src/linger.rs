//! Lingering close (what nginx does): a request refused before its body was read still has
//! its body read and thrown away, up to a bound, so that a client that writes the whole body
//! before reading (Python's `urllib`, a browser's upload) reads its 413 instead of a reset.
//!
//! Without it, the server closes a socket with unread data in it, the kernel answers the
//! client's next bytes with a reset, and the client loses the answer it has not read yet.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};

/// How much of a refused body is read and discarded before the connection is closed anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Linger {
    pub bytes: u64,
    pub time: Duration,
}

impl Default for Linger {
    fn default() -> Self {
        Self {
            bytes: 64_000_000,
            time: Duration::from_secs(10),
        }
    }
}

/// A request body that, when dropped unfinished, drains the rest in the background.
pub struct LingeringBody {
    inner: Option<Incoming>,
    /// `None` for HTTP/2: an unread stream is reset on its own, the connection stays open.
    linger: Option<Linger>,
    /// The client waits for `100 Continue` before sending: hyper sends it on the first read,
    /// so a body never read was never sent, and reading it now would only invite it.
    awaits_continue: bool,
    finished: bool,
}

impl LingeringBody {
    pub fn new(inner: Incoming, linger: Option<Linger>, awaits_continue: bool) -> Self {
        Self {
            inner: Some(inner),
            linger,
            awaits_continue,
            finished: false,
        }
    }

    fn inner(&mut self) -> &mut Incoming {
        self.inner.as_mut().expect("the body is only taken on drop")
    }
}

impl Body for LingeringBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        self.awaits_continue = false;
        let polled = Pin::new(self.inner()).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            self.finished = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for LingeringBody {
    fn drop(&mut self) {
        if self.finished || self.awaits_continue || self.is_end_stream() {
            return;
        }
        let runtime = tokio::runtime::Handle::try_current();
        let (Some(body), Some(linger), Ok(runtime)) = (self.inner.take(), self.linger, runtime)
        else {
            return;
        };
        runtime.spawn(discard(body, linger));
    }
}

/// Reads and drops frames until the body ends, fails, or passes either bound; dropping the
/// body then lets hyper close the connection.
async fn discard(mut body: Incoming, linger: Linger) {
    let drain = async {
        let mut seen = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            if seen > linger.bytes {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(linger.time, drain).await;
}
