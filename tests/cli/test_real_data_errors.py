"""Every bad real input is one line on stderr naming the file, row or path, with exit code 2."""

import numpy as np
import pytest

Image = pytest.importorskip("PIL.Image")


def _one_line_error(result, *parts):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for part in parts:
        assert part in lines[0], (part, lines[0])
    assert "Traceback" not in result.output


@pytest.fixture
def table_model(tmp_path, cli_run):
    rows = "".join(f"{i % 7},{(i * 3) % 5},{'ab'[i % 2]}\n" for i in range(40))
    (tmp_path / "t.csv").write_text("u,v,label\n" + rows)
    assert cli_run("build", "mlp", "--inputs-from", tmp_path / "t.csv", "--target", "label", "--hidden", "4",
                   "-o", tmp_path / "m.onnx").exit_code == 0
    return tmp_path


def test_missing_column_and_non_numeric_cell(table_model, cli_run):
    t = table_model
    (t / "missing.csv").write_text("u,label\n1,a\n")
    _one_line_error(cli_run("train", t / "m.onnx", "--data", t / "missing.csv", "--out", t / "r", "--quiet"),
                    f"table '{t / 'missing.csv'}' has no column 'v'")
    _one_line_error(cli_run("build", "mlp", "--inputs-from", t / "t.csv", "--target", "kind", "-o", t / "x.onnx"),
                    "has no target column 'kind'")
    (t / "cell.csv").write_text("u,v,label\n1,2,a\n3,oops,b\n")
    _one_line_error(cli_run("eval", t / "m.onnx", "--data", t / "cell.csv"),
                    f"'{t / 'cell.csv'}' row 2 (line 3), column 'v' holds 'oops', not a number")
    _one_line_error(cli_run("infer", t / "m.onnx", "--input", t / "cell.csv"), "row 2 (line 3), column 'v'")
    assert not (t / "r").exists()


@pytest.fixture
def image_model(tmp_path, cli_run):
    for cls in ("a", "b"):
        for i in range(2):
            (tmp_path / "img" / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((4, 4), 60 * i, np.uint8)).save(tmp_path / "img" / cls / f"{i}.png")
    assert cli_run("build", "convnet", "--classes-from", tmp_path / "img", "--channels", "2", "-o",
                   tmp_path / "c.onnx").exit_code == 0
    return tmp_path


def test_unreadable_image_mixed_sizes_and_empty_class_folder(image_model, cli_run):
    t = image_model
    bad = t / "img" / "a" / "bad.png"
    bad.write_bytes(b"not a png")
    _one_line_error(cli_run("train", t / "c.onnx", "--data", t / "img", "--out", t / "r", "--quiet"),
                    f"image '{bad}' cannot be decoded")
    _one_line_error(cli_run("infer", t / "c.onnx", "--input", bad), f"image '{bad}' cannot be decoded")
    bad.unlink()
    big = t / "img" / "b" / "big.png"
    Image.fromarray(np.zeros((5, 4), np.uint8)).save(big)
    _one_line_error(cli_run("eval", t / "c.onnx", "--data", t / "img"),
                    f"image '{big}' is 4x5 pixels; the model takes 4x4", "--resize stretch")
    big.unlink()
    (t / "img" / "c").mkdir()
    _one_line_error(cli_run("build", "convnet", "--classes-from", t / "img", "-o", t / "d.onnx"),
                    f"class folder '{t / 'img' / 'c'}' holds no images")


def test_line_without_tab_and_character_outside_the_vocabulary(tmp_path, cli_run):
    (tmp_path / "p.tsv").write_text("abc\t1\nba\t2\n")
    assert cli_run("build", "seq2seq", "--vocab-from", tmp_path / "p.tsv", "--max-len", "4",
                   "-o", tmp_path / "s.onnx").exit_code == 0
    (tmp_path / "notab.tsv").write_text("ab\t1\nab 2\n")
    _one_line_error(cli_run("train", tmp_path / "s.onnx", "--data", tmp_path / "notab.tsv", "--out", tmp_path / "r",
                            "--quiet"), f"'{tmp_path / 'notab.tsv'}' line 2 has no tab")
    (tmp_path / "oov.tsv").write_text("ab\t1\nabz\t2\n")
    _one_line_error(cli_run("eval", tmp_path / "s.onnx", "--data", tmp_path / "oov.tsv"),
                    f"'{tmp_path / 'oov.tsv'}' line 2: character 'z' at position 3 is not in the model's vocabulary")
    _one_line_error(cli_run("infer", tmp_path / "s.onnx", "--text", "cab", "--text", "xa"),
                    "text 2 ('xa'): character 'x' at position 1")
