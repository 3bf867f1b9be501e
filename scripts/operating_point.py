"""What the melanoma operating point costs on each validation source (#31 item 4).

    .venv/bin/python scripts/operating_point.py RUN/eval-val/predictions.csv \
        RUN/eval-second-val/predictions.csv [--sensitivity 0.85]

Reads `skinlesion-train evaluate`'s predictions (calibrated probabilities, the shipped prior
included) of HAM10000 `val` and the second-source `val`, moves melanoma's log prior by Δ
(probabilities times exp(Δ), renormalised: exactly what a different prior in the manifest
gives) and prints, for each source, balanced accuracy, melanoma sensitivity / specificity and
nevus recall: at the manifest's prior (Δ = 0), at the Δ that fits the target sensitivity on
the first source alone (the shipped rule) and on both sources pooled, and along a grid.
Never run it on `test`.
"""

import argparse
import csv
import math

import numpy as np

CLASSES = ["AK", "BCC", "BKL", "DF", "MEL", "NV", "SCC", "VASC"]
MEL, NV = CLASSES.index("MEL"), CLASSES.index("NV")


def load(path):
    rows = list(csv.DictReader(open(path)))
    probabilities = np.array([[float(r[f"probability_{c}"]) for c in CLASSES] for r in rows])
    truth = np.array([CLASSES.index(r["true_label"]) for r in rows])
    return probabilities, truth


def answers(probabilities, delta):
    shifted = probabilities.copy()
    shifted[:, MEL] *= math.exp(delta)
    return shifted.argmax(1)


def scores(source, delta):
    probabilities, truth = source
    predicted = answers(probabilities, delta)
    recall = {c: float((predicted[truth == c] == c).mean()) for c in sorted(set(truth))}
    specificity = float((predicted[truth != MEL] != MEL).mean())
    return float(np.mean(list(recall.values()))), recall[MEL], specificity, recall.get(NV, float("nan"))


def fitted(sources, sensitivity):
    """The largest Δ (least melanoma prior) whose pooled melanoma sensitivity meets the target."""
    probabilities = np.concatenate([s[0] for s in sources])
    truth = np.concatenate([s[1] for s in sources])
    for delta in np.arange(4.0, -4.0, -0.01):
        if (answers(probabilities, delta)[truth == MEL] == MEL).mean() < sensitivity:
            return delta + 0.01
    return -4.0


def row(label, sources, delta):
    cells = " | ".join("{:.3f} | {:.2f} / {:.2f} | {:.2f}".format(*scores(s, delta)) for s in sources)
    return f"| {label} | {delta:+.2f} | {cells} |"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("predictions", nargs=2, help="first source's val, second source's val")
    parser.add_argument("--sensitivity", type=float, default=0.85)
    args = parser.parse_args()
    sources = [load(p) for p in args.predictions]
    print("| rule | Δ log prior | HAM BA | MEL sens / spec | NV recall | 2nd BA | MEL sens / spec | NV recall |")
    print("|---|---|---|---|---|---|---|---|")
    print(row("manifest", sources, 0.0))
    print(row(f"sens ≥ {args.sensitivity} on the first source", sources, fitted(sources[:1], args.sensitivity)))
    print(row(f"sens ≥ {args.sensitivity} on both, pooled", sources, fitted(sources, args.sensitivity)))
    for delta in (-0.5, -1.0, -1.5, -2.0):
        print(row("grid", sources, delta))


if __name__ == "__main__":
    main()
