//! Dynamic batching: requests wait in a bounded queue; each of `workers` inference threads
//! takes up to `max_batch` of them, waiting at most `max_wait` for the batch to fill (zero:
//! only those already queued), and runs a single forward pass (like Triton's dynamic batcher
//! with several model instances). Inference never runs on the async reactor.
//!
//! Each worker's pass runs on one libtorch thread while others may be busy (one pass per core
//! serves most requests per second), but a worker that finds no other worker busy, nothing
//! queued and no request being prepared (decoded) runs its pass on `lone_threads` (the
//! server's `--lone-request-threads`: every core by default on a CPU).
//!
//! Every pass on more than one thread runs on one thread of its own, the wide lane: libgomp
//! (libtorch's OpenMP) keeps a thread team for each thread that has run a parallel region, and
//! once those teams hold more threads than there are cores it stops spinning between regions
//! for the whole process; a 2-thread pass then took 31 ms instead of 15 here, slower than on
//! one thread (23 ms).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
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

/// How requests are grouped and run.
#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    /// Threads running forward passes at once.
    pub workers: usize,
    /// Most images in one forward pass.
    pub max_batch: usize,
    /// Most time the first image of a batch waits for others.
    pub max_wait: Duration,
    /// Images that may wait; beyond that, `submit` answers `Full`.
    pub queue_size: usize,
    /// Threads of a pass that runs alone (no other worker busy, nothing queued); the others
    /// run on `busy_threads`.
    pub lone_threads: usize,
    /// Threads of a pass while other work is under way.
    pub busy_threads: usize,
}

/// What an inference function is given: the images, and the libtorch threads to run them on.
pub trait Infer: Fn(&[PreparedImage], usize) -> Answers + Send + Sync {}
impl<F: Fn(&[PreparedImage], usize) -> Answers + Send + Sync> Infer for F {}

/// What an inference function answers.
pub type Answers = skinlesion_core::Result<Vec<Prediction>>;

/// The inference threads (the workers and the wide lane), to be joined at shutdown.
pub struct Workers(Vec<std::thread::JoinHandle<()>>);

impl Workers {
    /// Waits for every inference thread; `false` when one of them panicked.
    pub fn join(self) -> bool {
        // Joins every thread, not just up to the first that panicked.
        let panicked = self.0.into_iter().map(|t| t.join()).filter(Result::is_err);
        panicked.count() == 0
    }
}

#[derive(Clone)]
pub struct Batcher {
    queue: SyncSender<Job>,
    metrics: Arc<Metrics>,
    preparing: Arc<AtomicUsize>,
}

/// A request on its way to the queue (its image being decoded): while one is, no pass counts
/// as alone. Under load the queue empties for moments while the next images decode; a pass
/// that took every core then competed with the next one (c=16's p99 rose from 110 to 157 ms).
pub struct Preparing(Arc<AtomicUsize>);

impl Drop for Preparing {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Batcher {
    /// Starts `options.workers` inference threads, which answer each batch with `infer` (in
    /// the server, `Classifier::classify_prepared_on_threads`, which may run on many threads
    /// at once). A
    /// panic inside `infer` fails that batch's requests, not the thread. The threads end,
    /// dropping `infer`, once every `Batcher` clone is gone; join them (`Workers::join`)
    /// before the process exits, so a model `infer` owns is never freed while `exit` tears
    /// libtorch down.
    pub fn start<F: Infer + 'static>(
        infer: F,
        options: BatchOptions,
        metrics: Arc<Metrics>,
    ) -> (Self, Workers) {
        let (queue, jobs) = mpsc::sync_channel::<Job>(options.queue_size.max(1));
        let preparing = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(Shared {
            jobs: Mutex::new(jobs),
            busy: AtomicUsize::new(0),
            preparing: Arc::clone(&preparing),
            metrics,
        });
        let infer = Arc::new(infer);
        let (wide, wide_thread) = WideLane::start(Arc::clone(&infer));
        let mut threads: Vec<_> = (0..options.workers.max(1))
            .map(|i| {
                let (infer, shared, wide) = (Arc::clone(&infer), Arc::clone(&shared), wide.clone());
                std::thread::Builder::new()
                    .name(format!("inference-{i}"))
                    .spawn(move || run(&*infer, &wide, &shared, &options))
                    .expect("spawn inference thread")
            })
            .collect();
        threads.push(wide_thread);
        let metrics = Arc::clone(&shared.metrics);
        let batcher = Self {
            queue,
            metrics,
            preparing,
        };
        (batcher, Workers(threads))
    }

    /// Marks a request whose image is being prepared, until `submit` takes the guard (or it
    /// drops: a request that failed to decode).
    pub fn preparing(&self) -> Preparing {
        self.preparing.fetch_add(1, Ordering::SeqCst);
        Preparing(Arc::clone(&self.preparing))
    }

    /// Queues one prepared image, ending its [`Preparing`]; the answer arrives on the
    /// returned channel.
    pub fn submit(
        &self,
        image: PreparedImage,
        on_its_way: Preparing,
    ) -> Result<oneshot::Receiver<Answer>, SubmitError> {
        let (reply, answer) = oneshot::channel();
        // Counted before it is sent: a worker may take it (and count it out) at once, and a
        // worker reads the depth to tell whether its pass runs alone. Counted as queued
        // before it stops counting as on its way, so that it is never invisible to a worker,
        // and no longer on its way once a worker can take it (its own pass may be alone).
        self.metrics.queue_depth.inc();
        drop(on_its_way);
        let refused = match self.queue.try_send(Job { image, reply }) {
            Ok(()) => return Ok(answer),
            Err(TrySendError::Full(_)) => SubmitError::Full,
            Err(TrySendError::Disconnected(_)) => SubmitError::Closed,
        };
        self.metrics.queue_depth.dec();
        Err(refused)
    }
}

/// What the inference threads share.
struct Shared {
    jobs: Mutex<Receiver<Job>>,
    /// Workers running a forward pass now.
    busy: AtomicUsize,
    /// Requests being prepared (see [`Preparing`]).
    preparing: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

/// The next batch, or `None` once every sender (the server) is gone. One worker gathers at a
/// time, so a batch is never split between workers that are both waiting.
fn next_batch(jobs: &Mutex<Receiver<Job>>, options: &BatchOptions) -> Option<Vec<Job>> {
    // A worker that panicked while holding the lock left the receiver intact.
    let jobs = jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut batch = vec![jobs.recv().ok()?];
    let deadline = Instant::now() + options.max_wait;
    while batch.len() < options.max_batch.max(1) {
        let left = deadline.saturating_duration_since(Instant::now());
        match jobs.recv_timeout(left) {
            Ok(job) => batch.push(job),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
        }
    }
    Some(batch)
}

/// The one thread that runs passes on more than one libtorch thread (see the module's note).
#[derive(Clone)]
struct WideLane(mpsc::Sender<WidePass>);

/// A pass for the wide lane: images, threads, and where its outcome goes.
type WidePass = (Vec<PreparedImage>, usize, mpsc::SyncSender<PassOutcome>);

/// A pass's answers, or the panic it raised.
type PassOutcome = std::thread::Result<Answers>;

impl WideLane {
    /// Starts the lane's thread; it ends, dropping `infer`, once every worker has.
    fn start<F: Infer + 'static>(infer: Arc<F>) -> (Self, std::thread::JoinHandle<()>) {
        let (passes, received) = mpsc::channel::<WidePass>();
        let thread = std::thread::Builder::new()
            .name("inference-wide".into())
            .spawn(move || {
                for (images, threads, outcome) in received {
                    let _ = outcome.send(run_pass(&*infer, &images, threads));
                }
            })
            .expect("spawn the wide inference thread");
        (Self(passes), thread)
    }

    /// Runs one pass on the lane and waits for it.
    fn run(&self, images: Vec<PreparedImage>, threads: usize) -> PassOutcome {
        let (outcome, received) = mpsc::sync_channel(1);
        let lost = || -> PassOutcome { Err(Box::new("the wide inference thread has stopped")) };
        if self.0.send((images, threads, outcome)).is_err() {
            return lost();
        }
        received.recv().unwrap_or_else(|_| lost())
    }
}

/// One pass, a panic inside it caught.
fn run_pass(
    infer: &(impl Infer + ?Sized),
    images: &[PreparedImage],
    threads: usize,
) -> PassOutcome {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| infer(images, threads)))
}

fn run(infer: &(impl Infer + ?Sized), wide: &WideLane, shared: &Shared, options: &BatchOptions) {
    let metrics = &shared.metrics;
    while let Some(mut batch) = next_batch(&shared.jobs, options) {
        metrics.queue_depth.dec_by(batch.len() as i64);
        // Requests whose client gave up are not worth a forward pass.
        batch.retain(|job| !job.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        metrics.batch_size.observe(batch.len() as f64);
        let (images, replies): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|j| (j.image, j.reply)).unzip();
        let others = shared.busy.fetch_add(1, Ordering::SeqCst);
        let alone = others == 0
            && metrics.queue_depth.get() == 0
            && shared.preparing.load(Ordering::SeqCst) == 0;
        let threads = match alone {
            true => options.lone_threads,
            false => options.busy_threads,
        };
        let outcome = match threads {
            1 => run_pass(infer, &images, threads),
            _ => wide.run(images, threads),
        };
        shared.busy.fetch_sub(1, Ordering::SeqCst);
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
        let expected = classifier.classify(&bytes).unwrap();

        let calls = Arc::new(AtomicUsize::new(0));
        let infer = {
            let (classifier, calls) = (Arc::clone(&classifier), Arc::clone(&calls));
            move |images: &[PreparedImage], _threads: usize| {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("injected fault in the first forward pass");
                }
                classifier.classify_prepared(images)
            }
        };
        let (batcher, threads) = Batcher::start(infer, options(1, 4), Arc::new(Metrics::new(4)));

        let first = batcher.submit(classifier.prepare(&bytes).unwrap(), batcher.preparing());
        let first = first.unwrap();
        let failure = first.await.unwrap().unwrap_err();
        assert!(matches!(failure, Error::Inference(_)), "{failure:?}");
        assert_eq!(
            failure.to_string(),
            "inference failed: inference failed internally"
        );
        for _ in 0..3 {
            let image = classifier.prepare(&bytes).unwrap();
            let answer = batcher.submit(image, batcher.preparing()).unwrap();
            let prediction = answer.await.unwrap().unwrap();
            assert_eq!(prediction.class(), expected.class());
            assert!((prediction.confidence() - expected.confidence()).abs() < 1e-6);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 4);

        // Without batchers the thread ends, and has dropped `infer` (its classifier) by then.
        drop(batcher);
        assert!(threads.join());
        assert_eq!(Arc::strong_count(&calls), 1);
    }

    fn options(workers: usize, max_batch: usize) -> BatchOptions {
        BatchOptions {
            workers,
            max_batch,
            max_wait: Duration::ZERO,
            queue_size: 16,
            lone_threads: 2,
            busy_threads: 1,
        }
    }

    /// Each pass's (passes running, threads it was given, the thread that ran it).
    type Passes = Arc<Mutex<Vec<(usize, usize, String)>>>;

    /// Each call takes 300 ms; records how many ran at the same time, and each pass.
    fn slow_inference(classifier: Arc<Classifier>) -> (impl Infer, Arc<AtomicUsize>, Passes) {
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let passes = Arc::new(Mutex::new(Vec::new()));
        let (seen, recorded) = (Arc::clone(&most), Arc::clone(&passes));
        let infer = move |images: &[PreparedImage], threads: usize| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            let thread = std::thread::current().name().unwrap_or_default().to_owned();
            passes.lock().unwrap().push((now, threads, thread));
            std::thread::sleep(Duration::from_millis(300));
            running.fetch_sub(1, Ordering::SeqCst);
            classifier.classify_prepared_on_threads(images, threads)
        };
        (infer, seen, recorded)
    }

    /// `n` requests arriving at once, as the server handles them: each is on its way
    /// (`preparing`) from its arrival until it is queued.
    async fn answer_all(batcher: &Batcher, classifier: &Classifier, bytes: &[u8], n: usize) {
        let arrived: Vec<_> = (0..n).map(|_| batcher.preparing()).collect();
        let answers: Vec<_> = arrived
            .into_iter()
            .map(|on_its_way| {
                let image = classifier.prepare(bytes).unwrap();
                batcher.submit(image, on_its_way).unwrap()
            })
            .collect();
        for answer in answers {
            answer.await.unwrap().unwrap();
        }
    }

    #[tokio::test]
    async fn workers_run_forward_passes_at_the_same_time() {
        let classifier = classifier();
        let image = skinlesion_core::testing::ham10000_sample("test", 1).remove(0);
        let bytes = std::fs::read(&image.path).unwrap();
        for workers in [1, 2, 3] {
            let (infer, most, _) = slow_inference(Arc::clone(&classifier));
            let (batcher, threads) =
                Batcher::start(infer, options(workers, 1), Arc::new(Metrics::new(1)));
            answer_all(&batcher, &classifier, &bytes, 6).await;
            assert_eq!(most.load(Ordering::SeqCst), workers, "{workers} workers");
            drop(batcher);
            assert!(threads.join());
        }
    }

    #[tokio::test]
    async fn a_lone_pass_gets_every_thread_and_concurrent_passes_one() {
        let classifier = classifier();
        let image = skinlesion_core::testing::ham10000_sample("test", 1).remove(0);
        let bytes = std::fs::read(&image.path).unwrap();
        let (infer, _, passes) = slow_inference(Arc::clone(&classifier));
        let (batcher, threads) = Batcher::start(infer, options(2, 1), Arc::new(Metrics::new(1)));
        // One at a time: each pass is alone.
        for _ in 0..2 {
            answer_all(&batcher, &classifier, &bytes, 1).await;
        }
        // Six at once: passes overlap, and those that overlap run one thread.
        answer_all(&batcher, &classifier, &bytes, 6).await;
        drop(batcher);
        assert!(threads.join());
        let passes = passes.lock().unwrap().clone();
        let lone: Vec<_> = passes[..2].iter().map(|(r, t, _)| (*r, *t)).collect();
        assert_eq!(lone, [(1, 2), (1, 2)], "{passes:?}");
        for (running, threads, _) in &passes[2..] {
            if *running > 1 {
                assert_eq!(*threads, 1, "{passes:?}");
            }
        }
        assert!(
            passes[2..].iter().any(|(running, _, _)| *running > 1),
            "{passes:?}"
        );
        // Only the wide lane runs passes on more than one thread (libgomp's teams).
        for (_, threads, thread) in &passes {
            assert_eq!(*threads > 1, thread == "inference-wide", "{passes:?}");
        }
    }

    #[tokio::test]
    async fn a_pass_is_not_alone_while_another_request_is_being_prepared() {
        let classifier = classifier();
        let image = skinlesion_core::testing::ham10000_sample("test", 1).remove(0);
        let bytes = std::fs::read(&image.path).unwrap();
        let (infer, _, passes) = slow_inference(Arc::clone(&classifier));
        let (batcher, threads) = Batcher::start(infer, options(2, 1), Arc::new(Metrics::new(1)));
        let another = batcher.preparing();
        answer_all(&batcher, &classifier, &bytes, 1).await;
        drop(another);
        answer_all(&batcher, &classifier, &bytes, 1).await;
        drop(batcher);
        assert!(threads.join());
        let passes = passes.lock().unwrap().clone();
        let given: Vec<_> = passes.iter().map(|(_, t, _)| *t).collect();
        assert_eq!(given, [1, 2], "{passes:?}");
    }
}
