"""JAX's contestant: a training step under ``jax.jit`` on the PyTorch twin's weights.

The twin is read off the PyTorch twin (so the weights are the ONNX initialisers, through the
twins a test checks): a ``Sequential`` of ``Linear``, ``ReLU``, ``Conv2d``, ``MaxPool2d`` and
``Flatten`` (the MLPs and the ConvNet), or the LSTM twin (``lstm`` layers and ``fc``, the last
step's hidden state). The step (forward, cross-entropy, gradient, AdamW with PyTorch's formula
and the benchmark's settings, or plain SGD) is one jitted function with the parameters and
moments donated, as a speed-minded JAX user writes it; it returns the loss as a float, so each
step is finished before the next starts, like the others'. JAX is optional: :func:`jax_missing`
says why it cannot run."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

__all__ = ["jax_missing", "JaxTwin"]


def jax_missing() -> str | None:
    if importlib.util.find_spec("jax") is None:
        return "JAX is not installed (pip install jax jaxlib)"
    return None


def _layers(net) -> list:
    """``[(kind, params, options)]`` of the PyTorch twin, its weights as numpy arrays."""
    torch = __import__("torch")
    arr = lambda t: t.detach().cpu().numpy().copy()  # noqa: E731
    if hasattr(net, "lstm"):
        lstm = net.lstm
        cells = [{k: arr(getattr(lstm, f"{k}_l{i}")) for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
                 for i in range(lstm.num_layers)]
        return [("lstm", cells, None), ("linear", {"w": arr(net.fc.weight), "b": arr(net.fc.bias)}, None)]
    out: list[tuple[str, dict[str, Any] | None, Any]] = []
    for m in net:
        if isinstance(m, torch.nn.Linear):
            out.append(("linear", {"w": arr(m.weight), "b": arr(m.bias)}, None))
        elif isinstance(m, torch.nn.Conv2d):
            out.append(("conv", {"w": arr(m.weight), "b": arr(m.bias)}, m.padding[0]))
        elif isinstance(m, torch.nn.ReLU):
            out.append(("relu", None, None))
        elif isinstance(m, torch.nn.MaxPool2d):
            out.append(("pool", None, m.kernel_size))
        elif isinstance(m, torch.nn.Flatten):
            out.append(("flatten", None, None))
        else:
            raise TypeError(f"the JAX twin has no form of {type(m).__name__}")
    return out


class JaxTwin:
    """``step(xs, y, lr) -> loss`` of the twin's training under ``jax.jit``; ``forward(x)`` for tests."""

    def __init__(self, torch_net, optimizer: str = "adamw", weight_decay: float = 0.01,
                 betas=(0.9, 0.999), eps: float = 1e-8):
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        layers = _layers(torch_net)
        self.kinds = [(kind, opt) for kind, _, opt in layers]
        self.params = jax.tree_util.tree_map(jnp.asarray, [p for _, p, _ in layers])
        self.optimizer, self.t = optimizer, 0
        zeros = jax.tree_util.tree_map(jnp.zeros_like, self.params)
        self.moments = (zeros, jax.tree_util.tree_map(jnp.zeros_like, self.params)) if optimizer == "adamw" else ()
        self._forward = jax.jit(self._apply)
        b1, b2 = betas

        def loss_fn(params, x, y):
            logits = self._apply(params, x)
            logp = jax.nn.log_softmax(logits, axis=-1)
            return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=-1))

        def step(params, moments, x, y, lr, t):
            loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
            if optimizer == "sgd":
                return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads), moments, loss
            m, v = moments
            m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, grads)
            v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, grads)
            c1, c2 = 1 - b1 ** t, 1 - b2 ** t
            params = jax.tree_util.tree_map(
                lambda p, m, v: p * (1 - lr * weight_decay) - lr * (m / c1) / (jnp.sqrt(v / c2) + eps), params, m, v)
            return params, (m, v), loss

        self._step = jax.jit(step, donate_argnums=(0, 1))

    def _apply(self, params, x):
        jax, jnp = self.jax, self.jnp
        for (kind, opt), p in zip(self.kinds, params):
            if kind == "linear":
                x = x @ p["w"].T + p["b"]
            elif kind == "relu":
                x = jnp.maximum(x, 0)
            elif kind == "conv":
                x = jax.lax.conv_general_dilated(x, p["w"], (1, 1), [(opt, opt)] * 2,
                                                 dimension_numbers=("NCHW", "OIHW", "NCHW")) + p["b"][None, :, None, None]
            elif kind == "pool":
                x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, opt, opt), (1, 1, opt, opt), "VALID")
            elif kind == "flatten":
                x = x.reshape(x.shape[0], -1)
            else:  # lstm: PyTorch's gate order i, f, g, o; the last layer's final hidden state
                seq = jnp.swapaxes(x, 0, 1)
                for cell in p:
                    seq = self._lstm_layer(cell, seq)
                x = seq[-1]
        return x

    def _lstm_layer(self, cell, seq):
        jax, jnp = self.jax, self.jnp
        hidden = cell["weight_hh"].shape[1]
        pre = seq @ cell["weight_ih"].T + cell["bias_ih"] + cell["bias_hh"]

        def one(carry, xw):
            h, c = carry
            z = xw + h @ cell["weight_hh"].T
            i, f, g, o = (z[:, k * hidden:(k + 1) * hidden] for k in range(4))
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), h

        zeros = jnp.zeros((seq.shape[1], hidden), seq.dtype)
        _, hs = jax.lax.scan(one, (zeros, zeros), pre)
        return hs

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._forward(self.params, x))

    def step(self, xs: list[np.ndarray], y: np.ndarray, lr: float) -> float:
        self.t += 1
        self.params, self.moments, loss = self._step(self.params, self.moments, xs[0], y.astype(np.int32), lr, self.t)
        return float(loss)
