#!/usr/bin/env bash
# A lone request on one thread or several: skinlesion-server with --lone-request-threads 2 and 1,
# one after another, same 64 real test images, wrk at each level (default c=1 and c=16).
#   bash benches/load/lone_request.sh
# Environment: PRECISIONS (default fp32), LEVELS (default "1 16"), DURATION (s, default 10),
# EXTRA (more server options, e.g. "--workers 1 --threads 2").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
cargo build --release --quiet -p skinlesion-server
data=${SKINLESION_DATA:-../shared/data/ham10000}
mapfile -t images < <(python3 benches/load/test_images.py "$data")
url=http://127.0.0.1:5399
pid=
trap '[ -z "$pid" ] || kill $pid 2>/dev/null || true' EXIT
for precision in ${PRECISIONS:-fp32}; do
  for lone in 2 1; do
    # shellcheck disable=SC2086 # EXTRA is a list of options
    target/release/skinlesion-server --port 5399 --precision "$precision" \
      --lone-request-threads $lone ${EXTRA:-} >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 1 300); do curl -fs $url/ready >/dev/null 2>&1 && break; sleep 0.2; done
    wrk -t1 -c1 -d3s -s benches/load/multipart.lua $url/predict -- "${images[@]}" >/dev/null
    for c in ${LEVELS:-1 16}; do
      r=$(wrk -t1 -c"$c" -d"${DURATION:-10}s" --timeout 30s --latency -s benches/load/multipart.lua \
        $url/predict -- "${images[@]}")
      echo "$precision lone=$lone c=$c: $(echo "$r" | grep Requests/sec)" \
        "p50 $(echo "$r" | awk '$1=="50%"{print $2}') p99 $(echo "$r" | awk '$1=="99%"{print $2}')"
    done
    kill -TERM $pid; wait $pid || true
    pid=
  done
done
