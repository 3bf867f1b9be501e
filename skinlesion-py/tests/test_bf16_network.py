"""`scripts/bf16_network.py`, the derivation of a model's bf16 network.

Its fusion pass must compute what the convolutions, paddings and ReLU6s it replaces computed
(checked exactly in fp32 on a small traced network with both kinds of padding), and the
shipped bf16 network must be what the script makes from the shipped fp32 one.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import subprocess
import sys

import torch

import skinlesion

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import bf16_network  # noqa: E402


class Block(torch.nn.Module):
    """Stride-2 depthwise with TensorFlow's "same" padding (one more at the end), a symmetric
    pad before a 3×3, a 5×5 stride-2 depthwise, a 1×1 with no activation: EfficientNet-Lite's
    layers, traced to the ops the Rust exporter's trace has (`constant_pad_nd`, `relu6`)."""

    def __init__(self):
        super().__init__()
        self.convs = torch.nn.ModuleList([
            torch.nn.Conv2d(8, 8, 3, stride=2, groups=8),
            torch.nn.Conv2d(8, 16, 3),
            torch.nn.Conv2d(16, 16, 5, stride=2, groups=16),
            torch.nn.Conv2d(16, 4, 1),
        ])

    def forward(self, x):
        relu6, pad = torch.ops.aten.relu6, torch.constant_pad_nd
        x = relu6(self.convs[0](pad(x, [0, 1, 0, 1], 0.0)))
        x = relu6(self.convs[1](pad(x, [1, 1, 1, 1], 0.0)))
        x = self.convs[2](pad(x, [1, 2, 1, 2], 0.0))
        return self.convs[3](x)


def test_fusion_computes_what_it_replaces(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(2, 8, 24, 24) * 4
    block = Block().eval()
    traced = torch.jit.freeze(torch.jit.trace(block, x))
    fused = bf16_network.fuse(traced)
    kinds = [n.kind() for n in traced.graph.nodes()]
    assert fused == 4
    assert "aten::constant_pad_nd" not in kinds and "aten::relu6" not in kinds, kinds
    # Saved and loaded, as the script does: a module that already ran keeps its old plan.
    traced.save(str(tmp_path / "fused.pt"))
    with torch.no_grad():
        want = block(x)
        got = torch.jit.load(str(tmp_path / "fused.pt"))(x)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()


def test_the_shipped_bf16_network_is_the_scripts(tmp_path):
    manifest_path = REPO / "models" / skinlesion.DEFAULT_MODEL.name
    manifest = json.loads(manifest_path.read_text())
    (tmp_path / manifest["weights"]["file"]).symlink_to(manifest_path.parent / manifest["weights"]["file"])
    copy = tmp_path / manifest_path.name
    copy.write_text(manifest_path.read_text())
    subprocess.run([sys.executable, str(REPO / "scripts" / "bf16_network.py"), str(copy)], check=True)
    made = hashlib.sha256(copy.with_suffix(".bf16.pt").read_bytes()).hexdigest()
    shipped = next(o for o in manifest["other_precisions"] if o["precision"] == "bf16")
    assert made == shipped["weights"]["sha256"]
