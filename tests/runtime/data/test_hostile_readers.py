"""Every reader, hostile files: JSON nested past Python's stack (model metadata, metrics.json), a
table that names one column twice, archives that name one array twice or whose headers lie, reads
that fail or are interrupted midway. Each ends in one typed line or a correct answer, and no
spill file is left behind. Fuzzed: mutated .npz, CSV and card metadata."""

from __future__ import annotations

import io
import os
import struct
import tempfile
import zipfile

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import onnxforge.runtime.data.tables as tables_module
from onnxforge.graphs import mlp
from onnxforge.runtime.data.arrays import read_npz
from onnxforge.runtime.data.images import ImageSpec, read_images
from onnxforge.runtime.data.tables import read_table, table_columns
from onnxforge.runtime.errors import CheckpointError, DataError
from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.runtime.training.run_folder import RunFolder

# ONNXFORGE_FUZZ_SCALE=N runs N times the examples from a random seed (CI: 1, fixed seed)
SCALE = int(os.environ.get("ONNXFORGE_FUZZ_SCALE", "1"))

DEEP = "[" * 200_000 + "]" * 200_000


@pytest.fixture()
def spill_dir(tmp_path, monkeypatch):
    """Spill files go here (so the test can see none is left)."""
    folder = tmp_path / "spill"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_card_metadata_nested_past_the_stack_is_kept_as_text():
    model = mlp(4, [3], 2, seed=1)
    for key in ("onnxforge.labels", "onnxforge.tokenizer", "onnxforge.extra_thing"):
        model.metadata_props.add(key=key, value=DEEP)
    card = ModelCard.from_model(model)  # no RecursionError
    assert card.labels is None or isinstance(card.labels, list)


def test_a_metrics_json_nested_past_the_stack_is_one_line(tmp_path, cli_run):
    (tmp_path / "metrics.json").write_text(DEEP)
    with pytest.raises(CheckpointError, match="is not valid JSON"):
        RunFolder(tmp_path).read_metrics()
    result = cli_run("plot", tmp_path)
    assert result.exit_code != 0 and "is not a readable metrics.json" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_column_named_twice_is_refused_naming_both(tmp_path, suffix):
    path = tmp_path / f"t{suffix}"
    if suffix == ".csv":
        path.write_text("a,b,a,y\n1,2,3,0\n4,5,6,1\n")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table([[1.0], [2.0], [3.0], [0]], names=["a", "b", "a", "y"]), path)
    with pytest.raises(DataError, match=r"has two columns named 'a' \(columns 1 and 3\); give each column its own name"):
        table_columns(path)
    with pytest.raises(DataError, match="two columns named 'a'"):
        read_table(path, None, "y")


def _parquet(path, rows: int, bad_label_at: int | None = None):
    import pyarrow as pa
    import pyarrow.parquet as pq

    labels = [str(i % 2) for i in range(rows)]
    if bad_label_at is not None:
        labels[bad_label_at] = "7"
    pq.write_table(pa.table({"a": np.arange(rows, dtype=np.float64), "b": np.ones(rows), "y": labels}), path,
                   row_group_size=64)
    return path


def test_a_table_read_that_fails_after_spilling_leaves_no_file(tmp_path, spill_dir, monkeypatch):
    monkeypatch.setattr(tables_module, "BATCH_ROWS", 64)
    path = _parquet(tmp_path / "t.parquet", 4000, bad_label_at=3990)
    spilled = []
    real_append = tables_module.RowSpill.append

    def append(self, block):
        real_append(self, block)
        spilled.extend(p.name for p in spill_dir.iterdir())

    monkeypatch.setattr(tables_module.RowSpill, "append", append)
    with pytest.raises(DataError, match=r"holds label '7', which is not one of the model's 2 classes"):
        read_table(path, None, "y", labels=["0", "1"], budget=0)
    assert spilled, "the read never spilled: the test would prove nothing"
    assert list(spill_dir.iterdir()) == []


def test_an_interrupted_table_read_leaves_no_file(tmp_path, spill_dir, monkeypatch):
    monkeypatch.setattr(tables_module, "BATCH_ROWS", 64)
    path = _parquet(tmp_path / "t.parquet", 4000)
    calls = []
    real = tables_module._numbers

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 20:
            assert list(spill_dir.iterdir())  # spilled by now
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(tables_module, "_numbers", interrupted)
    with pytest.raises(KeyboardInterrupt):
        read_table(path, None, "y", labels=["0", "1"], budget=0)
    assert list(spill_dir.iterdir()) == []


def test_an_image_read_that_fails_after_spilling_leaves_no_file(tmp_path, spill_dir):
    from PIL import Image

    paths = []
    for i in range(1030):  # one full block of 1024 spilled before the broken file
        path = tmp_path / f"{i:04d}.png"
        Image.fromarray(np.full((4, 4), i % 255, np.uint8), "L").save(path)
        paths.append(path)
    paths[-1].write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot be decoded"):
        read_images(paths, ImageSpec(1, 4, 4), budget=0)
    assert list(spill_dir.iterdir()) == []
    good = read_images(paths[:1029], ImageSpec(1, 4, 4), budget=0)  # and a whole read still works, mapped
    assert good.shape == (1029, 1, 4, 4) and float(good[3, 0, 0, 0]) == pytest.approx(3 / 255)
    assert list(spill_dir.iterdir()) == []  # unlinked once mapped


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def _npz(tmp_path, members: list[tuple[str, bytes]], name="w.npz"):
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in members:
            archive.writestr(member, data)
    return path


def _lying_npy(shape) -> bytes:
    header = repr({"descr": "<f4", "fortran_order": False, "shape": tuple(shape)}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\0" * 16


@pytest.fixture()
def weights_model(tmp_path):
    model = mlp(4, [3], 2, seed=1)
    onnx.save(model, str(tmp_path / "m.onnx"))
    return model


def _import(cli_run, tmp_path, weights):
    result = cli_run("weights", "import", tmp_path / "m.onnx", weights, "-o", tmp_path / "out.onnx")
    assert result.exit_code != 0, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "out.onnx").exists()
    return result.output


def test_weights_import_reads_npz_through_the_checked_reader(tmp_path, weights_model, cli_run):
    names = [t.name for t in weights_model.graph.initializer]
    lying = _npz(tmp_path, [(f"{names[0]}.npy", _lying_npy([1 << 20, 1 << 20]))], "lying.npz")
    assert "its header declares shape (1048576, 1048576)" in _import(cli_run, tmp_path, lying)
    twice = _npz(tmp_path, [(f"{names[0]}.npy", _npy(np.zeros(3, np.float32)))] * 2, "twice.npz")
    assert f"holds two arrays named '{names[0]}'" in _import(cli_run, tmp_path, twice)
    pickled = _npz(tmp_path, [(f"{names[0]}.npy", _npy(np.array([{}], dtype=object)))], "pickled.npz")
    assert "holds Python objects" in _import(cli_run, tmp_path, pickled)
    big = tmp_path / "big.npz"
    np.savez_compressed(big, **{names[0]: np.zeros((1 << 20,), np.float32)})  # 4 MB of zeros in a few KB
    assert "declare more than" in _import(cli_run, tmp_path, big)
    good = tmp_path / "good.npz"
    np.savez(good, **{t.name: onnx.numpy_helper.to_array(t) + 1 for t in weights_model.graph.initializer
                      if onnx.numpy_helper.to_array(t).dtype.kind == "f" and len(t.dims)})
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert "is not a readable .npz file" in _import(cli_run, tmp_path, truncated)
    ok = cli_run("weights", "import", tmp_path / "m.onnx", good, "-o", tmp_path / "out.onnx")
    assert ok.exit_code == 0, ok.output


@pytest.mark.fuzz
@settings(max_examples=120 * SCALE, deadline=None, derandomize=SCALE == 1, database=None)
@given(data=st.data())
def test_fuzz_mutated_npz_reads_or_refuses_in_one_line(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("npz")
    clean = io.BytesIO()
    np.savez(clean, a=np.arange(6, dtype=np.float32).reshape(2, 3), b=np.array([1, 2], np.int64))
    raw = bytearray(clean.getvalue())
    for _ in range(data.draw(st.integers(1, 6))):
        where = data.draw(st.integers(0, len(raw) - 1))
        raw[where] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(len(raw) // 2, len(raw)))
    path = folder / "x.npz"
    path.write_bytes(bytes(raw[:cut]))
    try:
        arrays = read_npz(path, max_bytes=1 << 16)
    except DataError as exc:
        assert "\n" not in str(exc)
    else:
        assert all(isinstance(v, np.ndarray) for v in arrays.values())


@pytest.mark.fuzz
@settings(max_examples=120 * SCALE, deadline=None, derandomize=SCALE == 1, database=None)
@given(header=st.lists(st.sampled_from(["a", "b", "y", "a ", "", "é"]), min_size=1, max_size=5),
       body=st.text(alphabet="0123456789,.-\n\"x ", max_size=200))
def test_fuzz_tables_read_or_refuse_in_one_line(tmp_path_factory, header, body):
    path = tmp_path_factory.mktemp("csv") / "t.csv"
    path.write_text(",".join(header) + "\n" + body)
    try:
        x, y = read_table(path, None, "y", classify=False)
    except DataError as exc:
        assert "\n" not in str(exc)
    else:
        assert x.dtype == np.float32 and len(x) == len(y)


@pytest.mark.fuzz
@settings(max_examples=150 * SCALE, deadline=None, derandomize=SCALE == 1, database=None)
@given(value=st.one_of(st.text(max_size=300), st.builds(lambda n: "[" * n + "]" * n, st.integers(0, 50_000)),
                       st.builds(lambda n: '{"a":' * n + "1" + "}" * n, st.integers(0, 50_000))),
       key=st.sampled_from(["labels", "tokenizer", "tokens", "image", "task", "classes", "features", "other"]))
def test_fuzz_card_metadata_never_raises(value, key):
    model = mlp(4, [3], 2, seed=1)
    model.metadata_props.add(key=f"onnxforge.{key}", value=value)
    ModelCard.from_model(model)


def test_a_cards_tokenizer_is_built_once_per_vocabulary():
    from onnxforge.runtime.data.tokenizers import Tokenizer

    card = ModelCard.from_dict({"tokenizer": {"kind": "word"}, "src_tokens": ["<pad>", "<bos>", "<eos>", "<unk>", "a"],
                                "tgt_tokens": ["<pad>", "<bos>", "<eos>", "<unk>", "b", "c"]})
    src, tgt = Tokenizer.from_card(card, "src_tokens"), Tokenizer.from_card(card, "tgt_tokens")
    assert Tokenizer.from_card(card, "src_tokens") is src and Tokenizer.from_card(card, "tgt_tokens") is tgt
    assert src.encode("a a") == [4, 4] and tgt.encode("c b") == [5, 4]
    card.tgt_tokens = ["<pad>", "<bos>", "<eos>", "<unk>", "c"]  # replaced: read anew
    assert Tokenizer.from_card(card, "tgt_tokens").encode("c") == [4]


def test_a_fifo_where_a_file_belongs_is_refused_without_blocking(tmp_path, cli_run, weights_model):
    from onnxforge.runtime.data.arrays import read_npy
    from onnxforge.runtime.data.images import decode_image

    for name in ("w.npz", "a.npy", "i.png"):
        os.mkfifo(tmp_path / name)
    with pytest.raises(DataError, match="is not a regular file"):
        read_npz(tmp_path / "w.npz")
    with pytest.raises(DataError, match="is not a regular file"):
        read_npy(tmp_path / "a.npy")
    with pytest.raises(DataError, match="is not a regular file"):
        decode_image(tmp_path / "i.png", ImageSpec(1, 4, 4))
    result = cli_run("weights", "import", tmp_path / "m.onnx", tmp_path / "w.npz", "-o", tmp_path / "out.onnx")
    assert result.exit_code != 0 and "is not a regular file" in result.output
