#!/usr/bin/env bash
# One row of the model card's v5 candidates table for a finished training run:
#   bash scripts/v5_candidate.sh RUN_DIR [NAME]
# RUN_DIR holds cmd.sh (the command), model.json (the artifact) and ck/state.json (its
# checkpoint). Scores HAM10000 `val` and the second-source `val` with `evaluate` (never
# `test`: that is scored once per shipped candidate) and prints the row.
set -euo pipefail
run=${1:?usage: v5_candidate.sh RUN_DIR [NAME]}
name=${2:-$(basename "$run")}
root="$(cd "$(dirname "$0")/.." && pwd)"
data="$root/../shared/data"
bin="$root/target/release/skinlesion-train"
[ -x "$bin" ] || cargo build --release -p skinlesion-train --manifest-path "$root/Cargo.toml"
"$bin" evaluate --model "$run/model.json" --labels "$data/ham10000/labels.csv" \
  --images "$data/ham10000/images" --split val --out "$run/eval-val" > "$run/eval-val.log" 2>&1
"$bin" evaluate --model "$run/model.json" --labels "$data/isic2017/labels.csv" \
  --images "$data/isic2017/images" --split val --out "$run/eval-second-val" \
  > "$run/eval-second-val.log" 2>&1
python3 - "$run" "$name" <<'PY'
import json, sys, re
from pathlib import Path
run, name = Path(sys.argv[1]), sys.argv[2]
state = json.loads((run / "ck" / "state.json").read_text())["state"]
def scores(folder):
    m = json.loads((run / folder / "metrics.json").read_text())
    mel = next(c for c in m["per_class"] if c["label"] == "MEL")
    return m["balanced_accuracy"], mel["auc"], m["melanoma_sensitivity"], m["melanoma_specificity"]
val, second = scores("eval-val"), scores("eval-second-val")
command = " ".join(l.strip().rstrip("\\").strip() for l in (run / "cmd.sh").read_text().splitlines())
command = re.sub(r"\s+", " ", command)
best = state.get("best_epoch")
print(f"| {name} | `{command}` | {state['seconds'] / 60:.0f} min, {state['epoch']} epochs (best {best}) "
      f"| {val[0]:.3f} | {val[1]:.3f} | {val[2]:.2f} / {val[3]:.2f} | {second[0]:.3f} | {second[1]:.3f} "
      f"| {second[2]:.2f} / {second[3]:.2f} |")
PY
