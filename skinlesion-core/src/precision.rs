//! The arithmetic a network runs in: fp32, or bfloat16 where the CPU computes it natively.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{Agreement, PrecisionWeights};

/// The least share of images on which a bf16 network must give fp32's answer (class, or
/// Unknown for the same reason) for [`Precision::Auto`] to choose it.
pub const AUTO_SAME_ANSWER: f64 = 0.995;
/// The least share of equal dermoscopy-gate decisions for `Auto` to choose bf16.
pub const AUTO_SAME_GATE: f64 = 0.995;
/// The largest balanced-accuracy difference to fp32 for `Auto` to choose bf16.
pub const AUTO_BALANCED_ACCURACY_DIFFERENCE: f64 = 0.005;

/// The arithmetic of the forward pass. Parsed from and written as `auto`, `fp32`, `bf16`,
/// `bf16-checked`.
///
/// A bf16 network is a second traced network in the artifact
/// ([`crate::ModelMetadata::other_precisions`]): its convolutions run in bfloat16, while the
/// pooled features, the class head, the dermoscopy gate's distance and the class maps are
/// computed in fp32 from the same pass, so that bf16's 8-bit mantissa does not move gate
/// decisions or heatmaps. How often its answers equal fp32's is measured at export and
/// recorded in the manifest. It is a CPU network: its convolutions are oneDNN's fused ones
/// (convolution and activation in one pass), which no GPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// On a CPU with native bfloat16 arithmetic (AVX512-BF16, which every AMX CPU has too,
    /// detected at run time): `Bf16` when the artifact's bf16 network agrees with fp32 as
    /// [`Agreement::close_enough_for_auto`] asks, else `Bf16Checked` when its checked answers
    /// do; fp32 otherwise. A user is never switched to answers that differ without asking.
    /// GPUs get fp32 under `Auto` (bf16 on a GPU is untested).
    #[default]
    Auto,
    /// 32-bit floating point throughout.
    Fp32,
    /// bfloat16 convolutions with an fp32 head, on a CPU. Runs on any x86-64 CPU, but is slow
    /// where the CPU emulates bfloat16; refused on a GPU.
    Bf16,
    /// `Bf16`, with the close calls re-run in fp32: an image whose answer lies within the
    /// artifact's recheck bands of a boundary (runner-up class, Unknown threshold, gate) gets
    /// the fp32 network's answer (see [`crate::Margins`]). Nearly fp32's answers at most of
    /// bf16's speed; both networks stay loaded. CPU only.
    Bf16Checked,
}

impl Precision {
    /// Every precision, in the order interfaces list them.
    pub const ALL: [Precision; 4] = [
        Precision::Auto,
        Precision::Fp32,
        Precision::Bf16,
        Precision::Bf16Checked,
    ];

    /// The arithmetic a classifier on `device` runs, given the networks its artifact offers
    /// besides fp32: never `Auto`. An error when `Bf16` is asked of a model without a bf16
    /// network, or on a device other than the CPU.
    pub(crate) fn resolve(
        self,
        device: tch::Device,
        others: &[PrecisionWeights],
    ) -> Result<Precision> {
        let bf16 = others.iter().find(|o| o.precision == Precision::Bf16);
        let recheck = bf16.and_then(|o| o.recheck.as_ref());
        let agrees = |a: Option<&Agreement>| a.is_some_and(Agreement::close_enough_for_auto);
        let native = device == tch::Device::Cpu && cpu_has_bf16();
        match self {
            Precision::Fp32 => Ok(Precision::Fp32),
            Precision::Bf16 | Precision::Bf16Checked if device != tch::Device::Cpu => {
                Err(Error::Config(format!(
                    "precision {self} runs on the CPU only (its network uses oneDNN's fused \
                     CPU convolutions), not on {device:?}; use fp32 or auto there"
                )))
            }
            Precision::Bf16 | Precision::Bf16Checked if bf16.is_none() => {
                Err(Error::Config(format!(
                    "precision {self} asked for, but this model has no bf16 network (its \
                     manifest's other_precisions); use fp32 or auto"
                )))
            }
            Precision::Bf16 => Ok(Precision::Bf16),
            Precision::Bf16Checked if recheck.is_some() => Ok(Precision::Bf16Checked),
            Precision::Bf16Checked => Err(Error::Config(
                "precision bf16-checked asked for, but this model's bf16 network has no \
                 recheck bands (`skinlesion-train add-precision` fits them); use bf16, fp32 \
                 or auto"
                    .into(),
            )),
            Precision::Auto if native && agrees(bf16.and_then(|o| o.agreement.as_ref())) => {
                Ok(Precision::Bf16)
            }
            Precision::Auto if native && agrees(recheck.map(|r| &r.agreement)) => {
                Ok(Precision::Bf16Checked)
            }
            Precision::Auto => Ok(Precision::Fp32),
        }
    }

    /// The network this precision runs (`Bf16Checked` runs the bf16 one, fp32 only for its
    /// close calls).
    pub fn network(self) -> Precision {
        match self {
            Precision::Bf16Checked => Precision::Bf16,
            other => other,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Auto => "auto",
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Bf16Checked => "bf16-checked",
        })
    }
}

impl FromStr for Precision {
    type Err = Error;

    /// Parses `auto`, `fp32`, `bf16` or `bf16-checked` (any case).
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Precision::Auto),
            "fp32" | "float32" => Ok(Precision::Fp32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "bf16-checked" => Ok(Precision::Bf16Checked),
            _ => Err(Error::Config(format!(
                "unknown precision {s:?}: use auto, fp32, bf16 or bf16-checked"
            ))),
        }
    }
}

impl Agreement {
    /// Whether a network this close to fp32 may be chosen without the user asking: the same
    /// answer and the same gate decision on at least [`AUTO_SAME_ANSWER`] and
    /// [`AUTO_SAME_GATE`] of the images, balanced accuracy within
    /// [`AUTO_BALANCED_ACCURACY_DIFFERENCE`].
    pub fn close_enough_for_auto(&self) -> bool {
        self.same_answer >= AUTO_SAME_ANSWER
            && self.same_gate >= AUTO_SAME_GATE
            && (self.balanced_accuracy - self.balanced_accuracy_fp32).abs()
                <= AUTO_BALANCED_ACCURACY_DIFFERENCE
    }
}

/// True when this CPU has native bfloat16 dot products: AVX512-BF16 (AMD Zen 4 onwards, Intel
/// Cooper Lake onwards; every CPU with AMX has it too, and AMX's own flag is not yet stable
/// to detect in Rust).
pub fn cpu_has_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// True when this CPU can run oneDNN's bfloat16 convolutions at all (natively or emulated):
/// libtorch refuses them without AVX-512 BW, VL and DQ or AVX-NE-CONVERT, e.g. on an
/// AVX2-only CPU. A bf16 network of plain operations may still run there.
pub fn cpu_runs_bf16_convolutions() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        (has!("avx512bw") && has!("avx512vl") && has!("avx512dq")) || has!("avxneconvert")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_same_names() {
        for p in Precision::ALL {
            assert_eq!(p.to_string().parse::<Precision>().unwrap(), p);
        }
        assert_eq!("BF16".parse::<Precision>().unwrap(), Precision::Bf16);
        let err = "fp16".parse::<Precision>().unwrap_err();
        assert!(
            err.to_string().contains("auto, fp32, bf16 or bf16-checked"),
            "{err}"
        );
        assert_eq!(
            serde_json::to_string(&Precision::Bf16Checked).unwrap(),
            "\"bf16-checked\""
        );
    }

    fn agreement(same_answer: f64) -> Agreement {
        Agreement {
            images: "test".into(),
            count: 1000,
            same_answer,
            same_gate: 1.0,
            max_probability_difference: 0.01,
            balanced_accuracy_fp32: 0.7,
            balanced_accuracy: 0.7,
        }
    }

    fn bf16(same_answer: f64) -> Vec<PrecisionWeights> {
        vec![PrecisionWeights {
            precision: Precision::Bf16,
            weights: crate::model::WeightsRef {
                file: "m.bf16.pt".into(),
                format: crate::model::WeightsFormat::TorchScript,
                sha256: "0".repeat(64),
            },
            agreement: Some(agreement(same_answer)),
            recheck: None,
        }]
    }

    /// A bf16 network whose own answers agree `same_answer` and whose checked ones `checked`.
    fn checked(same_answer: f64, checked: f64) -> Vec<PrecisionWeights> {
        let mut others = bf16(same_answer);
        others[0].recheck = Some(crate::model::Recheck {
            quantile: 0.9,
            bands: crate::Margins {
                answer: 0.05,
                confidence: 0.05,
                gate: 0.1,
            },
            rechecked: 0.15,
            agreement: agreement(checked),
        });
        others
    }

    #[test]
    fn auto_takes_the_checked_network_when_only_its_answers_agree() {
        let cpu = tch::Device::Cpu;
        let native = |p| if cpu_has_bf16() { p } else { Precision::Fp32 };
        let auto = |others: &[PrecisionWeights]| Precision::Auto.resolve(cpu, others).unwrap();
        assert_eq!(auto(&checked(0.97, 0.999)), native(Precision::Bf16Checked));
        assert_eq!(auto(&checked(0.999, 0.999)), native(Precision::Bf16));
        assert_eq!(auto(&checked(0.97, 0.99)), Precision::Fp32);
        let gpu = tch::Device::Cuda(0);
        assert_eq!(
            Precision::Auto.resolve(gpu, &checked(0.97, 1.0)).unwrap(),
            Precision::Fp32
        );
        let asked = Precision::Bf16Checked;
        assert_eq!(asked.resolve(cpu, &checked(0.9, 0.9)).unwrap(), asked);
        for (device, others, why) in [
            (gpu, checked(1.0, 1.0), "CPU only"),
            (cpu, bf16(1.0), "no recheck bands"),
            (cpu, Vec::new(), "no bf16 network"),
        ] {
            let err = asked.resolve(device, &others).unwrap_err();
            assert!(err.to_string().contains(why), "{err}");
        }
        assert_eq!(asked.network(), Precision::Bf16);
    }

    #[test]
    fn auto_needs_a_close_network_and_a_native_cpu() {
        let cpu = tch::Device::Cpu;
        assert_eq!(Precision::Auto.resolve(cpu, &[]).unwrap(), Precision::Fp32);
        assert_eq!(
            Precision::Auto
                .resolve(tch::Device::Cuda(0), &bf16(1.0))
                .unwrap(),
            Precision::Fp32
        );
        let native = if cpu_has_bf16() {
            Precision::Bf16
        } else {
            Precision::Fp32
        };
        assert_eq!(Precision::Auto.resolve(cpu, &bf16(0.999)).unwrap(), native);
        // Answers that differ too often are only run when asked for.
        assert_eq!(
            Precision::Auto.resolve(cpu, &bf16(0.99)).unwrap(),
            Precision::Fp32
        );
        assert_eq!(
            Precision::Bf16.resolve(cpu, &bf16(0.99)).unwrap(),
            Precision::Bf16
        );
        let mut unmeasured = bf16(1.0);
        unmeasured[0].agreement = None;
        assert_eq!(
            Precision::Auto.resolve(cpu, &unmeasured).unwrap(),
            Precision::Fp32
        );
    }

    #[test]
    fn bf16_is_refused_on_a_gpu() {
        let err = Precision::Bf16
            .resolve(tch::Device::Cuda(0), &bf16(1.0))
            .unwrap_err();
        assert!(err.to_string().contains("CPU only"), "{err}");
    }

    #[test]
    fn bf16_is_refused_for_a_model_without_it() {
        let err = Precision::Bf16.resolve(tch::Device::Cpu, &[]).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
        assert_eq!(
            Precision::Fp32
                .resolve(tch::Device::Cpu, &bf16(1.0))
                .unwrap(),
            Precision::Fp32
        );
    }
}
