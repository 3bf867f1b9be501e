//! Classification and calibration metrics, as plain functions over label indices.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use skinlesion_core::Calibration;

/// Index of the largest value (the first on ties).
pub fn argmax(values: &[f64]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0
}

/// `matrix[truth][predicted]` counts.
pub fn confusion(truth: &[usize], predicted: &[usize], labels: usize) -> Vec<Vec<u64>> {
    let mut m = vec![vec![0u64; labels]; labels];
    for (&t, &p) in truth.iter().zip(predicted) {
        m[t][p] += 1;
    }
    m
}

/// Precision, recall, F1 and support of one label.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassReport {
    pub label: String,
    pub support: u64,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
    /// One-vs-rest ROC AUC; `None` when the label has no positives or no negatives.
    pub auc: Option<f64>,
}

pub fn class_reports(
    matrix: &[Vec<u64>],
    names: &[String],
    aucs: &[Option<f64>],
) -> Vec<ClassReport> {
    (0..names.len())
        .map(|k| {
            let tp = matrix[k][k] as f64;
            let support: u64 = matrix[k].iter().sum();
            let predicted: u64 = matrix.iter().map(|row| row[k]).sum();
            let precision = (predicted > 0).then(|| tp / predicted as f64);
            let recall = (support > 0).then(|| tp / support as f64);
            let f1 = match (precision, recall) {
                (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
                (Some(_), Some(_)) => Some(0.0),
                _ => None,
            };
            ClassReport {
                label: names[k].clone(),
                support,
                precision,
                recall,
                f1,
                auc: aucs[k],
            }
        })
        .collect()
}

/// Mean recall over the labels that occur in the truth.
pub fn balanced_accuracy(matrix: &[Vec<u64>]) -> f64 {
    let recalls: Vec<f64> = matrix
        .iter()
        .enumerate()
        .filter_map(|(k, row)| {
            let support: u64 = row.iter().sum();
            (support > 0).then(|| row[k] as f64 / support as f64)
        })
        .collect();
    if recalls.is_empty() {
        return 0.0;
    }
    recalls.iter().sum::<f64>() / recalls.len() as f64
}

/// 95% percentile-bootstrap intervals of the balanced accuracy and of each label's recall.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecallIntervals {
    pub balanced_accuracy: [f64; 2],
    /// In label order; `None` for a label absent from the truth.
    pub recall: Vec<Option<[f64; 2]>>,
}

/// Bootstrap over the images of a confusion matrix, resampling within each true label so that
/// every label keeps its support (as balanced accuracy assumes): the spread that comes from
/// which images of each class the set happened to contain. With 15–30 images in the rarest
/// classes this is wide, and worth knowing before comparing two models. A class whose images
/// are all found (or none) adds no spread, as with any bootstrap: read such intervals with its
/// support in mind. Seeded: the same matrix always gives the same interval.
pub fn recall_intervals(matrix: &[Vec<u64>], resamples: usize, seed: u64) -> RecallIntervals {
    let mut rng = StdRng::seed_from_u64(seed);
    // (hits, support) per label present in the truth.
    let present: Vec<(usize, u64, u64)> = matrix
        .iter()
        .enumerate()
        .map(|(k, row)| (k, row[k], row.iter().sum::<u64>()))
        .filter(|&(_, _, support)| support > 0)
        .collect();
    let mut balanced = Vec::with_capacity(resamples);
    let mut recalls = vec![Vec::with_capacity(resamples); matrix.len()];
    for _ in 0..resamples {
        let mut sum = 0.0;
        for &(k, hits, support) in &present {
            // Only hits and misses matter for recall: draw `support` images from the row.
            let drawn = (0..support)
                .filter(|_| rng.gen_range(0..support) < hits)
                .count();
            let recall = drawn as f64 / support as f64;
            recalls[k].push(recall);
            sum += recall;
        }
        balanced.push(if present.is_empty() {
            0.0
        } else {
            sum / present.len() as f64
        });
    }
    RecallIntervals {
        balanced_accuracy: percentile_interval(&mut balanced),
        recall: recalls
            .iter_mut()
            .map(|r| (!r.is_empty()).then(|| percentile_interval(r)))
            .collect(),
    }
}

/// The 2.5th and 97.5th percentiles (nearest rank).
fn percentile_interval(values: &mut [f64]) -> [f64; 2] {
    values.sort_by(f64::total_cmp);
    let at =
        |q: f64| values[((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
    [at(0.025), at(0.975)]
}

pub fn accuracy(truth: &[usize], predicted: &[usize]) -> f64 {
    if truth.is_empty() {
        return 0.0;
    }
    let hits = truth.iter().zip(predicted).filter(|(t, p)| t == p).count();
    hits as f64 / truth.len() as f64
}

/// ROC AUC of `scores` for the `positive` flags (Mann–Whitney, ties counted half).
pub fn roc_auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Average ranks (1-based) over tied groups.
    let mut ranks = vec![0f64; scores.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            ranks[o] = rank;
        }
        i = j + 1;
    }
    let n_pos = positive.iter().filter(|&&p| p).count() as f64;
    let n_neg = positive.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return None;
    }
    let rank_sum: f64 = ranks
        .iter()
        .zip(positive)
        .filter(|(_, &p)| p)
        .map(|(r, _)| r)
        .sum();
    Some((rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg))
}

/// One bin of a reliability diagram.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReliabilityBin {
    pub lower: f64,
    pub upper: f64,
    pub count: u64,
    /// The images' total weight (their count when unweighted).
    pub weight: f64,
    pub mean_confidence: Option<f64>,
    pub accuracy: Option<f64>,
}

/// Equal-width confidence bins over [0, 1]; the last bin includes 1. `weights` weigh the
/// images (empty: all 1); counts stay counts of images.
pub fn reliability(
    confidence: &[f64],
    correct: &[bool],
    weights: &[f64],
    bins: usize,
) -> Vec<ReliabilityBin> {
    // (images, weight, weighted confidence, weighted hits) per bin.
    let mut sums = vec![(0u64, 0f64, 0f64, 0f64); bins];
    for (i, (&c, &ok)) in confidence.iter().zip(correct).enumerate() {
        let w = weights.get(i).copied().unwrap_or(1.0);
        let b = ((c * bins as f64) as usize).min(bins - 1);
        sums[b].0 += 1;
        sums[b].1 += w;
        sums[b].2 += w * c;
        sums[b].3 += w * f64::from(u8::from(ok));
    }
    sums.iter()
        .enumerate()
        .map(|(b, &(n, w, conf, hits))| ReliabilityBin {
            lower: b as f64 / bins as f64,
            upper: (b + 1) as f64 / bins as f64,
            count: n,
            weight: w,
            mean_confidence: (n > 0).then(|| conf / w),
            accuracy: (n > 0).then(|| hits / w),
        })
        .collect()
}

/// Expected calibration error: Σ (w_bin / w) · |accuracy_bin − confidence_bin|, with the
/// images weighted by `weights` (empty: all 1; [`class_balanced_weights`]: the class-balanced
/// ECE).
pub fn expected_calibration_error(
    confidence: &[f64],
    correct: &[bool],
    weights: &[f64],
    bins: usize,
) -> f64 {
    let bins = reliability(confidence, correct, weights, bins);
    let total: f64 = bins.iter().map(|b| b.weight).sum();
    bins.iter()
        .filter_map(|b| Some(b.weight / total * (b.accuracy? - b.mean_confidence?).abs()))
        .sum()
}

/// Softmax of `logits / temperature`, in f64: the library's calibration with nothing else.
pub fn softmax(logits: &[f32], temperature: f64) -> Vec<f64> {
    Calibration {
        temperature: temperature as f32,
        ..Default::default()
    }
    .probabilities(logits)
}

/// Mean negative log-likelihood of the truth under `calibration`'s probabilities, each image
/// weighted by `weights` (e.g. [`class_balanced_weights`]).
pub fn nll(
    logits: &[Vec<f32>],
    truth: &[usize],
    weights: &[f64],
    calibration: &Calibration,
) -> f64 {
    let (total, weight) = logits
        .iter()
        .zip(truth)
        .zip(weights)
        .map(|((l, &t), &w)| (-w * calibration.probabilities(l)[t].max(1e-12).ln(), w))
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    total / weight.max(f64::MIN_POSITIVE)
}

/// Per-image weights under which every class present in `truth` weighs the same: averages
/// over them describe a population where each lesion type is equally common.
pub fn class_balanced_weights(truth: &[usize], classes: usize) -> Vec<f64> {
    let mut counts = vec![0usize; classes];
    for &t in truth {
        counts[t] += 1;
    }
    truth.iter().map(|&t| 1.0 / counts[t] as f64).collect()
}

/// The softmax temperature of `calibration_at` that minimises the weighted validation NLL
/// (golden-section search on log T over [0.05, 20]).
pub fn fit_temperature(
    logits: &[Vec<f32>],
    truth: &[usize],
    weights: &[f64],
    calibration_at: impl Fn(f32) -> Calibration,
) -> f32 {
    let f = |log_t: f64| nll(logits, truth, weights, &calibration_at(log_t.exp() as f32));
    let (mut a, mut b) = (0.05f64.ln(), 20f64.ln());
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let mut c = b - ratio * (b - a);
    let mut d = a + ratio * (b - a);
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..80 {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - ratio * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + ratio * (b - a);
            fd = f(d);
        }
    }
    ((a + b) / 2.0).exp() as f32
}

/// The "Unknown" rule's threshold: the most confident `1 - coverage` share's boundary, so that
/// at least `coverage` of the confidences are at or above it (answered) and the rest, the
/// least confident, abstain. It lies midway between the last abstaining and the first
/// answered confidence, so that float noise of another code path (batching, memory layout)
/// does not move an image across it. 0 (never abstain) for `coverage` 1 or no confidences.
pub fn coverage_threshold(confidence: &[f64], coverage: f64) -> f64 {
    let mut sorted = confidence.to_vec();
    sorted.sort_by(f64::total_cmp);
    // The epsilon keeps 0.1 × 20 from rounding down to 1.999….
    let abstaining =
        ((1.0 - coverage.clamp(0.0, 1.0)) * sorted.len() as f64 + 1e-9).floor() as usize;
    match abstaining {
        0 => 0.0,
        k => (sorted[k - 1] + sorted[k]) / 2.0,
    }
}

/// One point of a coverage-accuracy curve (selective classification): answering only the
/// most confident `coverage` of the images, how often those answers are right.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CoveragePoint {
    pub coverage: f64,
    /// The confidence at and above which an image is answered.
    pub confidence_threshold: f64,
    /// Accuracy over the answered images.
    pub accuracy: f64,
    /// Balanced accuracy over the answered images (each true label's recall among its
    /// answered images, averaged).
    pub balanced_accuracy: f64,
}

/// The coverages a curve reports.
pub const CURVE_COVERAGES: [f64; 8] = [1.0, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5];

/// Selective accuracy at each of `coverages`: the images ranked by `confidence`, the most
/// confident kept (the threshold as [`coverage_threshold`] sets it).
pub fn coverage_curve(
    confidence: &[f64],
    truth: &[usize],
    predicted: &[usize],
    labels: usize,
    coverages: &[f64],
) -> Vec<CoveragePoint> {
    coverages
        .iter()
        .map(|&coverage| {
            let threshold = coverage_threshold(confidence, coverage);
            let kept: Vec<usize> = (0..confidence.len())
                .filter(|&i| confidence[i] >= threshold)
                .collect();
            let t: Vec<usize> = kept.iter().map(|&i| truth[i]).collect();
            let p: Vec<usize> = kept.iter().map(|&i| predicted[i]).collect();
            CoveragePoint {
                coverage: kept.len() as f64 / confidence.len().max(1) as f64,
                confidence_threshold: threshold,
                accuracy: accuracy(&t, &p),
                balanced_accuracy: balanced_accuracy(&confusion(&t, &p, labels)),
            }
        })
        .collect()
}

/// The smallest bias `b ≥ 0` that, added to class `class`'s logit before the argmax, makes
/// at least `target` of that class's images answered as it (its recall). Exact: each image of
/// the class needs its largest rival's margin over it; the bias is the ⌈target·n⌉-th smallest
/// such need, plus a hair so that the comparison is strict. 0 when the class has no images or
/// the unbiased decision already reaches the target.
pub fn bias_for_recall(logits: &[Vec<f32>], truth: &[usize], class: usize, target: f64) -> f32 {
    let mut needs: Vec<f32> = logits
        .iter()
        .zip(truth)
        .filter(|(_, &t)| t == class)
        .map(|(l, _)| {
            let rival = l
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != class)
                .map(|(_, &v)| v)
                .fold(f32::NEG_INFINITY, f32::max);
            rival - l[class]
        })
        .collect();
    if needs.is_empty() {
        return 0.0;
    }
    needs.sort_by(f32::total_cmp);
    let k = ((target.clamp(0.0, 1.0) * needs.len() as f64).ceil() as usize).max(1);
    let need = needs[k - 1];
    if need < 0.0 {
        0.0
    } else {
        need + 1e-4 * need.abs().max(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_intervals_match_binomial_spread_and_are_seeded() {
        // A perfect classifier has no spread at all.
        let perfect = vec![vec![20, 0], vec![0, 5]];
        let exact = recall_intervals(&perfect, 500, 1);
        assert_eq!(exact.balanced_accuracy, [1.0, 1.0]);
        assert_eq!(exact.recall, vec![Some([1.0, 1.0]), Some([1.0, 1.0])]);

        // Label 0: recall 0.5 of 100 images, binomial 95% interval about 0.5 ± 0.098. Label 1
        // always right, label 2 absent from the truth (its column still counts as a prediction).
        let matrix = vec![vec![50, 45, 5], vec![0, 400, 0], vec![0, 0, 0]];
        let a = recall_intervals(&matrix, 4000, 7);
        let [lo, hi] = a.recall[0].unwrap();
        assert!(
            (lo - 0.40).abs() <= 0.015 && (hi - 0.60).abs() <= 0.015,
            "{lo} {hi}"
        );
        assert_eq!(a.recall[1], Some([1.0, 1.0]));
        assert_eq!(a.recall[2], None);
        // Balanced accuracy = (recall_0 + 1) / 2: half the spread, around 0.75.
        let [blo, bhi] = a.balanced_accuracy;
        assert!((blo - (lo + 1.0) / 2.0).abs() < 1e-12 && (bhi - (hi + 1.0) / 2.0).abs() < 1e-12);
        assert!(blo < balanced_accuracy(&matrix) && balanced_accuracy(&matrix) < bhi);

        assert_eq!(
            recall_intervals(&matrix, 300, 3),
            recall_intervals(&matrix, 300, 3)
        );
        assert_ne!(
            recall_intervals(&matrix, 300, 3),
            recall_intervals(&matrix, 300, 4)
        );
    }

    #[test]
    fn bias_for_recall_reaches_the_target_exactly() {
        // Class 1's images need margins 0.5, 1.0 and 2.0 to win; one is already right.
        let logits = vec![
            vec![1.0f32, 0.5],
            vec![2.0, 1.0],
            vec![0.0, 1.0],
            vec![3.0, 1.0],
            vec![5.0, 0.0], // class 0: ignored
        ];
        let truth = [1, 1, 1, 1, 0];
        let recall = |b: f32| {
            logits
                .iter()
                .zip(&truth)
                .filter(|(_, &t)| t == 1)
                .filter(|(l, _)| l[1] + b > l[0])
                .count() as f64
                / 4.0
        };
        assert_eq!(bias_for_recall(&logits, &truth, 1, 0.25), 0.0);
        for target in [0.5, 0.75, 1.0] {
            let b = bias_for_recall(&logits, &truth, 1, target);
            assert!(recall(b) >= target, "{target}: bias {b}");
            assert!(
                recall(b - 0.01) < target,
                "{target}: bias {b} is not the smallest"
            );
        }
        assert_eq!(bias_for_recall(&logits, &truth, 1, 0.5), 0.5 + 1e-4);
        assert_eq!(bias_for_recall(&logits, &[0, 0, 0, 0, 0], 1, 0.9), 0.0);
    }

    #[test]
    fn auc_handles_ties_and_degenerate_cases() {
        assert_eq!(
            roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]),
            Some(0.75)
        );
        assert_eq!(roc_auc(&[0.5, 0.5], &[true, false]), Some(0.5));
        assert_eq!(roc_auc(&[0.5, 0.7], &[true, true]), None);
    }

    #[test]
    fn temperature_recovers_a_known_scale() {
        // Logits that are 3× too confident relative to a true model at T = 1.
        let mut logits = Vec::new();
        let mut truth = Vec::new();
        let mut x = 12345u64;
        for _ in 0..3000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let base = [(x % 1000) as f32 / 250.0, 0.0, 1.0];
            let p = softmax(&base, 1.0);
            let u = (x >> 20) as f64 / (1u64 << 44) as f64;
            let t = if u < p[0] {
                0
            } else if u < p[0] + p[1] {
                1
            } else {
                2
            };
            logits.push(base.iter().map(|v| v * 3.0).collect());
            truth.push(t);
        }
        let ones = vec![1.0; truth.len()];
        let t = fit_temperature(&logits, &truth, &ones, |temperature| Calibration {
            temperature,
            ..Default::default()
        });
        assert!((t - 3.0).abs() < 0.3, "fitted {t}");
    }

    #[test]
    fn the_coverage_curve_keeps_the_most_confident_answers() {
        // Confidence rises with the index; the 4 least confident answers are the wrong ones.
        let conf: Vec<f64> = (0..10).map(|i| f64::from(i) / 10.0).collect();
        let truth = [0, 0, 1, 1, 0, 0, 0, 1, 1, 1];
        let predicted = [1, 1, 0, 0, 0, 0, 0, 1, 1, 1];
        let curve = coverage_curve(&conf, &truth, &predicted, 2, &[1.0, 0.6, 0.5]);
        assert_eq!(curve[0].coverage, 1.0);
        assert!((curve[0].accuracy - 0.6).abs() < 1e-12);
        assert!((curve[1].coverage - 0.6).abs() < 1e-12 && curve[1].accuracy == 1.0);
        assert!((curve[1].confidence_threshold - 0.35).abs() < 1e-12);
        assert!((curve[2].coverage - 0.5).abs() < 1e-12 && curve[2].balanced_accuracy == 1.0);
    }

    #[test]
    fn coverage_threshold_answers_at_least_the_share_asked_for() {
        let conf: Vec<f64> = (0..20).map(|i| f64::from(i) / 20.0).collect();
        let t = coverage_threshold(&conf, 0.9);
        assert!((t - 0.075).abs() < 1e-12, "{t}");
        assert_eq!(conf.iter().filter(|&&c| c >= t).count(), 18);
        // 0.93 of 20 is 18.6 images: 19 answered, one abstains.
        let t = coverage_threshold(&conf, 0.93);
        assert_eq!(conf.iter().filter(|&&c| c >= t).count(), 19);
        assert_eq!(coverage_threshold(&conf, 1.0), 0.0);
        assert_eq!(coverage_threshold(&[], 0.9), 0.0);
    }
}
