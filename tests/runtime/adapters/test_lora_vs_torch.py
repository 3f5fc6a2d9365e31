"""The judged LoRA case: a transformer classifier (``nn.TransformerEncoder``) pre-trained in PyTorch on
one labelling and exported, then fine-tuned with ``--lora 8`` on a held-out labelling. Held-out
accuracy within 3 points of the same LoRA trained in PyTorch (same rank, targets, initial adapters,
epochs, batches, learning rate, AdamW); the base weights in model.lora.onnx bit-identical to the
input; trainable parameters at most 5% of the total."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from onnx import numpy_helper

from onnxforge.cli.main import cli
from onnxforge.runtime.adapters import find_targets
from onnxforge.runtime.adapters.lora import initial_adapters

V, USED, T, D, FF = 2000, 64, 9, 128, 512  # a 2,000-token vocabulary; the tasks use its first 64 tokens
EPOCHS, LR, BATCH, RANK, SEED = 4, 5e-3, 32, 8, 5


class Classifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(V, D)
        self.pos = torch.nn.Parameter(torch.randn(T, D) * 0.1)
        layer = torch.nn.TransformerEncoderLayer(D, 4, FF, dropout=0.0, batch_first=True)
        self.enc = torch.nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = torch.nn.Linear(D, 2)

    def forward(self, x):
        return self.head(self.enc(self.emb(x) + self.pos).mean(1))


def _tasks(n, seed):
    """Token sequences and two labellings: most tokens in the lower half (pre-training), most tokens
    even (the held-out task)."""
    x = np.random.default_rng(seed).integers(0, USED, (n, T)).astype(np.int64)
    return x, ((x < USED // 2).sum(1) > T // 2).astype(np.int64), ((x % 2 == 0).sum(1) > T // 2).astype(np.int64)


def _fit_torch(model, params, x, y, epochs=EPOCHS):
    opt = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    for _ in range(epochs):
        for s in range(0, len(x), BATCH):
            loss = torch.nn.functional.cross_entropy(model(torch.tensor(x[s:s + BATCH])), torch.tensor(y[s:s + BATCH]))
            opt.zero_grad()
            loss.backward()
            opt.step()


class _Delta(torch.nn.Module):
    """W + scale * (A @ B) in W's layout: ``transposed`` when the ONNX node multiplies by W^T."""

    def __init__(self, a, b, transposed):
        super().__init__()
        self.a, self.b, self.transposed = torch.nn.Parameter(torch.tensor(a)), torch.nn.Parameter(torch.tensor(b)), transposed

    def forward(self, w):
        delta = self.a @ self.b
        return w + (delta.T if self.transposed else delta)


def _torch_lora(model, onnx_model, adapters):
    """PyTorch LoRA on the weights onnxforge adapts, with its initial adapters: each ONNX target is
    matched to the PyTorch weight it was exported from (by value: the exporter folds nn.Linear's
    transpose into a new initialiser)."""
    params = dict(model.named_parameters())
    values = {t.name: numpy_helper.to_array(t) for t in onnx_model.graph.initializer}
    deltas = []
    for target in find_targets(onnx_model):
        w = values[target.weight]
        owner = next(n for n, p in params.items() if p.dim() == 2 and (
            (p.shape == w.shape and np.array_equal(p.detach().numpy(), w)) or
            (p.shape == w.T.shape and np.array_equal(p.detach().numpy(), w.T))))
        stored_as_out_in = params[owner].shape == (target.n, target.k)  # PyTorch's [out, in]
        module_name, attr = owner.rsplit(".", 1)
        delta = _Delta(adapters[target.weight + ".lora_A"], adapters[target.weight + ".lora_B"], stored_as_out_in)
        torch.nn.utils.parametrize.register_parametrization(model.get_submodule(module_name), attr, delta)
        deltas.append(delta)
    for p in model.parameters():
        p.requires_grad_(False)
    trainable = [p for d in deltas for p in (d.a, d.b)]
    for p in trainable:
        p.requires_grad_(True)
    return trainable


@pytest.fixture
def one_torch_thread():
    """PyTorch on one thread: on the shared 2-core machine its pool of many threads ran 3-9x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.torch
@pytest.mark.slow
def test_lora_8_matches_pytorch_lora(tmp_path, one_torch_thread):
    torch.manual_seed(0)
    x, pre, _ = _tasks(1024, 0)
    fx, _, fy = _tasks(1024, 1)
    tx, _, ty = _tasks(512, 2)
    model = Classifier()
    _fit_torch(model, list(model.parameters()), x, pre, epochs=2)  # pre-training on the first labelling
    model.eval()
    path = tmp_path / "pretrained.onnx"
    torch.onnx.export(model, (torch.tensor(x[:2]),), str(path), input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}}, dynamo=False, opset_version=17)
    np.savez(tmp_path / "ft.npz", x=fx, y=fy)
    np.savez(tmp_path / "test.npz", x=tx, y=ty)

    args = ["train", str(path), "--data", str(tmp_path / "ft.npz"), "--loss", "cross-entropy", "--epochs", str(EPOCHS),
            "--batch-size", str(BATCH), "--lr", str(LR), "--no-shuffle", "--seed", str(SEED), "--lora", str(RANK),
            "--out", str(tmp_path / "run"), "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["trainable_parameters"] <= 0.05 * doc["total_parameters"], doc

    import onnxruntime as ort

    ours = ort.InferenceSession(str(tmp_path / "run" / "model.onnx")).run(None, {"x": tx})[0].argmax(1)
    our_accuracy = float((ours == ty).mean())

    source = onnx.load(path)
    theirs_model = Classifier()
    theirs_model.load_state_dict(model.state_dict())
    trainable = _torch_lora(theirs_model, source, initial_adapters(find_targets(source), RANK, SEED))
    assert sum(p.numel() for p in trainable) == doc["trainable_parameters"]
    theirs_model.train()
    _fit_torch(theirs_model, trainable, fx, fy)
    theirs_model.eval()
    with torch.no_grad():
        torch_accuracy = float((theirs_model(torch.tensor(tx)).argmax(1).numpy() == ty).mean())
        before = float((model(torch.tensor(tx)).argmax(1).numpy() == ty).mean())
    print(f"held-out accuracy: onnxforge {our_accuracy:.4f}, PyTorch {torch_accuracy:.4f}, before {before:.4f}")
    assert torch_accuracy > before + 0.15  # the held-out task was learnt, not already known
    assert abs(our_accuracy - torch_accuracy) <= 0.03

    lora_weights = {t.name: t for t in onnx.load(tmp_path / "run" / "model.lora.onnx").graph.initializer}
    for t in source.graph.initializer:
        assert lora_weights[t.name].SerializeToString() == t.SerializeToString(), t.name
