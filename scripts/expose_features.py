"""Turns a shipped model's network into one that also returns its pooled features.

    python scripts/expose_features.py MODEL.json OUT.pt

For `skinlesion-train regate`, which re-fits a model's dermoscopy gate without its training
checkpoint. The network of a skinlesion format-2 artifact with a traced gate returns one
N×K tensor, `cat([logits, gate score, class maps])`, and computes the gate from the
mirror-averaged pooled features (the input of its one `matmul`). This rewires that `cat` to
`[logits, class maps, features]` and drops the old gate's arithmetic; every other operation
and constant is the shipped network's own, so logits and maps are unchanged (checked here).
"""

import json
import sys
from pathlib import Path

import torch


def rewire(module: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    graph = module.graph
    nodes = list(graph.nodes())
    matmuls = [n for n in nodes if n.kind() == "aten::matmul"]
    cats = [n for n in nodes if n.kind() == "aten::cat"]
    if len(matmuls) != 1 or not cats:
        sys.exit("not a skinlesion network with a traced gate (expected one matmul and a cat)")
    output = graph.return_node().inputsAt(0).node()
    if output is not cats[-1]:
        sys.exit("the network's output is not its last cat")
    parts = output.inputsAt(0).node()
    if parts.kind() != "prim::ListConstruct" or len(list(parts.inputs())) != 3:
        sys.exit("expected the output cat([logits, gate score, class maps])")
    logits, _gate, maps = list(parts.inputs())
    features = matmuls[0].inputsAt(0)
    for _ in range(3):
        parts.removeInput(0)
    for value in (logits, maps, features):
        parts.addInput(value)
    torch._C._jit_pass_dce(graph)
    return module


def main() -> None:
    manifest_path, out = Path(sys.argv[1]), sys.argv[2]
    manifest = json.loads(manifest_path.read_text())
    weights = manifest_path.parent / manifest["weights"]["file"]
    classes = len(manifest["classes"])
    maps = manifest["class_maps"]
    cells = classes * maps["width"] * maps["height"]
    size = manifest["input"]["height"], manifest["input"]["width"]
    original = torch.jit.load(str(weights))
    rewired = rewire(torch.jit.load(str(weights)))
    x = torch.rand(3, 3, *size) * 2 - 1
    with torch.no_grad():
        before, after = original(x), rewired(x)
    kept = torch.cat([before[:, :classes], before[:, classes + 1:]], 1)
    if before.shape[1] != classes + 1 + cells or not torch.equal(kept, after[:, :classes + cells]):
        sys.exit("the rewired network does not reproduce the logits and class maps")
    rewired.save(out)
    print(f"{out}: {classes} logits, {cells} class-map cells, "
          f"{after.shape[1] - classes - cells} pooled features")


if __name__ == "__main__":
    main()
