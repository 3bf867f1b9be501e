#!/usr/bin/env bash
# A lone request on every core or on one: skinlesion-server with --lone-request-threads set to
# the cores (the default) and to 1, alternating ROUNDS times (so each has repeats and drift
# hits both), same 64 real test images, wrk at each level (default c=1 and c=16); then the
# in-process single image on every core (`ceiling`, one worker), the reference for c=1.
#   bash benches/load/lone_request.sh
#   PRECISIONS="auto fp32" bash benches/load/lone_request.sh   # the numbers in RESULTS.md
# Environment: PRECISIONS (default "auto"), LEVELS (default "1 16"), DURATION (s, default 8),
# ROUNDS (default 3), EXTRA (more server options, e.g. "--workers 1 --threads 2").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
cargo build --release --quiet -p skinlesion-server
cargo build --release --quiet -p skinlesion-benches --bin ceiling
cores=$(nproc)
data=${SKINLESION_DATA:-../shared/data/ham10000}
mapfile -t images < <(python3 benches/load/test_images.py "$data")
url=http://127.0.0.1:5399
pid=
trap '[ -z "$pid" ] || kill $pid 2>/dev/null || true' EXIT
for precision in ${PRECISIONS:-auto}; do
  for _ in $(seq "${ROUNDS:-3}"); do
    for lone in "$cores" 1; do
      # shellcheck disable=SC2086 # EXTRA is a list of options
      target/release/skinlesion-server --port 5399 --precision "$precision" \
        --lone-request-threads "$lone" ${EXTRA:-} >/dev/null 2>&1 &
      pid=$!
      for _ in $(seq 1 300); do curl -fs $url/ready >/dev/null 2>&1 && break; sleep 0.2; done
      wrk -t1 -c1 -d2s -s benches/load/multipart.lua $url/predict -- "${images[@]}" >/dev/null
      line="$precision lone=$lone"
      for c in ${LEVELS:-1 16}; do
        r=$(wrk -t1 -c"$c" -d"${DURATION:-8}s" --timeout 30s --latency -s benches/load/multipart.lua \
          $url/predict -- "${images[@]}")
        line="$line | c=$c $(echo "$r" | awk '/Requests\/sec/{print $2}') req/s p50 $(echo "$r" | awk '$1=="50%"{print $2}') p99 $(echo "$r" | awk '$1=="99%"{print $2}')"
      done
      echo "$line"
      kill -TERM $pid; wait $pid || true
      pid=
    done
  done
  target/release/ceiling 8 1 1 "$precision" | python3 -c "import json, sys; d = json.load(sys.stdin); \
print(f'$precision in-process single image, {d[\"threads\"]} threads: p50 {d[\"single_ms_p50\"]:.2f} ms, p99 {d[\"single_ms_p99\"]:.2f} ms')"
done
