//! The classifier: a loaded model plus everything needed to turn images into predictions.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use image::DynamicImage;
use tch::Tensor;

use crate::dicom::DicomInfo;
use crate::error::{Error, Result};
use crate::input::ImageInput;
use crate::model::{
    read_metadata, Margins, Model, ModelMetadata, ModelPaths, OutputLayout, Outputs,
};
use crate::precision::Precision;
use crate::prediction::Prediction;
use crate::preprocess::{
    decode_with_header, prepare_parallel, preprocess_image, read_image_file, DecodeLimits,
};
use crate::taxonomy::LesionClass;

/// Where inference runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// The CPU, on [`Classifier::threads`] libtorch threads.
    Cpu,
    /// The CUDA GPU with this index.
    Cuda(usize),
    /// The first CUDA GPU when one is usable, else the CPU.
    #[default]
    Auto,
}

impl Device {
    /// Images per forward pass that classify fastest per image on this kind of device, for
    /// callers that classify many images (the CLI's `classify`, Python's `skinlesion.bulk`):
    /// 1 on a CPU, where the shipped EfficientNet runs about twice as fast per image one at a
    /// time as in batches of 32 (measured: `benches/RESULTS.md`, bulk scoring); 64 on a GPU,
    /// which needs large batches to be busy (not measured here). `Auto` answers for the device
    /// it resolves to.
    pub fn preferred_batch_size(self) -> usize {
        if self.is_gpu() {
            64
        } else {
            1
        }
    }

    /// Forward passes to run at once, each with one libtorch thread, when serving many
    /// concurrent requests: one per core on a CPU, where two single-threaded passes beat one
    /// two-threaded pass (measured: `benches/RESULTS.md`, server load); 1 on a GPU, where one
    /// stream with larger batches keeps it busy.
    pub fn preferred_workers(self, cores: usize) -> usize {
        if self.is_gpu() {
            1
        } else {
            cores.max(1)
        }
    }

    fn is_gpu(self) -> bool {
        match self {
            Device::Cpu => false,
            Device::Cuda(_) => true,
            Device::Auto => tch::Cuda::is_available(),
        }
    }

    /// The concrete libtorch device; an error when the requested GPU is not usable.
    pub(crate) fn resolve(self) -> Result<tch::Device> {
        match self {
            Device::Cpu => Ok(tch::Device::Cpu),
            Device::Auto => Ok(tch::Device::cuda_if_available()),
            Device::Cuda(index) => {
                let count = if tch::Cuda::is_available() {
                    tch::Cuda::device_count()
                } else {
                    0
                };
                if (index as i64) < count {
                    Ok(tch::Device::Cuda(index))
                } else {
                    Err(Error::Config(format!(
                        "CUDA device {index} requested, but {count} CUDA device(s) are usable here"
                    )))
                }
            }
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
            Device::Auto => f.write_str("auto"),
        }
    }
}

impl FromStr for Device {
    type Err = Error;

    /// Parses `cpu`, `auto`, `cuda` (GPU 0) or `cuda:N`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::Config(format!(
                "unknown device {s:?}: use cpu, cuda, cuda:N or auto"
            ))
        };
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Device::Cpu),
            "auto" => Ok(Device::Auto),
            "cuda" | "gpu" => Ok(Device::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(bad),
        }
    }
}

/// The number of CPU cores this process may run on: honours cgroup CPU quotas and the affinity
/// mask (containers, `taskset`), not just the machine's core count.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `f` with the calling thread's libtorch thread count set to `threads`, and restores the
/// previous count afterwards, a panic included. An error for 0 threads.
///
/// Use it for work on threads that are not the classifier's own, e.g. an explanation on a
/// server's blocking pool with `threads` 1: libgomp (libtorch's OpenMP) keeps a thread team for
/// every thread that has run a multi-threaded pass, and once the teams outnumber the cores every
/// multi-threaded pass in the process runs about 2× slower (benches/RESULTS.md).
pub fn with_threads<T>(threads: usize, f: impl FnOnce() -> T) -> Result<T> {
    if threads == 0 {
        return Err(Error::Config("threads must be at least 1".into()));
    }
    let before = tch::get_num_threads();
    let wanted = i32::try_from(threads).unwrap_or(i32::MAX);
    if wanted == before {
        return Ok(f());
    }
    // Restores the count on the way out, a panic included.
    struct Restore(i32);
    impl Drop for Restore {
        fn drop(&mut self) {
            tch::set_num_threads(self.0);
        }
    }
    let _restore = Restore(before);
    tch::set_num_threads(wanted);
    Ok(f())
}

/// Options for loading a [`Classifier`]; start from [`Classifier::builder`].
#[derive(Debug, Clone)]
pub struct ClassifierBuilder {
    path: PathBuf,
    device: Device,
    precision: Precision,
    threads: Option<usize>,
    limits: DecodeLimits,
}

impl ClassifierBuilder {
    /// Where to run inference (default [`Device::Auto`]).
    pub fn device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// The arithmetic of the forward pass (default [`Precision::Auto`]: bf16 where the CPU has
    /// it natively and the model's bf16 network agrees with fp32 closely enough, see
    /// [`Precision`]). See [`Classifier::precision`].
    pub fn precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// libtorch intra-op threads (default: [`available_cores`]). libtorch keeps one such
    /// setting per process, so the last classifier built decides it for all.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads);
        self
    }

    /// Decoding limits for untrusted images (default [`DecodeLimits::default`]).
    pub fn decode_limits(mut self, limits: DecodeLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Most pixels an input image may declare.
    pub fn max_pixels(mut self, max_pixels: u64) -> Self {
        self.limits.max_pixels = max_pixels;
        self
    }

    /// Most bytes of encoded input accepted.
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.limits.max_bytes = max_bytes;
        self
    }

    /// Loads and checks the model: manifest, checksum, then a dry forward pass whose output
    /// width must equal the class count.
    pub fn build(self) -> Result<Classifier> {
        let threads = match self.threads {
            Some(0) => return Err(Error::Config("threads must be at least 1".into())),
            Some(n) => n,
            None => available_cores(),
        };
        if self.limits.max_pixels == 0 || self.limits.max_bytes == 0 {
            return Err(Error::Config("decode limits must be positive".into()));
        }
        let device = self.device.resolve()?;
        // Loading and the trial pass run on one thread: a parallel region here would leave the
        // loading thread a libgomp thread team for the process's life (once teams outnumber the
        // cores, every multi-threaded pass runs about 2× slower; a server loads on one thread
        // and runs its passes on another). The trial pass only checks the output's width.
        tch::set_num_threads(1);
        let loaded = self.load(device, threads);
        tch::set_num_threads(i32::try_from(threads).unwrap_or(i32::MAX));
        loaded
    }

    /// Reads, checks and loads the model, then runs the trial pass.
    fn load(self, device: tch::Device, threads: usize) -> Result<Classifier> {
        let (metadata, paths) = read_metadata(&self.path)?;
        let precision = self.precision.resolve(device, &metadata.other_precisions)?;
        let weights = metadata
            .weights_for(precision)
            .ok_or_else(|| Error::Config(format!("this model has no {precision} network")))?;
        let path = paths.weights.with_file_name(&weights.file);
        let model = Model::load(&path, &weights.sha256, device)?;
        let fallback = match precision {
            Precision::Bf16Checked => Some(Fallback::load(&metadata, &paths, device)?),
            _ => None,
        };
        let classifier = Classifier {
            model,
            fallback,
            metadata,
            paths,
            limits: self.limits,
            threads,
            precision,
        };
        classifier
            .check_outputs(&classifier.model)
            .map_err(|e| match precision.network() {
                Precision::Bf16 if !crate::precision::cpu_runs_bf16_convolutions() => {
                    Error::Config(format!(
                        "precision {precision}: this CPU cannot run the model's bf16 network \
                         (oneDNN's bfloat16 convolutions need AVX-512 BW, VL and DQ, or \
                         AVX-NE-CONVERT); use fp32 or auto ({e})"
                    ))
                }
                _ => e,
            })?;
        if let Some(fallback) = &classifier.fallback {
            classifier.check_outputs(&fallback.fp32)?;
        }
        Ok(classifier)
    }
}

/// The fp32 network that re-runs a bf16 network's close calls ([`Precision::Bf16Checked`]).
#[derive(Debug)]
struct Fallback {
    fp32: Model,
    bands: Margins,
}

impl Fallback {
    fn load(metadata: &ModelMetadata, paths: &ModelPaths, device: tch::Device) -> Result<Self> {
        let bands = (metadata.other_precisions.iter())
            .find_map(|o| o.recheck.as_ref())
            .map(|r| r.bands)
            .ok_or_else(|| Error::Config("this model has no bf16 recheck bands".into()))?;
        let fp32 = Model::load(&paths.weights, &metadata.weights.sha256, device)?;
        Ok(Self { fp32, bands })
    }
}

/// An image prepared for the network: decoded, resized and normalised, ready to batch.
///
/// Preparing is the CPU-heavy, parallelisable half of classification; a server prepares on
/// many threads and runs [`Classifier::classify_prepared`] once for the whole batch.
#[derive(Debug)]
pub struct PreparedImage {
    pub(crate) tensor: Tensor,
    /// What a DICOM input said about itself; its prediction carries it.
    pub(crate) dicom: Option<Box<DicomInfo>>,
}

impl PreparedImage {
    /// What the DICOM file this image came from says about itself; `None` for other inputs.
    pub fn dicom(&self) -> Option<&DicomInfo> {
        self.dicom.as_deref()
    }
}

/// A loaded skin-lesion classifier.
///
/// `Send + Sync`: load once, share (e.g. in an `Arc`) and classify from many threads at once.
///
/// ```no_run
/// use skinlesion_core::{Classifier, Device};
///
/// let classifier = Classifier::builder("models/skinlesion-v5.json")
///     .device(Device::Cpu)
///     .build()?;
/// let prediction = classifier.classify("lesion.jpg")?;
/// println!("{} ({:.0}%)", prediction.class(), prediction.confidence() * 100.0);
/// # Ok::<(), skinlesion_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Classifier {
    model: Model,
    /// For [`Precision::Bf16Checked`]: fp32 for the close calls.
    fallback: Option<Fallback>,
    metadata: ModelMetadata,
    paths: ModelPaths,
    limits: DecodeLimits,
    threads: usize,
    precision: Precision,
}

impl Classifier {
    /// Loads a model with default options; `path` names its manifest (`.json`) or weights (`.pt`).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::builder(path).build()
    }

    /// Starts building a classifier with non-default options.
    pub fn builder(path: impl AsRef<Path>) -> ClassifierBuilder {
        ClassifierBuilder {
            path: path.as_ref().to_path_buf(),
            device: Device::default(),
            precision: Precision::default(),
            threads: None,
            limits: DecodeLimits::default(),
        }
    }

    /// The model's metadata (classes, input, calibration, version, checksum).
    pub fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    /// The classes the model was trained on, in output order.
    pub fn classes(&self) -> &[LesionClass] {
        &self.metadata.classes
    }

    /// Whether [`Classifier::explain`] can map `class`: the model has class maps and was
    /// trained on it (else the explanation fails with [`crate::ErrorKind::NoClassMaps`] or
    /// [`crate::ErrorKind::ClassNotInModel`]).
    pub fn can_explain(&self, class: LesionClass) -> bool {
        self.metadata.class_maps.is_some() && self.classes().contains(&class)
    }

    /// The manifest this classifier was loaded from.
    pub fn manifest_path(&self) -> &Path {
        &self.paths.manifest
    }

    /// Where inference runs: [`Device::Cpu`] or [`Device::Cuda`] (never `Auto`, which is
    /// resolved on load).
    pub fn device(&self) -> Device {
        match self.model.device() {
            tch::Device::Cuda(i) => Device::Cuda(i),
            _ => Device::Cpu,
        }
    }

    /// The arithmetic the network runs in: [`Precision::Fp32`] or [`Precision::Bf16`], never
    /// `Auto`.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// libtorch intra-op threads of a forward pass, and the threads that prepare a batch.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The limits every input is read and decoded within.
    pub fn decode_limits(&self) -> &DecodeLimits {
        &self.limits
    }

    /// Classifies one image: encoded bytes (`&[u8]`, `&Vec<u8>`), a file (`&Path`, `&str`),
    /// a decoded `&DynamicImage` or [`RawPixels`] (see [`ImageInput`]). Reading and decoding
    /// keep within the [`DecodeLimits`].
    pub fn classify<'a>(&self, input: impl Into<ImageInput<'a>>) -> Result<Prediction> {
        let prepared = self.prepare(input)?;
        let mut out = self.classify_prepared(std::slice::from_ref(&prepared))?;
        out.pop()
            .ok_or_else(|| Error::Inference("the forward pass answered no image".into()))
    }

    /// Classifies many images, of one form or mixed, with one forward pass over those that
    /// can be read and decoded (prepared on up to [`Classifier::threads`] threads); each input
    /// gets its own result, in order.
    pub fn classify_batch<'a, I: Into<ImageInput<'a>>>(
        &self,
        inputs: impl IntoIterator<Item = I>,
    ) -> Vec<Result<Prediction>> {
        self.classify_prepared_results(self.prepare_batch(inputs))
    }

    /// Reads or decodes (within the decode limits) and preprocesses one image: the CPU-heavy
    /// half of [`Classifier::classify`], for callers that batch themselves.
    pub fn prepare<'a>(&self, input: impl Into<ImageInput<'a>>) -> Result<PreparedImage> {
        let spec = &self.metadata.input;
        // The network sees spec's pixels: a large JPEG need not be decoded beyond them.
        let (image, dicom) = self.decode_covering(input.into(), Some((spec.width, spec.height)))?;
        Ok(PreparedImage {
            tensor: preprocess_image(&image, spec),
            dicom: dicom.map(Box::new),
        })
    }

    /// [`Classifier::prepare`] for many images on up to [`Classifier::threads`] threads,
    /// keeping order.
    pub fn prepare_batch<'a, I: Into<ImageInput<'a>>>(
        &self,
        inputs: impl IntoIterator<Item = I>,
    ) -> Vec<Result<PreparedImage>> {
        let inputs: Vec<ImageInput<'a>> = inputs.into_iter().map(Into::into).collect();
        prepare_parallel(&inputs, self.threads, |&input| self.prepare(input))
    }

    /// Reads or decodes one image within the decode limits, as classification does (a
    /// decoded image is borrowed, not copied).
    pub fn decode<'a>(&self, input: impl Into<ImageInput<'a>>) -> Result<Cow<'a, DynamicImage>> {
        self.decode_covering(input.into(), None)
            .map(|(image, _)| image)
    }

    /// [`Classifier::decode`], a large JPEG only as far as `cover` needs (see
    /// [`decode_image_covering`]), with what a DICOM input said about itself.
    pub(crate) fn decode_covering<'a>(
        &self,
        input: ImageInput<'a>,
        cover: Option<(u32, u32)>,
    ) -> Result<(Cow<'a, DynamicImage>, Option<DicomInfo>)> {
        let limits = &self.limits;
        let decode = |bytes: &[u8]| {
            decode_with_header(bytes, limits, cover)
                .map(|(image, dicom)| (Cow::Owned(image), dicom))
        };
        match input {
            ImageInput::Encoded(bytes) => decode(bytes),
            ImageInput::Pixels(pixels) => Ok((Cow::Owned(pixels.to_image(limits)?), None)),
            ImageInput::Decoded(image) => Ok((Cow::Borrowed(image), None)),
            ImageInput::File(path) => decode(&read_image_file(path, limits)?),
        }
    }

    /// Runs one forward pass over prepared images and applies calibration and the Unknown rule.
    pub fn classify_prepared(&self, images: &[PreparedImage]) -> Result<Vec<Prediction>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let (_, mut predictions) = self.answer(images)?;
        for (prediction, image) in predictions.iter_mut().zip(images) {
            prediction.dicom.clone_from(&image.dicom);
        }
        Ok(predictions)
    }

    /// [`Classifier::classify_prepared`] on `threads` libtorch threads for this one pass.
    ///
    /// libtorch's thread count belongs to the calling thread once it has run an operation, so
    /// a server whose workers each run one thread can let a worker that finds nothing else to
    /// do use every core for a lone request, while the other workers keep their one thread.
    /// The calling thread's previous count is restored afterwards (see [`with_threads`]).
    pub fn classify_prepared_on_threads(
        &self,
        images: &[PreparedImage],
        threads: usize,
    ) -> Result<Vec<Prediction>> {
        with_threads(threads, || self.classify_prepared(images))?
    }

    /// Everything one forward pass gives: the raw logits and, from a network that scores its
    /// inputs for the dermoscopy gate, those scores.
    pub(crate) fn run(&self, images: &[PreparedImage]) -> Result<Outputs> {
        self.run_on(
            &self.model,
            &images.iter().map(|p| &p.tensor).collect::<Vec<_>>(),
        )
    }

    fn run_on(&self, model: &Model, images: &[&Tensor]) -> Result<Outputs> {
        if images.is_empty() {
            return Err(Error::Inference("no images to run".into()));
        }
        Outputs::split(
            model.forward(&Tensor::cat(images, 0))?,
            self.output_layout(),
        )
    }

    /// One forward pass and its predictions; under [`Precision::Bf16Checked`], the images
    /// whose answers were close calls get the fp32 network's predictions instead.
    pub(crate) fn answer(&self, images: &[PreparedImage]) -> Result<(Outputs, Vec<Prediction>)> {
        let outputs = self.run(images)?;
        let rows = self.rows(&outputs)?;
        let mut predictions = self.predictions_of(&rows)?;
        let Some(fallback) = &self.fallback else {
            return Ok((outputs, predictions));
        };
        let close: Vec<usize> = (rows.iter().enumerate())
            .filter(|(_, (row, score))| {
                self.metadata
                    .calibration
                    .margins(row, *score)
                    .within(&fallback.bands)
            })
            .map(|(i, _)| i)
            .collect();
        if close.is_empty() {
            return Ok((outputs, predictions));
        }
        let again: Vec<&Tensor> = close.iter().map(|&i| &images[i].tensor).collect();
        let checked = self.predictions(&self.run_on(&fallback.fp32, &again)?)?;
        for (i, prediction) in close.into_iter().zip(checked) {
            predictions[i] = prediction;
        }
        Ok((outputs, predictions))
    }

    /// The columns the manifest says the network returns.
    fn output_layout(&self) -> OutputLayout {
        let meta = &self.metadata;
        OutputLayout {
            classes: meta.classes.len(),
            // Whether the manifest's gate reads a score the network computes.
            gate_score: (meta.calibration.dermoscopy_gate.as_ref())
                .is_some_and(|g| g.score.from_network()),
            class_maps: meta.class_maps.as_ref().map(|m| (m.height, m.width)),
        }
    }

    /// Calibrated, gated predictions from one forward pass of this model.
    pub(crate) fn predictions(&self, outputs: &Outputs) -> Result<Vec<Prediction>> {
        self.predictions_of(&self.rows(outputs)?)
    }

    /// Calibrated, gated predictions of rows that [`Self::rows`] read.
    fn predictions_of(&self, rows: &[(Vec<f32>, Option<f32>)]) -> Result<Vec<Prediction>> {
        let (classes, calibration) = (&self.metadata.classes, &self.metadata.calibration);
        (rows.iter())
            .map(|(row, score)| calibration.prediction(classes, row, *score))
            .collect()
    }

    /// One forward pass's outputs image by image: the row of logits, and the gate score when
    /// the network returns one.
    pub(crate) fn rows(&self, outputs: &Outputs) -> Result<Vec<(Vec<f32>, Option<f32>)>> {
        let logits = &outputs.logits;
        let classes = &self.metadata.classes;
        let (n, c) = logits.size2().map_err(|_| {
            Error::Inference(format!("expected N×C logits, got {:?}", logits.size()))
        })?;
        if c != classes.len() as i64 {
            return Err(Error::MetadataMismatch(format!(
                "the network outputs {c} values but the metadata lists {} classes",
                classes.len()
            )));
        }
        let floats = |t: &Tensor| {
            Vec::<f32>::try_from(t.to_kind(tch::Kind::Float).flatten(0, -1))
                .map_err(|e| Error::Inference(e.to_string()))
        };
        let rows = floats(logits)?;
        let scores: Vec<Option<f32>> = match &outputs.gate_scores {
            Some(t) => floats(t)?.into_iter().map(Some).collect(),
            None => vec![None; n as usize],
        };
        if scores.len() != n as usize {
            return Err(Error::Inference(format!(
                "{} gate scores for {n} images",
                scores.len()
            )));
        }
        Ok(rows
            .chunks(c as usize)
            .take(n as usize)
            .map(<[f32]>::to_vec)
            .zip(scores)
            .collect())
    }

    fn classify_prepared_results(
        &self,
        prepared: Vec<Result<PreparedImage>>,
    ) -> Vec<Result<Prediction>> {
        let mut good = Vec::with_capacity(prepared.len());
        let slots: Vec<Result<()>> = prepared
            .into_iter()
            .map(|r| r.map(|p| good.push(p)))
            .collect();
        let mut predictions = match self.classify_prepared(&good) {
            Ok(p) => p.into_iter(),
            Err(e) => {
                // One failed forward fails every input that reached it.
                let msg = e.to_string();
                return slots
                    .into_iter()
                    .map(|s| s.and(Err(Error::Inference(msg.clone()))))
                    .collect();
            }
        };
        slots
            .into_iter()
            .map(|s| {
                s.and_then(|()| {
                    predictions.next().ok_or_else(|| {
                        Error::Inference("the forward pass answered fewer images".into())
                    })
                })
            })
            .collect()
    }

    /// The dry run on load: zeros in, and exactly one value per class out (plus the gate's
    /// score when the manifest's gate needs one from the network).
    fn check_outputs(&self, model: &Model) -> Result<()> {
        let spec = &self.metadata.input;
        let zeros = Tensor::zeros(
            [1, 3, i64::from(spec.height), i64::from(spec.width)],
            (tch::Kind::Float, tch::Device::Cpu),
        );
        let out = model.forward(&zeros).map_err(|e| {
            Error::MetadataMismatch(format!(
                "the network does not accept a 1×3×{}×{} input as the metadata says: {e}",
                spec.height, spec.width
            ))
        })?;
        let classes = &self.metadata.classes;
        match Outputs::split(out, self.output_layout()) {
            Err(Error::MetadataMismatch(why)) => {
                let codes: Vec<_> = classes.iter().map(|c| c.code()).collect();
                Err(Error::MetadataMismatch(format!(
                    "{why} ({})",
                    codes.join(", ")
                )))
            }
            other => other.map(drop),
        }
    }
}
