//! A shipped model's network, as a [`Net`]: what `regate` re-exports with a new gate.

use std::path::Path;

use anyhow::{bail, Context, Result};
use skinlesion_core::ModelMetadata;
use tch::nn::ModuleT;
use tch::{CModule, Device, Kind, Tensor};

use super::{Explained, Net};

/// A traced network returning `[logits C | class maps C·h·w | pooled features F]` per image
/// (`scripts/expose_features.py` makes one from a shipped artifact). Its mirror averaging
/// and folded batch norms are already inside; it is used in evaluation mode only.
#[derive(Debug)]
pub struct ArtifactNet {
    module: CModule,
    classes: i64,
    /// (height, width) of the class maps.
    maps: (i64, i64),
    bias: Vec<f32>,
}

impl ArtifactNet {
    /// Loads `weights` for the model `metadata` describes (which must have class maps).
    pub fn load(weights: &Path, metadata: &ModelMetadata, device: Device) -> Result<Self> {
        let maps = metadata
            .class_maps
            .as_ref()
            .context("the model has no class maps, so no pooled features to expose")?;
        let module = CModule::load_on_device(weights, device)
            .with_context(|| format!("loading {}", weights.display()))?;
        let net = Self {
            module,
            classes: metadata.classes.len() as i64,
            maps: (i64::from(maps.height), i64::from(maps.width)),
            bias: maps.bias.clone(),
        };
        let (h, w) = (metadata.input.height, metadata.input.width);
        let probe = Tensor::zeros([1, 3, i64::from(h), i64::from(w)], (Kind::Float, device));
        tch::no_grad(|| net.run(&probe))?;
        Ok(net)
    }

    fn cells(&self) -> i64 {
        self.classes * self.maps.0 * self.maps.1
    }

    fn run(&self, x: &Tensor) -> Result<Explained> {
        let out = self.module.forward_ts(&[x.shallow_clone()])?;
        let features = out.size()[1] - self.classes - self.cells();
        if out.dim() != 2 || features <= 0 {
            bail!(
                "the network returns {:?}: no pooled features after its maps",
                out.size()
            );
        }
        Ok(Explained {
            logits: out.narrow(1, 0, self.classes),
            maps: out.narrow(1, self.classes, self.cells()).view([
                -1,
                self.classes,
                self.maps.0,
                self.maps.1,
            ]),
            features: out.narrow(1, self.classes + self.cells(), features),
        })
    }
}

impl ModuleT for ArtifactNet {
    fn forward_t(&self, x: &Tensor, _train: bool) -> Tensor {
        self.run(x)
            .expect("its output was checked when it was loaded")
            .logits
    }
}

impl Net for ArtifactNet {
    fn logits_and_features(&self, x: &Tensor) -> Option<(Tensor, Tensor)> {
        self.run(x).ok().map(|e| (e.logits, e.features))
    }

    fn explained(&self, x: &Tensor) -> Option<Explained> {
        self.run(x).ok()
    }

    fn class_bias(&self) -> Option<Tensor> {
        Some(Tensor::from_slice(&self.bias))
    }
}
