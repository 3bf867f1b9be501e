#!/usr/bin/env bash
# Scores a candidate on every set, with a source held out of its training, and prints the
# model card's rows:
#   bash scripts/score_candidate.sh NAME MODEL.json [HAM_ONLY_TWIN.json]
# MODEL is the two-source model (HAM10000 + ISIC 2017 `train`); the twin is the same recipe
# trained on HAM10000 alone (leave-one-source-out). Each is scored with `evaluate` on HAM10000
# `val`, the second-source `val` and PH2 (never trained or fitted on); HAM10000 `test` is
# scored once per shipped model, never here. Outputs go to artifacts/scores/NAME/.
# The selection score is the worst balanced accuracy as served over the held-out sets: PH2
# for the model; the second-source `val` and PH2 for the twin.
set -euo pipefail
name=${1:?usage: score_candidate.sh NAME MODEL.json [HAM_ONLY_TWIN.json]}
model=${2:?usage: score_candidate.sh NAME MODEL.json [HAM_ONLY_TWIN.json]}
twin=${3:-}
root="$(cd "$(dirname "$0")/.." && pwd)"
data="${SKINLESION_DATA:-$root/../shared/data}"
bin="$root/target/release/skinlesion-train"
out="$root/artifacts/scores/$name"
[ -x "$bin" ] || cargo build --release -p skinlesion-train --manifest-path "$root/Cargo.toml"

score() { # MODEL KIND
  local m=$1 kind=$2
  "$bin" evaluate --model "$m" --labels "$data/ham10000/labels.csv" \
    --images "$data/ham10000/images" --split val --out "$out/$kind/ham-val" >"$out/$kind/ham-val.log" 2>&1
  "$bin" evaluate --model "$m" --labels "$data/isic2017/labels.csv" \
    --images "$data/isic2017/images" --split val --out "$out/$kind/second-val" >"$out/$kind/second-val.log" 2>&1
  "$bin" evaluate --model "$m" --labels "$data/ph2/labels.csv" \
    --images "$data/ph2/images" --out "$out/$kind/ph2" >"$out/$kind/ph2.log" 2>&1
}
mkdir -p "$out/model"
score "$model" model
if [ -n "$twin" ]; then
  mkdir -p "$out/twin"
  score "$twin" twin
fi
python3 "$root/scripts/candidate_rows.py" "$name" "$out"
