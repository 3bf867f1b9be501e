"""Summarises an OOD bench run: refused shares per set and the AUROC of the gate's score.

    python score.py RUN_DIR      (written by run.sh; prints a table, writes RUN_DIR/summary.json)
"""

import csv
import json
import sys
from pathlib import Path


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def auroc(inside: list[float], outside: list[float]) -> float:
    """P(an outside score > an inside score), ties counted half (Mann-Whitney)."""
    wins = sum((o > i) + 0.5 * (o == i) for o in outside for i in inside)
    return wins / (len(inside) * len(outside))


def main() -> None:
    run = Path(sys.argv[1])
    sets = {
        "HAM10000 val": rows(run / "val" / "predictions.csv"),
        "HAM10000 test": rows(run / "test" / "predictions.csv"),
        "natural photos": rows(run / "natural.csv"),
        "generated": rows(run / "generated.csv"),
    }
    if any(r["ood_score"] == "" for rs in sets.values() for r in rs):
        sys.exit("this model has no dermoscopy gate (no ood_score)")
    summary = {}
    print(f"{'set':<16} {'images':>6}  refused as not dermoscopy")
    for name, rs in sets.items():
        refused = sum(r["unknown_reason"] == "not_dermoscopy" for r in rs)
        summary[name] = {"images": len(rs), "refused": refused, "refused_share": refused / len(rs)}
        print(f"{name:<16} {len(rs):>6}  {refused:>4} ({100 * refused / len(rs):.1f}%)")
    outside = sets["natural photos"] + sets["generated"]
    refused = sum(r["unknown_reason"] == "not_dermoscopy" for r in outside)
    score = lambda rs: [float(r["ood_score"]) for r in rs]
    summary["non-dermoscopy"] = {"images": len(outside), "refused_share": refused / len(outside)}
    summary["auroc_test_vs_non_dermoscopy"] = auroc(score(sets["HAM10000 test"]), score(outside))
    passed = [Path(r["file"]).name for r in outside if r["unknown_reason"] != "not_dermoscopy"]
    summary["non_dermoscopy_accepted"] = passed
    test = json.loads((run / "test" / "metrics.json").read_text())
    summary["test_balanced_accuracy"] = test["balanced_accuracy"]
    summary["test_balanced_accuracy_accepted"] = test["balanced_accuracy_accepted"]
    print(f"non-dermoscopy   {len(outside):>6}  {refused:>4} ({100 * refused / len(outside):.1f}%)")
    print(f"AUROC of the score, test dermoscopy vs non-dermoscopy: "
          f"{summary['auroc_test_vs_non_dermoscopy']:.4f}")
    print(f"test balanced accuracy {test['balanced_accuracy']:.3f}, on the images the gate "
          f"accepts {test['balanced_accuracy_accepted']:.3f}")
    print("non-dermoscopy accepted:", ", ".join(passed) or "none")
    (run / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
