"""Images/s of skinlesion.bulk (Ray Data) against the in-process classify_batch loop.

Usage: bench.py IMAGES_DIR OUT_DIR MODE [options]; MODE is `inprocess`, `cli` or `bulk`. Prints
one JSON line. In-process: a loaded classifier (all cores) calling classify_batch over the files.
CLI: `skinlesion-train classify` (release) writing CSV, timed from start to exit (model load
included). Bulk: the Ray instance is started before the clock (a cluster is up before a job is
submitted); the time includes starting the workers, loading the model in each, and writing
Parquet.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time

import skinlesion
from skinlesion import bulk


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("images")
    p.add_argument("out")
    p.add_argument("mode", choices=["inprocess", "cli", "bulk"])
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--concurrency", type=int, default=None)
    p.add_argument("--threads-per-worker", type=int, default=None)
    a = p.parse_args()
    files = sorted(os.path.join(a.images, f) for f in os.listdir(a.images))
    if a.mode == "inprocess":
        result = inprocess(files, a.batch_size or 1)
    elif a.mode == "cli":
        result = cli(a, files)
    else:
        result = on_ray(a, len(files))
    print(json.dumps(result), flush=True)


def inprocess(files: list[str], batch_size: int) -> dict:
    classifier = skinlesion.Classifier(device="cpu")
    classifier.classify_batch(files[:8])  # warm-up, as a long-running loop would be
    start = time.monotonic()
    for i in range(0, len(files), batch_size):
        classifier.classify_batch(files[i : i + batch_size], errors="return")
    seconds = time.monotonic() - start
    return {"mode": "inprocess", "threads": classifier.threads, "batch_size": batch_size,
            "images": len(files), "seconds": seconds, "images_per_second": len(files) / seconds}


def cli(a: argparse.Namespace, files: list[str]) -> dict:
    binary = os.path.join(os.path.dirname(__file__), "..", "..", "target", "release", "skinlesion-train")
    batch = ["--batch-size", str(a.batch_size)] if a.batch_size else []
    start = time.monotonic()
    with open(os.path.join(a.out, "cli.csv"), "w") as out:
        subprocess.run([binary, "classify", "--device", "cpu", *batch, a.images], stdout=out, check=True)
    seconds = time.monotonic() - start
    return {"mode": "cli", "batch_size": a.batch_size or "default", "images": len(files),
            "seconds": seconds, "images_per_second": len(files) / seconds}


def on_ray(a: argparse.Namespace, n: int) -> dict:
    import ray

    ray.init(include_dashboard=False, log_to_driver=False)
    output = os.path.join(a.out, "bulk.parquet")
    shutil.rmtree(output, ignore_errors=True)
    options = {k: v for k, v in (("batch_size", a.batch_size), ("concurrency", a.concurrency),
                                 ("threads_per_worker", a.threads_per_worker)) if v is not None}
    summary = bulk.write(a.images, output, resume=False, **options)
    assert summary.scored == n and summary.errors == 0, summary
    return {"mode": "bulk", **options, "images": n, "seconds": summary.seconds,
            "images_per_second": summary.images_per_second}


if __name__ == "__main__":
    main()
