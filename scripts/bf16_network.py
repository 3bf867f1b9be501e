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

Then each convolution becomes oneDNN's fused convolution
(`mkldnn::_convolution_pointwise`, the op PyTorch's own CPU compiler emits), with the ReLU6
after it and the zero padding before it folded in. A separate ReLU6 or padding pass
reads and writes a whole feature map; in bf16 these passes took about a third of the forward
pass (measured: models/README.md, "bf16"). The arithmetic is the same up to the order of
bf16 roundings (logits within 0.01 of the unfused network's, checked here, against about 0.03
between bf16 and fp32); the fused op runs on CPUs only, which is where this network is for.
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


def constant_ints(value: torch._C.Value):
    """The ints of a constant list (a list constant, or a list built from constants), else
    None."""
    node = value.node()
    if node.kind() == "prim::Constant" and isinstance(node.output().toIValue(), list):
        return node.output().toIValue()
    if node.kind() != "prim::ListConstruct":
        return None
    items = [i.node() for i in node.inputs()]
    if any(i.kind() != "prim::Constant" for i in items):
        return None
    return [i.output().toIValue() for i in items]


def is_constant(value: torch._C.Value, wanted) -> bool:
    node = value.node()
    return node.kind() == "prim::Constant" and node.output().toIValue() == wanted


def folded_padding(conv: torch._C.Node):
    """(input, padding) of `conv` with the zero `constant_pad_nd` before it folded into its own
    (symmetric) padding; the pad node is left for dead-code elimination.

    A symmetric pad folds as it is. TensorFlow's "same" padding of a strided convolution pads
    one more at the end than at the start, (lo, lo + 1): that folds into a symmetric lo + 1
    with one zero row and column put before the kernel, which then reads exactly the pixels
    the original read (a pad pass over the whole input costs more than the larger kernel)."""
    source, padding = conv.inputsAt(0), constant_ints(conv.inputsAt(4))
    pad, weight = source.node(), conv.inputsAt(1).node()
    if pad.kind() != "aten::constant_pad_nd" or len(source.uses()) != 1 or padding != [0, 0]:
        return source, padding
    sides = constant_ints(pad.inputsAt(1))  # left, right, top, bottom
    if not sides or len(sides) != 4 or not is_constant(pad.inputsAt(2), 0):
        return source, padding
    left, right, top, bottom = sides
    if left == right == top == bottom:
        return pad.inputsAt(0), [left, left]
    shifted = left == top and right == bottom == left + 1
    if not shifted or weight.kind() != "prim::Constant" or len(weight.output().uses()) != 1:
        return source, padding
    kernel = torch.nn.functional.pad(weight.t("value"), (1, 0, 1, 0))
    weight.t_("value", kernel)
    weight.output().inferTypeFrom(kernel)
    return pad.inputsAt(0), [right, right]


def optional_scalars(graph: torch._C.Graph, values) -> torch._C.Value:
    """A `Scalar?[]` list of constants, inserted at the current point."""
    items = [graph.insertConstant(v) for v in values]
    node = graph.create("prim::ListConstruct", items)
    node.output().setType(torch._C.ListType(torch._C.OptionalType(torch._C.NumberType.get())))
    return graph.insertNode(node).output()


def fuse(module: torch.jit.ScriptModule) -> int:
    """Replaces each `aten::_convolution` (2-D, not transposed, constant geometry) and a ReLU6
    that is its only use by one `mkldnn::_convolution_pointwise`; returns how many."""
    graph = module.graph
    fused = 0
    for conv in [n for n in graph.nodes() if n.kind() == "aten::_convolution"]:
        x, weight, bias, stride, _, dilation, transposed = list(conv.inputs())[:7]
        groups = conv.inputsAt(8)
        source, padding = folded_padding(conv)
        geometry = [padding, constant_ints(stride), constant_ints(dilation)]
        if not is_constant(transposed, False) or any(g is None or len(g) != 2 for g in geometry):
            continue
        uses = conv.output().uses()
        relu6 = uses[0].user if len(uses) == 1 and uses[0].user.kind() == "aten::relu6" else None
        with graph.insert_point_guard(conv):
            lists = [graph.insertConstant(g) for g in geometry]
            attribute = graph.insertConstant("hardtanh" if relu6 else "none")
            scalars = optional_scalars(graph, [0.0, 6.0] if relu6 else [])
            algorithm = graph.insertConstant(None)
            inputs = [source, weight, bias, *lists, groups, attribute, scalars, algorithm]
            pointwise = graph.create("mkldnn::_convolution_pointwise", inputs)
            pointwise.output().setType(conv.output().type())
            graph.insertNode(pointwise)
        replaced = relu6 or conv
        replaced.output().replaceAllUsesWith(pointwise.output())
        if relu6:
            relu6.destroy()
        conv.destroy()
        fused += 1
    torch._C._jit_pass_dce(graph)
    torch._C._jit_pass_lint(graph)
    return fused


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
    unfused = torch.jit.load(str(out))
    fused = fuse(network)
    network.save(str(out))
    classes = len(manifest["classes"])
    size = manifest["input"]["height"], manifest["input"]["width"]
    x = torch.rand(4, 3, *size) * 2 - 1
    if torch.backends.cpu.get_cpu_capability() not in ("AVX512", "AVX512_BF16", "AMX"):
        # oneDNN's bf16 convolutions refuse an AVX2-only CPU; the rewrite itself does not
        # depend on the CPU (the same bytes come out), only this check does.
        print(f"{out}: {converted} backbone constants in bfloat16, {fused} fused convolutions; "
              f"not run: this CPU ({torch.backends.cpu.get_cpu_capability()}) cannot run "
              "bfloat16 convolutions")
        return
    with torch.no_grad():
        want, got = original(x)[:, :classes], torch.jit.load(str(out))(x)[:, :classes]
        # Fusing changes where ops run and the order of roundings, not the arithmetic.
        drift = (unfused(x)[:, :classes] - got).abs().max()
    if drift > 1e-2:
        sys.exit(f"the fused network's logits differ from the unfused one's by {drift}")
    # A coarse check that the rewrite kept the network; the measured agreement on real
    # images is add-precision's.
    if got.dtype != torch.float32 or not torch.allclose(want, got, atol=0.25):
        sys.exit(f"the bf16 network's logits differ from fp32's by {(want - got).abs().max()}")
    print(f"{out}: {converted} backbone constants in bfloat16, {fused} fused convolutions; logits "
          f"on random input within {(want - got).abs().max():.3f} of fp32 ({drift:.1e} of unfused)")


if __name__ == "__main__":
    main()
