//! The weight average that is validated and shipped.

use anyhow::Result;
use tch::nn;

use crate::nets::Net;
use tch::Tensor;

/// An exponential moving average of every variable (weights and batch-norm statistics): a
/// smoother network than the last step's, and a less noisy one to select on validation.
pub struct Ema {
    pub vs: nn::VarStore,
    pub net: Box<dyn Net>,
    /// (averaged, live) pairs, by name.
    pairs: Vec<(Tensor, Tensor)>,
}

impl Ema {
    /// Horizon of about 500 steps (4 epochs of HAM10000 at batch 64).
    const DECAY: f64 = 0.998;

    pub fn new(live: &nn::VarStore, build: impl Fn(&nn::Path) -> Box<dyn Net>) -> Result<Self> {
        let mut vs = nn::VarStore::new(live.device());
        let net = build(&vs.root());
        vs.copy(live)?;
        let live_vars = live.variables();
        let mut pairs: Vec<(String, Tensor, Tensor)> = vs
            .variables()
            .into_iter()
            .map(|(name, averaged)| {
                let l = live_vars[&name].shallow_clone();
                (name, averaged, l)
            })
            .collect();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Self {
            vs,
            net,
            pairs: pairs.into_iter().map(|(_, a, l)| (a, l)).collect(),
        })
    }

    /// Folds in the live weights after optimiser step `step` (0-based); the decay ramps up so
    /// that the random initialisation is forgotten quickly.
    pub fn update(&mut self, step: usize) {
        let decay = Self::DECAY.min((1.0 + step as f64) / (10.0 + step as f64));
        tch::no_grad(|| {
            for (averaged, live) in &mut self.pairs {
                let _ = averaged.g_mul_scalar_(decay);
                let _ = averaged.g_add_(&(&*live * (1.0 - decay)));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ema_forgets_the_start_then_averages() {
        let live = nn::VarStore::new(tch::Device::Cpu);
        let w = live.root().zeros("w", &[1]);
        let build = |p: &nn::Path| -> Box<dyn Net> {
            let _ = p.zeros("w", &[1]);
            Box::new(nn::func_t(|x, _| x.shallow_clone()))
        };
        let mut ema = Ema::new(&live, build).unwrap();
        let _ = tch::no_grad(|| w.shallow_clone().fill_(1.0));
        ema.update(0); // decay 1/10: mostly the new value
        let first = ema.vs.variables()["w"].double_value(&[0]);
        assert!((first - 0.9).abs() < 1e-6, "{first}");
        for step in 1..5000 {
            ema.update(step);
        }
        let settled = ema.vs.variables()["w"].double_value(&[0]);
        assert!((settled - 1.0).abs() < 1e-4, "{settled}");
    }
}
