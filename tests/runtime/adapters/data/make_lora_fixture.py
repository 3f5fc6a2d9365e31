"""Makes lora_run/: a small nn.TransformerEncoder classifier exported by PyTorch (source.onnx), its
data (data.npz) and what `onnxforge train --lora 4` writes from them on CPython 3.11 with the `cpu`
extra (onnxruntime-training 1.19: the adapter file comes from onnxforge's FlatBuffers writer).
test_lora_fixture.py checks that training still produces these files, and, on the CPython 3.13 leg,
that plain onnxruntime (newest, without onnxforge) runs model.lora.onnx with the adapter active.

    .venv/bin/python tests/runtime/adapters/data/make_lora_fixture.py
"""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent / "lora_run"
sys.path.insert(0, str(HERE.parent.parent))
from test_lora_fixture import ARGS  # noqa: E402  (the options the test trains with again)


class Classifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(16, 32)
        layer = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
        self.enc = torch.nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = torch.nn.Linear(32, 3)

    def forward(self, x):
        return self.head(self.enc(self.emb(x)).mean(1))


def main():
    HERE.mkdir(exist_ok=True)
    torch.manual_seed(0)
    x = np.random.default_rng(0).integers(0, 16, (128, 6)).astype(np.int64)
    np.savez(HERE / "data.npz", x=x, y=(x[:, 0] % 3).astype(np.int64))
    torch.onnx.export(Classifier().eval(), (torch.tensor(x[:2]),), str(HERE / "source.onnx"), input_names=["x"],
                      output_names=["logits"], dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}}, dynamo=False,
                      opset_version=17)
    run = HERE / "run"
    shutil.rmtree(run, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "onnxforge.cli.main", "train", str(HERE / "source.onnx"), "--data",
                    str(HERE / "data.npz"), "--out", str(run), *ARGS], check=True)
    for name in ("model.onnx", "model.lora.onnx", "adapters.onnx_adapter"):
        shutil.copy(run / name, HERE / name)
    shutil.rmtree(run)


if __name__ == "__main__":
    main()
