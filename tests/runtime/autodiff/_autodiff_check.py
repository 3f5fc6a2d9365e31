"""Helpers of the autodiff tests: single-op models, running a gradient model in ONNX Runtime and
in onnx.reference (both must agree), and comparing with a reference within the issue's bound."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from onnxforge.runtime.autodiff import gradient_model

TOL = 1e-5


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


def gradients(model, wrt, of, feeds, *, seed=None, check=True, both=True, tol=TOL):
    """Build the gradient model, check it (full), run it; ``{name: grad}`` and all outputs."""
    g = gradient_model(model, wrt, of, seed=seed)
    if check:
        onnx.checker.check_model(g, full_check=True)
    assert all(n.domain in ("", "ai.onnx") for n in g.graph.node)
    out = run_both(g, feeds, tol) if both else run_ort(g, feeds)
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


def central_difference(f, x: np.ndarray, dy: np.ndarray, eps=1e-6):
    """d(sum(f(x) * dy))/dx in float64 by central differences."""
    x = np.array(x, np.float64)
    g = np.zeros_like(x)
    flat = x.reshape(-1)
    gf = g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = np.sum(f(x) * dy)
        flat[i] = old - eps
        fm = np.sum(f(x) * dy)
        flat[i] = old
        gf[i] = (fp - fm) / (2 * eps)
    return g
