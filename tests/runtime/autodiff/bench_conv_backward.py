"""The Conv backward formulations measured for the autodiff Conv rule (not a test): per case, the
general form (ConvTranspose for dX, a Conv over swapped axes for dW, runtime/autodiff/ops/
_conv_common.py) against the shape-chosen ones of runtime/autodiff/ops/_conv_grad.py, each an
ONNX Runtime session of the nodes the functions emit, alternating rounds, one thread; outputs
checked equal to the first contestant's. Run pinned, and write the load beside the numbers:

    taskset -c 0 .venv/bin/python tests/runtime/autodiff/bench_conv_backward.py [--quick]
"""
import os
import statistics
import sys
import time

import numpy as np
from onnx import TensorProto, helper

from onnxforge.runtime.autodiff._emitter import Emitter
from onnxforge.runtime.autodiff.ops import _conv_common as cc
from onnxforge.runtime.autodiff.ops import _conv_grad as fg
from onnxforge.runtime.ort.distribution import ort

# (name, N, C, M, H, k, stride, group)
CASES = [
    ("depthwise 3x3 s1", 32, 96, 96, 16, 3, 1, 96),
    ("depthwise 3x3 s1 8x8", 32, 144, 144, 8, 3, 1, 144),
    ("depthwise 3x3 s2", 32, 96, 96, 16, 3, 2, 96),
    ("depthwise 5x5 s2", 32, 48, 48, 16, 5, 2, 48),
    ("depthwise 5x5 s1", 32, 96, 96, 8, 5, 1, 96),
    ("grouped 3x3 g8 C/g=4", 32, 32, 32, 32, 3, 1, 8),
    ("grouped 3x3 g8 C/g=8", 32, 64, 64, 16, 3, 1, 8),
    ("grouped 3x3 g8 C/g=16 s2", 32, 128, 128, 16, 3, 2, 8),
    ("grouped 3x3 g8 C/g=16", 32, 128, 128, 8, 3, 1, 8),
    ("dense 3x3 16-16", 32, 16, 16, 32, 3, 1, 1),
    ("dense 3x3 64-64 8x8", 32, 64, 64, 8, 3, 1, 1),
    ("dense 3x3 16-32 s2", 32, 16, 32, 32, 3, 2, 1),
    ("convnet 3x3 16-32 4x4", 64, 16, 32, 4, 3, 1, 1),
    ("convnet 3x3 1-16 8x8", 64, 1, 16, 8, 3, 1, 1),
    ("convnet 3x3 16-32 4x4 b32", 32, 16, 32, 4, 3, 1, 1),
    ("dense 3x3 64-64 4x4", 32, 64, 64, 4, 3, 1, 1),
    ("dense 3x3 32-64 s2 8x8", 32, 32, 64, 8, 3, 2, 1),
    ("dense 3x3 128-128 2x2", 32, 128, 128, 2, 3, 1, 1),
    ("stem 7x7 s2 3-16", 32, 3, 16, 32, 7, 2, 1),
    ("stem 3x3 s2 3-16", 32, 3, 16, 32, 3, 2, 1),
    ("stem 3x3 s1 3-16", 32, 3, 16, 32, 3, 1, 1),
    ("pointwise 16-96", 32, 16, 96, 16, 1, 1, 1),
    ("pointwise 96-24", 32, 96, 24, 8, 1, 1, 1),
]


def forced_swapped(ctx, *args):
    saved = cc.IM2COL_MIN_CHANNELS
    cc.IM2COL_MIN_CHANNELS = 10 ** 9
    try:
        return cc.weight_grad(ctx, *args)
    finally:
        cc.IM2COL_MIN_CHANNELS = saved


def forced_patches(ctx, x, gy, g, *args):
    return cc._patch_weight_grad(ctx, x, gy, *args) if g == 1 else None


def graph(build, feeds, opset=17):
    info = {k: (TensorProto.FLOAT, list(v.shape)) for k, v in feeds.items()}
    ctx = Emitter(dict(info), opset, {})
    out = build(ctx)
    if out is None:
        return None
    nodes = ctx.nodes + [helper.make_node("Identity", [out], ["out"])]
    g = helper.make_graph(nodes, "b", [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v.shape))
                                       for k, v in feeds.items()],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], ctx.initializers)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def race(builds, feeds, rounds, secs):
    rt = ort()
    so = rt.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = {}
    for k, b in builds.items():
        m = graph(b, feeds)
        if m is not None:
            sess[k] = rt.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    ref = None
    for k, s in sess.items():
        out = s.run(None, feeds)[0]
        ref = out if ref is None else ref
        err = np.abs(out - ref).max() / max(1.0, np.abs(ref).max())
        assert out.shape == ref.shape and err < 1e-4, (k, out.shape, ref.shape, err)
    times = {k: [] for k in sess}
    names = list(sess)
    for r in range(rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            s = sess[k]
            s.run(None, feeds)
            n, t0, c0 = 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - t0 < secs:
                s.run(None, feeds)
                n += 1
            # process CPU time: with one thread, robust to the other processes on the machine
            times[k].append((time.process_time() - c0) / n * 1e6)
    return {k: statistics.median(v) for k, v in times.items()}


def contestants(rng, n, c, m, h, k, s, g):
    """The feeds of one case and its three races: the forward Conv (for scale), dX, dW."""
    p = (k - 1) // 2
    ho = (h + 2 * p - k) // s + 1
    kern, st, dil, pads = [k, k], [s, s], [1, 1], [p] * 4
    feeds = {"x": rng.standard_normal((n, c, h, h)).astype(np.float32),
             "gy": rng.standard_normal((n, m, ho, ho)).astype(np.float32),
             "w": rng.standard_normal((m, c // g, k, k)).astype(np.float32)}
    wd = list(feeds["w"].shape)
    extra = cc.leftover([h, h], kern, st, dil, pads)
    fwd = {"forward Conv": lambda ctx: ctx.op("Conv", ["x", "w"], group=g, strides=st, pads=pads)}
    dx = {"dX ConvTranspose": lambda ctx: cc.conv_transpose(ctx, "gy", "w", g, st, pads, dil, extra, [n, c, h, h], wd),
          "dX Conv of flipped W": lambda ctx: fg.flipped_input_grad(ctx, "gy", "w", g, kern, st, dil, pads)}
    dw = {"dW general (Conv swapped / patches)": lambda ctx: cc.weight_grad(ctx, "x", "gy", g, kern, st, dil, pads),
          "dW pointwise, MatMul per sample": lambda ctx: fg.pointwise_weight_grad(ctx, "x", "gy", wd) if k == 1 and s == 1 else None,
          "dW the rule's choice": lambda ctx: fg.weight_grad(ctx, "x", "gy", g, kern, st, dil, pads, wd),
          "dW depthwise taps": lambda ctx: fg.depthwise_weight_grad(ctx, "x", "gy", g, kern, st, dil, pads, wd),
          "dW Conv swapped (forced)": lambda ctx: forced_swapped(ctx, "x", "gy", g, kern, st, dil, pads),
          "dW general patches (forced)": lambda ctx: forced_patches(ctx, "x", "gy", g, kern, st, dil, pads),
          "dW patches, MatMul per tap": lambda ctx: fg.tap_patch_weight_grad(ctx, "x", "gy", g, kern, st, dil, pads, wd),
          "dW patches tap-major, one MatMul": lambda ctx: fg.tap_patch_weight_grad(ctx, "x", "gy", g, kern, st, dil, pads, wd, False)}
    return feeds, (fwd, dx, dw)


def main():
    quick = "--quick" in sys.argv
    only = [a for a in sys.argv[1:] if not a.startswith("--")]
    rounds, secs = (3, 0.1) if quick else (5, 0.2)
    rng = np.random.default_rng(0)
    print(f"onnxruntime {ort().__version__}, one thread; median CPU us per call of {rounds} alternating rounds")
    for name, n, c, m, h, k, s, g in [c for c in CASES if not only or any(o in c[0] for o in only)]:
        feeds, parts = contestants(rng, n, c, m, h, k, s, g)
        print(f"{name}: N{n} C{c} M{m} {h}x{h} k{k} s{s} g{g}  (load {os.getloadavg()[0]:.1f})")
        for part in parts:
            res = race(part, feeds, rounds, secs)
            first = next(iter(res.values()))
            for key, v in res.items():
                print(f"   {key:38s} {v:9.0f} us  {first / v:5.2f}x")


if __name__ == "__main__":
    main()
