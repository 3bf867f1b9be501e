#!/usr/bin/env bash
# Bulk-scoring bench, one command:  bash benches/bulk/run.sh [IMAGES=2000] [REPEATS=3]
#
# Images/s over the same HAM10000 files (the first IMAGES of labels.csv) of: the in-process
# `classify_batch` loop (the rate to beat), `skinlesion-train classify`, and `skinlesion.bulk` on a
# local Ray with its default options, each REPEATS times; prints every run and the medians with
# bulk's ratio to in-process. Nothing is downloaded; outputs stay under target/bulk-bench.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
images=${1:-2000}
repeats=${2:-3}
bash scripts/setup.sh >/dev/null
cargo build --release -q -p skinlesion-train
work=target/bulk-bench
data=../shared/data/ham10000
rm -rf "$work/images" && mkdir -p "$work/images"
awk -F, -v n="$images" 'NR > 1 && NR <= n + 1 { print $1 }' "$data/labels.csv" |
  while read -r id; do ln -s "$(realpath "$data/images/$id.jpg")" "$work/images/$id.jpg"; done
# The Python package as the wheel has it (skinlesion/bulk/ is pure Python, the native module is built).
.venv/bin/python -c 'import skinlesion.bulk' || { echo "bench: run the Python tests once to install the wheel" >&2; exit 1; }
runs=$work/runs.jsonl
: >"$runs"
for _ in $(seq "$repeats"); do
  for mode in "inprocess --batch-size 1" "cli --batch-size 32" "cli" "bulk"; do
    # shellcheck disable=SC2086
    .venv/bin/python benches/bulk/bench.py "$work/images" "$work" $mode 2>>"$work/stderr.log" | tee -a "$runs"
  done
done
.venv/bin/python - "$runs" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
by = {}
for r in runs:
    by.setdefault(f"{r['mode']} batch={r.get('batch_size', 'default')}", []).append(r["images_per_second"])
median = {k: statistics.median(v) for k, v in by.items()}
base = median["inprocess batch=1"]
for k, v in median.items():
    print(f"{k:28s} {v:6.1f} images/s  ({v / base:.2f}x in-process; runs: {', '.join(f'{x:.1f}' for x in by[k])})")
PY
