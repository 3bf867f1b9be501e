//! Network architectures.

use std::fmt;
use std::str::FromStr;

use skinlesion_core::tch::nn::{self, ModuleT};
use skinlesion_core::tch::Tensor;

/// The architectures `train` can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// The original app's CNN, kept as the baseline: Conv32-3×3 → pool → Conv64-3×3 → pool →
    /// Dense64 → Dropout 0.5 → classes (softmax applied by the library).
    Seed,
    /// The default: a compact residual network with batch norm, sized for CPU inference.
    ResNetLite,
}

impl Architecture {
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Seed => "seed",
            Architecture::ResNetLite => "resnet-lite",
        }
    }

    /// The input side length this architecture is designed for.
    pub fn default_input_size(self) -> u32 {
        128
    }

    /// Builds the network's variables under `vs` and returns it.
    pub fn build(self, vs: &nn::Path, input_size: u32, classes: i64) -> Box<dyn ModuleT> {
        match self {
            Architecture::Seed => Box::new(seed(vs, input_size, classes)),
            Architecture::ResNetLite => Box::new(resnet_lite(vs, classes)),
        }
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Architecture {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "seed" => Ok(Architecture::Seed),
            "resnet-lite" => Ok(Architecture::ResNetLite),
            _ => Err(format!(
                "unknown architecture {s:?}: use seed or resnet-lite"
            )),
        }
    }
}

fn seed(vs: &nn::Path, input_size: u32, classes: i64) -> impl ModuleT {
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

/// Stem (3×3 stride 2) then four residual stages that halve the resolution, global average
/// pooling, dropout and a linear classifier. About 0.1 GMAC at 128×128.
fn resnet_lite(vs: &nn::Path, classes: i64) -> impl ModuleT {
    const WIDTHS: [i64; 4] = [32, 64, 112, 192];
    let mut net = nn::seq_t()
        .add(conv_bn(&(vs / "stem"), 3, 24, 2))
        .add_fn(|x| x.relu());
    let mut c_in = 24;
    for (i, &c_out) in WIDTHS.iter().enumerate() {
        net = net.add(Block::new(&(vs / format!("stage{i}")), c_in, c_out, 2));
        c_in = c_out;
    }
    net.add_fn(|x| x.adaptive_avg_pool2d([1, 1]).flatten(1, -1))
        .add_fn_t(|x, train| x.dropout(0.2, train))
        .add(nn::linear(vs / "head", c_in, classes, Default::default()))
}
