"""The shared rule of ReduceMax and ReduceMin: dY goes to the elements equal to the result,
split evenly between ties (PyTorch's amax/amin)."""
from onnxforge.runtime.autodiff.ops import _reduce
from onnxforge.runtime.autodiff.ops.op_reduce_prod import _same


def vjp(ctx, node, dys, need):
    def local(x, yk):
        hit = ctx.op("Cast", [ctx.op("Equal", [x, yk])], to=ctx.elem(x))
        return ctx.op("Div", [hit, _same(ctx, node, "ReduceSum", hit)])
    return _reduce.elementwise(ctx, node, dys, local)
