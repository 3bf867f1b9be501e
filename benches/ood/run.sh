#!/usr/bin/env bash
# Out-of-distribution bench, one command:  bash benches/ood/run.sh [MODEL.json]
#
# Does the model's dermoscopy gate accept dermoscopy from other clinics and devices, and
# refuse what is not dermoscopy? Scores, with the model's own evaluate/classify:
# - dermoscopy never fitted on: HAM10000 `val` and `test`, the second source's `val` (ISIC
#   2017), and seeded samples of HAM `test` and second-source `val` under each shift of
#   shifts.py (colour casts, exposure, contrast, gamma, blur, JPEG, scale, field stop,
#   rotation, zoom, hairs, squashing);
# - not dermoscopy: not-dermoscopy `val` (photographs, chest X-rays), the photographs bundled
#   in scikit-image and generated images (make_images.py).
# Prints the refused share of each set, the best-guess balanced accuracy under each shift,
# and AUROCs of the gate's score; writes a summary.json. Outputs stay under target/ood-bench.
# Nothing is downloaded but the pinned scikit-image wheel, from the package registry.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
bash scripts/setup.sh >/dev/null
data=../shared/data
work=target/ood-bench
shipped=models/$(sed -n 's/^pub const SHIPPED_MODEL: &str = "\(.*\)";/\1/p' skinlesion-core/src/model/shipped.rs)
model=${1:-$shipped}
name=$(basename "$model" .json)
.venv/bin/python -c 'import skimage' 2>/dev/null ||
  .venv/bin/python -m pip install --quiet --disable-pip-version-check scikit-image==0.25.2
cargo build --release -q -p skinlesion-train
bin=target/release/skinlesion-train
[ -f "$work/images/generated/files.txt" ] ||
  .venv/bin/python benches/ood/make_images.py "$data/ham10000/labels.csv" "$data/ham10000/images" "$work/images"
[ -f "$work/shifted.done" ] || {
  (cd benches/ood && ../../.venv/bin/python make_shifted.py "$root/$data" "$root/$work")
  touch "$work/shifted.done"
}
out="$work/$name"
rm -rf "$out"
mkdir -p "$out"
classify() { # NAME FOLDER
  "$bin" classify --model "$model" --device cpu "$2" >"$out/$1.csv" 2>"$out/$1.log" ||
    { cat "$out/$1.log"; exit 1; }
}
evaluate() { # NAME LABELS IMAGES [SPLIT]
  mkdir -p "$(dirname "$out/$1")"
  "$bin" evaluate --model "$model" --labels "$2" --images "$3" ${4:+--split "$4"} \
    --out "$out/$1" >"$out/$1.log" 2>&1 || { cat "$out/$1.log"; exit 1; }
}
classify natural "$work/images/natural"
classify generated "$work/images/generated"
for kind in natural xray; do classify "not-dermoscopy-$kind" "$work/not-dermoscopy/$kind"; done
evaluate ham10000-val "$data/ham10000/labels.csv" "$data/ham10000/images" val
evaluate ham10000-test "$data/ham10000/labels.csv" "$data/ham10000/images" test
evaluate isic2017-val "$data/isic2017/labels.csv" "$data/isic2017/images" val
for shift in "$work"/shifted/*/; do
  for source in "$shift"*/; do
    evaluate "shift/$(basename "$shift")/$(basename "$source")" "$source/labels.csv" "$source"
  done
done
.venv/bin/python benches/ood/score.py "$out"
