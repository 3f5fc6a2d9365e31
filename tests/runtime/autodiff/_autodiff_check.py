"""Helpers of the autodiff tests: single-op models, running a gradient model in ONNX Runtime and
in onnx.reference (both must agree), and comparing with a reference within the issue's bound."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

from onnxforge.runtime.autodiff import gradient_model
from onnxforge.runtime.passes.precision import to_float64

TOL = 1e-5


def graph_model(nodes, inputs, outputs, inits=(), opset=17) -> onnx.ModelProto:
    """A model of ``nodes`` (IR 8, the default domain at ``opset``)."""
    g = helper.make_graph(nodes, "m", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def vi(name, dims, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, dims)


def single_op_model(op_type, inputs: dict, n_out=1, *, opset=17, dynamic=False, const_inputs=None, **attrs):
    """A model of one node; float inputs become graph inputs (symbolic dims when ``dynamic``),
    ``const_inputs`` (name -> array, e.g. shapes, indices) become initialisers."""
    const_inputs = const_inputs or {}
    order = list(inputs)
    names = ["" if not n.strip() else n for n in order]  # blank keys: absent optional inputs
    graph_inputs = []
    inits = []
    for n in names:
        if n == "":
            continue
        v = inputs[n]
        if n in const_inputs:
            inits.append(onnx.numpy_helper.from_array(np.asarray(v), n))
            continue
        elem = helper.np_dtype_to_tensor_dtype(np.asarray(v).dtype)
        dims = list(np.shape(v))
        if dynamic == "batch" and dims and n == order[0]:
            dims[0] = "N"
        elif dynamic and dynamic != "batch":
            dims = [f"{n}_d{i}" for i in range(np.ndim(v))]
        graph_inputs.append(helper.make_tensor_value_info(n, elem, dims))
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op_type, names, outs, name="the_node", **attrs)
    graph = helper.make_graph([node], "t", graph_inputs,
                              [helper.make_value_info(o, onnx.TypeProto()) for o in outs], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    m = onnx.shape_inference.infer_shapes(m)
    # declare outputs with inferred types (rank kept, dims dropped when dynamic)
    vi = {v.name: v for v in m.graph.value_info}
    for o in m.graph.output:
        if o.name in vi:
            o.CopyFrom(vi[o.name])
        elif not o.type.HasField("tensor_type") and o.name == outs[0] and graph_inputs:
            # ops ONNX infers no type for (GroupNormalization-21): the first input's type and shape
            o.type.CopyFrom(graph_inputs[0].type)
    return m


def run_ort(model, feeds):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds)))


def run_ref(model, feeds):
    ref = ReferenceEvaluator(model)
    return dict(zip(ref.output_names, ref.run(None, feeds)))


def run_both(model, feeds, tol=TOL):
    """ORT's and onnx.reference's outputs, checked equal; returns ORT's."""
    a = run_ort(model, feeds)
    b = run_ref(model, feeds)
    for k in a:
        assert_close(a[k], b[k], tol, what=f"{k}: ORT vs ReferenceEvaluator")
    return a


def gradients(model, wrt, of, feeds, *, seed=None, check=True, both=True, tol=TOL, reference_only=False):
    """Build the gradient model, check it (full), run it (ORT and onnx.reference, checked equal;
    ORT alone unless ``both``; onnx.reference alone with ``reference_only``); ``{name: grad}``
    and all outputs."""
    g = gradient_model(model, wrt, of, seed=seed)
    if check:
        onnx.checker.check_model(g, full_check=True)
    assert all(n.domain in ("", "ai.onnx") for n in g.graph.node)
    out = run_ref(g, feeds) if reference_only else run_both(g, feeds, tol) if both else run_ort(g, feeds)
    return {w: out[f"{w}_grad"] for w in wrt}, out, g


def max_err(actual, expected):
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    if actual.size == 0:
        return 0.0
    return float(np.max(np.abs(actual - expected) / np.maximum(1.0, np.abs(expected))))


ERRORS: dict[str, float] = {}


def assert_close(actual, expected, tol=TOL, what=""):
    err = max_err(actual, expected)
    key = what.split(":")[0] if what else "?"
    ERRORS[key] = max(ERRORS.get(key, 0.0), err)
    assert err <= tol, f"{what}: max error {err:.3g} > {tol:g}"
    return err


def to_double(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with its local functions inlined, in float64 (runtime.passes.precision.to_float64),
    for central differences."""
    from onnx import inliner

    return to_float64(inliner.inline_local_functions(model) if model.functions else model)


def params_as_inputs(model: onnx.ModelProto, names) -> onnx.ModelProto:
    """A copy of ``model`` whose initialisers ``names`` are graph inputs instead (to be fed)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    keep = [t for t in m.graph.initializer if t.name not in names]
    moved = [t for t in m.graph.initializer if t.name in names]
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep)
    for t in moved:
        m.graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    return m


def _erf64(self, x):
    return (np.vectorize(math.erf, otypes=[x.dtype])(x),)


# Erf in float64 for onnx.reference (its own computes in float32, too coarse for central
# differences); new_ops keys by class name, so the class is called Erf.
_Erf64 = type("Erf", (OpRun,), {"op_domain": "", "_run": _erf64})


def fd_check(model, feeds, wrt, of, *, rng, coords=None, eps=1e-6, tol=TOL, what=""):
    """In float64 (``model`` converted): the dY-weighted gradients of ``of`` w.r.t. ``wrt`` (graph
    inputs or initialisers) run by onnx.reference equal central differences of the forward on
    ``coords`` random coordinates per name (all of them when None). Returns the largest error."""
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    m = params_as_inputs(to_double(model), [w for w in wrt if w in inits])
    feeds = {k: (v.astype(np.float64) if v.dtype.kind == "f" else v) for k, v in feeds.items()}
    feeds.update({w: inits[w].astype(np.float64) for w in wrt if w in inits})
    fwd = ReferenceEvaluator(m, new_ops=[_Erf64])
    y = fwd.run([of], feeds)[0]
    dy = rng.standard_normal(np.shape(y))
    g = gradient_model(m, wrt, of, seed="dY")
    onnx.checker.check_model(g, full_check=True)
    ref = ReferenceEvaluator(g, new_ops=[_Erf64])
    got = dict(zip(ref.output_names, ref.run(None, {**feeds, "dY": dy})))
    worst = 0.0
    for w in wrt:
        x = feeds[w]
        flat = range(x.size) if coords is None else rng.choice(x.size, min(coords, x.size), replace=False)
        for i in flat:
            idx = np.unravel_index(int(i), x.shape)
            vals = []
            for sign in (1, -1):
                xv = x.copy()
                xv[idx] += sign * eps
                vals.append(float(np.sum(fwd.run([of], {**feeds, w: xv})[0] * dy)))
            fd = (vals[0] - vals[1]) / (2 * eps)
            worst = max(worst, assert_close(np.array(got[f"{w}_grad"][idx]), np.array(fd), tol,
                                            what=f"{what or of} d{w}{list(idx)} (central differences)"))
    return worst
