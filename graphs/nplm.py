"""The neural probabilistic language model (Bengio et al., 2003; the deep-learning review's Figure 4):
the previous ``context`` words enter as ids (one-of-N codes), the first layer maps each to a dense
vector (one shared table, ``embed.weight`` [vocab, embed]), the vectors are concatenated, a
``tanh`` hidden layer follows, and a softmax over the vocabulary predicts the next word.

Input ``x`` [N, context] (int64 ids, oldest first; positions before the start of a sentence hold
BOS), output ``logits`` [N, vocab]. The learned table is the word vectors (``onnxforge
embeddings``).
"""

from __future__ import annotations

import numpy as np
import onnx

from onnxforge.graphs._common import BATCH, GraphBuilder, check_positive, float_input, int_input, xavier_uniform
from onnxforge.runtime.errors import ConfigError
from onnxforge.runtime.modelio.card import ModelCard

__all__ = ["nplm", "EMBED_STD", "TASK"]

TASK = "language_model"
# the table's initial spread: small next to what training moves, so that words used alike end up
# alike. Measured on a 6-category grammar (3,000 sentences, 10 epochs): the share of words whose 5
# nearest neighbours are mostly of their category was 0.05-0.25 from N(0, 1) (nn.Embedding's draw,
# each word keeps its random start), 0.8 from N(0, 0.1), 0.9-1.0 from N(0, 0.01)
EMBED_STD = 0.01


def nplm(vocab: int, *, context: int = 4, embed: int = 32, hidden: int = 128, seed: int = 0,
         tokens: list[str] | None = None, tokenizer: dict | None = None) -> onnx.ModelProto:
    """Build ``x [N, context] -> logits [N, vocab]``: ``embed`` (Gather of ``embed.weight``),
    ``Flatten`` to [N, context * embed], ``hidden`` (``Gemm``, ``hidden.weight`` [hidden, context *
    embed], ``hidden.bias``) and ``Tanh``, ``output`` (``Gemm``, ``output.weight`` [vocab, hidden],
    ``output.bias``). Task "language_model": cross-entropy on the next word, perplexity reported.
    ``tokens`` (one string per id) go into the card with ``tokenizer`` (a
    :meth:`~onnxforge.runtime.data.tokenizers.Tokenizer.card_values` dict; default: words, unknown
    words refused), so the file alone reads and writes text."""
    vocab = check_positive("vocab", vocab)
    if vocab < 5:
        raise ConfigError(f"vocab must count the 4 reserved ids (PAD, BOS, EOS, UNK) and at least one word; got {vocab}")
    context = check_positive("context", context)
    embed = check_positive("embed", embed)
    hidden = check_positive("hidden", hidden)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"seed must be an integer; got {seed!r}")
    if tokens is not None and (len(tokens) != vocab or not all(isinstance(t, str) for t in tokens)):
        raise ConfigError(f"tokens must hold one string per id ({vocab}); got {len(tokens)} entries")

    b = GraphBuilder(int(seed))
    table = b.param("embed.weight", (b.rng.standard_normal((vocab, embed)) * EMBED_STD).astype(np.float32))
    vectors = b.node("Gather", [table, "x"], ["embed.out"], name="embed", axis=0)  # [N, context, embed]
    joined = b.node("Flatten", [vectors], ["embed.concat"], name="embed.concat", axis=1)  # [N, context * embed]
    fan_in = context * embed
    weight = b.param("hidden.weight", xavier_uniform(b.rng, (hidden, fan_in), fan_in, hidden))
    bias = b.param("hidden.bias", np.zeros(hidden, np.float32))
    h = b.node("Gemm", [joined, weight, bias], ["hidden.out"], name="hidden", transB=1)
    h = b.node("Tanh", [h], ["hidden.tanh"], name="hidden.tanh")
    b.linear("output", h, hidden, vocab, init="xavier", out="logits")

    args = {"vocab": vocab, "context": context, "embed": embed, "hidden": hidden, "seed": int(seed)}
    card = ModelCard(task=TASK, builder="nplm", args=args, classes=vocab, inputs=["x"], output="logits",
                     tokens=None if tokens is None else list(tokens),
                     tokenizer=None if tokens is None else dict(tokenizer or {"kind": "word", "unknown": "refuse"}))
    return b.model(
        "nplm",
        [int_input("x", [BATCH, context])],
        [float_input("logits", [BATCH, vocab])],
        card,
        doc=f"neural language model: {context} previous words, embed {embed}, hidden {hidden}, vocab {vocab}; "
            "built by onnxforge",
    )
