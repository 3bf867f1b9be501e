#!/usr/bin/env bash
# Server load benchmark, one command:  bash benches/load/run.sh
#
# Drives POST /predict of skinlesion-server (release build, shipped model) and of the Flask +
# PyTorch reference (benches/load/flask_reference.py, Flask's development server) with real
# HAM10000 test images, using wrk and multipart bodies, at each concurrency level; measures the
# in-process ceiling (benches/src/bin/ceiling.rs) on the same machine. Prints a Markdown table
# and writes target/load-bench/results.json.
#
# Environment: DURATION (s per run, default 20), REPEATS (runs per level; medians are reported,
# default 3), LEVELS (default "1 4 16 64"), IMAGES (distinct images, default 64).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
duration=${DURATION:-20}
repeats=${REPEATS:-3}
levels=${LEVELS:-1 4 16 64}
n_images=${IMAGES:-64}
out=target/load-bench
mkdir -p "$out"
py=.venv/bin/python

bash scripts/setup.sh >/dev/null
"$py" -m pip install --quiet --disable-pip-version-check -r benches/load/requirements.txt
if ! command -v wrk >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "load bench: needs wrk (sudo apt-get install wrk)" >&2; exit 1; }
  apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --quiet -p skinlesion-server
cargo build --release --quiet -p skinlesion-benches --bin ceiling

data=${SKINLESION_DATA:-../shared/data/ham10000}
mapfile -t images < <("$py" - "$data" "$n_images" <<'PY'
import csv, os, sys
data, n = sys.argv[1], int(sys.argv[2])
rows = [r for r in csv.DictReader(open(os.path.join(data, "labels.csv"))) if r["split"] == "test"]
for r in rows[:n]:
    print(os.path.abspath(os.path.join(data, "images", r["image_id"] + ".jpg")))
PY
)
echo "load bench: ${#images[@]} test images, levels: $levels, ${duration}s x $repeats each" >&2

wait_ready() { # URL
  for _ in $(seq 1 300); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "load bench: $1 never became ready" >&2; return 1
}

peak_rss_mb() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
rss_mb() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }

run_levels() { # NAME URL PID
  local name=$1 url=$2 pid=$3
  wrk -t1 -c1 -d2s --timeout 30s -s benches/load/multipart.lua "$url" -- "${images[@]}" >/dev/null
  echo "{\"server\": \"$name\", \"idle_rss_mb\": $(rss_mb "$pid")}" > "$out/$name-idle.json"
  for c in $levels; do
    for r in $(seq 1 "$repeats"); do
      wrk -t1 -c"$c" -d"${duration}s" --timeout 30s --latency -s benches/load/multipart.lua \
        "$url" -- "${images[@]}" > "$out/$name-c$c-r$r.txt"
      echo "load bench: $name c=$c run $r: $(grep Requests/sec "$out/$name-c$c-r$r.txt")" >&2
    done
  done
  echo "{\"server\": \"$name\", \"peak_rss_mb\": $(peak_rss_mb "$pid")}" > "$out/$name-peak.json"
}

# The shipped model, as the core names it (skinlesion-core/src/model.rs: SHIPPED_MODEL).
shipped=models/$(sed -n 's/^pub const SHIPPED_MODEL: &str = "\(.*\)";/\1/p' skinlesion-core/src/model.rs)

port=5311
target/release/skinlesion-server --model "$shipped" --port $port \
  >"$out/server.log" 2>&1 &
server=$!
trap 'kill $server $flask 2>/dev/null || true' EXIT
flask=
wait_ready "http://127.0.0.1:$port/ready"
run_levels skinlesion "http://127.0.0.1:$port/predict" $server
# A clean exit is part of the result: this caught a crash at shutdown once.
kill -TERM $server; wait $server

port=5312
"$py" benches/load/flask_reference.py "$shipped" $port >"$out/flask.log" 2>&1 &
flask=$!
wait_ready "http://127.0.0.1:$port/health"
run_levels flask "http://127.0.0.1:$port/predict" $flask
kill $flask; wait $flask 2>/dev/null || true

target/release/ceiling "$duration" 32 > "$out/ceiling.json"
"$py" benches/load/report.py "$out" "$levels" "$repeats" "$duration"
