"""The convolutional network: stages of ``Conv`` (same padding), optional ``BatchNormalization``,
``Relu`` and ``MaxPool``, then ``Flatten`` and fully connected ``Gemm`` layers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx

from onnxforge.graphs._common import (BATCH, GraphBuilder, check_dropout, check_positive, float_input,
                                      he_normal)
from onnxforge.runtime.errors import ConfigError
from onnxforge.runtime.modelio.card import ModelCard

__all__ = ["convnet", "conv_stages", "pooled_size", "BN_EPSILON", "BN_MOMENTUM"]

BN_EPSILON = 1e-5
# ONNX's momentum weighs the old running value: running = running * 0.9 + batch * 0.1, which is
# PyTorch's BatchNorm2d(momentum=0.1).
BN_MOMENTUM = 0.9


def _ints(name: str, value, *, allow_empty: bool = False) -> list[int]:
    values = [value] if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    if not isinstance(values, Sequence) or isinstance(values, str):
        raise ConfigError(f"{name} must be an integer or a sequence of integers; got {value!r}")
    checked = [check_positive(f"each entry of {name}", v) for v in values]
    if not checked and not allow_empty:
        raise ConfigError(f"{name} needs at least one entry; got {value!r}")
    return checked


def pooled_size(height: int, width: int, stages: int, pool: int) -> tuple[int, int]:
    """The feature map's height and width after ``stages`` poolings by ``pool``, or ConfigError."""
    h, w = height, width
    for i in range(stages):
        if pool > 1 and (h // pool < 1 or w // pool < 1):
            raise ConfigError(
                f"stage {i + 1} would pool a {h}x{w} map with a {pool}x{pool} window; the input "
                f"{height}x{width} is too small for {stages} pooling stages (use fewer channels entries or pool=1)"
            )
        if pool > 1:
            h, w = h // pool, w // pool
    return h, w


def conv_stages(b: GraphBuilder, x: str, c_in: int, widths: Sequence[int], kernel: int, pool: int,
                batchnorm: bool = False) -> tuple[str, int]:
    """The ConvNet's stages over ``x`` [N, c_in, H, W] (see :func:`convnet`): returns the last
    feature map [N, widths[-1], H', W'] and its channel count."""
    fan_in = c_in
    before, after = (kernel - 1) // 2, kernel // 2  # "same" padding, the odd one at the end
    for i, out_ch in enumerate(widths, start=1):
        weight = b.param(f"conv{i}.weight", he_normal(b.rng, (out_ch, fan_in, kernel, kernel), fan_in * kernel * kernel))
        inputs = [x, weight]
        if not batchnorm:
            inputs.append(b.param(f"conv{i}.bias", np.zeros(out_ch, np.float32)))
        x = b.node("Conv", inputs, [f"conv{i}.out"], name=f"conv{i}", kernel_shape=[kernel, kernel],
                   pads=[before, before, after, after], strides=[1, 1])
        if batchnorm:
            stats = [b.param(f"bn{i}.scale", np.ones(out_ch, np.float32)),
                     b.param(f"bn{i}.bias", np.zeros(out_ch, np.float32)),
                     b.param(f"bn{i}.running_mean", np.zeros(out_ch, np.float32)),
                     b.param(f"bn{i}.running_var", np.ones(out_ch, np.float32))]
            x = b.node("BatchNormalization", [x, *stats], [f"bn{i}.out"], name=f"bn{i}",
                       epsilon=BN_EPSILON, momentum=BN_MOMENTUM)
        x = b.node("Relu", [x], [f"relu{i}.out"], name=f"relu{i}")
        if pool > 1:
            x = b.node("MaxPool", [x], [f"pool{i}.out"], name=f"pool{i}", kernel_shape=[pool, pool],
                       strides=[pool, pool])
        fan_in = out_ch
    return x, fan_in


def convnet(
    input_shape: Sequence[int] = (1, 8, 8),
    channels: int | Sequence[int] = (16, 32),
    kernel: int = 3,
    pool: int = 2,
    dense: int | Sequence[int] = (),
    classes: int = 10,
    *,
    dropout: float = 0.0,
    batchnorm: bool = False,
    seed: int = 0,
) -> onnx.ModelProto:
    """Build a ConvNet classifier ``x [N, C, H, W] -> logits [N, classes]``.

    Stage ``i`` (one per entry of ``channels``) is ``convI`` (``Conv``, ``kernel`` x ``kernel``,
    stride 1, "same" padding as PyTorch's ``padding="same"``: any extra row/column of padding goes
    at the end), then, with ``batchnorm``, ``bnI`` (``BatchNormalization``), then ``Relu``, then
    ``poolI`` (``MaxPool`` with window and stride ``pool``; ``pool=1`` means no pooling). Then
    ``Flatten`` and ``fc1 .. fcK``: one ``Gemm`` + ``Relu`` per entry of ``dense`` and the output
    layer. ``dropout`` acts before every ``Gemm``, in training only.

    Parameters use PyTorch's layouts and names: ``convI.weight`` [out, in, k, k], ``convI.bias``
    (absent with batch normalisation, which has its own shift), ``bnI.scale``, ``bnI.bias``,
    ``bnI.running_mean``, ``bnI.running_var`` (PyTorch's weight, bias, running_mean, running_var),
    ``fcI.weight`` [out, in], ``fcI.bias``.

    Batch normalisation is written in its inference form (``training_mode=0``, running statistics
    as inputs). ONNX Runtime training turns it into its training form when it builds the gradient
    graph: batches are normalised with their own mean and (biased) variance, and the running
    statistics are updated in place with momentum ``BN_MOMENTUM`` (ONNX convention; PyTorch's 0.1).
    The trainer keeps them as non-trained state (see ``runtime.gradients.state_buffers``), so the
    exported model normalises with the statistics gathered during training.
    """
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence) or len(input_shape) != 3:
        raise ConfigError(f"input_shape must be three positive integers (channels, height, width); got {input_shape!r}")
    c_in, height, width = (check_positive("each entry of input_shape", v) for v in input_shape)
    widths = _ints("channels", channels)
    hidden = _ints("dense", dense, allow_empty=True)
    kernel = check_positive("kernel", kernel)
    pool = check_positive("pool", pool)
    classes = check_positive("classes", classes)
    if classes < 2:
        raise ConfigError(f"classes must be at least 2; got {classes}")
    dropout = check_dropout(dropout)
    if not isinstance(batchnorm, (bool, np.bool_)):
        raise ConfigError(f"batchnorm must be True or False; got {batchnorm!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"seed must be an integer; got {seed!r}")
    h, w = pooled_size(height, width, len(widths), pool)

    b = GraphBuilder(int(seed))
    x, fan_in = conv_stages(b, "x", c_in, widths, kernel, pool, batchnorm)
    x = b.node("Flatten", [x], ["flatten.out"], name="flatten", axis=1)
    fan_in = fan_in * h * w
    for i, width_i in enumerate(hidden, start=1):
        x = b.dropout(f"dropout{i}", x, dropout)
        x = b.linear(f"fc{i}", x, fan_in, width_i, init="he")
        x = b.node("Relu", [x], [f"fc{i}.relu.out"], name=f"fc{i}.relu")
        fan_in = width_i
    last = len(hidden) + 1
    x = b.dropout(f"dropout{last}", x, dropout)
    b.linear(f"fc{last}", x, fan_in, classes, init="xavier", out="logits")

    args = {"input_shape": [c_in, height, width], "channels": widths, "kernel": kernel, "pool": pool,
            "dense": hidden, "classes": classes, "dropout": dropout, "batchnorm": bool(batchnorm), "seed": int(seed)}
    card = ModelCard(task="classification", builder="convnet", args=args, classes=classes, inputs=["x"],
                     output="logits")
    stages = "-".join(map(str, widths))
    return b.model(
        "convnet",
        [float_input("x", [BATCH, c_in, height, width])],
        [float_input("logits", [BATCH, classes])],
        card,
        doc=f"ConvNet {c_in}x{height}x{width}, channels {stages}, kernel {kernel}, pool {pool}"
            f"{', batch norm' if batchnorm else ''}, dense {hidden or 'none'}, {classes} classes; built by onnxforge",
    )
