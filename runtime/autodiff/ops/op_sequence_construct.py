"""SequenceConstruct: dX_i = SequenceAt(dS, i)."""
import numpy as np

OP_TYPE = "SequenceConstruct"
NON_TENSOR = True  # reads or writes sequences of tensors


def vjp(ctx, node, dys, need):
    return [ctx.like(ctx.op("SequenceAt", [dys[0], ctx.const(np.array(i, np.int64))]), x) if n else None
            for i, (x, n) in enumerate(zip(node.input, need))]
