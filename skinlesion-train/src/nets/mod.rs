//! Network architectures: each builds its network, names its input (size, normalisation,
//! resize) and, where it has them, loads pretrained backbone weights.

pub mod artifact;
pub mod efficientnet;
pub mod pretrained;

use std::fmt;

use serde::{Deserialize, Serialize};
use skinlesion_core::{ColourConstancy, InputSpec, ResizePolicy};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// The architectures `train` can build. Command line and manifests spell them in kebab case
/// (`resnet-lite`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub enum Architecture {
    /// The original app's CNN, kept as the baseline: Conv32-3×3 → pool → Conv64-3×3 → pool →
    /// Dense64 → Dropout 0.5 → classes (softmax applied by the library).
    #[value(name = "seed")]
    #[serde(rename = "seed")]
    Seed,
    /// A compact residual network with batch norm, sized for CPU inference: one block per
    /// stage.
    #[value(name = "resnet-lite")]
    #[serde(rename = "resnet-lite")]
    ResNetLite,
    /// The same network with two blocks in each of the two deepest (8×8 and 4×4) stages: twice
    /// the parameters for about 7% more training time, since those stages run at low resolution.
    #[value(name = "resnet-lite-deep")]
    #[serde(rename = "resnet-lite-deep")]
    ResNetLiteDeep,
    /// EfficientNet-Lite0 with ImageNet weights (4.0 M parameters in the backbone), fine-tuned:
    /// ReLU6, no squeeze-excitation, inputs scaled to [-1, 1].
    #[value(name = "efficientnet-lite0")]
    #[serde(rename = "efficientnet-lite0")]
    EfficientNetLite0,
}

/// A network this crate trains: a module, plus what export may do to it.
pub trait Net: ModuleT {
    /// Folds batch norms into the preceding convolutions for inference (answers unchanged in
    /// evaluation mode); a no-op where there is nothing to fold.
    fn fold_batch_norm(&mut self) {}

    /// Evaluation-mode logits and the pooled features the classifier reads them from, from
    /// one pass; `None` for a network that does not expose its features (it gets no
    /// dermoscopy gate).
    fn logits_and_features(&self, _x: &Tensor) -> Option<(Tensor, Tensor)> {
        None
    }

    /// Evaluation-mode logits, pooled features and class activation maps from one pass;
    /// `None` for a network that ends otherwise than in global pooling and a linear layer.
    fn explained(&self, _x: &Tensor) -> Option<Explained> {
        None
    }

    /// The linear head's bias (what a class map's mean lacks of its logit).
    fn class_bias(&self) -> Option<Tensor> {
        None
    }
}

/// What a network that can be explained gives for a N×3×H×W batch.
#[derive(Debug)]
pub struct Explained {
    /// N×C.
    pub logits: Tensor,
    /// N×F pooled features.
    pub features: Tensor,
    /// N×C×h×w class activation maps: each map's mean is its logit minus the head's bias.
    pub maps: Tensor,
}

impl Net for nn::SequentialT {}
impl Net for nn::FuncT<'_> {}

impl Net for efficientnet::EfficientNetLite0 {
    fn fold_batch_norm(&mut self) {
        efficientnet::EfficientNetLite0::fold_batch_norm(self)
    }

    fn logits_and_features(&self, x: &Tensor) -> Option<(Tensor, Tensor)> {
        let features = self.features_t(x, false);
        Some((self.classify_features(&features), features))
    }

    fn explained(&self, x: &Tensor) -> Option<Explained> {
        let maps = self.feature_maps_t(x, false);
        let features = maps.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        Some(Explained {
            logits: self.classify_features(&features),
            maps: self.class_maps(&maps),
            features,
        })
    }

    fn class_bias(&self) -> Option<Tensor> {
        efficientnet::EfficientNetLite0::class_bias(self).map(Tensor::shallow_clone)
    }
}

/// What a network is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetShape {
    /// Square input side in pixels.
    pub input_size: u32,
    /// Number of trained classes (outputs).
    pub classes: i64,
    /// Leading blocks that keep their pretrained weights and batch-norm statistics (networks
    /// with blocks; 0 trains everything).
    pub frozen_blocks: usize,
}

impl Architecture {
    /// Every architecture.
    pub const ALL: [Architecture; 4] = [
        Architecture::Seed,
        Architecture::ResNetLite,
        Architecture::ResNetLiteDeep,
        Architecture::EfficientNetLite0,
    ];

    /// The name on the command line and in manifests, e.g. `resnet-lite`.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Seed => "seed",
            Architecture::ResNetLite => "resnet-lite",
            Architecture::ResNetLiteDeep => "resnet-lite-deep",
            Architecture::EfficientNetLite0 => "efficientnet-lite0",
        }
    }

    /// Where the ImageNet weights of this architecture are by default, if it has any.
    pub fn default_pretrained(self) -> Option<&'static str> {
        match self {
            Architecture::EfficientNetLite0 => Some(pretrained::DEFAULT_EFFICIENTNET_LITE0),
            Architecture::Seed | Architecture::ResNetLite | Architecture::ResNetLiteDeep => None,
        }
    }

    /// How many blocks the network has that can be frozen (0: none).
    pub fn blocks(self) -> usize {
        match self {
            Architecture::EfficientNetLite0 => efficientnet::BLOCKS,
            Architecture::Seed | Architecture::ResNetLite | Architecture::ResNetLiteDeep => 0,
        }
    }

    /// Whether the network takes any input side (global pooling before the classifier), so
    /// that it may be tested at another resolution than it was trained at.
    pub fn any_input_size(self) -> bool {
        match self {
            Architecture::Seed => false,
            Architecture::ResNetLite
            | Architecture::ResNetLiteDeep
            | Architecture::EfficientNetLite0 => true,
        }
    }

    /// Loads pretrained weights into every variable of `vs` but the new classifier head;
    /// strict (see [`pretrained::load_strict`]). Then freezes the first `frozen_blocks`.
    pub fn load_pretrained(
        self,
        vs: &nn::VarStore,
        path: &std::path::Path,
        frozen_blocks: usize,
    ) -> Result<usize, pretrained::PretrainedError> {
        let loaded = pretrained::load_strict(vs, path, &["_fc."])?;
        if self == Architecture::EfficientNetLite0 {
            efficientnet::freeze(vs, frozen_blocks);
        }
        Ok(loaded)
    }

    /// The input this architecture takes at `size`×`size`: stretched (HAM10000 images are
    /// lesion-centred 4:3 fields; stretching keeps the whole field), normalised with the
    /// statistics the network was designed for (ImageNet's, for these), and the chosen colour
    /// normalisation.
    pub fn input_spec(self, size: u32, colour_constancy: ColourConstancy) -> InputSpec {
        let (mean, std) = match self {
            Architecture::Seed | Architecture::ResNetLite | Architecture::ResNetLiteDeep => {
                ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
            }
            // Ported from TensorFlow, where the weights were trained on (x − 127.5) / 127.5.
            Architecture::EfficientNetLite0 => ([0.5; 3], [0.5; 3]),
        };
        InputSpec {
            width: size,
            height: size,
            resize: ResizePolicy::Stretch,
            mean,
            std,
            colour_constancy,
        }
    }

    /// Builds the network's variables under `vs` and returns it.
    pub fn build(self, vs: &nn::Path, shape: NetShape) -> Box<dyn Net> {
        let classes = shape.classes;
        match self {
            Architecture::Seed => Box::new(seed(vs, shape.input_size, classes)),
            Architecture::ResNetLite => Box::new(resnet_lite(vs, classes, [1, 1, 1, 1])),
            Architecture::ResNetLiteDeep => Box::new(resnet_lite(vs, classes, [1, 1, 2, 2])),
            Architecture::EfficientNetLite0 => Box::new(efficientnet::EfficientNetLite0::new(
                vs,
                classes,
                shape.frozen_blocks,
            )),
        }
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Test-time augmentation: the mean of the logits for each image and its mirror image
/// (dermoscopy has no handedness). One forward pass on the doubled batch; traced into the
/// exported model, so every interface gets it.
#[derive(Debug)]
pub struct MirrorAveraged(pub Box<dyn Net>);

impl Net for MirrorAveraged {
    fn fold_batch_norm(&mut self) {
        self.0.fold_batch_norm()
    }

    /// The mean features of both views (whose logits, the classifier being linear, are the
    /// mean logits).
    fn logits_and_features(&self, x: &Tensor) -> Option<(Tensor, Tensor)> {
        let (logits, features) = self.0.logits_and_features(&Self::both(x))?;
        Some((Self::mean_of_views(&logits), Self::mean_of_views(&features)))
    }

    /// The mirrored view's maps are mirrored back before averaging, so that both describe the
    /// same pixels (and the mean stays the averaged logit minus the bias).
    fn explained(&self, x: &Tensor) -> Option<Explained> {
        let both = self.0.explained(&Self::both(x))?;
        let (c, h, w) = both.maps.size4().map(|(_, c, h, w)| (c, h, w)).ok()?;
        let views = both.maps.view([2, -1, c, h, w]);
        let maps = (views.select(0, 0) + views.select(0, 1).flip([3])) / 2.0;
        Some(Explained {
            logits: Self::mean_of_views(&both.logits),
            features: Self::mean_of_views(&both.features),
            maps,
        })
    }

    fn class_bias(&self) -> Option<Tensor> {
        self.0.class_bias()
    }
}

impl MirrorAveraged {
    fn both(x: &Tensor) -> Tensor {
        Tensor::cat(&[x, &x.flip([3])], 0)
    }

    /// The mean over the two halves of a doubled batch's N'×K output.
    fn mean_of_views(y: &Tensor) -> Tensor {
        // `view` with -1 keeps the batch size symbolic in a trace (`size()` would bake it in).
        let width = y.size()[1];
        y.view([2, -1, width]).mean_dim(0, false, None)
    }
}

impl ModuleT for MirrorAveraged {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        Self::mean_of_views(&self.0.forward_t(&Self::both(x), train))
    }
}

fn seed(vs: &nn::Path, input_size: u32, classes: i64) -> nn::SequentialT {
    // Valid convolutions and 2×2 pools, as in the Keras original.
    let side = ((i64::from(input_size) - 2) / 2 - 2) / 2;
    let conv = nn::ConvConfig::default();
    nn::seq_t()
        .add(nn::conv2d(vs / "conv1", 3, 32, 3, conv))
        .add_fn(|x| x.relu().max_pool2d_default(2))
        .add(nn::conv2d(vs / "conv2", 32, 64, 3, conv))
        .add_fn(|x| x.relu().max_pool2d_default(2).flatten(1, -1))
        .add(nn::linear(
            vs / "fc1",
            64 * side * side,
            64,
            Default::default(),
        ))
        .add_fn(|x| x.relu())
        .add_fn_t(|x, train| x.dropout(0.5, train))
        .add(nn::linear(vs / "fc2", 64, classes, Default::default()))
}

fn conv_bn(vs: &nn::Path, c_in: i64, c_out: i64, stride: i64) -> nn::SequentialT {
    let conv = nn::ConvConfig {
        stride,
        padding: 1,
        bias: false,
        ..Default::default()
    };
    nn::seq_t()
        .add(nn::conv2d(vs / "conv", c_in, c_out, 3, conv))
        .add(nn::batch_norm2d(vs / "bn", c_out, Default::default()))
}

/// A basic residual block: two 3×3 conv-BN, with a 1×1 projection when the shape changes.
#[derive(Debug)]
struct Block {
    a: nn::SequentialT,
    b: nn::SequentialT,
    shortcut: Option<nn::SequentialT>,
}

impl Block {
    fn new(vs: &nn::Path, c_in: i64, c_out: i64, stride: i64) -> Self {
        let shortcut = (stride != 1 || c_in != c_out).then(|| {
            let conv = nn::ConvConfig {
                stride,
                bias: false,
                ..Default::default()
            };
            nn::seq_t()
                .add(nn::conv2d(vs / "proj", c_in, c_out, 1, conv))
                .add(nn::batch_norm2d(vs / "proj_bn", c_out, Default::default()))
        });
        Self {
            a: conv_bn(&(vs / "a"), c_in, c_out, stride),
            b: conv_bn(&(vs / "b"), c_out, c_out, 1),
            shortcut,
        }
    }
}

impl ModuleT for Block {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let y = self.a.forward_t(x, train).relu();
        let y = self.b.forward_t(&y, train);
        let skip = match &self.shortcut {
            Some(s) => s.forward_t(x, train),
            None => x.shallow_clone(),
        };
        (y + skip).relu()
    }
}

/// Stem (3×3 stride 2) then four residual stages that halve the resolution (`blocks` residual
/// blocks each), global average pooling, dropout and a linear classifier. About 0.1 GMAC at
/// 128×128 with one block per stage.
fn resnet_lite(vs: &nn::Path, classes: i64, blocks: [usize; 4]) -> nn::SequentialT {
    const WIDTHS: [i64; 4] = [32, 64, 112, 192];
    let mut net = nn::seq_t()
        .add(conv_bn(&(vs / "stem"), 3, 24, 2))
        .add_fn(|x| x.relu());
    let mut c_in = 24;
    for (i, (&c_out, &n)) in WIDTHS.iter().zip(&blocks).enumerate() {
        for j in 0..n {
            // The first block keeps its v2 variable names, so older checkpoints still load.
            let name = match j {
                0 => format!("stage{i}"),
                _ => format!("stage{i}_{j}"),
            };
            let stride = if j == 0 { 2 } else { 1 };
            net = net.add(Block::new(&(vs / name), c_in, c_out, stride));
            c_in = c_out;
        }
    }
    net.add_fn(|x| x.adaptive_avg_pool2d([1, 1]).flatten(1, -1))
        .add_fn_t(|x, train| x.dropout(0.2, train))
        .add(nn::linear(vs / "head", c_in, classes, Default::default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn shape(input_size: u32) -> NetShape {
        NetShape {
            input_size,
            classes: 8,
            frozen_blocks: 0,
        }
    }

    fn parameters(arch: Architecture) -> (i64, Vec<i64>) {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = arch.build(&vs.root(), shape(128));
        let out = net.forward_t(
            &Tensor::zeros([2, 3, 128, 128], (Kind::Float, Device::Cpu)),
            false,
        );
        let count = vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum();
        (count, out.size())
    }

    #[test]
    fn every_architecture_parses_builds_and_answers_per_class() {
        let _turn = crate::generator_turn();
        use clap::ValueEnum;
        assert_eq!(Architecture::value_variants(), Architecture::ALL);
        for arch in Architecture::ALL {
            // One spelling everywhere: Display, the command line and serde.
            assert_eq!(Architecture::from_str(arch.name(), false), Ok(arch));
            let json = serde_json::to_string(&arch).unwrap();
            assert_eq!(json, format!("\"{}\"", arch.name()));
            assert_eq!(serde_json::from_str::<Architecture>(&json).unwrap(), arch);
            assert_eq!(parameters(arch).1, [2, 8], "{arch}");
            let spec = arch.input_spec(96, ColourConstancy::None);
            assert_eq!((spec.width, spec.height), (96, 96));
            assert_eq!(spec.validate().map_err(|e| e.to_string()), Ok(()));
        }
        assert!(Architecture::from_str("resnet", false).is_err());
    }

    #[test]
    fn mirror_averaging_is_the_mean_of_both_views_for_any_batch() {
        let _turn = crate::generator_turn();
        let vs = nn::VarStore::new(Device::Cpu);
        let averaged = MirrorAveraged(Architecture::ResNetLite.build(&vs.root(), shape(128)));
        let x = Tensor::rand([3, 3, 128, 128], (Kind::Float, Device::Cpu));
        let net = &averaged.0;
        let expected = (net.forward_t(&x, false) + net.forward_t(&x.flip([3]), false)) / 2;
        let got = averaged.forward_t(&x, false);
        assert_eq!(got.size(), [3, 8]);
        assert!(f64::try_from((got - expected).abs().max()).unwrap() < 1e-5);
        // A mirrored image gets the same answer.
        let mirrored = averaged.forward_t(&x.flip([3]), false);
        let same = averaged.forward_t(&x, false);
        assert!(f64::try_from((mirrored - same).abs().max()).unwrap() < 1e-5);
    }

    #[test]
    fn the_deep_variant_adds_blocks_to_the_low_resolution_stages() {
        let _turn = crate::generator_turn();
        let (lite, _) = parameters(Architecture::ResNetLite);
        let (deep, _) = parameters(Architecture::ResNetLiteDeep);
        // One more 112- and one more 192-channel block: two 3×3 convolutions and BN each.
        let extra = 2 * (112 * 112 * 9 + 2 * 112) + 2 * (192 * 192 * 9 + 2 * 192);
        assert_eq!(deep - lite, extra);
    }
}
