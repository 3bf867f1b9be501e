"""Summarises the load benchmark's raw wrk outputs (medians over repeats) as Markdown and JSON.

    python report.py OUT_DIR "LEVELS" REPEATS DURATION
"""

import json
import pathlib
import re
import statistics
import sys

out, levels, repeats, duration = pathlib.Path(sys.argv[1]), sys.argv[2].split(), int(sys.argv[3]), sys.argv[4]
UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * UNIT[unit]


def parse(path: pathlib.Path) -> dict:
    text = path.read_text()
    pct = {int(p): ms(v) for p, v in re.findall(r"^\s+(50|90|99)%\s+(\S+)$", text, re.M)}
    requests = int(re.search(r"(\d+) requests in", text).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
        "p50_ms": pct[50], "p90_ms": pct[90], "p99_ms": pct[99],
        "requests": requests,
        "errors": (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, socket.groups())) if socket else 0),
    }


results = {"levels": {}, "repeats": repeats, "duration_s": int(duration)}
for server in ("skinlesion", "flask"):
    results[server] = {"rss": {**json.loads((out / f"{server}-idle.json").read_text()),
                               **json.loads((out / f"{server}-peak.json").read_text())}}
    for c in levels:
        runs = [parse(out / f"{server}-c{c}-r{r}.txt") for r in range(1, repeats + 1)]
        results[server][c] = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
        results[server][c]["errors"] = sum(run["errors"] for run in runs)
        results[server][c]["requests"] = sum(run["requests"] for run in runs)
results["ceiling"] = json.loads((out / "ceiling.json").read_text())
(out / "results.json").write_text(json.dumps(results, indent=2))

s, f, ceiling = results["skinlesion"], results["flask"], results["ceiling"]
print(f"| concurrency | skinlesion req/s | p50 / p90 / p99 ms | errors | Flask req/s | p50 / p90 / p99 ms | errors | throughput ratio |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
for c in levels:
    a, b = s[c], f[c]
    print(f"| {c} | {a['rps']:.1f} | {a['p50_ms']:.1f} / {a['p90_ms']:.1f} / {a['p99_ms']:.1f} | {a['errors']} of {a['requests']} "
          f"| {b['rps']:.1f} | {b['p50_ms']:.1f} / {b['p90_ms']:.1f} / {b['p99_ms']:.1f} | {b['errors']} of {b['requests']} "
          f"| {a['rps'] / b['rps']:.1f}x |")
print()
print(f"In-process ceiling: {ceiling['images_per_s']:.1f} images/s (batch {ceiling['batch']}, {ceiling['threads']} threads); "
      f"single image p50 {ceiling['single_ms_p50']:.2f} ms, p99 {ceiling['single_ms_p99']:.2f} ms.")
if "16" in levels:
    print(f"At concurrency 16: skinlesion / Flask = {s['16']['rps'] / f['16']['rps']:.1f}x (target >= 10x); "
          f"skinlesion / ceiling = {s['16']['rps'] / ceiling['images_per_s']:.2f} (target >= 0.8).")
if "1" in levels:
    print(f"p99 at concurrency 1 / in-process single-image p50 = {s['1']['p99_ms'] / ceiling['single_ms_p50']:.2f} (target <= 1.5).")
print(f"RSS: skinlesion idle {s['rss']['idle_rss_mb']} MB, peak {s['rss']['peak_rss_mb']} MB; "
      f"Flask idle {f['rss']['idle_rss_mb']} MB, peak {f['rss']['peak_rss_mb']} MB.")
