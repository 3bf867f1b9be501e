//! Dynamic batching: requests wait in a bounded queue; one inference thread takes up to
//! `max_batch` of them, waiting at most `max_wait` for the batch to fill (zero: only those
//! already queued), and runs a single forward pass (like Triton's dynamic batcher). Inference
//! never runs on the async reactor.

use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use skinlesion_core::{Error, Prediction, PreparedImage};
use tokio::sync::oneshot;

use crate::metrics::Metrics;

struct Job {
    image: PreparedImage,
    reply: oneshot::Sender<Answer>,
}

/// What the inference thread answers a job: the core's typed error when the forward pass
/// failed.
pub type Answer = Result<Prediction, Error>;

/// Why a job was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue is full: the server is overloaded.
    Full,
    /// The inference thread has stopped.
    Closed,
}

#[derive(Clone)]
pub struct Batcher {
    queue: SyncSender<Job>,
    metrics: Arc<Metrics>,
}

impl Batcher {
    /// Starts the inference thread, which answers each batch with `infer` (in the server,
    /// `Classifier::classify_prepared`). A panic inside `infer` fails that batch's requests,
    /// not the thread. The thread ends, dropping `infer`, once every `Batcher` clone is gone;
    /// join it before the process exits, so a model `infer` owns is never freed while `exit`
    /// tears libtorch down.
    pub fn start<F>(
        infer: F,
        max_batch: usize,
        max_wait: Duration,
        queue_size: usize,
        metrics: Arc<Metrics>,
    ) -> (Self, std::thread::JoinHandle<()>)
    where
        F: Fn(&[PreparedImage]) -> skinlesion_core::Result<Vec<Prediction>> + Send + 'static,
    {
        let (queue, jobs) = mpsc::sync_channel::<Job>(queue_size);
        let thread_metrics = Arc::clone(&metrics);
        let thread = std::thread::Builder::new()
            .name("inference".into())
            .spawn(move || run(infer, jobs, max_batch.max(1), max_wait, thread_metrics))
            .expect("spawn inference thread");
        (Self { queue, metrics }, thread)
    }

    /// Queues one prepared image; the answer arrives on the returned channel.
    pub fn submit(&self, image: PreparedImage) -> Result<oneshot::Receiver<Answer>, SubmitError> {
        let (reply, answer) = oneshot::channel();
        match self.queue.try_send(Job { image, reply }) {
            Ok(()) => {
                self.metrics.queue_depth.inc();
                Ok(answer)
            }
            Err(TrySendError::Full(_)) => Err(SubmitError::Full),
            Err(TrySendError::Disconnected(_)) => Err(SubmitError::Closed),
        }
    }
}

fn run(
    infer: impl Fn(&[PreparedImage]) -> skinlesion_core::Result<Vec<Prediction>>,
    jobs: mpsc::Receiver<Job>,
    max_batch: usize,
    max_wait: Duration,
    metrics: Arc<Metrics>,
) {
    // Ends when every sender (the server) is gone.
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        let deadline = Instant::now() + max_wait;
        while batch.len() < max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            match jobs.recv_timeout(left) {
                Ok(job) => batch.push(job),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        metrics.queue_depth.dec_by(batch.len() as i64);
        // Requests whose client gave up are not worth a forward pass.
        batch.retain(|job| !job.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        metrics.batch_size.observe(batch.len() as f64);
        let (images, replies): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|j| (j.image, j.reply)).unzip();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| infer(&images)));
        match outcome {
            Ok(Ok(predictions)) => {
                for (reply, prediction) in replies.into_iter().zip(predictions) {
                    let _ = reply.send(Ok(prediction));
                }
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "inference failed");
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
            Err(_) => {
                tracing::error!("inference panicked");
                for reply in replies {
                    let _ = reply.send(Err(Error::Inference("inference failed internally".into())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use skinlesion_core::{Classifier, Device};

    use super::*;

    fn classifier() -> Arc<Classifier> {
        Arc::new(
            Classifier::builder(skinlesion_core::testing::shipped_model())
                .device(Device::Cpu)
                .build()
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn a_panic_in_inference_fails_its_batch_and_the_next_batch_is_answered() {
        let classifier = classifier();
        let image = skinlesion_core::testing::ham10000_sample("test", 1).remove(0);
        let bytes = std::fs::read(&image.path).unwrap();
        let expected = classifier.classify_bytes(&bytes).unwrap();

        let calls = Arc::new(AtomicUsize::new(0));
        let infer = {
            let (classifier, calls) = (Arc::clone(&classifier), Arc::clone(&calls));
            move |images: &[PreparedImage]| {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("injected fault in the first forward pass");
                }
                classifier.classify_prepared(images)
            }
        };
        let (batcher, thread) =
            Batcher::start(infer, 4, Duration::ZERO, 8, Arc::new(Metrics::new(4)));

        let first = batcher.submit(classifier.prepare(&bytes).unwrap()).unwrap();
        let failure = first.await.unwrap().unwrap_err();
        assert!(matches!(failure, Error::Inference(_)), "{failure:?}");
        assert_eq!(
            failure.to_string(),
            "inference failed: inference failed internally"
        );
        for _ in 0..3 {
            let answer = batcher.submit(classifier.prepare(&bytes).unwrap()).unwrap();
            let prediction = answer.await.unwrap().unwrap();
            assert_eq!(prediction.class(), expected.class());
            assert!((prediction.confidence() - expected.confidence()).abs() < 1e-6);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 4);

        // Without batchers the thread ends, and has dropped `infer` (its classifier) by then.
        drop(batcher);
        thread.join().unwrap();
        assert_eq!(Arc::strong_count(&calls), 1);
    }
}
