"""The ConvNet builder against PyTorch (nn.Conv2d, BatchNorm2d, ReLU, MaxPool2d, Linear) on the
same weights: forward pass, one SGD step through the real Trainer, batch-norm running statistics."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from onnxforge.graphs import convnet
from onnxforge.runtime import Trainer, load
from onnxforge.runtime.errors import ConfigError
from onnxforge.runtime.modelio.files import get_metadata


def weights(model) -> dict:
    return {t.name: numpy_helper.to_array(t).copy() for t in model.graph.initializer}


def torch_convnet(model) -> torch.nn.Sequential:
    """The same network in PyTorch, built from the model's metadata and loaded with its weights."""
    a = get_metadata(model)["args"]
    w = weights(model)
    layers, c, h, wd = [], a["input_shape"][0], a["input_shape"][1], a["input_shape"][2]
    for i, out in enumerate(a["channels"], start=1):
        conv = torch.nn.Conv2d(c, out, a["kernel"], padding="same", bias=not a["batchnorm"])
        conv.weight.data = torch.tensor(w[f"conv{i}.weight"])
        if not a["batchnorm"]:
            conv.bias.data = torch.tensor(w[f"conv{i}.bias"])
        layers.append(conv)
        if a["batchnorm"]:
            bn = torch.nn.BatchNorm2d(out, eps=1e-5, momentum=0.1)
            bn.weight.data = torch.tensor(w[f"bn{i}.scale"])
            bn.bias.data = torch.tensor(w[f"bn{i}.bias"])
            bn.running_mean.data = torch.tensor(w[f"bn{i}.running_mean"])
            bn.running_var.data = torch.tensor(w[f"bn{i}.running_var"])
            layers.append(bn)
        layers.append(torch.nn.ReLU())
        if a["pool"] > 1:
            layers.append(torch.nn.MaxPool2d(a["pool"]))
            h, wd = h // a["pool"], wd // a["pool"]
        c = out
    layers.append(torch.nn.Flatten())
    fan_in = c * h * wd
    widths = a["dense"] + [a["classes"]]
    for i, out in enumerate(widths, start=1):
        fc = torch.nn.Linear(fan_in, out)
        fc.weight.data = torch.tensor(w[f"fc{i}.weight"])
        fc.bias.data = torch.tensor(w[f"fc{i}.bias"])
        layers.append(fc)
        if i < len(widths):
            layers.append(torch.nn.ReLU())
        fan_in = out
    return torch.nn.Sequential(*layers)


def with_random_statistics(model, rng) -> onnx.ModelProto:
    """Non-trivial BN parameters and running statistics, so the inference form is really tested."""
    for t in model.graph.initializer:
        if t.name.startswith("bn"):
            a = numpy_helper.to_array(t)
            value = rng.uniform(0.5, 2.0, a.shape) if t.name.endswith(("scale", "running_var")) else rng.normal(0, 0.5, a.shape)
            t.CopyFrom(numpy_helper.from_array(value.astype(np.float32), t.name))
    return model


@pytest.mark.parametrize("kwargs", [
    dict(input_shape=(1, 8, 8), channels=(16, 32), kernel=3, pool=2, dense=(), classes=10),
    dict(input_shape=(3, 9, 7), channels=(4, 6), kernel=2, pool=2, dense=(12,), classes=5),  # even kernel, odd sizes
    dict(input_shape=(2, 6, 6), channels=(5,), kernel=5, pool=1, dense=(8, 7), classes=3, batchnorm=True),
    dict(input_shape=(1, 8, 8), channels=(8, 8), kernel=3, pool=2, dense=(16,), classes=10, batchnorm=True),
])
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_forward_matches_torch(kwargs, rng):
    model = convnet(**kwargs, seed=5)
    if kwargs.get("batchnorm"):
        model = with_random_statistics(model, rng)
    net = torch_convnet(model).eval()
    x = rng.standard_normal((7, *kwargs["input_shape"])).astype(np.float32)
    ours = load(model, device="cpu").run({"x": x})["logits"]
    with torch.no_grad():
        ref = net(torch.tensor(x)).numpy()
    assert ours.shape == (7, kwargs["classes"])
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("batchnorm", [False, True])
def test_one_sgd_step_matches_torch(tmp_path, digits, batchnorm):
    (x, y), _ = digits
    x, y = x[:48].reshape(-1, 1, 8, 8), y[:48]
    model = convnet((1, 8, 8), (6, 8), 3, 2, (16,), 10, batchnorm=batchnorm, seed=2)
    net = torch_convnet(model).train()
    lr = 0.1
    trainer = Trainer(model, tmp_path / "run", optimizer="sgd", lr=lr, device="cpu", progress=False)
    trainer.fit((x, y), epochs=1, batch_size=48, shuffle=False)
    assert trainer.step == 1

    loss = torch.nn.functional.cross_entropy(net(torch.tensor(x)), torch.tensor(y))
    loss.backward()
    with torch.no_grad():
        for p in net.parameters():
            p -= lr * p.grad
    torch_names = {}
    convs = [m for m in net if isinstance(m, torch.nn.Conv2d)]
    bns = [m for m in net if isinstance(m, torch.nn.BatchNorm2d)]
    fcs = [m for m in net if isinstance(m, torch.nn.Linear)]
    for i, m in enumerate(convs, start=1):
        torch_names[f"conv{i}.weight"] = m.weight
        if m.bias is not None:
            torch_names[f"conv{i}.bias"] = m.bias
    for i, m in enumerate(bns, start=1):
        torch_names[f"bn{i}.scale"] = m.weight
        torch_names[f"bn{i}.bias"] = m.bias
    for i, m in enumerate(fcs, start=1):
        torch_names[f"fc{i}.weight"] = m.weight
        torch_names[f"fc{i}.bias"] = m.bias
    ours = trainer.parameters()
    before = weights(model)
    assert set(trainer.trainable) == set(torch_names)
    for name, p in torch_names.items():
        assert not np.allclose(ours[name], before[name]), f"{name} did not move"
        np.testing.assert_allclose(ours[name], p.detach().numpy(), atol=1e-5, rtol=0, err_msg=name)

    if batchnorm:
        # Running statistics are state, not parameters: updated by the step, never trained.
        assert trainer.buffers == ["bn1.running_mean", "bn1.running_var", "bn2.running_mean", "bn2.running_var"]
        for i, bn in enumerate(bns, start=1):
            np.testing.assert_allclose(ours[f"bn{i}.running_mean"], bn.running_mean.numpy(), atol=1e-5, rtol=0)
            # ONNX Runtime folds in the biased batch variance, PyTorch the unbiased one (n = N*H*W).
            n = 48 * (8 if i == 1 else 4) ** 2
            expected = 0.9 + (bn.running_var.numpy() - 0.9) * (n - 1) / n
            np.testing.assert_allclose(ours[f"bn{i}.running_var"], expected, atol=1e-5, rtol=0)
            assert not np.allclose(ours[f"bn{i}.running_mean"], 0.0)
        # The exported model normalises with those running statistics, as PyTorch's eval mode does.
        for i, bn in enumerate(bns, start=1):
            bn.running_var.data = torch.tensor(ours[f"bn{i}.running_var"])
        net.eval()
        with torch.no_grad():
            ref = net(torch.tensor(x)).numpy()
        exported = load(tmp_path / "run" / "model.onnx", device="cpu").run({"x": x})["logits"]
        np.testing.assert_allclose(exported, ref, atol=1e-5, rtol=0)


def test_names_layouts_and_metadata():
    model = convnet((3, 16, 16), (8, 16, 32), 3, 2, (64,), 7, batchnorm=True, dropout=0.25, seed=1)
    w = weights(model)
    assert w["conv1.weight"].shape == (8, 3, 3, 3) and w["conv3.weight"].shape == (32, 16, 3, 3)
    assert "conv1.bias" not in w  # batch norm brings its own shift
    assert w["bn2.scale"].shape == w["bn2.running_var"].shape == (16,)
    assert w["fc1.weight"].shape == (64, 32 * 2 * 2) and w["fc2.weight"].shape == (7, 64)
    meta = get_metadata(model)
    assert meta["task"] == "classification" and meta["builder"] == "convnet" and meta["classes"] == 7
    assert meta["inputs"] == ["x"] and meta["output"] == "logits"
    assert meta["args"]["channels"] == [8, 16, 32] and meta["args"]["batchnorm"] is True
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Conv") == 3 and ops.count("BatchNormalization") == 3 and ops.count("MaxPool") == 3
    assert ops.count("Dropout") == 2 and ops.count("Gemm") == 2
    assert [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == ["N", 3, 16, 16]
    onnx.checker.check_model(model, full_check=True)
    # the same seed gives the same weights, another seed others
    assert np.array_equal(weights(convnet((3, 16, 16), (8, 16, 32), 3, 2, (64,), 7, batchnorm=True, seed=1))["conv1.weight"],
                          w["conv1.weight"])
    assert not np.array_equal(weights(convnet((3, 16, 16), (8, 16, 32), 3, 2, (64,), 7, seed=2))["conv1.weight"],
                              w["conv1.weight"])


@pytest.mark.parametrize("kwargs,message", [
    (dict(input_shape=(8, 8)), "input_shape must be three positive integers"),
    (dict(input_shape=(1, 0, 8)), "each entry of input_shape must be a positive integer"),
    (dict(channels=()), "channels needs at least one entry"),
    (dict(channels=(16, -2)), "each entry of channels must be a positive integer"),
    (dict(input_shape=(1, 4, 4), channels=(4, 4, 4)), "stage 3 would pool a 1x1 map"),
    (dict(classes=1), "classes must be at least 2"),
    (dict(dropout=1.0), "dropout must be a number in [0, 1)"),
    (dict(kernel=0), "kernel must be a positive integer"),
])
def test_bad_configuration_is_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        convnet(**kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("batchnorm", [False, True])
def test_digits_accuracy(tmp_path, batchnorm):
    from onnxforge.samples import load_digits

    (x, y), (xt, yt) = load_digits("images")
    trainer = Trainer(convnet((1, 8, 8), (16, 32), 3, 2, (), 10, batchnorm=batchnorm), tmp_path / "run",
                      lr=3e-3, schedule="cosine", device="cpu", progress=False)
    trainer.fit((x, y), epochs=15, batch_size=32)
    logits = load(tmp_path / "run" / "model.onnx", device="cpu").run({"x": xt})["logits"]
    assert (logits.argmax(1) == yt).mean() >= 0.98


def test_running_statistics_survive_resume(tmp_path, digits):
    """Running statistics live in the checkpoint: 1 epoch + resume 1 equals 2 epochs straight."""
    (x, y), _ = digits
    x, y = x[:96].reshape(-1, 1, 8, 8), y[:96]
    model = convnet((1, 8, 8), (4,), 3, 2, (8,), 10, batchnorm=True, dropout=0.2, seed=3)
    straight = Trainer(model, tmp_path / "a", device="cpu", progress=False)
    straight.fit((x, y), epochs=2, batch_size=32)
    Trainer(model, tmp_path / "b", device="cpu", progress=False).fit((x, y), epochs=1, batch_size=32)
    resumed = Trainer(model, tmp_path / "b", device="cpu", progress=False)
    resumed.fit((x, y), epochs=2, batch_size=32, resume=True)
    a, b = straight.parameters(), resumed.parameters()
    assert not np.allclose(a["bn1.running_var"], 1.0)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    exported = onnx.load(str(tmp_path / "b" / "model.onnx"))
    np.testing.assert_array_equal(weights(exported)["bn1.running_mean"], b["bn1.running_mean"])
