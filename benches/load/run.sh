#!/usr/bin/env bash
# Server load benchmark, one command:  bash benches/load/run.sh
#
# Drives POST /predict with real HAM10000 test images (wrk, multipart bodies,
# benches/load/multipart.lua), at each concurrency level, of every server users would pick:
#   skinlesion       skinlesion-server (release), the shipped model, default options;
#   keras-original   the original app as its README describes it: Flask's development server and
#                    a Keras CNN of the original architecture (benches/load/keras_original.py, own
#                    venv with tensorflow-cpu);
#   flask-torch      Flask + PyTorch on the same TorchScript file (flask_reference.py);
#   fastapi-torch    FastAPI + uvicorn + PyTorch on the same file (fastapi_reference.py);
#   litserve-torch   LitServe with dynamic batching on the same file (litserve_reference.py).
# The torch peers share one implementation of the model (torch_model.py). Every server gets the
# same warm-up and one libtorch thread per forward pass (TORCH_THREADS): skinlesion-server's
# default runs one single-threaded pass per core, the threaded Python servers one per request
# thread. Then the in-process ceiling (benches/src/bin/ceiling.rs, best of batch and workers)
# and the hardware bound (hardware_bound.py). Prints Markdown tables and the targets,
# writes target/load-bench/results.json and target/load-bench/load.png.
#
# Each runs in every precision of PRECISIONS (default "fp32 bf16"; bf16 and bf16-checked where
# the shipped model has a bf16 network): skinlesion-server with --precision, named NAME-PRECISION;
# the torch peers on the artifact's bf16 network (TORCH_PRECISION) for bf16 and bf16-checked
# alike (their best: no fp32 re-runs), named NAME-bf16 and run once; the Keras original runs in
# fp32 only. The ceiling and the hardware bound are measured per precision.
#
# Environment: DURATION (s per run, default 20), REPEATS (runs per level; medians are reported,
# default 3), LEVELS (default "1 4 16 64"), IMAGES (distinct images, default 64), SERVERS
# (default: all five above, in that order), PRECISIONS.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
duration=${DURATION:-20}
repeats=${REPEATS:-3}
levels=${LEVELS:-1 4 16 64}
n_images=${IMAGES:-64}
servers=${SERVERS:-skinlesion keras-original flask-torch fastapi-torch litserve-torch}
precisions=${PRECISIONS:-fp32 bf16}
out=target/load-bench
mkdir -p "$out"
py=.venv/bin/python
keras_venv=$out/keras-venv

bash scripts/setup.sh >/dev/null
"$py" -m pip install --quiet --disable-pip-version-check -r benches/load/requirements.txt
if [[ " $servers " == *" keras-original "* ]]; then
  [ -x "$keras_venv/bin/python" ] || python3 -m venv "$keras_venv"
  "$keras_venv/bin/python" -m pip install --quiet --disable-pip-version-check -r benches/load/requirements-keras.txt
fi
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
cores=$(nproc)
export TORCH_THREADS=1
echo "load bench: ${#images[@]} test images, levels: $levels, ${duration}s x $repeats each," \
  "$TORCH_THREADS libtorch thread per forward pass, $cores cores" >&2

wait_ready() { # URL
  for _ in $(seq 1 600); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "load bench: $1 never became ready" >&2; return 1
}

# Memory of a server and every process it started (LitServe runs its model in a worker process).
tree() { echo "$1"; for child in $(pgrep -P "$1"); do tree "$child"; done; }
sum_status() { # FIELD PID: the sum over the process tree, MB (peaks: the sum of each one's peak)
  local kb=0 pid
  for pid in $(tree "$2"); do kb=$(( kb + $(awk -v f="$1:" '$1 == f {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0) )); done
  echo $(( kb / 1024 ))
}

run_levels() { # NAME URL PID
  local name=$1 url=$2 pid=$3
  wrk -t1 -c4 -d3s --timeout 30s -s benches/load/multipart.lua "$url" -- "${images[@]}" >/dev/null
  echo "{\"server\": \"$name\", \"idle_rss_mb\": $(sum_status VmRSS "$pid")}" > "$out/$name-idle.json"
  for c in $levels; do
    for r in $(seq 1 "$repeats"); do
      wrk -t1 -c"$c" -d"${duration}s" --timeout 30s --latency -s benches/load/multipart.lua \
        "$url" -- "${images[@]}" > "$out/$name-c$c-r$r.txt"
      echo "load bench: $name c=$c run $r: $(grep Requests/sec "$out/$name-c$c-r$r.txt")" >&2
    done
  done
  echo "{\"server\": \"$name\", \"peak_rss_mb\": $(sum_status VmHWM "$pid")}" > "$out/$name-peak.json"
}

# The shipped model, as the core names it (skinlesion-core/src/model/shipped.rs: SHIPPED_MODEL).
shipped=models/$(sed -n 's/^pub const SHIPPED_MODEL: &str = "\(.*\)";/\1/p' skinlesion-core/src/model/shipped.rs)

pid=
trap '[ -z "$pid" ] || kill $pid 2>/dev/null || true' EXIT
port=5310
labels=
for precision in $precisions; do
  for name in $servers; do
    [ "$precision" = fp32 ] || [ "$name" != keras-original ] || continue
    served=$precision; [ "$name" = skinlesion ] || served=${precision%-checked}
    label=$name; [ "$served" = fp32 ] || label=$name-$served
    case " $labels " in *" $label "*) continue ;; esac
    labels="$labels $label"
    port=$((port + 1))
    case $name in
      skinlesion) exec target/release/skinlesion-server --model "$shipped" --port $port --precision "$precision" ;;
      keras-original) exec "$keras_venv/bin/python" benches/load/keras_original.py $port ;;
      flask-torch) TORCH_PRECISION=$served exec "$py" benches/load/flask_reference.py "$shipped" $port ;;
      fastapi-torch) TORCH_PRECISION=$served exec "$py" benches/load/fastapi_reference.py "$shipped" $port ;;
      litserve-torch) TORCH_PRECISION=$served exec "$py" benches/load/litserve_reference.py "$shipped" $port ;;
      *) echo "load bench: unknown server $name" >&2; exit 2 ;;
    esac >"$out/$label.log" 2>&1 &  # each branch execs: $! is the server itself
    pid=$!
    wait_ready "http://127.0.0.1:$port/health"
    run_levels "$label" "http://127.0.0.1:$port/predict" $pid
    # A clean exit is part of skinlesion's result: this caught a crash at shutdown once.
    if [ "$name" = skinlesion ]; then kill -TERM $pid; wait $pid; else
      pkill -TERM -P $pid 2>/dev/null || true; kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; fi
    pid=
  done
done

# Ceiling, per precision: one worker with every core at batch 1/2/4, and one single-threaded
# worker per core (the server's default) at batch 1/2; the best is the ceiling.
configs="1x1 2x1 4x1 1x$cores 2x$cores"
for precision in $precisions; do
  for config in $configs; do
    target/release/ceiling "$duration" "${config%x*}" "${config#*x}" "$precision" > "$out/ceiling-$precision-$config.json"
  done
  "$py" - "$out" "$precision" $configs <<'PY'
import json, pathlib, statistics, sys
out, precision = pathlib.Path(sys.argv[1]), sys.argv[2]
runs = [json.loads((out / f"ceiling-{precision}-{c}.json").read_text()) for c in sys.argv[3:]]
best = max(runs, key=lambda r: r["images_per_s"])
best["by_config"] = {f"batch {r['batch']} x {r['workers']} worker(s)": r["images_per_s"] for r in runs}
# A lone request's best latency: one worker with every core.
single = [r for r in runs if r["workers"] == 1]
best["single_ms_p50"] = statistics.median(r["single_ms_p50"] for r in single)
best["single_ms_p99"] = statistics.median(r["single_ms_p99"] for r in single)
best["single_threads"] = single[0]["threads"]
# The same with one thread, as each of the server's workers runs it.
one = [r for r in runs if r["threads"] == 1] or single
best["single_1thread_ms_p50"] = statistics.median(r["single_ms_p50"] for r in one)
(out / f"ceiling-{precision}.json").write_text(json.dumps(best))
PY
  "$py" benches/load/hardware_bound.py "$shipped" "$cores" 10 "${precision%-checked}" > "$out/hardware-$precision.json"
done
"$py" benches/load/report.py "$out" "$labels" "$levels" "$repeats" "$duration" "$precisions"
