"""A causal language model exported from PyTorch (ids [N, T] -> logits [N, T, V]) fine-tunes with
``--lora`` on a .txt corpus, through a ``--tokenizer`` JSON file or the tokenizer in its card."""

from __future__ import annotations

import json

import onnx
import pytest
import torch
from click.testing import CliRunner

from onnxforge.cli.main import cli
from onnxforge.runtime.data.tokenizers import build_tokenizer
from onnxforge.runtime.modelio.card import get_metadata, set_metadata

V, T, D = 32, 24, 32
LINES = ["the cat sat on the mat", "a dog ran in the park", "the sun is hot", "we read books"]


class TinyLM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.pos = torch.nn.Embedding(V, D), torch.nn.Parameter(torch.randn(T, D) * 0.1)
        self.q, self.k, self.v = torch.nn.Linear(D, D), torch.nn.Linear(D, D), torch.nn.Linear(D, D)
        self.ff, self.out = torch.nn.Linear(D, D), torch.nn.Linear(D, V)
        self.register_buffer("mask", torch.triu(torch.full((T, T), -1e9), 1))

    def forward(self, x):
        h = self.emb(x) + self.pos
        h = h + torch.softmax(self.q(h) @ self.k(h).transpose(1, 2) / D ** 0.5 + self.mask, -1) @ self.v(h)
        return self.out(h + torch.relu(self.ff(h)))


@pytest.mark.torch
@pytest.mark.parametrize("where", ["file", "card"])
def test_causal_lm_fine_tunes_on_text(tmp_path, where):
    torch.manual_seed(0)
    torch.onnx.export(TinyLM().eval(), (torch.zeros(2, T, dtype=torch.long),), str(tmp_path / "lm.onnx"),
                      input_names=["ids"], output_names=["logits"], dynamic_axes={"ids": {0: "n"}, "logits": {0: "n"}},
                      dynamo=False, opset_version=17)
    (tmp_path / "corpus.txt").write_text("\n".join(LINES[i % 4] for i in range(200)) + "\n")
    tokens = list(build_tokenizer(LINES, "char").tokens)
    tokens += [f"<unused{i}>" for i in range(V - len(tokens))]
    args = ["--data", str(tmp_path / "corpus.txt"), "--lora", "4", "--epochs", "4", "--lr", "0.01", "--json",
            "--out", str(tmp_path / "run")]
    if where == "file":
        (tmp_path / "tok.json").write_text(json.dumps({"kind": "char", "tokens": tokens}))
        args = [str(tmp_path / "lm.onnx"), "--tokenizer", str(tmp_path / "tok.json"), *args]
    else:
        model = onnx.load(tmp_path / "lm.onnx")
        set_metadata(model, {"task": "tagging", "tokens": tokens, "tokenizer": {"kind": "char", "unknown": "refuse"},
                             "args": {"steps": T}})
        onnx.save(model, tmp_path / "lm_card.onnx")
        args = [str(tmp_path / "lm_card.onnx"), *args]
    result = CliRunner().invoke(cli, ["train", *args])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    losses = [h["loss"] for h in doc["history"]]
    assert losses[-1] < 0.7 * losses[0], losses
    card = get_metadata(onnx.load(tmp_path / "run" / "model.onnx"))
    assert card["tokens"] == tokens and card["lora"]["rank"] == 4
    assert (tmp_path / "run" / "adapters.onnx_adapter").is_file()


def test_a_tokenizer_file_that_is_not_one_is_refused(tmp_path):
    (tmp_path / "tok.json").write_text(json.dumps({"kind": "bpe", "tokens": ["a"]}))
    result = CliRunner().invoke(cli, ["train", str(tmp_path / "tok.json"), "--data", str(tmp_path / "tok.json"),
                                      "--tokenizer", str(tmp_path / "tok.json"), "--lora", "2"])
    assert result.exit_code == 2 and "--tokenizer" in result.output and "<pad>, <bos>, <eos>, <unk>" in result.output
