"""The captioner against a PyTorch twin on the same weights (ConvNet, location vectors, LSTM decoder,
Luong attention): forward and the gradient of every parameter through onnxforge.runtime.autodiff,
for both LSTM builds; it trains on both backends; greedy and beam decoding from an image memory;
and the review's Figure 3 in small: held-out strips of three digits captioned exactly, each
word's attention over the digit it names."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import numpy_helper

from onnxforge.graphs.captioner import captioner
from onnxforge.graphs.lstm_gates import onnx_to_torch, torch_to_onnx
from onnxforge.runtime import Trainer
from onnxforge.runtime.autodiff import gradient_model
from onnxforge.runtime.data.datasets import Dataset
from onnxforge.runtime.errors import ConfigError, InputError, ModelError
from onnxforge.runtime.inference.decoding import EOS, decode, teacher_forcing
from onnxforge.runtime.inference.session import Session
from onnxforge.runtime.ort.device import resolve_device
from onnxforge.samples import caption_digits, load_digits

CPU = resolve_device("cpu")


class TorchCaptioner(torch.nn.Module):
    def __init__(self, model: onnx.ModelProto, args: dict):
        super().__init__()
        self.p = torch.nn.ParameterDict({t.name.replace(".", "__"): torch.nn.Parameter(torch.tensor(
            numpy_helper.to_array(t).copy())) for t in model.graph.initializer})
        self.args, h = args, args["hidden"]
        self.lstm = torch.nn.LSTM(args["embed"], h, batch_first=True)
        w, r, b = (self.p[f"decoder__lstm__{k}"].detach() for k in "WRB")
        self.lstm.weight_ih_l0.data, self.lstm.weight_hh_l0.data = onnx_to_torch(w[0]).clone(), onnx_to_torch(r[0]).clone()
        self.lstm.bias_ih_l0.data, self.lstm.bias_hh_l0.data = onnx_to_torch(b[0, : 4 * h]).clone(), onnx_to_torch(b[0, 4 * h:]).clone()

    def forward(self, image, dec_in):
        p, x = self.p, image
        for i in range(1, len(self.args["channels"]) + 1):
            x = F.max_pool2d(F.relu(F.conv2d(x, p[f"conv{i}__weight"], p[f"conv{i}__bias"], padding=1)), 2)
        memory = x.flatten(2).transpose(1, 2) @ p["encoder__project__weight"].T + p["encoder__project__bias"]
        memory = memory + p["encoder__position"]
        dec, _ = self.lstm(F.embedding(dec_in, p["decoder__embedding__weight"]))
        query = dec @ p["attention__weight"] if self.args["attention"] == "general" else dec
        weights = torch.softmax(query @ memory.transpose(1, 2), dim=-1)
        both = torch.cat([weights @ memory, dec], dim=-1)
        top = torch.tanh(both @ p["combine__weight"].T + p["combine__bias"])
        return top @ p["output__weight"].T + p["output__bias"], weights

    def grads(self) -> dict:
        """Gradients by ONNX parameter name (the LSTM's put back into ONNX layout)."""
        out = {k.replace("__", "."): v.grad for k, v in self.p.items() if v.grad is not None}
        lstm = self.lstm
        out["decoder.lstm.W"] = torch_to_onnx(lstm.weight_ih_l0.grad)[None]
        out["decoder.lstm.R"] = torch_to_onnx(lstm.weight_hh_l0.grad)[None]
        out["decoder.lstm.B"] = torch.cat([torch_to_onnx(lstm.bias_ih_l0.grad), torch_to_onnx(lstm.bias_hh_l0.grad)])[None]
        return out


@pytest.mark.parametrize("impl,attention", [("node", "dot"), ("unrolled", "general")])
def test_forward_and_gradients_equal_pytorch(impl, attention):
    model = captioner((1, 8, 12), (3, 4), 9, embed=5, hidden=6, attention=attention, max_len=4, seed=1, impl=impl)
    rng = np.random.default_rng(0)
    for t in model.graph.initializer:  # nonzero biases, so their gradients are tested too
        v = numpy_helper.to_array(t)
        t.CopyFrom(numpy_helper.from_array((v + rng.normal(0, 0.2, v.shape)).astype(np.float32), t.name))
    image = rng.random((3, 1, 8, 12)).astype(np.float32)
    dec_in = rng.integers(0, 9, (3, 4)).astype(np.int64)
    seed = rng.standard_normal((3, 4, 9)).astype(np.float32)
    names = [t.name for t in model.graph.initializer]
    grads = gradient_model(model, names, "logits", seed="logits_seed")
    out = Session(grads, CPU).run({"image": image, "decoder_input": dec_in, "logits_seed": seed})

    args = {"channels": [3, 4], "hidden": 6, "embed": 5, "attention": attention}
    twin = TorchCaptioner(model, args)
    logits, weights = twin(torch.tensor(image), torch.tensor(dec_in))
    (logits * torch.tensor(seed)).sum().backward()
    np.testing.assert_allclose(out["logits"], logits.detach().numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(out["attention"], weights.detach().numpy(), atol=1e-5, rtol=1e-5)
    expected = twin.grads()
    for name in names:
        np.testing.assert_allclose(out[f"{name}_grad"], expected[name].numpy(), atol=1e-5, rtol=1e-5, err_msg=name)


def test_bad_arguments_are_one_config_error():
    with pytest.raises(ConfigError, match="attention must be one of dot, general"):
        captioner(attention="bahdanau")
    with pytest.raises(ConfigError, match="too small for 4 pooling stages"):
        captioner((1, 8, 24), (4, 4, 4, 4))
    with pytest.raises(ConfigError, match="image_shape must be three positive integers"):
        captioner((8, 24))


def _strips(n, seed, split=0):
    x, y = load_digits("images")[split]
    strips, digits = caption_digits.make_strips(x, y, n, seed)
    tgt = np.concatenate([digits + 4, np.full((n, 1), EOS)], axis=1).astype(np.int64)  # ids 4..13 = digits
    return strips, tgt


@pytest.mark.parametrize("backend", ["onnx", "artifacts"])
def test_trains_on_both_backends(backend, tmp_path):
    strips, tgt = _strips(1024, 0)
    model = captioner((1, 8, 24), (8, 16), 14, embed=8, hidden=32, max_len=4, impl="unrolled")
    trainer = Trainer(model, tmp_path / backend, lr=1e-2, backend=backend, progress=False)
    history = trainer.fit(Dataset({"image": strips, "decoder_input": teacher_forcing(tgt)}, tgt, "strips"), epochs=4,
                          batch_size=32)
    assert history[-1]["loss"] < 0.5 * history[0]["loss"], [r["loss"] for r in history]
    tokens, attention = decode(trainer.session(), strips[:8], max_len=4)
    assert tokens.shape == (8, 4) and attention.shape == (8, 4, 12)
    beam, beam_attention = decode(trainer.session(), strips[:8], max_len=4, beam=3)
    assert beam.shape[0] == 8 and beam_attention.shape[-1] == 12
    np.testing.assert_allclose(attention[tokens != 0].sum(-1), 1.0, atol=1e-5)


def test_decoding_refuses_what_is_no_image(tmp_path):
    session = Session(captioner(max_len=4), CPU)
    with pytest.raises(InputError, match=r"image must be \[N, C, H, W\] floats; got int64"):
        decode(session, np.zeros((2, 1, 8, 24), np.int64))
    from onnxforge.graphs.mlp import mlp

    with pytest.raises(ModelError, match="decoding needs an encoder-decoder"):
        decode(Session(mlp(4, [3], 2), CPU), np.zeros((1, 4), np.float32))


@pytest.mark.slow
def test_held_out_strips_captioned_exactly_with_attention_on_the_named_digit(tmp_path):
    result = caption_digits.train_captioner(tmp_path / "run", progress=False, write_files=False)
    assert result["exact_match"] >= 0.9, result
    assert result["attention_on_named_digit"] >= 0.9, result
