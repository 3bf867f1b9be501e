"""``python -m skinlesion.bulk``: score files into a Parquet dataset, then print a summary."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from .. import DISCLAIMER
from ._cluster import connect
from ._parts import write


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m skinlesion.bulk``: score files into a Parquet dataset, then print a summary."""
    args = _parser().parse_args(argv)
    print(f"skinlesion.bulk: {DISCLAIMER}", file=sys.stderr)
    try:
        connect(args.address)
        summary = write(
            args.inputs,
            args.output,
            resume=not args.no_resume,
            model=args.model,
            batch_size=args.batch_size,
            concurrency=args.concurrency,
            device=args.device,
            precision=args.precision,
            threads_per_worker=args.threads_per_worker,
            extensions=args.extensions,
        )
    except (ValueError, ConnectionError) as e:
        print(f"skinlesion.bulk: error: {e}", file=sys.stderr)
        return 2
    print(f"skinlesion.bulk: {summary}")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m skinlesion.bulk",
        description="Score image files (local paths, globs, s3:// or gs:// URIs) on Ray Data into "
        "a Parquet dataset; rerun to resume. Research and education only; not a medical device.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders, globs or URIs")
    p.add_argument("output", metavar="OUTPUT.parquet", help="output folder of Parquet part files")
    p.add_argument("--address", default=None, help="Ray cluster: auto, ray://HOST:10001 or HOST:6379 "
                   "(default: a local Ray on this machine)")
    p.add_argument("--model", default=None, help="model manifest (default: the bundled model)")
    p.add_argument("--batch-size", type=int, default=None, help="images per classify call "
                   "(default: 1 on CPU, 64 on GPU)")
    p.add_argument("--concurrency", type=int, default=None, help="workers (default: fill the cluster)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (cpu)")
    p.add_argument("--precision", default="auto", help="auto, fp32, bf16 or bf16-checked (auto: "
                   "bf16, checked or not, where the CPU has it natively and its answers agree with fp32)")
    p.add_argument("--threads-per-worker", type=int, default=None, help="CPU threads per worker")
    p.add_argument("--extensions", nargs="+", default=None, help="only files with these extensions")
    p.add_argument("--no-resume", action="store_true", help="refuse an output that already has results")
    return p


if __name__ == "__main__":
    sys.exit(main())
