"""A graph without ``If``: each gate's expensive branch inlined, so it always runs and selects per sample.

Numerically identical to the gated graph for every gate setting (the branch already picks per sample),
it is what a device pays when conditionals are dearer than the compute they skip: on an accelerator
every ``If`` needs its condition on the host, a device-to-host copy and a sync.
"""
from __future__ import annotations

import onnx


def inline_if_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Copy of ``model`` with every ``If`` replaced by its then-branch, nested ones (early exits) included."""
    dense = onnx.ModelProto()
    dense.CopyFrom(model)
    rounds = 0
    while any(n.op_type == "If" for n in dense.graph.node):  # an inlined branch can bring the next If up
        nodes = []
        for k, node in enumerate(dense.graph.node):
            if node.op_type != "If":
                nodes.append(node)
                continue
            branch = next(a.g for a in node.attribute if a.name == "then_branch")
            nodes.extend(_inline(branch, node.output, prefix=f"inl{rounds}_{k}_", initializers=dense.graph.initializer))
        del dense.graph.node[:]
        dense.graph.node.extend(nodes)
        rounds += 1
    return dense


def _inline(branch: onnx.GraphProto, outputs, prefix: str, initializers) -> list[onnx.NodeProto]:
    """The branch's nodes with its local names prefixed and its outputs renamed to the If's outputs."""
    local = {out for n in branch.node for out in n.output} | {i.name for i in branch.initializer}
    rename = {name: prefix + name for name in local}
    rename.update({o.name: target for o, target in zip(branch.output, outputs)})
    copied = []
    for init in branch.initializer:  # branch weights move to the main graph under their new names
        moved = onnx.TensorProto()
        moved.CopyFrom(init)
        moved.name = rename[init.name]
        initializers.append(moved)
    for n in branch.node:
        c = onnx.NodeProto()
        c.CopyFrom(n)
        c.name = prefix + n.name if n.name else ""
        c.input[:] = [rename.get(i, i) for i in n.input]
        c.output[:] = [rename.get(o, o) for o in n.output]
        for a in c.attribute:  # a nested If's branches read the outer branch's values by name
            if a.type == onnx.AttributeProto.GRAPH:
                _rename_reads(a.g, rename)
        copied.append(c)
    return copied


def _rename_reads(graph: onnx.GraphProto, rename: dict[str, str]) -> None:
    """Rename the outer values a subgraph reads (names are unique in exported graphs: no shadowing)."""
    for n in graph.node:
        n.input[:] = [rename.get(i, i) for i in n.input]
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                _rename_reads(a.g, rename)
    for o in graph.output:  # a branch may output an outer value directly
        o.name = rename.get(o.name, o.name)
