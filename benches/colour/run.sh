#!/usr/bin/env bash
# Colour-cast robustness, one command:  bash benches/colour/run.sh [MODEL.json ...]
#
# Scores each model (default: the shipped one) with `skinlesion-train evaluate` on re-coloured
# copies of the `val` split (warmer/cooler casts of 10% and 20%, darker, brighter, gamma; see
# recolour.py) and prints balanced accuracy / melanoma sensitivity per cast. Val, not test: it
# is the split models are compared on. Outputs stay under target/colour-bench.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
bash scripts/setup.sh >/dev/null
data=../shared/data/ham10000
work=target/colour-bench
# The shipped model, as the core names it (skinlesion-core/src/model/shipped.rs: SHIPPED_MODEL).
shipped=models/$(sed -n 's/^pub const SHIPPED_MODEL: &str = "\(.*\)";/\1/p' skinlesion-core/src/model/shipped.rs)
models=("$@")
[ ${#models[@]} -gt 0 ] || models=("$shipped")
cargo build --release -q -p skinlesion-train
[ -f "$work/images/unchanged/labels.csv" ] ||
  .venv/bin/python benches/colour/recolour.py "$data/labels.csv" "$data/images" val "$work/images"
for model in "${models[@]}"; do
  name=$(basename "$model" .json)
  echo "== $model (balanced accuracy / melanoma sensitivity)"
  for cast in "$work"/images/*/; do
    cast=$(basename "$cast")
    out="$work/eval/$name/$cast"
    mkdir -p "$out"
    target/release/skinlesion-train evaluate --model "$model" \
      --labels "$work/images/$cast/labels.csv" --images "$work/images/$cast" --out "$out" \
      >"$out/evaluate.log" 2>&1 || { cat "$out/evaluate.log"; exit 1; }
    .venv/bin/python -c 'import json, sys
m = json.load(open(sys.argv[1]))
b, s = m["balanced_accuracy"], m["melanoma_sensitivity"]
print(f"{sys.argv[2]:>10}  {b:.3f} / {s:.3f}")' "$out/metrics.json" "$cast"
  done
done
