//! Mixed-precision training: the forward pass in bfloat16 through libtorch's autocast, with
//! fp32 master weights, fp32 optimiser moments and fp32 batch-norm statistics; the loss is
//! computed on fp32 logits. What it saves is measured in the model card (less than hoped:
//! libtorch's bf16 backward pass is slow for depthwise convolutions, which stay fp32).
//!
//! tch 0.26 switches autocast for CUDA only, so the CPU switch is libtorch's own C++ function,
//! called by its (Itanium-ABI) symbol name; both of its arguments are plain integers.

use serde::{Deserialize, Serialize};
use skinlesion_core::cpu_has_bf16;
use tch::Device;

/// The arithmetic of the training forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TrainPrecision {
    /// bfloat16 on a CPU that computes it natively (AVX512-BF16), else fp32 (GPUs
    /// included: untested here, ask for `bf16` explicitly).
    #[default]
    Auto,
    /// fp32 throughout.
    Fp32,
    /// bfloat16 autocast in the forward pass, even where it is emulated (slow).
    Bf16,
}

impl TrainPrecision {
    /// Whether a run on `device` uses bfloat16.
    pub fn bf16_on(self, device: Device) -> bool {
        match self {
            Self::Fp32 => false,
            Self::Bf16 => true,
            Self::Auto => device == Device::Cpu && cpu_has_bf16(),
        }
    }
}

impl std::fmt::Display for TrainPrecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Fp32 => "fp32",
            Self::Bf16 => "bf16",
        })
    }
}

// c10::DeviceType values.
const CPU: i8 = 0;
const CUDA: i8 = 1;

extern "C" {
    #[link_name = "_ZN2at8autocast20set_autocast_enabledEN3c1010DeviceTypeEb"]
    fn at_set_autocast_enabled(device_type: i8, enabled: bool);
    #[link_name = "_ZN2at8autocast19is_autocast_enabledEN3c1010DeviceTypeE"]
    fn at_is_autocast_enabled(device_type: i8) -> bool;
    #[link_name = "_ZN2at8autocast17increment_nestingEv"]
    fn at_increment_nesting() -> i32;
    #[link_name = "_ZN2at8autocast17decrement_nestingEv"]
    fn at_decrement_nesting() -> i32;
    #[link_name = "_ZN2at8autocast11clear_cacheEv"]
    fn at_clear_cache();
}

/// bfloat16 autocast on one device while the guard lives (on this thread). Dropping it
/// restores the previous state and, at the outermost level, empties autocast's cache of
/// weight casts, which would otherwise keep the weights from before the next optimiser step.
pub struct Autocast {
    device_type: i8,
    previous: bool,
}

impl Autocast {
    /// Turns autocast on for `device` when `enabled` (a guard that does nothing otherwise).
    pub fn new(device: Device, enabled: bool) -> Self {
        let device_type = match device {
            Device::Cuda(_) => CUDA,
            _ => CPU,
        };
        // SAFETY: libtorch's thread-local autocast switches; plain integer arguments.
        let previous = unsafe { at_is_autocast_enabled(device_type) };
        if enabled {
            unsafe {
                at_set_autocast_enabled(device_type, true);
                at_increment_nesting();
            }
        }
        Self {
            device_type: if enabled { device_type } else { -1 },
            previous,
        }
    }
}

impl Drop for Autocast {
    fn drop(&mut self) {
        if self.device_type < 0 {
            return;
        }
        // SAFETY: as in `new`.
        unsafe {
            if at_decrement_nesting() == 0 {
                at_clear_cache();
            }
            at_set_autocast_enabled(self.device_type, self.previous);
        }
    }
}

/// Runs `f` with CPU autocast off (as is when it is off already): for the layers whose
/// bfloat16 backward pass is slower than fp32's on the CPU (depthwise convolutions: with them
/// in bf16 a training step was slower than in fp32, see the model card).
pub fn without_cpu_autocast<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: as in `Autocast::new`.
    if !unsafe { at_is_autocast_enabled(CPU) } {
        return f();
    }
    unsafe { at_set_autocast_enabled(CPU, false) };
    let out = f();
    unsafe { at_set_autocast_enabled(CPU, true) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn convolutions_run_in_bf16_inside_the_guard_only() {
        let _turn = crate::generator_turn();
        let x = Tensor::rand([1, 3, 8, 8], (Kind::Float, Device::Cpu));
        let w = Tensor::rand([4, 3, 3, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let conv = |x: &Tensor| x.conv2d::<&Tensor>(&w, None, [1, 1], [0, 0], [1, 1], 1);
        {
            let _guard = Autocast::new(Device::Cpu, true);
            let y = conv(&x);
            assert_eq!(y.kind(), Kind::BFloat16);
            // Gradients reach the fp32 weights.
            y.to_kind(Kind::Float).sum(None).backward();
            assert_eq!(w.grad().kind(), Kind::Float);
        }
        assert_eq!(conv(&x).kind(), Kind::Float);
        {
            let _guard = Autocast::new(Device::Cpu, true);
            assert_eq!(without_cpu_autocast(|| conv(&x)).kind(), Kind::Float);
            assert_eq!(conv(&x).kind(), Kind::BFloat16);
        }
        let _off = Autocast::new(Device::Cpu, false);
        assert_eq!(conv(&x).kind(), Kind::Float);
    }

    #[test]
    fn a_weight_changed_between_steps_is_cast_again() {
        let _turn = crate::generator_turn();
        let x = Tensor::ones([1, 1, 1, 1], (Kind::Float, Device::Cpu));
        let w = Tensor::ones([1, 1, 1, 1], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let out = |w: &Tensor| {
            let _guard = Autocast::new(Device::Cpu, true);
            x.conv2d::<&Tensor>(w, None, [1, 1], [0, 0], [1, 1], 1)
                .double_value(&[0, 0, 0, 0])
        };
        assert_eq!(out(&w), 1.0);
        tch::no_grad(|| {
            let _ = w.shallow_clone().fill_(3.0);
        });
        assert_eq!(out(&w), 3.0);
    }
}
