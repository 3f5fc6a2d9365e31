"""Trainable parameters and their optimizer state packed into flat buffers.

A small model's training step is bound by ONNX Runtime's per-node cost, and an optimizer written
per parameter costs about 13 nodes for each (AdamW): the 64-128-10 MLP's step was 87 nodes, 52 of
them the update. Packed, the step reads one flat ``stepgraph.params`` input (``Split`` into the
parameters' pieces, each ``Reshape``d to its shape, so the forward and backward read the names
they always read), concatenates the flattened gradients once (``Concat``) and updates the one flat
vector (and the flat AdamW moments) with one set of elementwise nodes, whatever the parameter
count. Only parameters of at most :data:`PACK_MAX_ELEMENTS` are packed: for large ones the copies
in and out of the flat buffer cost more than the nodes they save (measured on the 2-core machine,
alternating in one process: the 784-1024-1024-10 MLP with every parameter packed ran 0.88x its
unpacked step, the 64-128-10 MLP packed 1.11x). The carried state is then a few flat buffers; :class:`Packing` maps them to and from the
per-parameter names that checkpoints, ``state()`` and the tests use, and undoes the scale an input
is kept at (AdamW's moments are carried divided by ``1 - beta``, see :mod:`.optim`): a scaled
value is named in float64, so that a checkpoint's moments give back the very carried buffer
(float32 ``x * 0.1 / 0.1`` differs from ``x`` in the last bit for one value in eight, and a
resumed AdamW run would drift from an uninterrupted one).

With ``views`` (the onnx backend's runner) the parameters stay graph inputs beside the flat one
and the runner binds each to its slice of the flat buffer (``IOBinding.bind_input`` at an offset):
no ``Split`` copies them in every step. Measured alternating in one process, one thread, load 8
on the 2-core machine: the 64-128-10 MLP's step 1.04-1.07x with AdamW, 1.17x with SGD, equal
weights. A plain ``session.run`` feeds them too (``pack`` returns the members of a viewed buffer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper

from onnxforge.runtime.training.stepgraph._rewrite import Nodes, opset_of

__all__ = ["PACK_MAX_ELEMENTS", "PARAMS", "Packing", "pack_parameters", "packable"]

PARAMS = "stepgraph.params"  # the flat buffer of the packed trainable parameters, in order
PACK_MAX_ELEMENTS = 1 << 16  # larger parameters keep their own input


@dataclass
class Packing:
    """Flat state inputs and the named values laid end to end in each (``flat -> [(name, shape)]``);
    a carried value not named here is its own input. ``scales``: input -> factor, the named values
    being ``factor * input``."""

    packs: dict = field(default_factory=dict)
    scales: dict = field(default_factory=dict)
    views: set = field(default_factory=set)  # flat inputs whose members are graph inputs too (see pack_parameters)

    def names(self, state: list[str]) -> list[str]:
        """The carried values by name: each packed input replaced by its members, in order."""
        out = []
        for s in state:
            out.extend([m for m, _ in self.packs[s]] if s in self.packs else [s])
        return out

    def pack(self, values: dict) -> dict:
        """Named values -> the state inputs (packed ones concatenated; the rest passed through)."""
        members = {m for layout in self.packs.values() for m, _ in layout}
        out = {k: v for k, v in values.items() if k not in members}
        for flat, layout in self.packs.items():  # (a scaled one in float64 until divided, see below)
            dtype = np.float64 if flat in self.scales else np.float32
            out[flat] = np.concatenate([np.asarray(values[m], dtype).reshape(-1) for m, _ in layout])
            if flat in self.views:
                out.update({m: np.asarray(values[m], np.float32).reshape(shape) for m, shape in layout})
        for k, factor in self.scales.items():
            if k in out:
                out[k] = (np.asarray(out[k], np.float64) / factor).astype(np.float32)
        return out

    def unpack(self, values: dict) -> dict:
        """State inputs -> the named values (packed ones as views of their flat buffer)."""
        out = {}
        for k, v in values.items():
            if k in self.scales:  # float64: float32(x * scale) / scale is not always x again
                v = np.asarray(v, np.float64) * self.scales[k]
            if k not in self.packs:
                out[k] = v
                continue
            start = 0
            for m, shape in self.packs[k]:
                size = int(np.prod(shape, dtype=np.int64))
                out[m] = np.asarray(v)[start:start + size].reshape(shape)
                start += size
        return out

    def members(self, flat: str) -> list:
        """``[(name, offset, shape)]`` of the values laid end to end in the flat input ``flat``."""
        out, start = [], 0
        for m, shape in self.packs[flat]:
            out.append((m, start, shape))
            start += int(np.prod(shape, dtype=np.int64))
        return out


def _shape(info: onnx.ValueInfoProto) -> tuple:
    return tuple(int(d.dim_value) for d in info.type.tensor_type.shape.dim)


def packable(model: onnx.ModelProto, trainable: list[str]) -> list[str]:
    """The ``trainable`` inputs worth packing: fixed shapes of at most :data:`PACK_MAX_ELEMENTS`
    (none when fewer than two are)."""
    inputs = {i.name: i for i in model.graph.input}
    small = [p for p in trainable if all(d.HasField("dim_value") for d in inputs[p].type.tensor_type.shape.dim)
             and int(np.prod(_shape(inputs[p]), dtype=np.int64)) <= PACK_MAX_ELEMENTS]
    return small if len(small) > 1 else []


def pack_parameters(model: onnx.ModelProto, trainable: list[str], grads: dict, views: bool = False) -> tuple[str, list]:
    """Rewrite ``model`` (in place) to read the float ``trainable`` inputs from one flat
    :data:`PARAMS` input; returns the flat gradient's name (a ``Concat`` of the flattened
    ``grads``) and the layout ``[(name, shape)]``. ``views``: the parameters stay inputs beside
    :data:`PARAMS` (no ``Split``), for a runner that binds them to views of the flat buffer."""
    inputs = {i.name: i for i in model.graph.input}
    layout = [(p, _shape(inputs[p])) for p in trainable]
    sizes = [int(np.prod(s, dtype=np.int64)) for _, s in layout]
    n = Nodes("pack", opset_of(model))
    # the pieces of 1-D parameters (biases) are the parameters; the others are reshaped views
    pieces = [p if len(shape) == 1 else n.name("piece") for p, shape in layout]
    if views:
        pieces = list(trainable)
    elif len(trainable) == 1:
        pieces = [PARAMS]
    else:
        n.nodes.append(helper.make_node("Split", [PARAMS, n.const(sizes, np.int64)], pieces, name="pack/split", axis=0))
    for (p, shape), piece in zip(layout, pieces):
        if piece != p:
            n.op("Reshape", [piece, n.const(list(shape), np.int64)], out=p)
    front = list(n.nodes)
    del n.nodes[:]
    flat = [grads[p] if len(shape) == 1 else n.op("Reshape", [grads[p], n.const([-1], np.int64)])
            for p, shape in layout]
    grad = flat[0] if len(flat) == 1 else n.op("Concat", flat, axis=0)
    kept = [i for i in model.graph.input if views or i.name not in set(trainable)]
    del model.graph.input[:]
    model.graph.input.extend([*kept, helper.make_tensor_value_info(PARAMS, TensorProto.FLOAT, [sum(sizes)])])
    body = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend([*front, *body, *n.nodes])
    model.graph.initializer.extend(n.initializers)
    return grad, layout
