"""Summarises the load benchmark's raw wrk outputs (medians over repeats): a Markdown table per
level, the targets, results.json and a chart (throughput and p99 against concurrency).

    python report.py OUT_DIR "SERVERS" "LEVELS" REPEATS DURATION ["PRECISIONS"]

SERVERS are the labels run.sh ran (NAME for fp32, NAME-PRECISION otherwise); the ceiling and
the hardware bound are read per precision.
"""

import json
import pathlib
import re
import statistics
import sys

out = pathlib.Path(sys.argv[1])
servers, levels = sys.argv[2].split(), sys.argv[3].split()
repeats, duration = int(sys.argv[4]), int(sys.argv[5])
precisions = sys.argv[6].split() if len(sys.argv) > 6 else ["fp32"]
PEERS = ("flask-torch", "fastapi-torch", "litserve-torch")
SAME_MODEL_PEERS = [s for s in PEERS if s in servers]
# Each peer in every precision it ran: the best of them is the fair comparison.
PEERS_ANY_PRECISION = [s for s in servers if any(s == p or s.startswith(p + "-") for p in PEERS)]
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
           "ceiling": {p: json.loads((out / f"ceiling-{p}.json").read_text()) for p in precisions},
           "hardware": {p: json.loads((out / f"hardware-{p}.json").read_text()) for p in precisions}}
(out / "results.json").write_text(json.dumps(results, indent=2))
r, ceilings, hws = results["servers"], results["ceiling"], results["hardware"]
ceiling, hw = ceilings[precisions[0]], hws[precisions[0]]
sl = r["skinlesion"]

print("| server | " + " | ".join(f"c={c} req/s · p50/p90/p99 ms" for c in levels) + " | errors | RSS idle / peak MB |")
print("|---|" + "---:|" * (len(levels) + 2))
for s in servers:
    cells = [f"{r[s][c]['rps']:.1f} · {r[s][c]['p50_ms']:.0f}/{r[s][c]['p90_ms']:.0f}/{r[s][c]['p99_ms']:.0f}" for c in levels]
    errors = sum(r[s][c]["errors"] for c in levels)
    requests = sum(r[s][c]["requests"] for c in levels)
    print(f"| {s} | " + " | ".join(cells) + f" | {errors} of {requests} | {r[s]['rss']['idle_rss_mb']} / {r[s]['rss']['peak_rss_mb']} |")
print()
for p in precisions:
    c, h = ceilings[p], hws[p]
    print(f"In-process ceiling, {p}: {c['images_per_s']:.1f} images/s (best: batch {c['batch']}, "
          f"{c['workers']} worker(s) of {c['threads']} thread(s); all: {c['by_config']}); "
          f"single image ({c['single_threads']} threads) p50 {c['single_ms_p50']:.2f} ms, "
          f"p99 {c['single_ms_p99']:.2f} ms.")
    print(f"Hardware bound, {p}: {h['gflop_per_image']:.3f} GFLOP per image (counted) at {h['gemm_gflops']:.1f} "
          f"GFLOP/s (measured GEMM, {h['threads']} threads) = {h['bound_images_per_s']:.1f} images/s; "
          f"the ceiling is {c['images_per_s'] / h['bound_images_per_s']:.2f} of it.")
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
for p in precisions[1:]:
    if f"skinlesion-{p}" not in r:
        continue
    bf = r[f"skinlesion-{p}"]
    if "16" in levels:
        x = bf["16"]["rps"] / sl["16"]["rps"]
        target(f"{p}: c=16 throughput / fp32's", x, "≥ 2", x >= 2)
        x = bf["16"]["p99_ms"] / sl["16"]["p99_ms"]
        target(f"{p}: c=16 p99 / fp32's", x, "≤ 0.5", x <= 0.5)
        if PEERS_ANY_PRECISION:
            best = max(PEERS_ANY_PRECISION, key=lambda s: r[s]["16"]["rps"])
            x = max(bf["16"]["rps"], sl["16"]["rps"]) / r[best]["16"]["rps"]
            target(f"{p} or fp32: c=16 throughput / best Python peer in its best ({best})", x, "≥ 1.3", x >= 1.3)
    if "1" in levels:
        for q, s in (("fp32", sl), (p, bf)):
            x = s["1"]["p99_ms"] / ceilings[q]["single_ms_p50"]
            target(f"{q}: c=1 p99 / in-process single image ({ceilings[q]['single_threads']} threads)", x, "≤ 1.3", x <= 1.3)
errors = sum(r[s][c]["errors"] for s in r if s.startswith("skinlesion") for c in levels)
target("skinlesion errors at any level", errors, "0", errors == 0)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
xs = [int(c) for c in levels]
for s in servers:
    a.plot(xs, [r[s][c]["rps"] for c in levels], marker="o", label=s)
    b.plot(xs, [r[s][c]["p99_ms"] for c in levels], marker="o", label=s)
for p, style in zip(precisions, ("--", ":", "-.")):
    a.axhline(ceilings[p]["images_per_s"], color="grey", ls=style, label=f"in-process ceiling, {p}")
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
