"""The neural language model against a PyTorch twin on the same weights (forward, and gradients of
every parameter through onnxforge.runtime.autodiff), and what the review claims of it, on a corpus
from a grammar made here: words used alike get vectors that are neighbours, and on sentences that
combine words in ways the training text never did it beats an interpolated Kneser-Ney trigram."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from onnxforge.graphs.nplm import nplm
from onnxforge.runtime import Trainer, load
from onnxforge.runtime.autodiff import gradient_model
from onnxforge.runtime.data.datasets import Dataset
from onnxforge.runtime.data.tokenizers import build_tokenizer
from onnxforge.runtime.errors import ConfigError
from onnxforge.runtime.inference.session import Session
from onnxforge.runtime.ort.device import resolve_device
from onnxforge.runtime.tasks.language_model import windows
from onnxforge.runtime.tasks.ngram import ngram_perplexity
from onnxforge.runtime.tasks.word_vectors import nearest, word_vectors

# a grammar of five kinds of words; sentences: DET [ADJ] ANIMAL (EATS the FOOD | GOES to the PLACE)
KINDS = {
    "animal": "otter badger heron lynx moose ferret bison".split(),
    "food": "plum walnut barley turnip mango olive lentil".split(),
    "eat": "gnaws munches grazes licks crunches sips".split(),
    "move": "strolls dashes creeps climbs paddles roams".split(),
    "place": "meadow marsh canyon valley orchard cave".split(),
    "adj": "tiny grey clever sleepy proud brave".split(),
}


def make_corpus(n: int, seed: int, keep) -> list[str]:
    rng = np.random.default_rng(seed)
    pick = lambda kind: KINDS[kind][rng.integers(len(KINDS[kind]))]  # noqa: E731
    out = []
    while len(out) < n:
        animal = pick("animal")
        verb, rest = (pick("eat"), f"the {pick('food')}") if rng.random() < 0.5 else (pick("move"), f"to the {pick('place')}")
        if not keep((animal, verb)):
            continue
        det = "the" if rng.random() < 0.5 else "a"
        out.append(f"{det} {pick('adj')} {animal} {verb} {rest}" if rng.random() < 0.5 else f"{det} {animal} {verb} {rest}")
    return out


@pytest.fixture(scope="module")
def corpus():
    """Training text without a quarter of the (animal, verb) pairs; held-out text of only those."""
    pairs = [(a, v) for a in KINDS["animal"] for v in KINDS["eat"] + KINDS["move"]]
    order = np.random.default_rng(7).permutation(len(pairs))
    held = {pairs[i] for i in order[: len(pairs) // 4]}
    return make_corpus(3000, 0, lambda p: p not in held), make_corpus(300, 1, lambda p: p in held)


class TorchNPLM(torch.nn.Module):
    def __init__(self, model: onnx.ModelProto):
        super().__init__()
        p = {t.name: torch.tensor(numpy_helper.to_array(t).copy()) for t in model.graph.initializer}
        self.embed = torch.nn.Embedding.from_pretrained(p["embed.weight"], freeze=False)
        self.hidden = torch.nn.Linear(*p["hidden.weight"].shape[::-1])
        self.output = torch.nn.Linear(*p["output.weight"].shape[::-1])
        for layer in ("hidden", "output"):
            getattr(self, layer).weight.data = p[f"{layer}.weight"]
            getattr(self, layer).bias.data = p[f"{layer}.bias"]

    def forward(self, x):
        return self.output(torch.tanh(self.hidden(self.embed(x).flatten(1))))


def test_forward_and_gradients_equal_pytorch():
    model = nplm(23, context=3, embed=5, hidden=7, seed=3)
    rng = np.random.default_rng(0)
    for t in model.graph.initializer:  # nonzero biases, so their gradients are tested too
        value = numpy_helper.to_array(t)
        t.CopyFrom(numpy_helper.from_array((value + rng.normal(0, 0.3, value.shape)).astype(np.float32), t.name))
    x = rng.integers(0, 23, (6, 3)).astype(np.int64)
    seed = rng.standard_normal((6, 23)).astype(np.float32)
    names = [t.name for t in model.graph.initializer]
    grads = gradient_model(model, names, "logits", seed="logits_seed")
    out = Session(grads, resolve_device("cpu")).run({"x": x, "logits_seed": seed})

    twin = TorchNPLM(model)
    logits = twin(torch.tensor(x))
    (logits * torch.tensor(seed)).sum().backward()
    np.testing.assert_allclose(out["logits"], logits.detach().numpy(), atol=1e-5, rtol=1e-5)
    torch_grads = {"embed.weight": twin.embed.weight.grad, "hidden.weight": twin.hidden.weight.grad,
                   "hidden.bias": twin.hidden.bias.grad, "output.weight": twin.output.weight.grad,
                   "output.bias": twin.output.bias.grad}
    for name in names:
        np.testing.assert_allclose(out[f"{name}_grad"], torch_grads[name].numpy(), atol=1e-5, rtol=1e-5, err_msg=name)


def test_bad_arguments_are_one_config_error():
    with pytest.raises(ConfigError, match="vocab must count the 4 reserved ids"):
        nplm(4)
    with pytest.raises(ConfigError, match="context must be a positive integer"):
        nplm(10, context=0)
    with pytest.raises(ConfigError, match="tokens must hold one string per id"):
        nplm(10, tokens=["a"])


def _train(corpus, backend, tmp_path, epochs):
    train, held = corpus
    tok = build_tokenizer(train, "word")
    x, y = windows([tok.encode(s) for s in train], 4)
    model = nplm(len(tok.tokens), context=4, embed=32, hidden=128, tokens=list(tok.tokens))
    trainer = Trainer(model, tmp_path / backend, lr=1e-3, backend=backend, progress=False)
    trainer.fit(Dataset({"x": x}, y, "corpus"), epochs=epochs, batch_size=32)
    return tok, trainer


@pytest.mark.parametrize("backend", ["onnx", "artifacts"])
def test_beats_the_trigram_on_unseen_combinations_on_both_backends(corpus, backend, tmp_path):
    train, held = corpus
    tok, trainer = _train(corpus, backend, tmp_path, epochs=3)
    train_rows, held_rows = [tok.encode(s) for s in train], [tok.encode(s) for s in held]
    xh, yh = windows(held_rows, 4)
    result = trainer.evaluate(Dataset({"x": xh}, yh, "held out"))
    trigram = ngram_perplexity(train_rows, held_rows, 3, len(tok.tokens))
    # the same words predicted: the perplexity is exp of the mean cross-entropy
    assert result["perplexity"] == pytest.approx(np.exp(result["loss"]), rel=1e-9)
    assert result["perplexity"] < 0.7 * trigram, (result["perplexity"], trigram)
    # and the trigram is the better model of what it has seen (so the comparison is a fair one)
    assert ngram_perplexity(train_rows, train_rows, 3, len(tok.tokens)) < result["perplexity"]


def test_words_of_a_kind_are_each_others_nearest_neighbours(corpus, tmp_path):
    _, trainer = _train(corpus, "onnx", tmp_path, epochs=6)
    words, vectors = word_vectors(trainer.inference_model())
    kind_of = {w: k for k, ws in KINDS.items() for w in ws}
    good = []
    for word in kind_of:
        found = nearest(words, vectors, word, 5)
        assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)  # closest first
        good.append(sum(kind_of.get(w) == kind_of[word] for w, _ in found) >= 3)
    assert np.mean(good) >= 0.8, np.mean(good)
    # the vectors are the model's table: cosine similarities checked in numpy
    a, b = vectors[words.index(word)], vectors[words.index(found[0][0])]
    assert found[0][1] == pytest.approx(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)), rel=1e-5)
    assert load(trainer.export()).card.task == "language_model"
