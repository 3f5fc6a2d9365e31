"""The commands of issue 19 end to end: build nplm --vocab-from, train --data TEXT, eval --ngram 3
(perplexity beside the trigram's, both recomputed here), embeddings --nearest/--projector/--map,
generate, infer --text; build captioner from an image_path<TAB>caption file, train/eval/infer on
it, raw image bytes in and a caption out (what the server's BYTES inputs go through). Bad
input is one line and exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from onnxforge.runtime import load
from onnxforge.runtime.data.tokenizers import Tokenizer
from onnxforge.runtime.tasks.language_model import corpus_windows, sentences
from onnxforge.runtime.tasks.ngram import ngram_perplexity
from onnxforge.runtime.tasks.raw import feeds_from_bytes, answers
from onnxforge.runtime.tasks.losses import numpy_loss
from onnxforge.samples import caption_digits, load_digits

NAMES = {"bird": "robin wren finch lark".split(), "tool": "saw drill spade rake".split(),
         "does": "sings builds digs hums".split()}


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory, cli_run):
    root = tmp_path_factory.mktemp("lm")
    rng = np.random.default_rng(0)
    pick = lambda k: NAMES[k][rng.integers(4)]  # noqa: E731
    lines = [f"the {pick('bird')} {pick('does')} with the {pick('tool')}" for _ in range(800)]
    (root / "corpus.txt").write_text("\n".join(lines[:700]) + "\n", encoding="utf-8")
    (root / "held.txt").write_text("\n".join(lines[700:]) + "\n", encoding="utf-8")
    res = cli_run("build", "nplm", "--vocab-from", root / "corpus.txt", "--context", 4, "--embed", 32, "--hidden", 128,
                  "-o", root / "lm.onnx")
    assert res.exit_code == 0, res.output
    res = cli_run("train", root / "lm.onnx", "--data", root / "corpus.txt", "--epochs", 3, "--out", root / "run",
                  "--quiet", "--json")
    assert res.exit_code == 0, res.output
    return root


def test_eval_prints_perplexity_and_the_trigrams(lm_run, cli_run):
    res = cli_run("eval", lm_run / "run", "--data", lm_run / "held.txt", "--ngram", 3, "--json")
    assert res.exit_code == 0, res.output
    result = json.loads(res.output)
    session = load(lm_run / "run")
    tok = Tokenizer.from_card(session.card, "tokens")
    x, y = corpus_windows(lm_run / "held.txt", tok, 4)
    logits = session.run({"x": x}, ["logits"])["logits"]
    assert result["perplexity"] == pytest.approx(np.exp(numpy_loss("cross-entropy", logits, y)), rel=1e-6)
    expected = ngram_perplexity(sentences(lm_run / "corpus.txt", tok), sentences(lm_run / "held.txt", tok), 3,
                                len(tok.tokens))
    assert result["ngram_perplexity"] == pytest.approx(expected, rel=1e-12)
    assert result["examples"] == len(y) == 100 * 7


def test_embeddings_nearest_json_and_projector(lm_run, cli_run, tmp_path):
    res = cli_run("embeddings", lm_run / "run", "--nearest", "robin", "-k", 3, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["word"] == "robin" and len(doc["neighbours"]) == 3
    sims = [n["similarity"] for n in doc["neighbours"]]
    assert sims == sorted(sims, reverse=True) and "robin" not in [n["word"] for n in doc["neighbours"]]
    res = cli_run("embeddings", lm_run / "run", "--projector", tmp_path / "proj")
    assert res.exit_code == 0, res.output
    words = (tmp_path / "proj" / "metadata.tsv").read_text(encoding="utf-8").splitlines()
    vectors = np.loadtxt(tmp_path / "proj" / "vectors.tsv", delimiter="\t")
    assert vectors.shape == (len(words), 32) and "<pad>" not in words and "robin" in words
    table = {t.name: t for t in load(lm_run / "run").model.graph.initializer}["embed.weight"]
    from onnx import numpy_helper

    np.testing.assert_allclose(vectors, numpy_helper.to_array(table)[4:], rtol=1e-6, atol=1e-7)


def test_embeddings_map_is_a_labelled_png(lm_run, cli_run, tmp_path):
    pytest.importorskip("sklearn")
    from PIL import Image

    res = cli_run("embeddings", lm_run / "run", "--map", tmp_path / "map.png")
    assert res.exit_code == 0, res.output
    with Image.open(tmp_path / "map.png") as im:
        assert im.size[0] > 300 and "robin" in im.info["Description"]


def test_generate_and_infer_text(lm_run, cli_run):
    a = cli_run("generate", lm_run / "run", "--prompt", "the robin", "--max-len", 6, "--seed", 3, "--json")
    b = cli_run("generate", lm_run / "run", "--prompt", "the robin", "--max-len", 6, "--seed", 3, "--json")
    assert a.exit_code == 0, a.output
    assert a.output == b.output
    text = json.loads(a.output)["texts"][0].split()
    assert 1 <= len(text) <= 6 and set(text) <= set(sum(NAMES.values(), [])) | {"the", "with"}
    greedy = cli_run("generate", lm_run / "run", "--prompt", "the robin sings with the", "--temperature", 0, "--json")
    assert json.loads(greedy.output)["texts"][0] in NAMES["tool"]
    res = cli_run("infer", lm_run / "run", "--text", "the robin sings with the", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["predictions"] == json.loads(greedy.output)["texts"]


@pytest.mark.parametrize("args,message", [
    (["embeddings", "RUN", "--nearest", "zebra"], "word 'zebra' is not in the model's vocabulary"),
    (["generate", "RUN", "--prompt", "the zebra"], "word 'zebra' at position 2 is not in the model's vocabulary"),
    (["eval", "RUN", "--data", "HELD", "--ngram", 3, "--ngram-train", "nowhere.txt"], "does not exist"),
])
def test_bad_input_is_one_line_exit_2(lm_run, cli_run, args, message):
    args = [{"RUN": lm_run / "run", "HELD": lm_run / "held.txt"}.get(a, a) for a in args]
    res = cli_run(*args)
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, res.output


def test_captioner_from_a_captions_file(tmp_path, cli_run):
    (x, y), _ = load_digits("images")
    strips, digits = caption_digits.make_strips(x, y, 64, 0)
    lines = []
    (tmp_path / "img").mkdir()
    for i, (strip, d) in enumerate(zip(strips, digits)):
        Image.fromarray((strip[0] * 255).round().astype(np.uint8)).save(tmp_path / "img" / f"{i}.png")
        lines.append(f"img/{i}.png\t{caption_digits.caption_of(d)}")
    (tmp_path / "captions.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    res = cli_run("build", "captioner", "--image-shape", "1,8,24", "--channels", "16,32", "--vocab-from",
                  tmp_path / "captions.tsv", "--hidden", 64, "--attention", "dot", "-o", tmp_path / "cap.onnx", "--json")
    assert res.exit_code == 0, res.output
    session = load(tmp_path / "cap.onnx")
    assert session.card.max_len == 4 and session.card.tokenizer["kind"] == "word"
    res = cli_run("train", tmp_path / "cap.onnx", "--data", tmp_path / "captions.tsv", "--epochs", 1, "--out",
                  tmp_path / "run", "--quiet", "--json")
    assert res.exit_code == 0, res.output
    res = cli_run("eval", tmp_path / "run", "--data", tmp_path / "captions.tsv", "--json")
    assert res.exit_code == 0, res.output
    assert {"loss", "exact_match", "token_accuracy"} <= set(json.loads(res.output))
    res = cli_run("infer", tmp_path / "run", "--input", tmp_path / "img" / "0.png", "--json")
    assert res.exit_code == 0, res.output
    predicted = json.loads(res.output)["predictions"][0]
    session = load(tmp_path / "run")
    png = (tmp_path / "img" / "0.png").read_bytes()
    assert answers(session, feeds_from_bytes(session, [png])) == [predicted]
    assert set(predicted.split()) <= set(caption_digits.WORDS)
    (tmp_path / "bad.tsv").write_text("img/0.png seven one two\n", encoding="utf-8")
    res = cli_run("eval", tmp_path / "run", "--data", tmp_path / "bad.tsv")
    assert res.exit_code == 2 and "has no tab; each line must be image_path<TAB>caption" in res.output, res.output
