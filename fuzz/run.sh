#!/usr/bin/env bash
# Fuzzing, one command:  bash fuzz/run.sh [SECONDS_PER_TARGET] [TARGET ...]
#
# Runs each cargo-fuzz (libFuzzer + AddressSanitizer) target for SECONDS_PER_TARGET (default
# 300) from corpora seeded with real HAM10000 images, and prints each target's executions.
# Targets: classify_bytes (bytes -> decode -> preprocess -> classify, tiny model),
# http_request (raw HTTP through the server's real request path), c_api (the C ABI's pixel,
# encoded and batch calls with arbitrary sizes and strides), dicom_bytes (what follows a DICOM
# file's DICM marker: parse, header checks, every pixel decoder; seeded with the DICOM test
# fixtures). CI runs it for a few seconds each.
#
# The machine has only stable Rust: RUSTC_BOOTSTRAP=1 lets it take the -Z flags cargo-fuzz
# passes for sanitizer coverage. A crash leaves its input in fuzz/artifacts/TARGET/ and fails.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
seconds=${1:-300}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(classify_bytes http_request c_api dicom_bytes)

bash scripts/setup.sh >/dev/null
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked --quiet cargo-fuzz@0.13.2
data=${SKINLESION_DATA:-../shared/data/ham10000}
corpus=fuzz/corpus
[ -d "$corpus/c_api" ] || .venv/bin/python fuzz/seed_corpus.py "$data" "$corpus" 16
if [ ! -d "$corpus/dicom_bytes" ]; then
  # The DICOM fixtures the tests use, from their DICM marker on (the target adds the preamble).
  fixtures=$(mktemp -d)
  images=$(.venv/bin/python -c 'import csv,sys; d=sys.argv[1]; print(" ".join(d+"/images/"+r["image_id"]+".jpg" for r in list(csv.DictReader(open(d+"/labels.csv")))[:2]))' "$data")
  # shellcheck disable=SC2086 # two paths, split on purpose
  .venv/bin/python skinlesion-core/tests/reference/dicom_fixtures.py "$fixtures" $images >/dev/null
  mkdir -p "$corpus/dicom_bytes"
  for f in "$fixtures"/*.dcm; do tail -c +133 "$f" > "$corpus/dicom_bytes/$(basename "$f")"; done
  rm -rf "$fixtures"
fi

# Hand-written hostile inputs (e.g. a JPEG of 2647 valid scans), checked against their
# writers by the tests.
for seeds in fuzz/seeds/*/; do
  mkdir -p "$corpus/$(basename "$seeds")"
  cp "$seeds"* "$corpus/$(basename "$seeds")/"
done

export RUSTC_BOOTSTRAP=1
# Leak checks stay on; the one suppression (with its reason) is a glibc thread-exit race.
export LSAN_OPTIONS="suppressions=$root/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
for target in "${targets[@]}"; do
  log=fuzz/corpus/$target.log
  # The corpus folder holds the real-image seeds plus what earlier runs found.
  cargo fuzz run --fuzz-dir fuzz "$target" "$corpus/$target" -- \
    -max_total_time="$seconds" -max_len=65536 -timeout=30 -rss_limit_mb=4096 \
    -print_final_stats=1 2> "$log" || { tail -60 "$log" >&2; echo "fuzz: $target FAILED" >&2; exit 1; }
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  echo "fuzz: $target: $runs executions in ${seconds} s, no crash ($(ls "$corpus/$target" | wc -l) corpus inputs)"
done
