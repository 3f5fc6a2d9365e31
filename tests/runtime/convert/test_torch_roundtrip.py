"""Round trips through PyTorch: a PyTorch ConvNet to ONNX and back, onnxforge's ConvNet and LSTMs to
PyTorch (.pt2) and back, each within 1e-4 of the original on a batch size the export never saw.
The interpreter module is checked against hand-written PyTorch layers (nn.Linear, nn.LSTM) on the
same weights: outputs and gradients."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from onnxforge.graphs import convnet, lstm, mlp
from onnxforge.graphs.lstm_gates import onnx_to_torch, torch_to_onnx
from onnxforge.runtime import load
from onnxforge.runtime.convert import convert
from onnxforge.runtime.convert.to_torch import to_torch_module
from onnxforge.runtime.modelio.files import get_metadata, save_model

TOL = 1e-4


class TorchConvNet(torch.nn.Module):
    """A ConvNet as users write it: BatchNorm, both poolings, view(x.size(0), -1)."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.conv2 = torch.nn.Conv2d(8, 16, 3, padding=1)
        self.fc1 = torch.nn.Linear(16 * 2 * 2, 32)
        self.fc2 = torch.nn.Linear(32, 10)

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        x = torch.nn.functional.avg_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.tanh(self.fc1(x.view(x.size(0), -1)))
        return torch.softmax(self.fc2(x), dim=-1)


def torch_convnet():
    torch.manual_seed(0)
    net = TorchConvNet()
    with torch.no_grad():  # non-trivial batch-norm statistics
        net.bn1.running_mean.uniform_(-0.5, 0.5)
        net.bn1.running_var.uniform_(0.5, 2.0)
    return net.eval()


def initialisers(path) -> dict:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


@pytest.mark.parametrize("fmt", ["pt2", "torchscript"])
def test_pytorch_convnet_to_onnx_and_back(fmt, tmp_path):
    net = torch_convnet()
    if fmt == "pt2":
        program = torch.export.export(net, (torch.randn(2, 1, 8, 8),),
                                      dynamic_shapes=({0: torch.export.Dim("batch")},))
        torch.export.save(program, tmp_path / "net.pt2")
        first = convert(tmp_path / "net.pt2", tmp_path / "net.onnx")
    else:
        torch.jit.script(net).save(str(tmp_path / "net.pt"))
        first = convert(tmp_path / "net.pt", tmp_path / "net.onnx", input_shapes=["1,1,8,8"], trust_source=True)
    assert first["max_abs_diff"] < TOL and first["dynamic_batch"] == ["x"]

    onnx_model = onnx.load(tmp_path / "net.onnx")
    assert onnx_model.opset_import[0].version == 17 and onnx_model.ir_version <= 10
    assert [i.name for i in onnx_model.graph.input] == ["x"]
    params = initialisers(tmp_path / "net.onnx")
    for name, value in net.state_dict().items():  # parameters kept as initialisers, same names
        if "num_batches" not in name:
            np.testing.assert_array_equal(params[name], value.numpy())

    back = convert(tmp_path / "net.onnx", tmp_path / "back.pt2")
    assert back["max_abs_diff"] < TOL
    module = torch.export.load(str(tmp_path / "back.pt2")).module()
    x = torch.randn(7, 1, 8, 8)  # a batch size neither export saw
    with torch.no_grad():
        assert (module(x) - net(x)).abs().max().item() < TOL
        session = load(tmp_path / "net.onnx")
        np.testing.assert_allclose(session.run({"x": x.numpy()})["output"], net(x).numpy(), atol=TOL)


BUILDERS = {
    "convnet-bn": lambda: convnet((1, 8, 8), (4, 8), dense=(16,), classes=10, batchnorm=True, dropout=0.2),
    "convnet-even-kernel": lambda: convnet((3, 9, 9), (4,), kernel=4, classes=5),
    "lstm-features-2-layers": lambda: lstm(6, hidden=8, layers=2, classes=4, dropout=0.1),
    "lstm-tokens": lambda: lstm(vocab=20, embed=6, hidden=8, classes=4),
    "lstm-tagger": lambda: lstm(vocab=20, embed=6, hidden=8, classes=4, head="tagger"),
    "lstm-bidirectional": lambda: lstm(6, hidden=8, classes=4, bidirectional=True),
}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if "lstm" in n else n for n in BUILDERS])
def test_onnxforge_models_to_pytorch_and_back(name, tmp_path):
    model = BUILDERS[name]()
    save_model(model, tmp_path / "m.onnx")
    seq = 8
    to_torch = convert(tmp_path / "m.onnx", tmp_path / "m.pt2", sizes={"T": seq} if "lstm" in name else None)
    back = convert(tmp_path / "m.pt2", tmp_path / "back.onnx")
    assert to_torch["max_abs_diff"] < TOL and back["max_abs_diff"] < TOL
    assert to_torch["dynamic_dims"]["x"][0] == 0   # the batch stays dynamic
    # torch.export traces torch.lstm step by step: the sequence length is fixed at its example size
    assert to_torch["fixed_dims"] == ({"x": {1: seq}} if "lstm" in name else {})
    # the .pt2 holds the same weights under the initialisers' names
    program = torch.export.load(str(tmp_path / "m.pt2"))
    state = {**program.state_dict, **program.constants}
    original = initialisers(tmp_path / "m.onnx")
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and key in original:
            np.testing.assert_array_equal(value.detach().numpy(), original[key])
    # the ONNX file that comes back: same names, inputs, outputs and metadata; same answers
    returned = onnx.load(tmp_path / "back.onnx")
    assert {k for k, v in original.items() if v.dtype.kind == "f" and v.ndim} <= set(initialisers(tmp_path / "back.onnx"))
    assert [o.name for o in returned.graph.output] == [o.name for o in model.graph.output]
    assert get_metadata(returned)["task"] == get_metadata(model)["task"]
    rng = np.random.default_rng(3)
    spec = model.graph.input[0].type.tensor_type
    if spec.elem_type == onnx.TensorProto.INT64:
        x = rng.integers(0, 20, (5, seq))
    else:
        x = rng.standard_normal([5, seq, 6] if "lstm" in name else [5] + [d.dim_value for d in spec.shape.dim[1:]])
    a = load(tmp_path / "m.onnx").run({"x": x})["logits"]
    b = load(tmp_path / "back.onnx").run({"x": x})["logits"]
    np.testing.assert_allclose(a, b, atol=TOL)


def test_sequence_length_of_a_pt2_follows_the_requested_example_size(tmp_path):
    save_model(lstm(vocab=20, embed=4, hidden=6, classes=3), tmp_path / "m.onnx")
    report = convert(tmp_path / "m.onnx", tmp_path / "m.pt2", sizes={"T": 13})
    assert report["fixed_dims"] == {"x": {1: 13}} and report["verify_inputs"] == {"x": [3, 13]}
    module = torch.export.load(str(tmp_path / "m.pt2")).module()
    assert module(torch.randint(0, 20, (6, 13))).shape == (6, 3)


def test_interpreter_lstm_matches_nn_lstm_outputs_and_gradients():
    """The ONNX gate order (i, o, f, c) mapped onto torch.lstm, checked against nn.LSTM."""
    model = lstm(5, hidden=7, classes=3, seed=2)
    module = to_torch_module(model)
    w = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    H = 7
    ref = torch.nn.LSTM(5, H, batch_first=True)
    def torch_layout(m):  # torch's i, f, g, o taken from ONNX's i, o, f, c
        return torch.tensor(onnx_to_torch(m))

    with torch.no_grad():
        ref.weight_ih_l0.copy_(torch_layout(w["lstm1.W"][0]))
        ref.weight_hh_l0.copy_(torch_layout(w["lstm1.R"][0]))
        ref.bias_ih_l0.copy_(torch_layout(w["lstm1.B"][0][:4 * H]))
        ref.bias_hh_l0.copy_(torch_layout(w["lstm1.B"][0][4 * H:]))
    fc = torch.nn.Linear(H, 3)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor(w["fc.weight"]))
        fc.bias.copy_(torch.tensor(w["fc.bias"]))
    x = torch.randn(4, 6, 5)
    ours = module(x)
    _, (h, _) = ref(x)
    theirs = fc(h[-1])
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    ours.square().sum().backward()
    theirs.square().sum().backward()
    params = dict(module.named_parameters())
    torch.testing.assert_close(params["fc.weight"].grad, fc.weight.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(params["lstm1.W"].grad[0], torch_to_onnx(ref.weight_ih_l0.grad), atol=1e-5, rtol=1e-4)


def test_interpreter_mlp_gradients_match_nn_linear():
    model = mlp(4, [6], 3, activation="tanh", seed=1)
    module = to_torch_module(model)
    w = {t.name: torch.tensor(numpy_helper.to_array(t)) for t in model.graph.initializer}
    x = torch.randn(5, 4)
    ref_w1 = w["fc1.weight"].clone().requires_grad_()
    ref_w2 = w["fc2.weight"].clone().requires_grad_()
    ref = torch.tanh(x @ ref_w1.T + w["fc1.bias"]) @ ref_w2.T + w["fc2.bias"]
    out = module(x)
    torch.testing.assert_close(out, ref)
    (out * torch.arange(3.0)).sum().backward()
    (ref * torch.arange(3.0)).sum().backward()
    params = dict(module.named_parameters())
    assert sorted(params) == ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]
    torch.testing.assert_close(params["fc1.weight"].grad, ref_w1.grad)
    torch.testing.assert_close(params["fc2.weight"].grad, ref_w2.grad)


class TorchLSTMClassifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(8, 12, batch_first=True)
        self.fc = torch.nn.Linear(12, 10)

    def forward(self, x):
        _, (h, _) = self.lstm(x)
        return self.fc(h[-1])


@pytest.mark.slow
def test_converted_pytorch_lstm_trains_like_pytorch(tmp_path, digits):
    """One SGD step of onnxforge's Trainer on the converted file equals one step of PyTorch on the
    original module: the exported parameters are the ones the gradient reaches."""
    from onnxforge.runtime import Trainer

    torch.manual_seed(0)
    net = TorchLSTMClassifier()
    program = torch.export.export(net.eval(), (torch.randn(2, 8, 8),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, tmp_path / "rnn.pt2")
    convert(tmp_path / "rnn.pt2", tmp_path / "rnn.onnx")
    (x, y), _ = digits
    x, y = x[:32].reshape(32, 8, 8).astype(np.float32), y[:32]
    trainer = Trainer(tmp_path / "rnn.onnx", tmp_path / "run", optimizer="sgd", lr=0.5, progress=False)
    trainer.fit((x, y), epochs=1, batch_size=32, shuffle=False)
    ours = trainer.parameters()

    loss = torch.nn.functional.cross_entropy(net.train()(torch.from_numpy(x)), torch.from_numpy(y))
    loss.backward()
    with torch.no_grad():
        for name, p in net.named_parameters():
            np.testing.assert_allclose(ours[name], (p - 0.5 * p.grad).numpy(), rtol=1e-4, atol=1e-5, err_msg=name)
            assert not np.allclose(ours[name], p.numpy())  # every parameter moved
