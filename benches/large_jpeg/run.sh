#!/usr/bin/env bash
# Large photographs through the server, one command:  bash benches/large_jpeg/run.sh
#
# A real HAM10000 test image enlarged to a phone dermatoscope's sizes (1920×1440, 4032×3024,
# JPEG quality 90), POSTed to /predict of skinlesion-server (release, the shipped model,
# default options) one request at a time on an idle server: prints the median and 90th
# percentile of the round trip per size (curl's time_total, N requests after 5 warm-ups).
# Run it on an otherwise idle machine. The library-level ratio against a full decode is
# criterion's `large_jpeg/*` (benches/benches/inference.rs).
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
for w, h in [(1920, 1440), (4032, 3024)]:
    Image.open(source).convert("RGB").resize((w, h), Image.BILINEAR).save(f"{out}/{w}x{h}.jpg", quality=90)
PY
target/release/skinlesion-server --port "$port" > "$work/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/ready" > /dev/null && break; sleep 0.2; done
for size in 1920x1440 4032x3024; do
  file="$work/$size.jpg"
  post() { curl -s -o /dev/null -w '%{time_total}\n' -F "file=@$file" "http://127.0.0.1:$port/predict"; }
  for _ in 1 2 3 4 5; do post > /dev/null; done
  for _ in $(seq "$n"); do post; done | sort -n | awk -v size="$size" -v bytes="$(stat -c %s "$file")" \
    '{ t[NR] = $1 * 1000 } END { printf "%s (%d bytes): p50 %.1f ms, p90 %.1f ms over %d requests\n", size, bytes, t[int(NR * 0.5 + 0.5)], t[int(NR * 0.9 + 0.5)], NR }'
done
