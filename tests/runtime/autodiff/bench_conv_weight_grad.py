"""The Conv weight-gradient formulations measured for the autodiff Conv rule, on the installed
onnxruntime, one thread (not a test; run it with each interpreter to compare runtimes):

    python tests/runtime/autodiff/bench_conv_weight_grad.py
    /work/venv313/bin/python tests/runtime/autodiff/bench_conv_weight_grad.py

Each variant computes dW [M, C, 3, 3] of a stride-1 "same" Conv from x and dY; its error is
against a float64 sum over patches. The rule uses "im2col NHWC first + MatMul (the rule)" at >= 8 input
channels (see runtime/autodiff/ops/_conv_common.py)."""
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

def ints(name, v): return numpy_helper.from_array(np.array(v, np.int64), name)

def model(nodes, inits, N, C, M, H, W, KH, KW):
    g = helper.make_graph(nodes, "wg", [helper.make_tensor_value_info("x", TP.FLOAT, [N, C, H, W]),
                                        helper.make_tensor_value_info("dy", TP.FLOAT, [N, M, H, W])],
                          [helper.make_tensor_value_info("dw", TP.FLOAT, [M, C, KH, KW])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    return m

def swapped(N, C, M, H, W, K, p):
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2, 3]),
             helper.make_node("Transpose", ["dy"], ["gt"], perm=[1, 0, 2, 3]),
             helper.make_node("Conv", ["xt", "gt"], ["w"], pads=[p] * 4),
             helper.make_node("Transpose", ["w"], ["dw"], perm=[1, 0, 2, 3])]
    return model(nodes, [], N, C, M, H, W, K, K)

def patches_nodes(K, p, H, W):
    """Pad + K*K Slices -> patches P [N, C, K*K, H, W] via Unsqueeze + Concat."""
    nodes = [helper.make_node("Pad", ["x", "pads"], ["xp"])]
    inits = [ints("pads", [0, 0, p, p, 0, 0, p, p]), ints("ax", [2, 3]), ints("u", [2])]
    outs = []
    for i in range(K):
        for j in range(K):
            s, e = f"s{i}_{j}", f"e{i}_{j}"
            inits += [ints(s, [i, j]), ints(e, [i + H, j + W])]
            nodes.append(helper.make_node("Slice", ["xp", s, e, "ax"], [f"sl{i}_{j}"]))
            nodes.append(helper.make_node("Unsqueeze", [f"sl{i}_{j}", "u"], [f"us{i}_{j}"]))
            outs.append(f"us{i}_{j}")
    nodes.append(helper.make_node("Concat", outs, ["P"], axis=2))   # [N, C, KK, H, W]
    return nodes, inits

def im2col_matmul(N, C, M, H, W, K, p):
    nodes, inits = patches_nodes(K, p, H, W)
    nodes += [helper.make_node("Transpose", ["P"], ["Pt"], perm=[0, 3, 4, 1, 2]),  # [N, H, W, C, KK]
              helper.make_node("Reshape", ["Pt", "s1"], ["P2"]),                    # [NHW, C*KK]
              helper.make_node("Transpose", ["dy"], ["gt"], perm=[1, 0, 2, 3]),     # [M, N, H, W]
              helper.make_node("Reshape", ["gt", "s2"], ["g2"]),                    # [M, NHW]
              helper.make_node("MatMul", ["g2", "P2"], ["w2"]),                     # [M, C*KK]
              helper.make_node("Reshape", ["w2", "s3"], ["dw"])]
    inits += [ints("s1", [N * H * W, C * K * K]), ints("s2", [M, N * H * W]), ints("s3", [M, C, K, K])]
    return model(nodes, inits, N, C, M, H, W, K, K)

def im2col_gemm_nchw(N, C, M, H, W, K, p):
    """P [N, C, KK, H, W] -> [N, C*KK, HW]; dy [N, M, HW]; batched MatMul dy @ P^T summed over N."""
    nodes, inits = patches_nodes(K, p, H, W)
    nodes += [helper.make_node("Reshape", ["P", "s1"], ["P3"]),                    # [N, CKK, HW]
              helper.make_node("Reshape", ["dy", "s2"], ["g3"]),                   # [N, M, HW]
              helper.make_node("Transpose", ["P3"], ["P3t"], perm=[0, 2, 1]),      # [N, HW, CKK]
              helper.make_node("MatMul", ["g3", "P3t"], ["w3"]),                   # [N, M, CKK]
              helper.make_node("ReduceSum", ["w3", "ax0"], ["w2"], keepdims=0),
              helper.make_node("Reshape", ["w2", "s3"], ["dw"])]
    inits += [ints("s1", [N, C * K * K, H * W]), ints("s2", [N, M, H * W]), ints("s3", [M, C, K, K]), ints("ax0", [0])]
    return model(nodes, inits, N, C, M, H, W, K, K)

def im2col_transposed_first(N, C, M, H, W, K, p):
    """Transpose x to [H, W, N, C]-free layout first: xt [N, H, W, C] padded; slices [N, H, W, C]
    concatenated on the last axis -> [N, H, W, KK*C] -> [NHW, KK*C]; dy^T [M, NHW]; MatMul."""
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 3, 1]),
             helper.make_node("Pad", ["xt", "pads"], ["xp"])]
    inits = [ints("pads", [0, p, p, 0, 0, p, p, 0]), ints("ax", [1, 2])]
    outs = []
    for i in range(K):
        for j in range(K):
            s, e = f"s{i}_{j}", f"e{i}_{j}"
            inits += [ints(s, [i, j]), ints(e, [i + H, j + W])]
            nodes.append(helper.make_node("Slice", ["xp", s, e, "ax"], [f"sl{i}_{j}"]))
            outs.append(f"sl{i}_{j}")
    nodes += [helper.make_node("Concat", outs, ["P"], axis=3),                      # [N, H, W, KK*C]
              helper.make_node("Reshape", ["P", "s1"], ["P2"]),
              helper.make_node("Transpose", ["dy"], ["gt"], perm=[1, 0, 2, 3]),
              helper.make_node("Reshape", ["gt", "s2"], ["g2"]),
              helper.make_node("MatMul", ["g2", "P2"], ["w2"]),                     # [M, KK*C]
              helper.make_node("Reshape", ["w2", "s3"], ["w4"]),                    # [M, K, K, C]
              helper.make_node("Transpose", ["w4"], ["dw"], perm=[0, 3, 1, 2])]
    inits += [ints("s1", [N * H * W, K * K * C]), ints("s2", [M, N * H * W]), ints("s3", [M, K, K, C])]
    return model(nodes, inits, N, C, M, H, W, K, K)

def einsum(N, C, M, H, W, K, p):
    nodes, inits = patches_nodes(K, p, H, W)
    nodes += [helper.make_node("Einsum", ["dy", "P"], ["w2"], equation="nmhw,nckhw->mck"),
              helper.make_node("Reshape", ["w2", "s3"], ["dw"])]
    inits += [ints("s3", [M, C, K, K])]
    return model(nodes, inits, N, C, M, H, W, K, K)

def forward(N, C, M, H, W, K, p):
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[p] * 4)], "f",
                          [helper.make_tensor_value_info("x", TP.FLOAT, [N, C, H, W]),
                           helper.make_tensor_value_info("w", TP.FLOAT, [M, C, K, K])],
                          [helper.make_tensor_value_info("y", TP.FLOAT, [N, M, H, W])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m

VARIANTS = {"Conv over swapped axes": swapped, "im2col Slice/Concat + MatMul": im2col_matmul,
            "im2col NHWC first + MatMul (the rule)": im2col_transposed_first,
            "im2col + batched MatMul + ReduceSum": im2col_gemm_nchw, "im2col + Einsum": einsum}

def reference(x, dy, K, p):
    N, C, H, W = x.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (p, p), (p, p)))
    dw = np.zeros((dy.shape[1], C, K, K))
    for i in range(K):
        for j in range(K):
            dw[:, :, i, j] = np.einsum("nmhw,nchw->mc", dy, xp[:, :, i:i + H, j:j + W])
    return dw

def timeit(sess, feeds, reps):
    for _ in range(20):
        sess.run(None, feeds)
    best = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(reps):
            sess.run(None, feeds)
        best.append((time.perf_counter() - t) / reps)
    return min(best) * 1e6

def main():
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    rng = np.random.default_rng(0)
    print(f"onnxruntime {ort.__version__}, one thread; best of 5 runs, microseconds per call")
    for (N, C, M, H, W) in [(64, 16, 32, 4, 4), (64, 1, 16, 8, 8)]:
        K, p = 3, 1
        x = rng.standard_normal((N, C, H, W)).astype(np.float32)
        dy = rng.standard_normal((N, M, H, W)).astype(np.float32)
        ref = reference(x, dy, K, p)
        wt = rng.standard_normal((M, C, K, K)).astype(np.float32)
        fs = ort.InferenceSession(forward(N, C, M, H, W, K, p).SerializeToString(), so, providers=["CPUExecutionProvider"])
        print(f"layer {C}->{M} on {H}x{W}, batch {N}: forward Conv {timeit(fs, {'x': x, 'w': wt}, 300):.0f}")
        for name, build in VARIANTS.items():
            s = ort.InferenceSession(build(N, C, M, H, W, K, p).SerializeToString(), so, providers=["CPUExecutionProvider"])
            out = s.run(None, {"x": x, "dy": dy})[0]
            err = np.abs(out - ref).max() / max(1.0, np.abs(ref).max())
            print(f"  {name:40s} {timeit(s, {'x': x, 'dy': dy}, 300):7.0f}   rel err {err:.1e}")


if __name__ == "__main__":
    main()
