"""The model card's rows for one scored candidate (`scripts/score_candidate.sh` writes OUT):

    python3 scripts/candidate_rows.py NAME OUT

OUT/model/{ham-val,second-val,ph2}/metrics.json and, for a leave-one-source-out twin,
OUT/twin/... (`evaluate`'s metrics). Prints one row per model and set, then the selection
score: the worst balanced accuracy as served over the sets held out of each model's
training (PH2 for the two-source model; the second-source `val` and PH2 for the twin).
"""

import json
import sys
from pathlib import Path

SETS = {"ham-val": "HAM10000 `val`", "second-val": "second-source `val`", "ph2": "PH2"}
HELD_OUT = {"model": ("ph2",), "twin": ("second-val", "ph2")}
HEADER = ("| candidate | model | set | BA as served | BA of best guesses | MEL sens / spec as served "
          "| MEL AUC | NV recall | Unknown |\n|---|---|---|---|---|---|---|---|---|")


def cell(value, digits=3):
    return "–" if value is None else f"{value:.{digits}f}"


def row(name, kind, key, m):
    held = " (held out)" if key in HELD_OUT[kind] else ""
    return (f"| {name} | {kind} | {SETS[key]}{held} | {cell(m['balanced_accuracy_served'])} "
            f"| {cell(m['balanced_accuracy'])} | {cell(m['melanoma_sensitivity_served'], 2)} / "
            f"{cell(m['melanoma_specificity_served'], 2)} | {cell(m['melanoma_auc'])} "
            f"| {cell(m['nevus_recall'], 2)} | {100 * m['unknown_rate']:.1f} % |")


def main() -> None:
    name, out = sys.argv[1], Path(sys.argv[2])
    print(HEADER)
    held_out = []
    for kind in ("model", "twin"):
        for key in SETS:
            path = out / kind / key / "metrics.json"
            if not path.exists():
                continue
            m = json.loads(path.read_text())
            print(row(name, kind, key, m))
            if key in HELD_OUT[kind]:
                held_out.append((m["balanced_accuracy_served"], f"{kind} on {SETS[key]}"))
    worst = min(held_out)
    print(f"\nselection score (worst held-out balanced accuracy as served): {worst[0]:.3f} ({worst[1]})")


if __name__ == "__main__":
    main()
