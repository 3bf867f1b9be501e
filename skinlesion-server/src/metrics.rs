//! Prometheus metrics: requests by route and status, latency, batch sizes, queue depth.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
}

/// What `skinlesion_model_info` says of the loaded model.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub name: String,
    pub version: String,
    /// The arithmetic it runs in (`fp32`, `bf16` or `bf16-checked`).
    pub precision: String,
    pub device: String,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: HistogramFamily,
    pub batch_size: Histogram,
    pub queue_depth: Gauge,
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~16 s
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Metrics {
    pub fn new(max_batch: usize) -> Self {
        let mut registry = Registry::with_prefix("skinlesion");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        let latency = HistogramFamily::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        let batch_size =
            Histogram::new((0..=max_batch.max(1).ilog2() + 1).map(|i| f64::from(1u32 << i)));
        registry.register(
            "inference_batch_size",
            "Images per forward pass",
            batch_size.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "inference_queue_depth",
            "Images waiting for inference",
            queue_depth.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            batch_size,
            queue_depth,
        }
    }

    /// Adds `skinlesion_model_info`, whose labels say which model runs and how.
    pub fn with_model(mut self, labels: ModelLabels) -> Self {
        self.registry
            .register("model", "The model being served", Info::new(labels));
        self
    }

    pub fn observe(&self, route: &'static str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
        self.latency
            .get_or_create(&RouteLabels { route })
            .observe(seconds);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
