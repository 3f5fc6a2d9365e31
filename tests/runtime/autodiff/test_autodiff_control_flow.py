"""Control flow (If, Loop, Scan): gradients by central differences in float64 (onnx.reference),
the gradient model also run by ONNX Runtime and compared; outer values read by the subgraphs get
their gradients; forms not covered are refused up front naming the node."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from _autodiff_check import assert_close, fd_check, run_ort, run_ref
from onnxforge.runtime.autodiff import UnsupportedOpError, gradient_model

R = np.random.default_rng(5)
D = TensorProto.DOUBLE
F = TensorProto.FLOAT


def vi(name, dims, elem=D):
    return helper.make_tensor_value_info(name, elem, dims)


def model(nodes, inputs, out_dims, inits=(), opset=18):
    g = helper.make_graph(nodes, "cf", inputs, [vi("y", out_dims)], list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def check(m, feeds, wrt, *, ort=True):
    """Central differences (float64, onnx.reference) and ONNX Runtime equal to onnx.reference."""
    fd_check(m, feeds, wrt, "y", rng=R)
    if ort:
        g = gradient_model(m, wrt, "y")
        onnx.checker.check_model(g, full_check=True)
        a, b = run_ort(g, feeds), run_ref(g, feeds)
        for w in wrt:
            assert_close(a[f"{w}_grad"], b[f"{w}_grad"], 1e-9, what=f"{w}: ORT vs reference")


def branch(nodes, out, dims=("N", 3)):
    return helper.make_graph(nodes, "b", [], [vi(out, list(dims))])


def if_model():
    """cond from floats (sum of x > 0); then: x * w; else: tanh(x) + b, with a nested If."""
    inner_then = branch([helper.make_node("Add", ["tx", "b"], ["e1"])], "e1")
    inner_else = branch([helper.make_node("Sub", ["tx", "b"], ["e2"])], "e2")
    then = branch([helper.make_node("Mul", ["x", "w"], ["t"])], "t")
    other = branch([helper.make_node("Tanh", ["x"], ["tx"]),
                    helper.make_node("If", ["c2"], ["e"], then_branch=inner_then, else_branch=inner_else)], "e")
    nodes = [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
             helper.make_node("Greater", ["s", "zero"], ["c"]),
             helper.make_node("ReduceSum", ["b"], ["bm"], keepdims=0),
             helper.make_node("Greater", ["bm", "zero"], ["c2"]),
             helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)]
    return model(nodes, [vi("x", ["N", 3]), vi("w", [3]), vi("b", [3])], ["N", 3],
                 [numpy_helper.from_array(np.array(0.0), "zero")])


@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("bsign", [1, -1])
def test_if_both_branches_and_nested_with_outer_values(sign, bsign):
    x = np.abs(R.standard_normal((2, 3))) * sign
    feeds = {"x": x, "w": R.standard_normal(3), "b": np.abs(R.standard_normal(3)) * bsign}
    check(if_model(), feeds, ["x", "w", "b"])


def loop_model(with_cond=True, with_trips=True):
    """h <- tanh(h * w + b) while sum(h) < limit (a break computed from floats) for at most M
    steps, counting steps in an int carried value; scans h*h; y = h_final * (sum(scans) + 1) + count."""
    body_nodes = [helper.make_node("Mul", ["h", "w"], ["hw"]),
                  helper.make_node("Add", ["hw", "b"], ["pre"]),
                  helper.make_node("Tanh", ["pre"], ["h2"]),
                  helper.make_node("Add", ["c", "one"], ["c2"]),
                  helper.make_node("ReduceSum", ["h2"], ["hs"], keepdims=0),
                  helper.make_node("Less", ["hs", "limit"], ["go"]),
                  helper.make_node("Mul", ["h2", "h2"], ["sq"])]
    body = helper.make_graph(body_nodes, "body", [vi("i", [], TensorProto.INT64), vi("cond_in", [], TensorProto.BOOL),
                                                  vi("h", [3]), vi("c", [], TensorProto.INT64)],
                             [vi("go", [], TensorProto.BOOL), vi("h2", [3]), vi("c2", [], TensorProto.INT64),
                              vi("sq", [3])])
    nodes = [helper.make_node("Loop", ["M" if with_trips else "", "start" if with_cond else "", "h0", "zero_i"],
                              ["hf", "count", "scans"], body=body),
             helper.make_node("ReduceSum", ["scans", "axis0"], ["ssum"], keepdims=0),
             helper.make_node("Mul", ["hf", "ssum"], ["p"]),
             helper.make_node("Cast", ["count"], ["cf"], to=D),
             helper.make_node("Add", ["p", "hf"], ["ph"]),
             helper.make_node("Add", ["ph", "cf"], ["y"])]
    inits = [numpy_helper.from_array(np.array(1, np.int64), "one"), numpy_helper.from_array(np.array(0, np.int64), "zero_i"),
             numpy_helper.from_array(np.array([0], np.int64), "axis0"), numpy_helper.from_array(np.array(True), "start")]
    inputs = [vi("h0", [3]), vi("w", [3]), vi("b", [3]), vi("limit", [])]
    if with_trips:
        inputs.append(vi("M", [], TensorProto.INT64))
    return model(nodes, inputs, [3], inits)


@pytest.mark.parametrize("trips,limit", [(4, 10.0), (6, 1.2), (1, 10.0)])
def test_loop_with_float_break_carried_values_scans_and_outer_values(trips, limit):
    feeds = {"h0": R.standard_normal(3) * 0.5, "w": R.standard_normal(3), "b": R.uniform(0.2, 0.6, 3),
             "limit": np.array(limit), "M": np.array(trips, np.int64)}
    check(loop_model(), feeds, ["h0", "w", "b"])


def test_while_loop_without_trip_count():
    # h climbs from -0.5 to tanh's fixed point (about 0.75 each, sum 2.2): the loop stops past 1.5
    feeds = {"h0": np.full(3, -0.5), "w": R.uniform(0.6, 0.9, 3), "b": R.uniform(0.35, 0.45, 3),
             "limit": np.array(1.5)}
    check(loop_model(with_trips=False), feeds, ["h0", "w", "b"])


def test_zero_trip_loop_by_onnx_runtime():
    """No iteration: h_final = h0 and no scans (onnx.reference cannot run a zero-trip Loop with
    scan outputs, so ONNX Runtime alone, against the closed form: y = h0, dh0 = dY, dw = db = 0)."""
    m = loop_model()
    g = gradient_model(m, ["h0", "w", "b"], "y", seed="dY")
    dy = R.standard_normal(3)
    feeds = {"h0": R.standard_normal(3), "w": R.standard_normal(3), "b": R.standard_normal(3),
             "limit": np.array(1.0), "M": np.array(0, np.int64), "dY": dy}
    out = run_ort(g, feeds)
    assert_close(out["y"], feeds["h0"], 1e-12, what="zero-trip forward")
    assert_close(out["h0_grad"], dy, 1e-12, what="zero-trip dh0")
    for w in ("w", "b"):
        assert_close(out[f"{w}_grad"], np.zeros(3), 1e-12, what=f"zero-trip d{w}")


def scan_model(in_axis=0, in_dir=0, out_axis=0, out_dir=0):
    """An RNN cell as a Scan: h <- tanh(h * w + x_t) over x [T, 3] (or [3, T] with in_axis=1),
    scanning out h * v (v read from outside); y = h_final * sum over T of the scans."""
    body = helper.make_graph([helper.make_node("Mul", ["h", "w"], ["hw"]),
                              helper.make_node("Add", ["hw", "xt"], ["pre"]),
                              helper.make_node("Tanh", ["pre"], ["h2"]),
                              helper.make_node("Mul", ["h2", "v"], ["out"])], "body",
                             [vi("h", [3]), vi("xt", [3])], [vi("h2", [3]), vi("out", [3])])
    attrs = {}
    if (in_axis, in_dir, out_axis, out_dir) != (0, 0, 0, 0):
        attrs = dict(scan_input_axes=[in_axis], scan_input_directions=[in_dir], scan_output_axes=[out_axis],
                     scan_output_directions=[out_dir])
    nodes = [helper.make_node("Scan", ["h0", "x"], ["hf", "outs"], body=body, num_scan_inputs=1, **attrs),
             helper.make_node("ReduceSum", ["outs", "axis"], ["osum"], keepdims=0),
             helper.make_node("Mul", ["hf", "osum"], ["y"])]
    x_dims = ["T", 3] if in_axis == 0 else [3, "T"]
    return model(nodes, [vi("h0", [3]), vi("x", x_dims), vi("w", [3]), vi("v", [3])], [3],
                 [numpy_helper.from_array(np.array([out_axis], np.int64), "axis")])


def scan_feeds(in_axis=0, steps=4):
    x = R.standard_normal((steps, 3)) * 0.5
    return {"h0": R.standard_normal(3) * 0.5, "x": x if in_axis == 0 else x.T.copy(), "w": R.standard_normal(3),
            "v": R.standard_normal(3)}


def test_scan_states_scan_inputs_and_outer_values():
    check(scan_model(), scan_feeds(), ["h0", "x", "w", "v"])


def _ort_fd(m, feeds, wrt, eps=1e-6):
    """Central differences with ONNX Runtime in float64 (onnx.reference's Scan has only axis 0
    and direction 0), against the gradient model run by ONNX Runtime."""
    dy = R.standard_normal(run_ort(m, feeds)["y"].shape)
    got = run_ort(gradient_model(m, wrt, "y", seed="dY"), {**feeds, "dY": dy})
    for w in wrt:
        num = np.zeros_like(feeds[w])
        for idx in np.ndindex(*feeds[w].shape):
            vals = []
            for sign in (1, -1):
                x = feeds[w].copy()
                x[idx] += sign * eps
                vals.append(float(np.sum(run_ort(m, {**feeds, w: x})["y"] * dy)))
            num[idx] = (vals[0] - vals[1]) / (2 * eps)
        assert_close(got[f"{w}_grad"], num, 1e-6, what=f"d{w} (central differences, ONNX Runtime)")


@pytest.mark.parametrize("in_axis,in_dir,out_axis,out_dir", [(1, 1, 0, 1), (0, 1, 1, 0), (1, 0, 1, 1)])
def test_scan_with_reversed_and_transposed_inputs_and_outputs(in_axis, in_dir, out_axis, out_dir):
    _ort_fd(scan_model(in_axis, in_dir, out_axis, out_dir), scan_feeds(in_axis), ["h0", "x", "w", "v"])


def test_uncovered_ops_in_subgraphs_are_refused_up_front_naming_both_nodes():
    """A Loop whose body uses an op with no rule on the path: refused by missing_rules and by
    the build, naming the Loop and the op inside it; an op without a rule off the path is fine."""
    from onnxforge.runtime.autodiff import missing_rules

    m = loop_model()
    body = m.graph.node[0].attribute[0].g
    body.node[2].op_type = "Foo"  # h2 = Foo(pre) (no rule: an unknown op in the default domain)
    body.node[2].name = "the_foo"
    m.graph.node[0].name = "the_loop"
    found = missing_rules(m, ["h0", "w", "b"], "y", reasons=True)
    assert found and found[0][:2] == ("Loop", "the_loop") and "Foo" in found[0][2] and "the_foo" in found[0][2]
    with pytest.raises(UnsupportedOpError, match=r"'Loop' \(node 'the_loop'.*'Foo' \(node 'the_foo'\)"):
        gradient_model(m, ["h0", "w", "b"], "y")
    m = if_model()
    other = m.graph.node[-1].attribute[1].g  # the else branch: a Foo whose result nothing uses
    other.node.append(helper.make_node("Foo", ["x"], ["unused"]))
    g = gradient_model(m, ["x", "w", "b"], "y")
    backward = [n for n in g.graph.node if n.op_type == "If" and n.name.startswith("grad/")]
    assert backward and not any(b.op_type == "Foo" for n in backward for a in n.attribute for b in a.g.node)


def test_if_branches_passing_outer_values_through():
    """then: a (no node; ONNX's checker rejects the form, onnx.reference runs it), else: b * b: the
    value passed through is read by the If and gets its gradient (it was taken for a constant)."""
    then = helper.make_graph([], "then", [], [vi("a", ["N"])])
    other = branch([helper.make_node("Mul", ["b", "b"], ["bb"])], "bb", dims=["N"])
    nodes = [helper.make_node("ReduceSum", ["b"], ["s"], keepdims=0),
             helper.make_node("Greater", ["s", "zero"], ["c"]),
             helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)]
    m = model(nodes, [vi("a", ["N"]), vi("b", ["N"])], ["N"], [numpy_helper.from_array(np.array(0.0), "zero")])
    g = gradient_model(m, ["a", "b"], "y")
    a, b = R.standard_normal(3), np.abs(R.standard_normal(3))
    out = run_ref(g, {"a": a, "b": b})  # y = a
    assert_close(out["a_grad"], np.ones(3), 1e-12, what="then: da")
    assert_close(out["b_grad"], np.zeros(3), 1e-12, what="then: db")
    out = run_ref(g, {"a": a, "b": -b})  # y = b * b
    assert_close(out["a_grad"], np.zeros(3), 1e-12, what="else: da")
    assert_close(out["b_grad"], -2 * b, 1e-12, what="else: db")
