"""Issue 15: the token models of ``lstm()`` (vocab input; tagger and sequence heads) ignore trailing
padding (id 0). One row gives one answer at every pad width 0..5 and in every batch mix, in the
LSTM-node and unrolled builds, equal to PyTorch's nn.LSTM over packed sequences; one SGD step on
a padded batch equals PyTorch's on the packed one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from test_lstm import onnx_weights, to_torch_state, torch_net

from onnxforge.graphs import lstm
from onnxforge.runtime import Trainer, load
from onnxforge.runtime.modelio.files import get_metadata

ROW = np.array([5, 3, 8, 2], np.int64)
CONFIGS = {
    "sequence": dict(head="sequence", layers=1, bidirectional=False),
    "sequence-bidirectional-2": dict(head="sequence", layers=2, bidirectional=True),
    "tagger-2": dict(head="tagger", layers=2, bidirectional=False),
    "tagger-bidirectional": dict(head="tagger", layers=1, bidirectional=True),
}


def _model(name: str, impl: str = "node", steps: int | None = None):
    return lstm(vocab=9, embed=3, hidden=4, classes=5, seed=7, impl=impl, steps=steps, **CONFIGS[name])


def _padded(rows, width: int) -> np.ndarray:
    out = np.zeros((len(rows), width), np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def _packed_logits(net, rows, head: str, bidirectional: bool):
    """PyTorch on the rows as packed sequences (each read up to its own length)."""
    lengths = [len(r) for r in rows]
    emb = net.embed(torch.tensor(_padded(rows, max(lengths))))
    out, (h_n, _) = net.lstm(pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False))
    if head == "tagger":
        return net.fc(pad_packed_sequence(out, batch_first=True)[0])
    return net.fc(torch.cat([h_n[-2], h_n[-1]], -1) if bidirectional else h_n[-1])


@pytest.mark.parametrize("impl", ["node", "unrolled"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_one_row_one_answer_at_every_pad_width_and_batch_mix_equal_to_packed_pytorch(name, impl):
    cfg = CONFIGS[name]
    rng = np.random.default_rng(3)
    others = [rng.integers(1, 9, n) for n in (1, 3, 9)]
    tagger = cfg["head"] == "tagger"
    node_weights = onnx_weights(_model(name))
    first = None
    for pad in range(6):
        width = len(ROW) + pad
        model = _model(name, impl, steps=width if impl == "unrolled" else None)
        for k, v in onnx_weights(model).items():  # the same parameters at every width
            np.testing.assert_array_equal(v, node_weights[k], err_msg=k)
        session = load(model, "cpu")
        for mix in ([], others[:1], others[:2], others):
            if any(len(o) > width for o in mix):
                continue
            logits = session.run({"x": _padded([ROW, *mix], width)})["logits"]
            got = logits[0, : len(ROW)] if tagger else logits[0]
            if first is None:
                first = got
            np.testing.assert_array_equal(got, first, err_msg=f"pad width {pad}, {len(mix)} other rows")
            if tagger and pad and not cfg["bidirectional"]:  # a padded step repeats the kept state
                np.testing.assert_array_equal(logits[0, len(ROW):], np.repeat(logits[0, len(ROW) - 1:len(ROW)], pad, 0))
    with torch.no_grad():
        ref = _packed_logits(torch_net(_model(name)), [ROW, *others], cfg["head"], cfg["bidirectional"])[0]
    np.testing.assert_allclose(first, ref[: len(ROW)].numpy() if tagger else ref.numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["sequence-bidirectional-2", "tagger-bidirectional"])
def test_one_sgd_step_on_a_padded_batch_equals_pytorch_on_packed_sequences(tmp_path, name, training_backend):
    cfg = CONFIGS[name]
    rng = np.random.default_rng(5)
    rows = [rng.integers(1, 9, n) for n in (4, 1, 7, 3, 7, 2)]
    x = _padded(rows, 9)
    if cfg["head"] == "tagger":
        y = np.where(x > 0, rng.integers(1, 5, x.shape), 0).astype(np.int64)  # label 0 at padding: ignored
    else:
        y = rng.integers(0, 5, len(rows)).astype(np.int64)
    model = _model(name)
    net = torch_net(model)
    lr = 0.5
    trainer = Trainer(model, tmp_path / "run", optimizer="sgd", lr=lr, device="cpu", progress=False, backend=training_backend)
    trainer.fit((x, y), epochs=1, batch_size=len(rows), shuffle=False)
    logits = _packed_logits(net, rows, cfg["head"], cfg["bidirectional"])
    target = torch.tensor(y[:, : logits.shape[1]] if cfg["head"] == "tagger" else y)
    torch.nn.functional.cross_entropy(logits.reshape(-1, 5), target.reshape(-1), ignore_index=0 if cfg["head"] == "tagger"
                                      else -100).backward()
    with torch.no_grad():
        for p in net.parameters():
            p -= lr * p.grad
    args = get_metadata(model)["args"]
    after = to_torch_state(trainer.parameters(), args)
    for key, value in net.state_dict().items():
        np.testing.assert_allclose(after[key].numpy(), value.numpy(), atol=1e-5, rtol=0, err_msg=key)
