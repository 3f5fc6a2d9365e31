"""The forward model in the form a training step differentiates.

* parameters (trainable) and running statistics become graph inputs (an ONNX Runtime session
  cannot replace initialisers; as inputs they live in the runner's buffers between steps);
* ``BatchNormalization`` normalises with the batch's statistics, computed from primitives (ONNX
  Runtime's ``training_mode=1`` kernel is unreliable, see the shared notes): the differentiation
  package's ``batchnorm_training_form``; the running statistics
  ``momentum * running + (1 - momentum) * batch`` (biased variance, as ONNX Runtime training
  updates them) are output as ``NEW/<name>``;
* ``Dropout`` (active when its ``training_mode`` input is a switch, the onnxforge builders'
  ``training_mode`` initialiser) draws its mask from a counter-based hash of the element index, the
  step and the ``SEED`` input in int64 arithmetic: masks are the same on every runtime, a function
  of (seed, epoch, step) only, so a resumed run draws the masks an uninterrupted one draws;
* a forward ``LSTM`` node is unrolled over the training data's fixed sequence length into
  ``Gemm``/``MatMul`` and elementwise ops (the same function and parameters; see
  ``onnxforge.graphs._lstm_unrolled``); other forms are left to the differentiation package's rule.

The evaluation form (``training=False``) keeps inference semantics: Dropout is the identity,
BatchNormalization uses the running statistics, LSTM nodes stay.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from onnxforge.runtime.autodiff import batchnorm_training_form
from onnxforge.runtime.errors import NotTrainableError
from onnxforge.runtime.training.stepgraph._rewrite import Nodes, opset_of

__all__ = ["training_forward", "NEW", "SEED", "STEP", "LR"]

NEW = "new/"  # prefix of the updated state's output names
SEED = "stepgraph.seed"  # int64 scalar: the dropout seed of the epoch
STEP = "stepgraph.step"  # float scalar: the 1-based optimizer step (AdamW's bias correction, dropout)
LR = "stepgraph.lr"  # float scalar: the learning rate of this step

_P = 2147483647  # 2^31 - 1: hash values stay below it, their squares below 2^62 (no int64 overflow)


def _attrs(node) -> dict:
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _params_to_inputs(model: onnx.ModelProto, names: list[str]) -> None:
    wanted = set(names)
    keep = [t for t in model.graph.initializer if t.name not in wanted]
    moved = {t.name: t for t in model.graph.initializer if t.name in wanted}
    missing = wanted - set(moved)
    if missing:
        raise NotTrainableError(f"parameters {sorted(missing)} are not initialisers of the model")
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    declared = {i.name for i in model.graph.input}
    for name in names:
        t = moved[name]
        if name not in declared:
            model.graph.input.append(helper.make_tensor_value_info(name, t.data_type, list(t.dims)))


def _fix_feed_shapes(model: onnx.ModelProto, feed_shapes: dict) -> None:
    """Non-batch dims of the data inputs as the training data has them (an LSTM's length)."""
    for vi in model.graph.input:
        shape = feed_shapes.get(vi.name)
        if shape is None or not vi.type.tensor_type.HasField("shape"):
            continue
        dims = vi.type.tensor_type.shape.dim
        if len(dims) != len(shape):
            continue
        dims[0].Clear()
        dims[0].dim_param = "batch"
        for d, n in zip(list(dims)[1:], shape[1:]):
            d.Clear()
            d.dim_value = int(n)


def _batchnorm_training(model: onnx.ModelProto, buffers: set) -> onnx.ModelProto:
    """The differentiation package's batch-statistics form of every BatchNormalization, the updated
    running statistics of ``buffers`` named ``NEW/<name>``."""
    if not any(n.op_type == "BatchNormalization" and n.domain in ("", "ai.onnx") for n in model.graph.node):
        return model
    model, updates = batchnorm_training_form(model, outputs=False)
    model.graph.node.extend(helper.make_node("Identity", [new], [NEW + stat], name=f"{NEW}{stat}.node")
                            for stat, new in updates.items() if stat in buffers)
    return model


def _dropout(node, nodes: Nodes, index: int) -> None:
    x = node.input[0]
    ratio = node.input[1] if len(node.input) > 1 and node.input[1] else nodes.const(0.5, np.float32)
    i64 = TensorProto.INT64
    n = nodes.op("Size", [x])
    idx = nodes.op("Reshape", [nodes.op("Range", [nodes.const(0, np.int64), n, nodes.const(1, np.int64)]),
                               nodes.op("Shape", [x])])
    step = nodes.op("Cast", [STEP], to=i64)
    key = nodes.op("Add", [nodes.op("Add", [SEED, nodes.op("Mul", [step, nodes.const(7919, np.int64)])]),
                           nodes.const(104729 * (index + 1), np.int64)])
    key = nodes.op("Mod", [key, nodes.const(_P, np.int64)])
    pmod = nodes.const(_P, np.int64)
    h = nodes.op("Mod", [nodes.op("Add", [nodes.op("Mul", [idx, nodes.const(48271, np.int64)]), key]), pmod])
    for c in (12345, 2718281):  # two rounds of h <- h^2 + c (mod p): consecutive indices decorrelate
        h = nodes.op("Mod", [nodes.op("Add", [nodes.op("Mul", [h, h]), nodes.const(c, np.int64)]), pmod])
    r = ratio
    threshold = nodes.op("Cast", [nodes.op("Mul", [r, nodes.const(float(_P), np.float32)])], to=i64)
    keep = nodes.op("GreaterOrEqual", [h, threshold],
                    out=node.output[1] if len(node.output) > 1 and node.output[1] else None)
    scale = nodes.op("Div", [nodes.const(1.0, np.float32), nodes.op("Sub", [nodes.const(1.0, np.float32), r])])
    mask = nodes.op("Mul", [nodes.op("Cast", [keep], to=TensorProto.FLOAT), scale])
    nodes.op("Mul", [x, mask], out=node.output[0])


def _dropout_active(node) -> bool:
    """A Dropout with a ``training_mode`` input (the builders' ``TRAINING_MODE`` switch, or any other
    value: the trainer's training graph runs in training mode) drops; one without is the identity,
    as ONNX defines it."""
    return len(node.input) > 2 and bool(node.input[2])


def _lstm(node, nodes: Nodes, info: dict) -> bool:
    """Unroll a forward LSTM whose sequence length is known into ``nodes``; False (nothing
    written) for the forms the unrolled build does not cover."""
    from onnxforge.graphs._common import GraphBuilder
    from onnxforge.graphs._lstm_unrolled import unrolled_lstm

    a = _attrs(node)
    why = None
    if a.get("direction", "forward") != "forward":
        why = f"direction={a.get('direction')}"
    elif a.get("layout", 0) or "clip" in a or a.get("input_forget", 0):
        why = "layout, clip or input_forget"
    elif [s.lower() for s in a.get("activations", ["sigmoid", "tanh", "tanh"])] != ["sigmoid", "tanh", "tanh"]:
        why = f"activations {a.get('activations')}"
    elif len(node.input) > 4 and node.input[4] or len(node.input) > 7 and node.input[7]:
        why = "sequence_lens or peepholes"
    ins = list(node.input) + [""] * (8 - len(node.input))
    x, w, r, b, h0, c0 = ins[0], ins[1], ins[2], ins[3], ins[5], ins[6]
    if why is None and bool(h0) != bool(c0):
        why = "only one of initial_h and initial_c"
    steps = (info.get(x) or [None])[0]
    if why is None and not isinstance(steps, int):
        why = "a sequence length unknown before training"
    if why:  # left as it is: the differentiation package's LSTM rule (a Scan) handles the node
        return False
    hidden = int(a["hidden_size"])
    gb = GraphBuilder()
    if not b:
        b = nodes.const(np.zeros((1, 8 * hidden), np.float32))
    y, yh, yc = unrolled_lstm(gb, nodes.prefix, x, w, r, b, hidden, steps, (h0, c0) if h0 else None)
    outs = list(node.output) + [""] * (3 - len(node.output))
    if outs[0]:
        gb.node("Unsqueeze", [y, gb.constant(f"{nodes.prefix}.axis1", np.array([1], np.int64))], [outs[0]],
                name=f"{nodes.prefix}.Y")
    for value, out in ((yh, outs[1]), (yc, outs[2])):
        if out:
            gb.node("Identity", [value], [out], name=f"{out}.identity")
    if nodes.opset >= 18:  # Split without sizes names its output count from opset 18
        for n in gb.nodes:
            if n.op_type == "Split" and len(n.input) < 2:
                n.attribute.append(helper.make_attribute("num_outputs", len(n.output)))
    nodes.nodes.extend(gb.nodes)
    nodes.initializers.extend(gb.initializers)
    return True


def _shape_info(model) -> dict:
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - without shapes only what the graph declares is known
        inferred = model
    info = {}
    for vi in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            info[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    return info


def _lstm_lengths(model, info: dict, feed_shapes: dict) -> None:
    """Sequence lengths shape inference could not tell (a reversed input, say), measured by running
    the forward once on a zero batch of ``feed_shapes`` (only when some LSTM needs it)."""
    wanted = [n.input[0] for n in model.graph.node
              if n.op_type == "LSTM" and not isinstance((info.get(n.input[0]) or [None])[0], int)]
    inputs = {i.name: i for i in model.graph.input}
    if not wanted or not feed_shapes or not set(feed_shapes) <= set(inputs):
        return
    from onnx.helper import tensor_dtype_to_np_dtype

    from onnxforge.runtime.ort.distribution import ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.ValueInfoProto(name=w) for w in wanted)
    feeds = {n: np.zeros((1, *s[1:]), tensor_dtype_to_np_dtype(inputs[n].type.tensor_type.elem_type))
             for n, s in feed_shapes.items()}
    try:
        values = ort().InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"]).run(wanted, feeds)
    except Exception:  # noqa: BLE001 - then the LSTM rule of the differentiation package takes the node
        return
    for w, v in zip(wanted, values):
        info[w] = list(v.shape)


def training_forward(model: onnx.ModelProto, params: list[str], buffers: list[str], feed_shapes: dict,
                     *, training: bool = True) -> tuple[onnx.ModelProto, bool]:
    """A copy of ``model`` (plugin functions already inlined) in training form (or evaluation form
    with ``training=False``) with ``params`` and ``buffers`` as graph inputs. Returns the model and
    whether it has an active Dropout (then it reads the ``SEED`` input it declares, and ``STEP``,
    which the caller declares)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    _params_to_inputs(out, list(params) + list(buffers))
    _fix_feed_shapes(out, feed_shapes)
    if training:
        out = _batchnorm_training(out, set(buffers))
    opset = opset_of(out)
    info = _shape_info(out) if training else {}
    if training:
        _lstm_lengths(model, info, feed_shapes)  # the model still has its initialisers
    rewritten, extra, dropouts = [], [], 0
    for k, node in enumerate(out.graph.node):
        std = node.domain in ("", "ai.onnx")
        nodes = Nodes(f"train/{node.name or k}", opset)
        if std and node.op_type == "Dropout":
            if training and _dropout_active(node):
                _dropout(node, nodes, dropouts)
                dropouts += 1
            else:
                nodes.op("Identity", [node.input[0]], out=node.output[0])
        elif not (std and node.op_type == "LSTM" and training and _lstm(node, nodes, info)):
            rewritten.append(node)
            continue
        rewritten.extend(nodes.nodes)
        extra.extend(nodes.initializers)
    del out.graph.node[:]
    out.graph.node.extend(rewritten)
    out.graph.initializer.extend(extra)
    if dropouts:  # STEP is an input of every training step (see build.py); SEED only with dropout
        out.graph.input.append(helper.make_tensor_value_info(SEED, TensorProto.INT64, []))
    return out, bool(dropouts)
