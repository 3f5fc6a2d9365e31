"""Real data through the CLI: a scikit-learn table with string labels (against scikit-learn's own
MLP on the same split), PNG digit folders into a ConvNet, a source<TAB>target task into the
encoder-decoder, the plot/report PNGs read back, and one-line errors with exit code 2."""

import csv
import json

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

sklearn = pytest.importorskip("sklearn")
Image = pytest.importorskip("PIL.Image")
from sklearn.datasets import load_digits, load_wine  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from onnxforge.runtime import load  # noqa: E402
from onnxforge.runtime.tasks.raw import feeds_from_bytes, predict_raw  # noqa: E402


def _write_csv(path, header, x, labels):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(list(r) + [lab] for r, lab in zip(x, labels))
    return path


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    d = load_wine()
    names = np.array(["barolo", "grignolino", "barbera"])[d.target]
    xtr, xte, ytr, yte = train_test_split(d.data, names, test_size=0.3, random_state=0, stratify=names)
    root = tmp_path_factory.mktemp("wine")
    header = [c.replace("/", "_") for c in d.feature_names] + ["cultivar"]
    return (_write_csv(root / "train.csv", header, xtr, ytr), _write_csv(root / "test.csv", header, xte, yte),
            (xtr, xte, ytr, yte), root)


@pytest.fixture(scope="module")
def wine_run(wine, cli_run):
    train, test, _, root = wine
    assert cli_run("build", "mlp", "--inputs-from", train, "--target", "cultivar", "--hidden", 32,
                   "-o", root / "wine.onnx").exit_code == 0
    result = cli_run("train", root / "wine.onnx", "--data", train, "--val", test, "--epochs", 60,
                     "--batch-size", 16, "--out", root / "run", "--quiet")
    assert result.exit_code == 0, result.output
    return root / "run"


def test_table_trains_within_a_point_of_scikit_learns_mlp(wine, wine_run, cli_run):
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    train, test, (xtr, xte, ytr, yte), _ = wine
    scaler = StandardScaler().fit(xtr)
    reference = MLPClassifier((32,), max_iter=2000, random_state=0).fit(scaler.transform(xtr), ytr)
    ref_acc = reference.score(scaler.transform(xte), yte)
    ours = json.loads(cli_run("eval", wine_run, "--data", test, "--json").output)
    assert ours["examples"] == len(yte)
    assert ours["accuracy"] >= ref_acc - 0.01, (ours["accuracy"], ref_acc)
    result = cli_run("infer", wine_run, "--input", test, "--json")
    predictions = json.loads(result.output)["predictions"]
    assert len(predictions) == len(yte) and set(predictions) <= {"barolo", "grignolino", "barbera"}
    assert np.mean(np.array(predictions) == yte) == pytest.approx(ours["accuracy"])
    lines = cli_run("infer", wine_run, "--input", test).output.splitlines()
    assert lines == predictions


def test_feature_scaling_in_the_graph_equals_numpy_scaling(wine, wine_run):
    train, _, (xtr, xte, _, _), _ = wine
    model = onnx.load(wine_run / "model.onnx")
    session = load(model, device="cpu")
    card = session.card
    mean, std = np.array(card.preprocessing["feature_scaling"]["mean"]), np.array(card.preprocessing["feature_scaling"]["std"])
    np.testing.assert_allclose(mean, xtr.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(std, xtr.std(axis=0), rtol=1e-9)
    # the same graph without its scaling nodes, fed numpy-scaled rows, run by onnx's reference evaluator
    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    keep = [n for n in bare.graph.node if not n.name.startswith("feature_scaling_")]
    del bare.graph.node[:]
    bare.graph.node.extend(keep)
    bare.graph.input[0].name = "x_scaled"
    scaled = ((xte - mean) / std).astype(np.float32)
    expected = ReferenceEvaluator(bare).run(None, {"x_scaled": scaled})[0]
    np.testing.assert_allclose(session.predict(xte.astype(np.float32)), expected, rtol=1e-4, atol=1e-5)
    rows = [dict(zip(card.features, r)) for r in xte[:5]]
    names = np.array(card.labels)[expected[:5].argmax(axis=-1)]
    assert predict_raw(session, rows) == list(names)


def test_report_and_plot_pngs_show_what_they_claim(wine, wine_run, cli_run):
    _, test, _, root = wine
    result = cli_run("eval", wine_run, "--data", test, "--report")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[1].split() == ["class", "precision", "recall", "f1", "support"]
    assert [ln.split()[0] for ln in lines[2:5]] == ["barbera", "barolo", "grignolino"]
    doc = json.loads(cli_run("eval", wine_run, "--data", test, "--report", "--json", "--png", root / "cm.png").output)
    matrix = np.array(doc["report"]["confusion"])
    assert matrix.sum() == doc["examples"] and np.trace(matrix) / matrix.sum() == pytest.approx(doc["accuracy"])
    with Image.open(root / "cm.png") as im:
        assert im.format == "PNG" and im.size[0] > 200
        assert im.text["Description"] == "confusion matrix; classes: barbera, barolo, grignolino"
    assert cli_run("plot", wine_run).exit_code == 0
    with Image.open(wine_run / "curves.png") as im:
        assert im.text["Description"] == "loss: loss, val_loss; accuracy: val_accuracy"
        rgb = np.asarray(im.convert("RGB")).reshape(-1, 3).astype(int)
    for colour in ((31, 119, 180), (255, 127, 14)):  # matplotlib's first two line colours: training, validation
        assert (np.abs(rgb - colour).sum(axis=1) < 30).sum() > 200


def test_plots_without_matplotlib_name_the_extra(wine_run, cli_run, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = cli_run("plot", wine_run)
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: plots need matplotlib: pip install 'onnxforge[plot]'"


@pytest.fixture(scope="module")
def digit_folders(tmp_path_factory):
    d = load_digits()
    root = tmp_path_factory.mktemp("digits")
    order = np.random.default_rng(0).permutation(len(d.images))
    for split, picked in (("train", order[:1400]), ("test", order[1400:])):
        for i in picked:
            folder = root / split / str(d.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray((d.images[i] * 255 / 16).astype(np.uint8)).save(folder / f"{i}.png")
    return root


def test_png_digit_folders_train_a_convnet_to_97_percent(digit_folders, cli_run):
    root = digit_folders
    assert cli_run("build", "convnet", "--classes-from", root / "train", "--channels", "16,32", "--dense", "64",
                   "-o", root / "conv.onnx").exit_code == 0
    result = cli_run("train", root / "conv.onnx", "--data", root / "train", "--epochs", "15", "--lr", "3e-3",
                     "--out", root / "run", "--quiet")
    assert result.exit_code == 0, result.output
    doc = json.loads(cli_run("eval", root / "run", "--data", root / "test", "--json").output)
    assert doc["accuracy"] >= 0.97 and doc["examples"] == 397
    one = sorted((root / "test" / "7").iterdir())[0]
    assert cli_run("infer", root / "run", "--input", one).output.strip() == "7"
    session = load(root / "run", device="cpu")
    feeds = feeds_from_bytes(session, [one.read_bytes()])  # what the server gets as BYTES
    assert predict_raw(session, [one]) == ["7"] and session.predict(feeds["x"]).argmax() == 7
    listing = json.loads(cli_run("infer", root / "run", "--input", root / "test" / "3", "--json").output)
    assert len(listing["predictions"]) == len(listing["inputs"]) == len(list((root / "test" / "3").iterdir()))
    assert np.mean(np.array(listing["predictions"]) == "3") > 0.9


ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen").split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _words(n: int) -> str:
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else "-" + ONES[n % 10])
    return ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " and " + _words(n % 100))


@pytest.mark.slow
def test_number_words_translate_to_digits_at_95_percent(tmp_path, cli_run):
    order = np.random.default_rng(1).permutation(1000)
    for name, picked in (("train", order[:800]), ("test", order[800:])):
        (tmp_path / f"{name}.tsv").write_text("".join(f"{_words(int(n))}\t{n}\n" for n in picked))
    assert cli_run("build", "seq2seq", "--vocab-from", tmp_path / "train.tsv", "--tokenizer", "char", "--max-len", "5",
                   "-o", tmp_path / "s.onnx").exit_code == 0
    result = cli_run("train", tmp_path / "s.onnx", "--data", tmp_path / "train.tsv", "--epochs", "30", "--lr", "5e-3",
                     "--schedule", "cosine", "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    doc = json.loads(cli_run("eval", tmp_path / "run", "--data", tmp_path / "test.tsv", "--json").output)
    assert doc["exact_match"] >= 0.95
    out = cli_run("infer", tmp_path / "run", "--text", "three hundred and twelve", "--text", "forty-one", "--json")
    assert json.loads(out.output)["predictions"] == ["312", "41"]
    session = load(tmp_path / "run", device="cpu")
    assert predict_raw(session, ["nine hundred and ninety-nine"]) == ["999"]
    feeds = feeds_from_bytes(session, [b"forty-one"])
    np.testing.assert_array_equal(feeds["src"], feeds_from_bytes(session, ["forty-one"])["src"])
