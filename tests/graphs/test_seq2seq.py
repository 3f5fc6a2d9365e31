"""The encoder-decoder against a PyTorch encoder-decoder with the same attention on the same
weights (its encoder over packed sequences): forward pass, one training step through the real
Trainer, greedy and beam decoding; one answer for one source at every pad width and batch mix."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from onnxforge.graphs.lstm_gates import onnx_to_torch, torch_to_onnx
from onnxforge.graphs.seq2seq import seq2seq
from onnxforge.runtime import Trainer, load
from onnxforge.runtime.inference.decoding import decode, sequence_metrics
from onnxforge.runtime.errors import ConfigError, InputError, ModelError
from onnxforge.runtime.tasks.evaluation import evaluate

torch.set_default_dtype(torch.float32)


def _onnx_to_torch_lstm(w, r, b, hidden):
    """ONNX gate order (i, o, f, c) -> PyTorch's (i, f, g=c, o); B = [Wb; Rb]."""
    return onnx_to_torch(w[0]), onnx_to_torch(r[0]), onnx_to_torch(b[0, : 4 * hidden]), onnx_to_torch(b[0, 4 * hidden :])


class TorchSeq2Seq(torch.nn.Module):
    """A plain PyTorch LSTM encoder-decoder with Luong attention (dot / general) and PAD masking."""

    def __init__(self, model: onnx.ModelProto):
        super().__init__()
        p = {t.name: numpy_helper.to_array(t).copy() for t in model.graph.initializer}
        meta = {m.key: m.value for m in model.metadata_props}
        import json

        args = json.loads(meta["onnxforge.args"])
        self.attention, self.hidden, self.layers = args["attention"], args["hidden"], args["layers"]
        h = self.hidden
        self.src_emb = torch.nn.Embedding.from_pretrained(torch.tensor(p["encoder.embedding.weight"]), freeze=False)
        self.tgt_emb = torch.nn.Embedding.from_pretrained(torch.tensor(p["decoder.embedding.weight"]), freeze=False)
        self.enc = torch.nn.LSTM(args["embed"], h, num_layers=self.layers, batch_first=True)
        self.dec = torch.nn.LSTM(args["embed"], h, num_layers=self.layers, batch_first=True)
        for side, lstm in (("encoder", self.enc), ("decoder", self.dec)):
            for layer in range(self.layers):
                name = f"{side}.lstm" if self.layers == 1 else f"{side}.lstm{layer + 1}"
                wi, wh, bi, bh = _onnx_to_torch_lstm(p[f"{name}.W"], p[f"{name}.R"], p[f"{name}.B"], h)
                for attr, value in (("weight_ih", wi), ("weight_hh", wh), ("bias_ih", bi), ("bias_hh", bh)):
                    getattr(lstm, f"{attr}_l{layer}").data = torch.tensor(value)
        if self.attention == "general":
            self.wa = torch.nn.Parameter(torch.tensor(p["attention.weight"]))
        if self.attention is not None:
            self.combine = torch.nn.Linear(2 * h, h)
            self.combine.weight.data, self.combine.bias.data = torch.tensor(p["combine.weight"]), torch.tensor(p["combine.bias"])
        self.out = torch.nn.Linear(h, p["output.weight"].shape[0])
        self.out.weight.data, self.out.bias.data = torch.tensor(p["output.weight"]), torch.tensor(p["output.bias"])

    def encode(self, src):
        """The encoder over packed sequences: each row up to its last non-PAD token (at least one)."""
        steps = torch.arange(1, src.shape[1] + 1)
        lengths = ((src != 0) * steps).amax(dim=1).clamp(min=1)
        packed = torch.nn.utils.rnn.pack_padded_sequence(self.src_emb(src), lengths, batch_first=True,
                                                         enforce_sorted=False)
        memory, state = self.enc(packed)
        memory, _ = torch.nn.utils.rnn.pad_packed_sequence(memory, batch_first=True, total_length=src.shape[1])
        return memory, state

    def step(self, src, memory, dec_in, state):
        dec, state = self.dec(self.tgt_emb(dec_in), state)
        if self.attention is None:
            return self.out(dec), None, state
        query = dec @ self.wa if self.attention == "general" else dec
        scores = query @ memory.transpose(1, 2) + (src == 0).float()[:, None, :] * -1e9
        weights = torch.softmax(scores, dim=-1)
        context = weights @ memory
        return self.out(torch.tanh(self.combine(torch.cat([context, dec], dim=-1)))), weights, state

    def forward(self, src, dec_in):
        memory, state = self.encode(src)
        logits, weights, _ = self.step(src, memory, dec_in, state)
        return logits, weights

    def named_onnx_grads(self):
        """Gradients keyed by the ONNX parameter names (LSTM gates back in ONNX order)."""
        g = {"encoder.embedding.weight": self.src_emb.weight.grad, "decoder.embedding.weight": self.tgt_emb.weight.grad,
             "output.weight": self.out.weight.grad, "output.bias": self.out.bias.grad}
        if self.attention is not None:
            g.update({"combine.weight": self.combine.weight.grad, "combine.bias": self.combine.bias.grad})
        if self.attention == "general":
            g["attention.weight"] = self.wa.grad
        g = {k: v.numpy() for k, v in g.items()}
        for side, lstm in (("encoder", self.enc), ("decoder", self.dec)):
            for layer in range(self.layers):
                name = f"{side}.lstm" if self.layers == 1 else f"{side}.lstm{layer + 1}"
                gw = torch_to_onnx(getattr(lstm, f"weight_ih_l{layer}").grad.numpy())
                gr = torch_to_onnx(getattr(lstm, f"weight_hh_l{layer}").grad.numpy())
                gb = np.concatenate([torch_to_onnx(getattr(lstm, f"bias_ih_l{layer}").grad.numpy()),
                                     torch_to_onnx(getattr(lstm, f"bias_hh_l{layer}").grad.numpy())])
                g[f"{name}.W"], g[f"{name}.R"], g[f"{name}.B"] = gw[None], gr[None], gb[None]
        return g


def _batch(rng, n=6, s=7, t=5, src_vocab=11, tgt_vocab=9):
    src = rng.integers(3, src_vocab, (n, s))
    tgt = rng.integers(3, tgt_vocab, (n, t))
    for i in range(n):  # ragged lengths: PAD after the end of each row
        ls, lt = rng.integers(2, s + 1), rng.integers(1, t)
        src[i, ls:] = 0
        tgt[i, lt] = 2
        tgt[i, lt + 1 :] = 0
    dec_in = np.concatenate([np.ones((n, 1), np.int64), tgt[:, :-1]], axis=1)
    return src.astype(np.int64), dec_in.astype(np.int64), tgt.astype(np.int64)


CASES = [("dot", 1), ("general", 1), (None, 1), ("general", 2)]


@pytest.mark.parametrize("attention,layers", CASES)
def test_forward_matches_torch(attention, layers, rng):
    model = seq2seq(11, 9, 6, 8, layers, attention, seed=3)
    src, dec_in, _ = _batch(rng)
    out = load(model, device="cpu").run({"src": src, "decoder_input": dec_in})
    ref = TorchSeq2Seq(model)
    with torch.no_grad():
        logits, weights = ref(torch.tensor(src), torch.tensor(dec_in))
    assert out["logits"].shape == (6, 5, 9)
    np.testing.assert_allclose(out["logits"], logits.numpy(), atol=1e-5, rtol=0)
    if attention is None:
        assert "attention" not in out
    else:
        np.testing.assert_allclose(out["attention"], weights.numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(out["attention"].sum(-1), 1.0, atol=1e-5)
        assert np.all(out["attention"][np.broadcast_to((src == 0)[:, None, :], out["attention"].shape)] < 1e-6)


@pytest.mark.parametrize("attention,layers", [("general", 1), ("dot", 2)])
def test_one_training_step_matches_torch_autograd(attention, layers, rng, tmp_path):
    model = seq2seq(11, 9, 6, 8, layers, attention, seed=5)
    src, dec_in, tgt = _batch(rng, n=8)
    lr = 0.5
    trainer = Trainer(model, tmp_path / "run", optimizer="sgd", lr=lr, progress=False, device="cpu")
    before = trainer.parameters()
    trainer.fit(({"src": src}, tgt), epochs=1, batch_size=len(src), shuffle=False)
    after = trainer.parameters()

    ref = TorchSeq2Seq(model)
    logits, _ = ref(torch.tensor(src), torch.tensor(dec_in))
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 9), torch.tensor(tgt).reshape(-1), ignore_index=0)
    loss.backward()
    assert trainer.history[0]["loss"] == pytest.approx(loss.item(), abs=1e-5)
    grads = ref.named_onnx_grads()
    assert set(grads) == set(after)
    for name, g in grads.items():
        np.testing.assert_allclose(after[name], before[name] - lr * g, atol=1e-5, rtol=0, err_msg=name)
        assert np.abs(g).max() > 0, name  # every parameter takes part


def _reversal(rng, n, length=6, vocab=10):
    src = np.zeros((n, length), np.int64)
    tgt = np.zeros((n, length + 1), np.int64)
    for i in range(n):
        m = rng.integers(2, length + 1)
        s = rng.integers(3, vocab, m)
        src[i, :m], tgt[i, :m], tgt[i, m] = s, s[::-1], 2
    return src, tgt


def test_attention_decoder_trains(rng, tmp_path):
    """Reversing sequences of 2-6 symbols: loss falls every epoch, held-out exact match climbs."""
    src, tgt = _reversal(rng, 1500)
    vsrc, vtgt = _reversal(rng, 200)
    model = seq2seq(10, 10, 16, 32, attention="dot", max_len=8)
    untrained = evaluate(load(model, device="cpu"), ({"src": vsrc}, vtgt))
    trainer = Trainer(model, tmp_path / "run", lr=1e-2, progress=False, device="cpu")
    history = trainer.fit(({"src": src}, tgt), ({"src": vsrc}, vtgt), epochs=4, batch_size=32)
    losses = [h["loss"] for h in history]
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < 0.1 * losses[0]
    assert untrained["exact_match"] < 0.05 and untrained["loss"] > 1.5
    assert history[-1]["val_exact_match"] >= 0.9 and history[-1]["val_token_accuracy"] >= 0.95


def _torch_greedy(ref, src, max_len):
    """Incremental greedy decoding in PyTorch: one decoder step at a time, carrying the LSTM state."""
    s = torch.tensor(src)
    with torch.no_grad():
        memory, state = ref.encode(s)
        tok = torch.ones(len(src), 1, dtype=torch.long)
        done = torch.zeros(len(src), dtype=torch.bool)
        out, atts = [], []
        for _ in range(max_len):
            logits, w, state = ref.step(s, memory, tok, state)
            last = logits[:, -1].clone()
            last[:, :2] = -float("inf")
            nxt = last.argmax(-1)
            nxt[done] = 0
            out.append(nxt)
            atts.append(w[:, -1] if w is not None else None)
            done |= nxt == 2
            tok = nxt[:, None]
            if done.all():
                break
    return torch.stack(out, 1).numpy(), (torch.stack(atts, 1).numpy() if atts[0] is not None else None)


@pytest.mark.parametrize("attention", ["general", None])
def test_greedy_decode_matches_incremental_torch_decode(attention, rng):
    model = seq2seq(11, 9, 6, 8, 1, attention, seed=7, max_len=6)
    src, _, _ = _batch(rng, n=12)
    session = load(model, device="cpu")
    tokens, att = decode(session, src, batch_size=5)   # several chunks
    ref_tokens, ref_att = _torch_greedy(TorchSeq2Seq(model), src, 6)
    np.testing.assert_array_equal(tokens, ref_tokens)
    if attention is None:
        assert att is None
    else:
        ref_att[ref_tokens == 0] = 0
        np.testing.assert_allclose(att, ref_att, atol=1e-5)
    assert session.decode(src, beam=1)[0].tolist() == tokens.tolist()


def test_beam_search_finds_the_most_probable_sequence(rng):
    """Width 9 keeps every prefix over the 3 emittable ids (2, 3, 4) for 3 steps: exhaustive."""
    model = seq2seq(11, 5, 6, 8, 1, "dot", seed=11, max_len=3)
    src, _, _ = _batch(rng, n=4)
    session = load(model, device="cpu")
    tokens, att = decode(session, src, beam=9)
    ref = TorchSeq2Seq(model)
    for i in range(len(src)):
        best, best_score = None, -np.inf
        for length in (1, 2, 3):
            for seq in itertools.product((2, 3, 4), repeat=length):
                if 2 in seq[:-1] or (length < 3 and seq[-1] != 2):
                    continue  # EOS only last; shorter than max_len only when finished
                dec_in = torch.tensor([[1, *seq[:-1]]])
                with torch.no_grad():
                    logits, _ = ref(torch.tensor(src[i : i + 1]), dec_in)
                lp = torch.log_softmax(logits[0].double(), -1)
                score = float(sum(lp[t, s] for t, s in enumerate(seq)))
                if score > best_score:
                    best, best_score = list(seq), score
        got = [int(t) for t in tokens[i] if t != 0]
        assert got == best, i
    greedy, _ = decode(session, src)
    assert att.shape == (4, tokens.shape[1], src.shape[1])
    assert greedy.shape[0] == 4


def test_eval_reports_exact_match_and_token_accuracy(rng, tmp_path):
    model = seq2seq(11, 9, 6, 8, 1, "dot", seed=2, max_len=5)
    src, dec_in, tgt = _batch(rng, n=20)
    session = load(model, device="cpu")
    # make some rows decode exactly right: their targets are the model's own greedy output
    own, _ = _torch_greedy(TorchSeq2Seq(model), src, 5)
    for i in range(0, 20, 3):
        row = np.zeros(5, np.int64)
        seq = own[i][own[i] != 0][:5]
        if seq[-1] != 2:
            seq[-1] = 2
        row[: len(seq)] = seq
        tgt[i] = row
    result = evaluate(session, ({"src": src}, tgt))
    # numpy reference: decoded rows (cut at EOS) against the targets
    exact, right, total = 0, 0, 0
    for d, g in zip(own, tgt):
        d = list(d) + [0] * (5 - len(d))
        g_end = list(g).index(2)
        d_end = d.index(2) if 2 in d else None
        exact += d_end == g_end and d[: g_end + 1] == list(g[: g_end + 1])
        for t in range(5):
            if g[t] != 0:
                total += 1
                right += d[t] == g[t]
    assert result["exact_match"] == pytest.approx(exact / 20)
    assert result["token_accuracy"] == pytest.approx(right / total)
    assert 0 < result["exact_match"] < 1
    dec_in = np.concatenate([np.ones((20, 1), np.int64), tgt[:, :-1]], axis=1)
    with torch.no_grad():
        logits, _ = TorchSeq2Seq(model)(torch.tensor(src), torch.tensor(dec_in))
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, 9), torch.tensor(tgt).reshape(-1), ignore_index=0)
    assert result["loss"] == pytest.approx(ce.item(), abs=1e-5)
    assert sequence_metrics(np.asarray(tgt), tgt) == {"exact_match": 1.0, "token_accuracy": 1.0}


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ConfigError, match="attention must be"):
        seq2seq(10, 10, 4, 4, attention="additive")
    with pytest.raises(ConfigError, match="size >= 4"):
        seq2seq(3, 10, 4, 4)
    with pytest.raises(ConfigError, match="tgt_tokens must hold one string per id"):
        seq2seq(10, 5, 4, 4, tgt_tokens=["a"])
    session = load(seq2seq(10, 10, 4, 4), device="cpu")
    with pytest.raises(InputError, match="src must be"):
        decode(session, np.zeros((2, 3), np.float32))
    with pytest.raises(ConfigError, match="beam must be"):
        decode(session, np.ones((2, 3), np.int64), beam=0)
    from onnxforge.graphs import mlp

    with pytest.raises(ModelError, match="task 'seq2seq'"):
        decode(load(mlp(4, [4], 3), device="cpu"), np.ones((2, 3), np.int64))


def test_model_is_valid_onnx_with_named_parameters():
    model = seq2seq(12, 10, 8, 16, 2, "general")
    onnx.checker.check_model(model, full_check=True)
    names = {t.name for t in model.graph.initializer}
    assert {"encoder.embedding.weight", "encoder.lstm1.W", "encoder.lstm2.R", "decoder.lstm2.B", "attention.weight",
            "combine.weight", "output.bias"} <= names
    lstm_nodes = [n for n in model.graph.node if n.op_type == "LSTM"]
    assert len(lstm_nodes) == 4 and all(len(n.input) == 7 for n in lstm_nodes)
