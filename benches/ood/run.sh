#!/usr/bin/env bash
# Out-of-distribution bench, one command:  bash benches/ood/run.sh [MODEL.json]
#
# How well the model's dermoscopy gate refuses what is not dermoscopy (natural photographs
# bundled in scikit-image, generated images: see make_images.py) while accepting dermoscopy
# never seen in training (HAM10000 `val` and `test`). Prints the refused share of each set and
# the AUROC of the gate's score, test dermoscopy against every non-dermoscopy image. Outputs
# stay under target/ood-bench. Nothing is downloaded but the pinned scikit-image wheel, from
# the package registry, into the project venv.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
bash scripts/setup.sh >/dev/null
data=../shared/data/ham10000
work=target/ood-bench
shipped=models/$(sed -n 's/^pub const SHIPPED_MODEL: &str = "\(.*\)";/\1/p' skinlesion-core/src/model.rs)
model=${1:-$shipped}
name=$(basename "$model" .json)
.venv/bin/python -c 'import skimage' 2>/dev/null ||
  .venv/bin/python -m pip install --quiet --disable-pip-version-check scikit-image==0.25.2
cargo build --release -q -p skinlesion-train
[ -f "$work/images/generated/files.txt" ] ||
  .venv/bin/python benches/ood/make_images.py "$data/labels.csv" "$data/images" "$work/images"
out="$work/$name"
mkdir -p "$out"
for family in natural generated; do
  target/release/skinlesion-train classify --model "$model" --device cpu \
    "$work/images/$family" >"$out/$family.csv" 2>"$out/$family.log"
done
for split in val test; do
  target/release/skinlesion-train evaluate --model "$model" --labels "$data/labels.csv" \
    --images "$data/images" --split "$split" --out "$out/$split" >"$out/$split.log" 2>&1 ||
    { cat "$out/$split.log"; exit 1; }
done
.venv/bin/python benches/ood/score.py "$out"
