//! The optimiser and its learning-rate schedule.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use tch::{nn, Tensor};

/// AdamW (decoupled weight decay), written out so that its moments can be checkpointed and a
/// resumed run continues exactly where it stopped.
pub struct AdamW {
    params: Vec<(String, Tensor)>,
    m: BTreeMap<String, Tensor>,
    v: BTreeMap<String, Tensor>,
    t: i64,
    weight_decay: f64,
    /// Per-parameter share of the learning rate (1 when absent): discriminative rates for a
    /// pretrained backbone under a new head.
    lr_scale: BTreeMap<String, f64>,
}

impl AdamW {
    const BETA1: f64 = 0.9;
    const BETA2: f64 = 0.999;
    const EPS: f64 = 1e-8;

    pub fn new(vs: &nn::VarStore, weight_decay: f64) -> Self {
        let mut params: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let zeros = |t: &Tensor| t.zeros_like();
        Self {
            m: params.iter().map(|(n, t)| (n.clone(), zeros(t))).collect(),
            v: params.iter().map(|(n, t)| (n.clone(), zeros(t))).collect(),
            params,
            t: 0,
            weight_decay,
            lr_scale: BTreeMap::new(),
        }
    }

    /// Scales the learning rate of every parameter whose name does not start with one of
    /// `full_rate` by `scale`.
    pub fn scale_learning_rate(&mut self, scale: f64, full_rate: &[&str]) {
        self.lr_scale = self
            .params
            .iter()
            .filter(|(name, _)| !full_rate.iter().any(|p| name.starts_with(p)))
            .map(|(name, _)| (name.clone(), scale))
            .collect();
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    pub fn step(&mut self, lr: f64) {
        self.t += 1;
        let bias1 = 1.0 - Self::BETA1.powi(self.t as i32);
        let bias2 = 1.0 - Self::BETA2.powi(self.t as i32);
        tch::no_grad(|| {
            for (name, p) in &mut self.params {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let lr = lr * self.lr_scale.get(name).copied().unwrap_or(1.0);
                let m = self.m.get_mut(name).expect("moment");
                let _ = m.g_mul_scalar_(Self::BETA1);
                let _ = m.g_add_(&(&g * (1.0 - Self::BETA1)));
                let v = self.v.get_mut(name).expect("moment");
                let _ = v.g_mul_scalar_(Self::BETA2);
                let _ = v.g_add_(&(&g * &g * (1.0 - Self::BETA2)));
                // No decay on biases and batch-norm scales (1-D parameters).
                if p.dim() > 1 {
                    let _ = p.g_mul_scalar_(1.0 - lr * self.weight_decay);
                }
                let update = (&*m / bias1) / ((&*v / bias2).sqrt() + Self::EPS) * lr;
                let _ = p.g_sub_(&update);
            }
        });
    }

    /// Moments are saved by parameter index: libtorch archives treat `.` in a name as nesting,
    /// so parameter names do not round-trip.
    pub fn named_state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("t".to_owned(), Tensor::from(self.t))];
        for (i, (name, _)) in self.params.iter().enumerate() {
            out.push((format!("m{i}"), self.m[name].shallow_clone()));
            out.push((format!("v{i}"), self.v[name].shallow_clone()));
        }
        out
    }

    pub fn load_state(&mut self, saved: Vec<(String, Tensor)>) -> Result<()> {
        let mut loaded = 0;
        for (key, tensor) in saved {
            if key == "t" {
                self.t = tensor.int64_value(&[]);
                continue;
            }
            let (moments, index) = match key.split_at(1) {
                ("m", i) => (&mut self.m, i),
                ("v", i) => (&mut self.v, i),
                _ => bail!("unexpected optimizer state {key:?}"),
            };
            let name = index
                .parse::<usize>()
                .ok()
                .and_then(|i| self.params.get(i))
                .map(|(n, _)| n)
                .with_context(|| format!("optimizer state {key:?} matches no parameter"))?;
            let target = moments.get_mut(name).expect("a moment per parameter");
            if target.size() != tensor.size() {
                bail!(
                    "optimizer state {key:?} has shape {:?}, parameter {name} {:?}",
                    tensor.size(),
                    target.size()
                );
            }
            target.copy_(&tensor);
            loaded += 1;
        }
        if loaded != 2 * self.params.len() {
            bail!(
                "optimizer checkpoint has {loaded} moments, expected {}",
                2 * self.params.len()
            );
        }
        Ok(())
    }
}

/// Linear warm-up over the first epoch, then cosine decay to zero.
pub fn learning_rate(base: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    base * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays() {
        assert!((learning_rate(1.0, 0, 10, 100) - 0.1).abs() < 1e-12);
        assert!((learning_rate(1.0, 9, 10, 100) - 1.0).abs() < 1e-12);
        assert!(learning_rate(1.0, 55, 10, 100) < 0.6);
        assert!(learning_rate(1.0, 100, 10, 100) < 1e-12);
    }
}
