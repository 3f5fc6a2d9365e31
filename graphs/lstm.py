"""Recurrent networks of ``LSTM`` layers over float features or token ids, with a head that
classifies the whole sequence (from the last state) or labels every step (tagger, language model)."""

from __future__ import annotations

import math

import numpy as np
import onnx

from onnxforge.graphs._common import BATCH, GraphBuilder, check_dropout, check_positive, float_input, int_input
from onnxforge.graphs._lstm_unrolled import unrolled_lstm
from onnxforge.graphs._padding import TokenSteps, skip_padding
from onnxforge.graphs.lstm_gates import ONNX_GATES
from onnxforge.runtime.errors import ConfigError
from onnxforge.runtime.modelio.card import ModelCard

__all__ = ["lstm", "HEADS", "GATES"]

HEADS = ("sequence", "tagger")
IMPLS = ("node", "unrolled")
STEPS = "T"
GATES = ONNX_GATES  # the gate order of W, R and B (see onnxforge.graphs.lstm_gates)


def _uniform(b: GraphBuilder, shape: tuple, hidden: int) -> np.ndarray:
    k = 1.0 / math.sqrt(hidden)  # PyTorch's nn.LSTM initialisation
    return b.rng.uniform(-k, k, shape).astype(np.float32)


class _Reverser:
    """Reverses a ``[T, N, ...]`` tensor in time with ``Gather`` (which ORT can differentiate);
    the indices ``T-1 .. 0`` are computed once from the input's shape, as ``(T-1) - Range(0, T)``.

    Not as ``Range(T-1, -1, -1)``: ONNX Runtime 1.19's extended optimisations rewrite a ``Gather``
    whose indices come straight from a ``Range`` into a ``Slice`` and get a negative step wrong
    (``end=-1`` read as "the last element"), so a model whose index had one consumer gave wrong
    results at the default optimisation level (found when unused nodes started being pruned)."""

    def __init__(self, b: GraphBuilder, x: str):
        self.b = b
        shape = b.node("Shape", [x], ["reverse.shape"], name="reverse.shape")
        steps = b.node("Gather", [shape, b.constant("reverse.axis0", np.array(0, np.int64))], ["reverse.steps"],
                       name="reverse.steps", axis=0)
        one = b.constant("reverse.one", np.array(1, np.int64))
        last = b.node("Sub", [steps, one], ["reverse.last"], name="reverse.last")
        ramp = b.node("Range", [b.constant("reverse.start", np.array(0, np.int64)), steps, one], ["reverse.ramp"],
                      name="reverse.ramp")
        self.index = b.node("Sub", [last, ramp], ["reverse.index"], name="reverse.index")

    def __call__(self, x: str, name: str) -> str:
        return self.b.node("Gather", [x, self.index], [f"{name}.out"], name=name, axis=0)


class _Padding:
    """The trailing padding of token rows, in the processing order of one direction: ``padding``
    (bool [T, N, 1]) and ``valid`` (float) from :class:`~onnxforge.graphs._padding.TokenSteps`,
    reversed for a direction that reads the sequence backwards; ``last`` [1, N, H], each row's
    last real step, for the forward direction (a reversed one ends on step 0, always read)."""

    def __init__(self, steps: TokenSteps, reverse=None):
        self.padding = steps.padding if reverse is None else reverse(steps.padding, "padding.reverse_pad")
        self.valid = steps.valid if reverse is None else reverse(steps.valid, "padding.reverse_valid")
        self.last = steps.last if reverse is None else None


def _lstm_node(b: GraphBuilder, prefix: str, x: str, in_size: int, hidden: int, impl: str = "node",
               steps: int | None = None, padding: _Padding | None = None) -> tuple[str, str]:
    """One forward ``LSTM`` over ``x [T, N, in]``: returns ``Y [T, N, H]`` and ``Y_h [N, H]``.

    The node lists its optional inputs up to ``initial_c`` (7 inputs, empty names) and declares all
    three outputs: the form ONNX Runtime training's LSTM gradient needs. ``impl="unrolled"`` builds
    the same function from plain ops over ``steps`` steps (see ``graphs/_lstm_unrolled.py``).
    With ``padding`` the state is kept through the padded steps (the unrolled recurrence masked,
    the node's cell state held by :func:`~onnxforge.graphs._padding.skip_padding`): ``Y_h`` is
    the state after each row's last real step, and ``Y`` repeats it at the padded steps."""
    w = b.param(f"{prefix}.W", _uniform(b, (1, 4 * hidden, in_size), hidden))
    r = b.param(f"{prefix}.R", _uniform(b, (1, 4 * hidden, hidden), hidden))
    bias = b.param(f"{prefix}.B", _uniform(b, (1, 8 * hidden), hidden))
    if impl == "unrolled":  # masked: h and c kept at padding, so the final state is the last real one
        assert steps is not None  # lstm() requires steps for impl="unrolled"
        seq, y_h, _ = unrolled_lstm(b, prefix, x, w, r, bias, hidden, steps, mask=padding.valid if padding else None)
        axis0 = b.constant(f"{prefix}.axis0", np.array([0], np.int64))
        return seq, b.node("Squeeze", [y_h, axis0], [f"{prefix}.last"], name=f"{prefix}.squeeze_h")
    x_in, w_in = skip_padding(b, prefix, x, in_size, w, hidden, padding.padding) if padding else (x, w)
    y, y_h, _ = b.node("LSTM", [x_in, w_in, r, bias, "", "", ""], [f"{prefix}.Y", f"{prefix}.Y_h", f"{prefix}.Y_c"],
                       name=prefix, hidden_size=hidden, direction="forward")
    axis1 = b.constant(f"{prefix}.axis1", np.array([1], np.int64))
    axis0 = b.constant(f"{prefix}.axis0", np.array([0], np.int64))
    seq = b.node("Squeeze", [y, axis1], [f"{prefix}.seq"], name=f"{prefix}.squeeze_y")
    if padding is not None and padding.last is not None:  # at padding the node's h moves on, its c does not:
        y_h = b.node("GatherElements", [seq, padding.last], [f"{prefix}.Y_h_read"], name=f"{prefix}.Y_h_read", axis=0)
        # every padded step shows the kept state, as the unrolled build's does (same function); the
        # state expanded first: ONNX Runtime 1.19's Where gradient fails to reduce a broadcast input
        kept = b.node("Expand", [y_h, b.node("Shape", [seq], [f"{prefix}.seq_shape"], name=f"{prefix}.seq_shape")],
                      [f"{prefix}.Y_h_steps"], name=f"{prefix}.Y_h_steps")
        seq = b.node("Where", [padding.padding, kept, seq], [f"{prefix}.seq_kept"], name=f"{prefix}.seq_kept")
    last = b.node("Squeeze", [y_h, axis0], [f"{prefix}.last"], name=f"{prefix}.squeeze_h")
    return seq, last


def lstm(
    inputs: int | None = None,
    *,
    vocab: int | None = None,
    embed: int | None = None,
    hidden: int = 64,
    layers: int = 1,
    classes: int = 10,
    head: str = "sequence",
    bidirectional: bool = False,
    dropout: float = 0.0,
    seed: int = 0,
    impl: str = "node",
    steps: int | None = None,
) -> onnx.ModelProto:
    """Build an LSTM network over ``x``: float features ``[N, T, inputs]`` or, with ``vocab``,
    token ids ``[N, T]`` (int64) looked up in a learned embedding ``embed.weight [vocab, embed]``.

    ``layers`` stacked ``LSTM`` layers (``lstm1 .. lstmL``; ``lstmI.W [1, 4H, in]``,
    ``lstmI.R [1, 4H, H]``, ``lstmI.B [1, 8H]`` with the gates in ONNX order i, o, f, c) run in
    time-major order after a ``Transpose``; ``dropout`` acts between layers in training only.

    ``head="sequence"``: ``fc`` (``Gemm``) on the last layer's final hidden state gives
    ``logits [N, classes]`` (task "classification"). ``head="tagger"``: ``fc`` on every step gives
    ``logits [N, T, classes]`` (task "tagging": label 0 is padding and counts for nothing, so
    real tags are 1 .. classes-1; a language model is a tagger whose labels are the next tokens).
    Token rows may end in padding (id 0 after a row's last other token): it is not read (the
    state is kept through it, as PyTorch's packed sequences), so a row gives one answer at every
    pad width and batch mix; float features are read at every step.

    ``bidirectional=True``: ONNX Runtime training differentiates forward LSTMs only, so each layer
    is built from two forward ``LSTM`` nodes, ``lstmI.forward`` on the sequence and
    ``lstmI.backward`` on the sequence reversed in time (``Gather``), its outputs reversed back and
    concatenated (``[.., 2H]``) -- the same function as PyTorch's ``nn.LSTM(bidirectional=True)``
    on unpacked sequences, and it trains.

    ``steps`` fixes the sequence length ``T`` (default: any length). ``impl="node"`` uses ONNX
    ``LSTM`` nodes; ``impl="unrolled"`` (needs ``steps``) builds each layer from ``Gemm``/``MatMul``,
    ``Sigmoid``, ``Tanh``, ``Mul`` and ``Add`` unrolled over the steps, with the same parameters and
    function; ONNX Runtime trains it about 3x faster on the CPU (its ``LSTM`` gradient kernel is slow).
    """
    if (inputs is None) == (vocab is None):
        raise ConfigError("give exactly one of inputs (float features per step) or vocab (token ids)")
    if vocab is not None:
        vocab = check_positive("vocab", vocab)
        if vocab < 2:
            raise ConfigError(f"vocab must count at least 2 token ids; got {vocab}")
        embed = check_positive("embed", embed if embed is not None else 0) if embed is not None else None
        if embed is None:
            raise ConfigError("a token model (vocab given) needs embed, the width of its learned embedding")
        in_size = embed
    else:
        if embed is not None:
            raise ConfigError("embed applies to token models only; pass vocab too, or leave embed out")
        in_size = check_positive("inputs", inputs)
    hidden = check_positive("hidden", hidden)
    layers = check_positive("layers", layers)
    classes = check_positive("classes", classes)
    if classes < 2:
        raise ConfigError(f"classes must be at least 2; got {classes}")
    if head not in HEADS:
        raise ConfigError(f"head must be one of {', '.join(HEADS)}; got {head!r}")
    if not isinstance(bidirectional, (bool, np.bool_)):
        raise ConfigError(f"bidirectional must be True or False; got {bidirectional!r}")
    dropout = check_dropout(dropout)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"seed must be an integer; got {seed!r}")
    if impl not in IMPLS:
        raise ConfigError(f"impl must be one of {', '.join(IMPLS)}; got {impl!r}")
    if steps is not None:
        steps = check_positive("steps", steps)
    elif impl == "unrolled":
        raise ConfigError("impl='unrolled' needs steps, the fixed sequence length to unroll over")
    t_len = steps

    b = GraphBuilder(int(seed))
    if vocab is not None:
        table = b.param("embed.weight", b.rng.standard_normal((vocab, in_size)).astype(np.float32))  # in_size: embed
        x = b.node("Gather", [table, "x"], ["embed.out"], name="embed", axis=0)
    else:
        x = "x"
    x = b.node("Transpose", [x], ["time_major.out"], name="time_major", perm=[1, 0, 2])  # [T, N, in]
    reverse = _Reverser(b, x) if bidirectional else None
    steps_read = TokenSteps(b, hidden, "x", "padding") if vocab is not None else None
    pad_fwd = _Padding(steps_read) if steps_read else None
    pad_bwd = _Padding(steps_read, reverse) if steps_read and bidirectional else None
    size = in_size
    last = ""
    for i in range(1, layers + 1):
        if i > 1:
            x = b.dropout(f"dropout{i - 1}", x, dropout)
        if not bidirectional:
            x, last = _lstm_node(b, f"lstm{i}", x, size, hidden, impl, t_len, pad_fwd)
            size = hidden
            continue
        assert reverse is not None  # made for a bidirectional stack
        fwd, fwd_last = _lstm_node(b, f"lstm{i}.forward", x, size, hidden, impl, t_len, pad_fwd)
        bwd, bwd_last = _lstm_node(b, f"lstm{i}.backward", reverse(x, f"lstm{i}.reverse_in"), size, hidden, impl, t_len,
                                   pad_bwd)
        bwd = reverse(bwd, f"lstm{i}.reverse_out")
        x = b.node("Concat", [fwd, bwd], [f"lstm{i}.out"], name=f"lstm{i}.concat", axis=-1)
        last = b.node("Concat", [fwd_last, bwd_last], [f"lstm{i}.last"], name=f"lstm{i}.concat_last", axis=-1)
        size = 2 * hidden

    bound = 1.0 / math.sqrt(size)  # PyTorch's nn.Linear initialisation
    weight = b.param("fc.weight", b.rng.uniform(-bound, bound, (classes, size)).astype(np.float32))
    bias = b.param("fc.bias", b.rng.uniform(-bound, bound, classes).astype(np.float32))
    if head == "sequence":
        b.node("Gemm", [last, weight, bias], ["logits"], name="fc", transB=1)
        out_dims = [BATCH, classes]
    else:
        per_step = b.node("Transpose", [x], ["batch_major.out"], name="batch_major", perm=[1, 0, 2])  # [N, T, H]
        wt = b.node("Transpose", [weight], ["fc.weight_t"], name="fc.transpose", perm=[1, 0])
        scores = b.node("MatMul", [per_step, wt], ["fc.matmul"], name="fc.matmul")
        b.node("Add", [scores, bias], ["logits"], name="fc")
        out_dims = [BATCH, t_len or STEPS, classes]

    args = {"inputs": None if vocab is not None else in_size, "vocab": vocab, "embed": embed, "hidden": hidden,
            "layers": layers, "classes": classes, "head": head, "bidirectional": bool(bidirectional),
            "dropout": dropout, "seed": int(seed), "impl": impl, "steps": t_len}
    card = ModelCard(task="classification" if head == "sequence" else "tagging", builder="lstm", args=args,
                     classes=classes, inputs=["x"], output="logits")
    t_dim = t_len or STEPS
    x_info = int_input("x", [BATCH, t_dim]) if vocab is not None else float_input("x", [BATCH, t_dim, in_size])
    source = f"tokens (vocab {vocab}, embed {embed})" if vocab is not None else f"{in_size} features"
    return b.model(
        "lstm",
        [x_info],
        [float_input("logits", out_dims)],
        card,
        doc=f"{'bidirectional ' if bidirectional else ''}LSTM x{layers}, hidden {hidden}, over {source}, "
            f"{head} head with {classes} classes; built by onnxforge",
    )
