"""Summarises an OOD bench run: refused shares per set and shift, and AUROCs of the gate's score.

    python score.py RUN_DIR      (written by run.sh; prints tables, writes RUN_DIR/summary.json)
"""

import csv
import json
import sys
from pathlib import Path

# The targets (#30): the refused share of each set must stay at or below / above.
MOST_REFUSED = {"ham10000-test": 0.02, "isic2017-val": 0.03, "shift": 0.05}
LEAST_REFUSED = {"non-dermoscopy (bench)": 0.97, "not-dermoscopy-natural": 0.98,
                 "not-dermoscopy-xray": 0.98}


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def refused(rs: list[dict]) -> float:
    return sum(r["unknown_reason"] == "not_dermoscopy" for r in rs) / len(rs)


def scores(rs: list[dict]) -> list[float]:
    return [float(r["ood_score"]) for r in rs]


def auroc(inside: list[float], outside: list[float]) -> float:
    """P(an outside score > an inside score), ties counted half (Mann-Whitney)."""
    ranked = sorted([(s, 0) for s in inside] + [(s, 1) for s in outside])
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        mean_rank = (i + j + 1) / 2
        rank_sum += mean_rank * sum(flag for _, flag in ranked[i:j])
        i = j
    n_out = len(outside)
    return (rank_sum - n_out * (n_out + 1) / 2) / (len(inside) * n_out)


def mark(ok: bool) -> str:
    return "" if ok else "  <- target missed"


def main() -> None:
    run = Path(sys.argv[1])
    summary: dict = {"dermoscopy": {}, "shifts": {}, "non_dermoscopy": {}}
    dermoscopy = {name: rows(run / name / "predictions.csv")
                  for name in ("ham10000-val", "ham10000-test", "isic2017-val")}
    if any(r["ood_score"] == "" for rs in dermoscopy.values() for r in rs):
        sys.exit("this model has no dermoscopy gate (no ood_score)")

    print(f"{'dermoscopy (never fitted on)':<30} {'images':>6} {'refused':>8} {'Unknown':>8} "
          f"{'bal. acc.':>9} {'as served':>9}")
    for name, rs in dermoscopy.items():
        m = json.loads((run / name / "metrics.json").read_text())
        entry = {"images": len(rs), "refused_share": refused(rs), "unknown_rate": m["unknown_rate"],
                 "balanced_accuracy": m["balanced_accuracy"],
                 "balanced_accuracy_served": m["balanced_accuracy_served"]}
        summary["dermoscopy"][name] = entry
        limit = MOST_REFUSED.get(name)
        print(f"{name:<30} {len(rs):>6} {100 * entry['refused_share']:>7.1f}% "
              f"{100 * m['unknown_rate']:>7.1f}% {m['balanced_accuracy']:>9.3f} "
              f"{m['balanced_accuracy_served']:>9.3f}"
              f"{mark(limit is None or entry['refused_share'] <= limit)}")

    print(f"\n{'shift':<16} {'refused HAM test':>16} {'2nd source':>11} "
          f"{'bal. acc. HAM':>13} {'2nd source':>11}")
    shifted_scores = []
    for shift in sorted(p.name for p in (run / "shift").iterdir()):
        entry = {}
        for source in ("ham10000-test", "isic2017-val"):
            folder = run / "shift" / shift / source
            rs = rows(folder / "predictions.csv")
            m = json.loads((folder / "metrics.json").read_text())
            entry[source] = {"images": len(rs), "refused_share": refused(rs),
                             "balanced_accuracy": m["balanced_accuracy"]}
            if shift != "none":
                shifted_scores += scores(rs)
        summary["shifts"][shift] = entry
        h, s = entry["ham10000-test"], entry["isic2017-val"]
        worst = max(h["refused_share"], s["refused_share"])
        print(f"{shift:<16} {100 * h['refused_share']:>15.1f}% {100 * s['refused_share']:>10.1f}% "
              f"{h['balanced_accuracy']:>13.3f} {s['balanced_accuracy']:>11.3f}"
              f"{mark(worst <= MOST_REFUSED['shift'])}")

    outside = {
        "natural photos (bench)": rows(run / "natural.csv"),
        "generated (bench)": rows(run / "generated.csv"),
        "not-dermoscopy-natural": rows(run / "not-dermoscopy-natural.csv"),
        "not-dermoscopy-xray": rows(run / "not-dermoscopy-xray.csv"),
    }
    outside["non-dermoscopy (bench)"] = outside["natural photos (bench)"] + outside["generated (bench)"]
    print(f"\n{'not dermoscopy':<30} {'images':>6} {'refused':>8}")
    for name, rs in outside.items():
        share = refused(rs)
        summary["non_dermoscopy"][name] = {"images": len(rs), "refused_share": share}
        limit = LEAST_REFUSED.get(name)
        print(f"{name:<30} {len(rs):>6} {100 * share:>7.1f}%{mark(limit is None or share >= limit)}")
    bench = outside["non-dermoscopy (bench)"]
    summary["non_dermoscopy_accepted"] = [Path(r["file"]).name for name, rs in outside.items()
                                          if name != "non-dermoscopy (bench)"
                                          for r in rs if r["unknown_reason"] != "not_dermoscopy"]
    every_outside = scores(bench) + scores(outside["not-dermoscopy-natural"]) + scores(
        outside["not-dermoscopy-xray"])
    aurocs = {
        "HAM test vs bench non-dermoscopy": auroc(scores(dermoscopy["ham10000-test"]), scores(bench)),
        "HAM test vs all non-dermoscopy": auroc(scores(dermoscopy["ham10000-test"]), every_outside),
        "2nd-source val vs all non-dermoscopy": auroc(scores(dermoscopy["isic2017-val"]),
                                                      every_outside),
        "shifted dermoscopy vs all non-dermoscopy": auroc(shifted_scores, every_outside),
    }
    summary["auroc"] = aurocs
    print()
    for name, value in aurocs.items():
        print(f"AUROC of the gate's score, {name}: {value:.4f}")
    print("not dermoscopy accepted:", ", ".join(summary["non_dermoscopy_accepted"]) or "none")
    (run / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
