"""Every rule against PyTorch autograd on the same values: random shapes, broadcasting and
attribute variants, a random cotangent dY, with static and run-time-only (symbolic) shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _autodiff_check import assert_close, gradients, single_op_model

pytestmark = pytest.mark.torch
R = np.random.default_rng(0)


def f32(*shape, lo=-2.0, hi=2.0):
    return R.uniform(lo, hi, shape).astype(np.float32)


def pos(*shape):
    return R.uniform(0.5, 2.0, shape).astype(np.float32)


def i64(values):
    return np.array(values, np.int64)


def gemm_ref(alpha=1.0, beta=1.0, transA=0, transB=0):
    def f(a, b, c=None):
        a = a.T if transA else a
        b = b.T if transB else b
        y = alpha * (a @ b)
        return y if c is None else y + beta * c
    return f


def reduce_ref(fn, axes, keepdims=1):
    def f(x, *_):
        if axes is None:
            return fn(x, dim=tuple(range(x.dim())), keepdim=bool(keepdims))
        return fn(x, dim=tuple(axes), keepdim=bool(keepdims))
    return f


# (id, op, inputs {name: array}, consts (names given as initialisers), attrs, torch fn, opset)
CASES = []


def case(id_, op, inputs, fn, consts=(), opset=17, n_out=1, out_index=0, **attrs):
    CASES.append(pytest.param(op, inputs, fn, set(consts), opset, n_out, out_index, attrs, id=id_))


for ta in (0, 1):
    for tb in (0, 1):
        for cshape in ((3, 5), (5,), (1, 5), (3, 1), ()):
            a = f32(4, 3) if ta else f32(3, 4)
            b = f32(5, 4) if tb else f32(4, 5)
            case(f"gemm-tA{ta}-tB{tb}-C{cshape}", "Gemm", {"A": a, "B": b, "C": f32(*cshape)},
                 gemm_ref(0.7, 1.3, ta, tb), alpha=0.7, beta=1.3, transA=ta, transB=tb)
case("gemm-noC", "Gemm", {"A": f32(3, 4), "B": f32(5, 4)}, gemm_ref(transB=1), transB=1)

for sa, sb in [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)),
               ((2, 1, 3, 4), (3, 4, 5)), ((5, 3, 4), (5, 4, 2)), ((3, 4), (2, 4, 5)), ((2, 3, 4), (4,)),
               ((4,), (2, 4, 3))]:
    case(f"matmul-{sa}x{sb}", "MatMul", {"A": f32(*sa), "B": f32(*sb)}, torch.matmul)

BCAST = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 3, 1), (1, 4)), ((3, 1), (1,)), ((), (2, 3)), ((2, 1, 4), (3, 1))]
for sa, sb in BCAST:
    case(f"add-{sa}-{sb}", "Add", {"A": f32(*sa), "B": f32(*sb)}, torch.add)
    case(f"sub-{sa}-{sb}", "Sub", {"A": f32(*sa), "B": f32(*sb)}, torch.sub)
    case(f"mul-{sa}-{sb}", "Mul", {"A": f32(*sa), "B": f32(*sb)}, torch.mul)
    case(f"div-{sa}-{sb}", "Div", {"A": f32(*sa), "B": pos(*sb)}, torch.div)
    case(f"pow-{sa}-{sb}", "Pow", {"A": pos(*sa), "B": f32(*sb)}, torch.pow)
case("pow-square-const", "Pow", {"A": f32(3, 4), "B": np.array(2.0, np.float32)}, torch.pow, consts=["B"])
case("sum-3", "Sum", {"A": f32(3, 4), "B": f32(4), "C": f32(3, 1)}, lambda a, b, c: a + b + c)

UNARY = {
    "Neg": (torch.neg, f32), "Abs": (torch.abs, f32), "Exp": (torch.exp, f32), "Log": (torch.log, pos),
    "Sqrt": (torch.sqrt, pos), "Reciprocal": (torch.reciprocal, pos), "Erf": (torch.erf, f32),
    "Relu": (torch.relu, f32), "Sigmoid": (torch.sigmoid, f32), "Tanh": (torch.tanh, f32),
    "Softplus": (F.softplus, f32), "Identity": (lambda x: x * 1, f32),
}
for op, (fn, gen) in UNARY.items():
    case(op.lower(), op, {"X": gen(3, 5)}, fn)
# exact zeros (and negative zeros) take no gradient, as in PyTorch's threshold_backward
case("relu-zeros", "Relu", {"X": np.array([[0.0, -0.0, 1.5, -2.0, 0.0], [3.0, 0.0, -0.0, -1e-30, 1e-30]], np.float32)},
     torch.relu)
case("leaky_relu", "LeakyRelu", {"X": f32(3, 5)}, lambda x: F.leaky_relu(x, 0.1), alpha=0.1)
case("leaky_relu-default", "LeakyRelu", {"X": f32(3, 5)}, lambda x: F.leaky_relu(x, 0.01))
for axis in (-1, 0, 1):
    case(f"softmax-axis{axis}", "Softmax", {"X": f32(2, 3, 4)}, lambda x, a=axis: torch.softmax(x, a), axis=axis)
    case(f"log_softmax-axis{axis}", "LogSoftmax", {"X": f32(2, 3, 4)},
         lambda x, a=axis: torch.log_softmax(x, a), axis=axis)
case("softmax-default", "Softmax", {"X": f32(3, 4)}, lambda x: torch.softmax(x, -1))

case("gather-embedding", "Gather", {"X": f32(6, 4), "I": i64([[0, 2, 2], [5, 0, 1]])},
     lambda x, i: x[i], consts=["I"])
case("gather-negative", "Gather", {"X": f32(6, 4), "I": i64([-1, 2, -1])}, lambda x, i: x[i % 6], consts=["I"])
case("gather-axis1", "Gather", {"X": f32(3, 5, 2), "I": i64([[4, 0], [4, 1]])},
     lambda x, i: x[:, i], consts=["I"], axis=1)
case("gather-axis-1-scalar", "Gather", {"X": f32(3, 5), "I": np.array(-2, np.int64)},
     lambda x, i: x[:, -2], consts=["I"], axis=-1)

case("concat-axis1", "Concat", {"A": f32(2, 3), "B": f32(2, 1), "C": f32(2, 4)},
     lambda a, b, c: torch.cat([a, b, c], 1), axis=1)
case("concat-axis-1", "Concat", {"A": f32(2, 3, 2), "B": f32(2, 3, 3)}, lambda a, b: torch.cat([a, b], -1), axis=-1)
case("split-sizes", "Split", {"X": f32(2, 7), "S": i64([3, 4])},
     lambda x, s: torch.split(x, [3, 4], 1)[1], consts=["S"], n_out=2, out_index=1, axis=1)
case("split-num-outputs", "Split", {"X": f32(6, 2)}, lambda x: torch.split(x, 2, 0)[2], opset=18, n_out=3,
     out_index=2, num_outputs=3)
case("split-equal-13", "Split", {"X": f32(4, 3)}, lambda x: torch.split(x, 2, 0)[0], n_out=2, out_index=0)


def slice_ref(starts, ends, axes, steps):
    def f(x, *_):
        xs = x.detach().numpy()
        idx = [slice(None)] * x.dim()
        for s, e, a, st in zip(starts, ends, axes, steps):
            idx[a] = slice(s, e, st)
        sel = np.arange(xs.size).reshape(xs.shape)[tuple(idx)]
        return x.reshape(-1)[torch.from_numpy(sel.copy()).reshape(-1)].reshape(sel.shape)
    return f


for st, en, ax, sp in [([1], [3], [1], [1]), ([0, -3], [2, 100], [0, 1], [1, 1]), ([4], [0], [1], [-1]),
                       ([-1], [-100], [0], [-2]), ([0], [5], [-1], [2])]:
    case(f"slice-{st}-{en}-{ax}-{sp}", "Slice",
         {"X": f32(3, 5), "s": i64(st), "e": i64(en), "a": i64(ax), "p": i64(sp)},
         slice_ref(st, en, ax, sp), consts=["s", "e", "a", "p"])

case("reshape", "Reshape", {"X": f32(2, 3, 4), "S": i64([4, -1])}, lambda x, s: x.reshape(4, -1), consts=["S"])
case("flatten-axis2", "Flatten", {"X": f32(2, 3, 4)}, lambda x: x.reshape(6, 4), axis=2)
case("transpose-perm", "Transpose", {"X": f32(2, 3, 4)}, lambda x: x.permute(2, 0, 1), perm=[2, 0, 1])
case("transpose-default", "Transpose", {"X": f32(2, 3, 4)}, lambda x: x.permute(2, 1, 0))
case("squeeze", "Squeeze", {"X": f32(2, 1, 3), "A": i64([1])}, lambda x, a: x.squeeze(1), consts=["A"])
case("unsqueeze", "Unsqueeze", {"X": f32(2, 3), "A": i64([0, -1])},
     lambda x, a: x[None, ..., None], consts=["A"])
case("expand", "Expand", {"X": f32(3, 1), "S": i64([2, 3, 4])}, lambda x, s: x.expand(2, 3, 4), consts=["S"])

for axes, kd in [([1], 1), ([0, 2], 0), ([-1], 0), (None, 0), (None, 1)]:
    ins = {"X": f32(2, 3, 4)}
    consts = []
    if axes is not None:
        ins["A"] = i64(axes)
        consts = ["A"]
    case(f"reduce_sum-{axes}-{kd}", "ReduceSum", ins, reduce_ref(torch.sum, axes, kd), consts=consts, keepdims=kd)
    case(f"reduce_mean18-{axes}-{kd}", "ReduceMean", dict(ins), reduce_ref(torch.mean, axes, kd), consts=consts,
         opset=18, keepdims=kd)
    attrs = {"keepdims": kd} if axes is None else {"keepdims": kd, "axes": axes}
    case(f"reduce_mean17-{axes}-{kd}", "ReduceMean", {"X": f32(2, 3, 4)}, reduce_ref(torch.mean, axes, kd), **attrs)

case("where", "Where", {"C": R.random((3, 4)) > 0.5, "X": f32(3, 4), "Y": f32(4)},
     lambda c, x, y: torch.where(c, x, y), consts=["C"])
case("where-bcast", "Where", {"C": R.random((1, 4)) > 0.5, "X": f32(3, 1), "Y": f32(3, 4)},
     lambda c, x, y: torch.where(c, x, y), consts=["C"])
case("cast-double", "Cast", {"X": f32(3, 4)}, lambda x: x.double(), to=11)
case("clip", "Clip", {"X": f32(3, 4), "lo": np.array(-0.5, np.float32), "hi": np.array(0.7, np.float32)},
     lambda x, lo, hi: torch.clamp(x, lo, hi))
case("clip-min-only", "Clip", {"X": f32(3, 4), "lo": np.array(-0.5, np.float32)}, lambda x, lo: torch.clamp(x, lo))
tie = f32(3, 4)
tie2 = tie.copy()
tie2[0] = tie[0]
tie2[1:] = f32(2, 4)
case("max-ties", "Max", {"A": tie, "B": tie2}, torch.maximum)
case("min-ties", "Min", {"A": tie, "B": tie2}, torch.minimum)
case("max-bcast", "Max", {"A": f32(3, 4), "B": f32(4)}, torch.maximum)
case("min-bcast", "Min", {"A": f32(3, 1), "B": f32(1, 4)}, torch.minimum)


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("op,inputs,fn,consts,opset,n_out,out_index,attrs", CASES)
def test_rule_matches_torch(op, inputs, fn, consts, opset, n_out, out_index, attrs, dynamic):
    model = single_op_model(op, inputs, n_out, opset=opset, dynamic=dynamic, const_inputs=dict.fromkeys(consts), **attrs)
    for init in model.graph.initializer:
        init.CopyFrom(__import__("onnx").numpy_helper.from_array(np.asarray(inputs[init.name]), init.name))
    wrt = [n for n, v in inputs.items() if n not in consts and np.asarray(v).dtype.kind == "f"]
    tens = {n: torch.tensor(np.asarray(v, np.float64) if np.asarray(v).dtype.kind == "f" else np.asarray(v),
                            requires_grad=n in wrt) for n, v in inputs.items()}
    y = fn(*tens.values())
    dy = R.standard_normal(tuple(y.shape)).astype(np.float32)
    if op == "Cast":
        dy = dy.astype(np.float64)
    y.backward(torch.tensor(dy, dtype=y.dtype))
    feeds = {n: v for n, v in inputs.items() if n not in consts}
    feeds["dY"] = dy
    got, out, _ = gradients(model, wrt, f"y{out_index}", feeds, seed="dY")
    assert_close(out[f"y{out_index}"], y.detach().numpy(), what=f"{op} forward")
    for n in wrt:
        assert_close(got[n], tens[n].grad.numpy(), what=f"{op} d{n}")
