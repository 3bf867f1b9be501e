#!/usr/bin/env bash
# Two server binaries side by side in one run (e.g. before and after a change), c=1 and c=16,
# in the thread layouts where libtorch's OpenMP teams matter, then the in-process single-image
# latency (the `ceiling` bench) for reference:
#   OLD=/tmp/server-old NEW=target/release/skinlesion-server bash benches/load/thread_teams.sh
# Build OLD from another commit first, e.g.
#   git stash && cargo build --release -p skinlesion-server && cp target/release/skinlesion-server /tmp/server-old && git stash pop
# Environment: DURATION (s per level, default 8).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
old=${OLD:?OLD names the server binary to compare against}
new=${NEW:-target/release/skinlesion-server}
cargo build --release --quiet -p skinlesion-benches --bin ceiling
data=${SKINLESION_DATA:-../shared/data/ham10000}
mapfile -t images < <(python3 benches/load/test_images.py "$data")
url=http://127.0.0.1:5399
pid=
trap '[ -z "$pid" ] || kill $pid 2>/dev/null || true' EXIT
for config in "fp32|--lone-request-threads 2" "bf16|--lone-request-threads 2" \
              "fp32|--workers 1 --threads 2" "fp32|"; do
  precision=${config%%|*}; extra=${config#*|}
  for bin in "$old" "$new"; do
    # shellcheck disable=SC2086 # extra is a list of options
    "$bin" --port 5399 --precision "$precision" $extra >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 1 300); do curl -fs $url/ready >/dev/null 2>&1 && break; sleep 0.2; done
    wrk -t1 -c1 -d2s -s benches/load/multipart.lua $url/predict -- "${images[@]}" >/dev/null
    line="$bin $precision [$extra]"
    for c in 1 16; do
      r=$(wrk -t1 -c"$c" -d"${DURATION:-8}s" --timeout 30s --latency -s benches/load/multipart.lua \
        $url/predict -- "${images[@]}")
      line="$line | c=$c $(echo "$r" | awk '/Requests\/sec/{print $2}') req/s p50 $(echo "$r" | awk '$1=="50%"{print $2}') p99 $(echo "$r" | awk '$1=="99%"{print $2}')"
    done
    echo "$line"
    kill -TERM $pid; wait $pid || true
    pid=
  done
done
for precision in fp32 bf16; do target/release/ceiling 6 1 1 "$precision"; done
