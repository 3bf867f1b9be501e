"""Summarises the load benchmark's raw wrk outputs (medians over repeats): a Markdown table per
level, the targets, results.json and a chart (throughput and p99 against concurrency).

    python report.py OUT_DIR "SERVERS" "LEVELS" REPEATS DURATION
"""

import json
import pathlib
import re
import statistics
import sys

out = pathlib.Path(sys.argv[1])
servers, levels = sys.argv[2].split(), sys.argv[3].split()
repeats, duration = int(sys.argv[4]), int(sys.argv[5])
SAME_MODEL_PEERS = [s for s in ("flask-torch", "fastapi-torch", "litserve-torch") if s in servers]
UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * UNIT[unit]


def parse(path: pathlib.Path) -> dict:
    text = path.read_text()
    pct = {int(p): ms(v) for p, v in re.findall(r"^\s+(50|90|99)%\s+(\S+)\s*$", text, re.M)}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
        "p50_ms": pct[50], "p90_ms": pct[90], "p99_ms": pct[99],
        "requests": int(re.search(r"(\d+) requests in", text).group(1)),
        "errors": (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, socket.groups())) if socket else 0),
    }


def summarise(server: str) -> dict:
    result = {"rss": {**json.loads((out / f"{server}-idle.json").read_text()),
                      **json.loads((out / f"{server}-peak.json").read_text())}}
    for c in levels:
        runs = [parse(out / f"{server}-c{c}-r{r}.txt") for r in range(1, repeats + 1)]
        result[c] = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
        result[c]["errors"] = sum(run["errors"] for run in runs)
        result[c]["requests"] = sum(run["requests"] for run in runs)
    return result


results = {"levels": levels, "repeats": repeats, "duration_s": duration,
           "servers": {s: summarise(s) for s in servers},
           "ceiling": json.loads((out / "ceiling.json").read_text()),
           "hardware": json.loads((out / "hardware.json").read_text())}
(out / "results.json").write_text(json.dumps(results, indent=2))
r, ceiling, hw = results["servers"], results["ceiling"], results["hardware"]
sl = r["skinlesion"]

print("| server | " + " | ".join(f"c={c} req/s · p50/p90/p99 ms" for c in levels) + " | errors | RSS idle / peak MB |")
print("|---|" + "---:|" * (len(levels) + 2))
for s in servers:
    cells = [f"{r[s][c]['rps']:.1f} · {r[s][c]['p50_ms']:.0f}/{r[s][c]['p90_ms']:.0f}/{r[s][c]['p99_ms']:.0f}" for c in levels]
    errors = sum(r[s][c]["errors"] for c in levels)
    requests = sum(r[s][c]["requests"] for c in levels)
    print(f"| {s} | " + " | ".join(cells) + f" | {errors} of {requests} | {r[s]['rss']['idle_rss_mb']} / {r[s]['rss']['peak_rss_mb']} |")
print()
print(f"In-process ceiling: {ceiling['images_per_s']:.1f} images/s (best: batch {ceiling['batch']}, "
      f"{ceiling['workers']} worker(s) of {ceiling['threads']} thread(s); all: {ceiling['by_config']}); "
      f"single image ({ceiling['single_threads']} threads) p50 {ceiling['single_ms_p50']:.2f} ms, "
      f"p99 {ceiling['single_ms_p99']:.2f} ms.")
print(f"Hardware bound: {hw['gflop_per_image']:.3f} GFLOP per image (counted) at {hw['gemm_gflops']:.1f} GFLOP/s "
      f"(measured GEMM, {hw['threads']} threads) = {hw['bound_images_per_s']:.1f} images/s; "
      f"the ceiling is {ceiling['images_per_s'] / hw['bound_images_per_s']:.2f} of it.")
print()


def target(name: str, value: float, goal: str, ok: bool) -> None:
    print(f"| {name} | {value:.2f} | {goal} | {'met' if ok else '**not met**'} |")


print("| target (same run) | measured | goal | |")
print("|---|---:|---:|---|")
if "16" in levels and SAME_MODEL_PEERS:
    best_rps = max(SAME_MODEL_PEERS, key=lambda s: r[s]["16"]["rps"])
    best_p99 = min(SAME_MODEL_PEERS, key=lambda s: r[s]["16"]["p99_ms"])
    x = sl["16"]["rps"] / r[best_rps]["16"]["rps"]
    target(f"c=16 throughput / best Python peer ({best_rps})", x, "≥ 1.2", x >= 1.2)
    x = sl["16"]["rps"] / ceiling["images_per_s"]
    target("c=16 throughput / in-process ceiling", x, "≥ 0.9", x >= 0.9)
    x = sl["16"]["p99_ms"] / r[best_p99]["16"]["p99_ms"]
    target(f"c=16 p99 / best Python peer's ({best_p99})", x, "≤ 0.5", x <= 0.5)
if "1" in levels:
    x = sl["1"]["p99_ms"] / ceiling["single_ms_p50"]
    target(f"c=1 p99 / in-process single-image p50 ({ceiling['single_threads']} threads)", x, "≤ 1.5", x <= 1.5)
    x = sl["1"]["p99_ms"] / ceiling["single_1thread_ms_p50"]
    target("c=1 p99 / in-process single-image p50 (1 thread, as each server worker)", x, "≤ 1.5", x <= 1.5)
if "16" in levels and "keras-original" in servers:
    k = r["keras-original"]["16"]
    target("c=16 throughput / original app (Keras)", sl["16"]["rps"] / k["rps"], "≥ 5", sl["16"]["rps"] / k["rps"] >= 5)
    target("c=16 p99 / original app's", sl["16"]["p99_ms"] / k["p99_ms"], "≤ 0.2", sl["16"]["p99_ms"] / k["p99_ms"] <= 0.2)
errors = sum(sl[c]["errors"] for c in levels)
target("skinlesion errors at any level", errors, "0", errors == 0)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
xs = [int(c) for c in levels]
for s in servers:
    a.plot(xs, [r[s][c]["rps"] for c in levels], marker="o", label=s)
    b.plot(xs, [r[s][c]["p99_ms"] for c in levels], marker="o", label=s)
a.axhline(ceiling["images_per_s"], color="grey", ls="--", label="in-process ceiling")
for ax, label in ((a, "requests/s (median)"), (b, "p99 latency, ms (median)")):
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("concurrent connections")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
b.set_yscale("log")
a.legend(fontsize=8)
fig.suptitle(f"POST /predict, real HAM10000 images, {duration} s × {repeats} per point, 2 cores")
fig.tight_layout()
fig.savefig(out / "load.png", dpi=110)
print(f"\nchart: {out / 'load.png'}")
