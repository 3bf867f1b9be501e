"""The hardware bound of the load bench: the shipped network's FLOPs per image, counted on the
TorchScript file itself, over the machine's measured GEMM rate in the precision served.

    python hardware_bound.py MODEL.json THREADS SECONDS [fp32|bf16] > hardware.json

FLOPs are counted by torch's FlopCounterMode over one forward pass of a single image (every
convolution, depthwise included, and matrix product; a multiply-add is 2 FLOPs); the mirror
averaging and the gate the network carries are part of that pass. The GEMM rate is the best of
square 1024–2048 matrix products (float32, or bfloat16 for bf16) on THREADS threads, the most a CPU does per second on
any kernel here, so images/s = GEMM rate / FLOPs per image is an upper bound no server reaches:
depthwise convolutions do little arithmetic per byte and are bound by memory instead.
"""

import json
import pathlib
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

manifest = pathlib.Path(sys.argv[1])
threads, seconds = int(sys.argv[2]), float(sys.argv[3])
precision = sys.argv[4] if len(sys.argv) > 4 else "fp32"
dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
torch.set_num_threads(threads)
meta = json.loads(manifest.read_text())
module = torch.jit.load(str(manifest.parent / meta["weights"]["file"]), map_location="cpu").eval()
x = torch.zeros(1, 3, meta["input"]["height"], meta["input"]["width"])
with torch.inference_mode(), FlopCounterMode(display=False) as counter:
    module(x)
flops = counter.get_total_flops()
by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
if flops == 0:
    sys.exit("hardware bound: no FLOPs counted (the TorchScript module hid its operators)")


def gemm_rate(n: int) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds / 2:
        a @ b
        done += 1
    return 2 * n**3 * done / (time.perf_counter() - start) / 1e9


gflops = max(gemm_rate(n) for n in (1024, 2048))
print(json.dumps({
    "gflop_per_image": flops / 1e9,
    "flops_by_operator": by_op,
    "gemm_gflops": gflops,
    "threads": threads,
    "precision": precision,
    "bound_images_per_s": gflops / (flops / 1e9),
}, indent=2))
