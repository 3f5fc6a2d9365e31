"""Training agrees with PyTorch autograd: same initial weights, same batches, plain SGD."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import numpy_helper

from onnxforge.graphs import mlp
from onnxforge.runtime import Trainer


def torch_mlp(model, widths, activation=torch.relu):
    params = {t.name: torch.tensor(numpy_helper.to_array(t).copy(), dtype=torch.float64, requires_grad=True)
              for t in model.graph.initializer if t.data_type == 1}
    layers = len(widths) + 1

    def forward(x):
        h = x
        for i in range(1, layers + 1):
            h = h @ params[f"fc{i}.weight"].T + params[f"fc{i}.bias"]
            if i < layers:
                h = activation(h)
        return h

    return params, forward


@pytest.mark.parametrize("task,loss_name", [("classification", "cross-entropy"), ("regression", "mse")])
def test_ten_sgd_steps_match_torch(tmp_path, digits, task, loss_name):
    (x, y), _ = digits
    x = x[:160]
    if task == "classification":
        y = y[:160]
        model = mlp(64, [32, 16], 10, activation="tanh", seed=3)
    else:
        y = np.stack([x[:160, :8].sum(1), x[:160, 8:16].mean(1)], axis=1).astype(np.float32)
        model = mlp(64, [32, 16], 2, activation="tanh", seed=3, task="regression")
    params, forward = torch_mlp(model, [32, 16], torch.tanh)
    lr, batch = 0.05, 16
    trainer = Trainer(model, tmp_path / "run", loss=loss_name, optimizer="sgd", lr=lr, device="cpu", progress=False)
    trainer.fit((x, y), epochs=1, batch_size=batch, shuffle=False)  # 160 / 16 = 10 steps
    assert trainer.step == 10

    opt = torch.optim.SGD(list(params.values()), lr=lr)
    for start in range(0, 160, batch):
        xb = torch.tensor(x[start : start + batch], dtype=torch.float64)
        out = forward(xb)
        if task == "classification":
            loss = torch.nn.functional.cross_entropy(out, torch.tensor(y[start : start + batch]))
        else:
            target = torch.tensor(y[start : start + batch], dtype=torch.float64)
            loss = 0.5 * ((out - target) ** 2).sum() / len(xb)  # our documented MSE scaling
        opt.zero_grad()
        loss.backward()
        opt.step()

    ours = trainer.parameters()
    for name, p in params.items():
        np.testing.assert_allclose(ours[name], p.detach().numpy(), atol=1e-5, rtol=0, err_msg=name)
