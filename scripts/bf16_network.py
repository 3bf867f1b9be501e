"""Derives a model's bfloat16 network from its fp32 one.

    python scripts/bf16_network.py MODEL.json          # writes MODEL.bf16.pt beside it

then `skinlesion-train add-precision --model MODEL.json` measures how often its answers equal
fp32's and records it in the manifest (`other_precisions`); the library loads it only then.

A skinlesion network is traced, so its weights are constants of its graph, which
`module.to(torch.bfloat16)` does not touch. This rewrites the graph instead: the input is cast
to bfloat16, every floating-point constant of the backbone (everything the last feature maps
are computed from) becomes bfloat16, and the feature maps are cast back to fp32 before the
pooling. The head, the dermoscopy gate's distance and the class maps therefore run in fp32 on
the same pass, with the network's own fp32 constants: bf16's 8-bit mantissa rounds the
features, not the gate's arithmetic. Every other operation is the fp32 network's own.
"""

import json
import sys
from pathlib import Path

import torch


def ancestors(value: torch._C.Value) -> set:
    """The nodes `value` is computed from (itself included), up to the graph's inputs."""
    seen, stack = set(), [value.node()]
    while stack:
        node = stack.pop()
        if node in seen or node.kind() == "prim::Param":
            continue
        seen.add(node)
        stack.extend(i.node() for i in node.inputs())
    return seen


def cast(graph: torch._C.Graph, value: torch._C.Value, dtype: torch.dtype) -> torch._C.Node:
    """An `aten::to(value, dtype)` node (not yet placed), its constants at the top of the
    graph."""
    with graph.insert_point_guard(next(iter(graph.nodes()))):
        args = [graph.insertConstant(v) for v in (dtype, False, False, None)]
    return graph.create("aten::to", [value] + args)


def rewrite(module: torch.jit.ScriptModule) -> int:
    """Turns `module`'s backbone to bfloat16 in place; returns the constants converted."""
    graph = module.graph
    pools = [n for n in graph.nodes() if n.kind() == "aten::adaptive_avg_pool2d"]
    if len(pools) != 1:
        sys.exit("not a network that ends in one global pooling: no backbone to convert")
    feature_maps = pools[0].inputsAt(0)
    backbone = ancestors(feature_maps)
    converted = 0
    for node in backbone:
        if node.kind() != "prim::Constant" or node.output().type().kind() != "TensorType":
            continue
        tensor = node.t("value")
        if not tensor.is_floating_point():
            continue
        if any(use.user not in backbone for use in node.output().uses()):
            sys.exit("a weight is shared by the backbone and the head: cannot split them")
        node.t_("value", tensor.to(torch.bfloat16))
        node.output().inferTypeFrom(node.t("value"))
        converted += 1
    image = list(graph.inputs())[1]
    to_bf16 = cast(graph, image, torch.bfloat16)
    to_bf16.insertAfter(to_bf16.inputsAt(4).node())
    image.replaceAllUsesAfterNodeWith(to_bf16, to_bf16.output())
    to_fp32 = cast(graph, feature_maps, torch.float32)
    to_fp32.insertAfter(feature_maps.node())
    feature_maps.replaceAllUsesAfterNodeWith(to_fp32, to_fp32.output())
    torch._C._jit_pass_lint(graph)
    return converted


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    manifest_path = Path(sys.argv[1])
    manifest = json.loads(manifest_path.read_text())
    weights = manifest_path.parent / manifest["weights"]["file"]
    out = manifest_path.with_suffix(".bf16.pt")
    original = torch.jit.load(str(weights))
    network = torch.jit.load(str(weights))
    converted = rewrite(network)
    network.save(str(out))
    classes = len(manifest["classes"])
    size = manifest["input"]["height"], manifest["input"]["width"]
    x = torch.rand(4, 3, *size) * 2 - 1
    with torch.no_grad():
        want, got = original(x)[:, :classes], torch.jit.load(str(out))(x)[:, :classes]
    # A coarse check that the rewrite kept the network; the measured agreement on real
    # images is add-precision's.
    if got.dtype != torch.float32 or not torch.allclose(want, got, atol=0.25):
        sys.exit(f"the bf16 network's logits differ from fp32's by {(want - got).abs().max()}")
    print(f"{out}: {converted} backbone constants in bfloat16; logits on random input within "
          f"{(want - got).abs().max():.3f} of fp32")


if __name__ == "__main__":
    main()
