#!/usr/bin/env bash
# Large photographs through the server, one command:  bash benches/large_jpeg/run.sh
#
# A real HAM10000 test image enlarged to a phone dermatoscope's sizes (1920×1440, 4032×3024,
# JPEG quality 90; the largest also with sensor noise), POSTed to /predict of
# skinlesion-server (release, the shipped model, default options) one request at a time on an
# idle server: prints the median and 90th percentile of the round trip per size (curl's
# time_total, N requests after 5 warm-ups).
# Run it on an otherwise idle machine. The library-level ratio against a full decode is
# criterion's `large_jpeg/*` (benches/benches/inference.rs).
#
# OLD=/tmp/server-old also measures that binary (built from another commit, e.g.
# `git stash; cargo build --release -p skinlesion-server; cp target/release/skinlesion-server
# /tmp/server-old; git stash pop`) before and after this tree's, so both are one run.
# EXTRA adds server options (e.g. EXTRA="--precision fp32").
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
n=${N:-30}
port=${PORT:-5097}
work=$(mktemp -d)
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build --release -q -p skinlesion-server
image=../shared/data/ham10000/images/$(awk -F, '$4 == "test" { print $1; exit }' ../shared/data/ham10000/labels.csv).jpg
.venv/bin/python - "$image" "$work" <<'PY'
import sys
from PIL import Image
source, out = sys.argv[1], sys.argv[2]
import numpy as np
for w, h in [(1920, 1440), (4032, 3024)]:
    large = Image.open(source).convert("RGB").resize((w, h), Image.BILINEAR)
    large.save(f"{out}/{w}x{h}.jpg", quality=90)
# A camera's sensor noise makes the file (the entropy-coded data every scale must read) about
# three times larger: 1.3 MB, like a phone dermatoscope's photograph.
noisy = np.asarray(large, dtype=np.float32) + np.random.default_rng(0).normal(0, 3, (h, w, 3))
Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(f"{out}/{w}x{h}-noisy.jpg", quality=90)
PY
measure() { # NAME BINARY
  "$2" --port "$port" ${EXTRA:-} > "$work/server.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/ready" > /dev/null && break; sleep 0.2; done
  for size in 1920x1440 4032x3024 4032x3024-noisy; do
    file="$work/$size.jpg"
    post() { curl -s -o /dev/null -w '%{time_total}\n' -F "file=@$file" "http://127.0.0.1:$port/predict"; }
    for _ in 1 2 3 4 5; do post > /dev/null; done
    for _ in $(seq "$n"); do post; done | sort -n | awk -v name="$1" -v size="$size" -v bytes="$(stat -c %s "$file")" \
      '{ t[NR] = $1 * 1000 } END { printf "%s %s (%d bytes): p50 %.1f ms, p90 %.1f ms over %d requests\n", name, size, bytes, t[int(NR * 0.5 + 0.5)], t[int(NR * 0.9 + 0.5)], NR }'
  done
  kill "$server"; wait "$server" 2>/dev/null || true
}
if [ -n "${OLD:-}" ]; then
  measure old "$OLD"; measure new target/release/skinlesion-server; measure old "$OLD"
else
  measure new target/release/skinlesion-server
fi
