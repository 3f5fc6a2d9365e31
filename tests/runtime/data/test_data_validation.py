"""Hostile datasets are refused before the first training step (issue 8, item 3).

Through the CLI every refusal is one line, ``Error: SOURCE: ...``, exit code 2, no traceback, and no
run folder (so no checkpoint). The messages name the array, the first bad row and column, what was
found and how many. Through the API the same checks raise :class:`DataError`.
"""

from __future__ import annotations

import numpy as np
import pytest

from onnxforge.graphs import convnet, lstm, mlp
from onnxforge.runtime import Trainer, load
from onnxforge.runtime.data.datasets import Dataset, check_dataset
from onnxforge.runtime.errors import DataError
from onnxforge.runtime.tasks.evaluation import evaluate
from onnxforge.runtime.modelio import ModelCard, save_model
from onnxforge.runtime.inference.session import model_inputs

N, FEATURES, CLASSES = 10, 8, 3


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return {
        "mlp": save_model(mlp(FEATURES, 16, CLASSES, seed=0), folder / "mlp.onnx"),
        "regression": save_model(mlp(FEATURES, 16, 2, task="regression", seed=0), folder / "reg.onnx"),
        "convnet": save_model(convnet((1, 8, 8), (4,), classes=CLASSES, seed=0), folder / "convnet.onnx"),
        "tokens": save_model(lstm(vocab=6, embed=4, hidden=8, classes=CLASSES, seed=0), folder / "lstm.onnx"),
    }


def x_ok(dtype=np.float32):
    return np.random.default_rng(0).standard_normal((N, FEATURES)).astype(dtype)


def y_ok():
    return np.arange(N) % CLASSES


def put(arr, *items):
    """A copy of ``arr`` with ``arr[index] = value`` for each ``(index, value)``."""
    arr = arr.copy()
    for index, value in items:
        arr[index] = value
    return arr


def refused(cli_run, tmp_path, model, expected, *, val=None, **arrays):
    """Train ``model`` on ``arrays`` (saved as an .npz) through the CLI; check the one-line refusal
    ``Error: <npz path>: <expected>`` and that no training happened."""
    data = tmp_path / "data.npz"
    np.savez(data, **arrays)
    out = tmp_path / "run"
    args = ["train", str(model), "--data", str(data), "--out", str(out), "--epochs", "1", "--quiet"]
    source = data
    if val is not None:
        source = tmp_path / "val.npz"
        np.savez(source, **val)
        args += ["--val", str(source)]
    res = cli_run(*args)
    assert res.exit_code == 2, res.output
    assert isinstance(res.exception, SystemExit)  # a handled error, not a crash
    assert "Traceback" not in res.output
    lines = res.output.splitlines()
    assert len(lines) == 1, res.output
    assert lines[0] == f"Error: {source}: {expected}"
    assert not (out / "checkpoint").exists() and not out.exists()  # refused before any work
    return lines[0]


# -- NaN and Inf -----------------------------------------------------------------------------------

def test_nan_in_an_input_names_row_column_and_count(cli_run, tmp_path, models):
    x = put(x_ok(), ((3, 5), np.nan), ((7, 0), np.nan))
    refused(cli_run, tmp_path, models["mlp"], "input 'x' holds NaN at row 3, column 5; 2 NaN or Inf values in all", x=x, y=y_ok())


def test_minus_inf_before_a_nan_is_the_first_one_named(cli_run, tmp_path, models):
    x = put(x_ok(), ((2, 7), -np.inf), ((2, 1), np.nan), ((9, 0), np.inf))
    # row-major order: (2, 1) comes before (2, 7)
    refused(cli_run, tmp_path, models["mlp"], "input 'x' holds NaN at row 2, column 1; 3 NaN or Inf values in all", x=x, y=y_ok())
    x = put(x_ok(), ((6, 4), -np.inf))
    refused(cli_run, tmp_path, models["mlp"], "input 'x' holds -Inf at row 6, column 4; 1 NaN or Inf value in all", x=x, y=y_ok())


def test_float64_that_overflows_float32_is_named_as_overflow(cli_run, tmp_path, models):
    x = put(x_ok(np.float64), ((4, 2), 1e300))
    refused(cli_run, tmp_path, models["mlp"],
            "input 'x' holds +Inf (its value 1e+300 overflows float32) at row 4, column 2; 1 NaN or Inf value in all",
            x=x, y=y_ok())


def test_nan_in_an_image_names_the_position_within_the_row(cli_run, tmp_path, models):
    x = put(np.zeros((N, 1, 8, 8), np.float32), ((5, 0, 3, 6), np.inf))
    refused(cli_run, tmp_path, models["convnet"], "input 'x' holds +Inf at row 5, position [0, 3, 6]; 1 NaN or Inf value in all",
            x=x, y=y_ok())


def test_nan_in_regression_targets_names_row_and_column(cli_run, tmp_path, models):
    y = put(np.zeros((N, 2), np.float32), ((4, 1), np.nan))
    refused(cli_run, tmp_path, models["regression"], "targets 'y' hold NaN at row 4, column 1; 1 NaN or Inf value in all",
            x=x_ok(), y=y)
    y = put(np.zeros((N, 2)), ((7, 0), -1e40))
    refused(cli_run, tmp_path, models["regression"],
            "targets 'y' hold -Inf (its value -1e+40 overflows float32) at row 7, column 0; 1 NaN or Inf value in all",
            x=x_ok(), y=y)


def test_nan_in_validation_data_names_the_validation_file(cli_run, tmp_path, models):
    refused(cli_run, tmp_path, models["mlp"], "input 'x' holds NaN at row 8, column 0; 1 NaN or Inf value in all",
            x=x_ok(), y=y_ok(), val={"x": put(x_ok(), ((8, 0), np.nan)), "y": y_ok()})


# -- labels ----------------------------------------------------------------------------------------

def test_label_out_of_range_names_first_row_and_value(cli_run, tmp_path, models):
    y = put(y_ok(), (4, 5), (6, 7))
    refused(cli_run, tmp_path, models["mlp"], "label 5 is outside [0, 3) for a model with 3 classes: "
            "'y' holds it at row 4 (2 labels out of range in all)", x=x_ok(), y=y)


def test_negative_label(cli_run, tmp_path, models):
    y = put(y_ok(), (9, -1))
    refused(cli_run, tmp_path, models["mlp"], "label -1 is outside [0, 3) for a model with 3 classes: "
            "'y' holds it at row 9 (1 label out of range in all)", x=x_ok(), y=y)


def test_fractional_label_names_row_and_value(cli_run, tmp_path, models):
    y = put(y_ok().astype(np.float64), (2, 1.5))
    refused(cli_run, tmp_path, models["mlp"], "labels 'y' must be integer class ids; got 1.5 at row 2 (1 non-integer value in all)",
            x=x_ok(), y=y)


def test_nan_label(cli_run, tmp_path, models):
    y = put(y_ok().astype(np.float32), (6, np.nan))
    refused(cli_run, tmp_path, models["mlp"], "labels 'y' hold NaN at row 6; 1 NaN or Inf value in all", x=x_ok(), y=y)


def test_string_labels(cli_run, tmp_path, models):
    refused(cli_run, tmp_path, models["mlp"], "labels must be integer class ids; got dtype <U3", x=x_ok(), y=np.array(["cat"] * N))


# -- dtypes and shapes -----------------------------------------------------------------------------

def test_uint8_pixels_for_a_float_input_are_refused_with_a_hint(cli_run, tmp_path, models):
    refused(cli_run, tmp_path, models["mlp"], "input 'x' expects float32 [N, 8]; got uint8 [10, 8]: convert it first, "
            "e.g. x.astype('float32') / 255 for 8-bit pixels", x=np.full((N, FEATURES), 200, np.uint8), y=y_ok())


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_])
def test_integer_or_bool_data_for_a_float_input_is_refused(cli_run, tmp_path, models, dtype):
    x = np.ones((N, FEATURES), dtype)
    refused(cli_run, tmp_path, models["mlp"], f"input 'x' expects float32 [N, 8]; got {np.dtype(dtype).name} [10, 8]: "
            "convert it first, e.g. x.astype('float32')", x=x, y=y_ok())


def test_floats_for_token_ids_are_refused(cli_run, tmp_path, models):
    refused(cli_run, tmp_path, models["tokens"], "input 'x' expects integer ids int64 [N, T]; got float32 [10, 5]: "
            "convert it first, e.g. x.astype('int64')", x=np.ones((N, 5), np.float32), y=y_ok())


def test_uint64_ids_beyond_int64_are_refused(cli_run, tmp_path, models):
    x = put(np.ones((N, 5), np.uint64), ((1, 2), 2**64 - 1))
    refused(cli_run, tmp_path, models["tokens"], "input 'x' holds 18446744073709551615 at row 1, column 2, which does not fit "
            "the model's int64; 1 value out of range in all", x=x, y=y_ok())


def test_feature_count_mismatch_names_both_shapes(cli_run, tmp_path, models):
    refused(cli_run, tmp_path, models["mlp"], "input 'x' expects size 8 on axis 1 float32 [N, 8], got shape [10, 7]",
            x=np.zeros((N, 7), np.float32), y=y_ok())


def test_wrong_rank(cli_run, tmp_path, models):
    refused(cli_run, tmp_path, models["convnet"], "input 'x' expects rank 4 float32 [N, 1, 8, 8], got shape [10, 64]",
            x=np.zeros((N, 64), np.float32), y=y_ok())


def test_regression_targets_of_the_wrong_width(cli_run, tmp_path, models):
    refused(cli_run, tmp_path, models["regression"], "targets have shape [10, 3]; the model's output is [?, 2]",
            x=x_ok(), y=np.zeros((N, 3), np.float32))


# -- sizes -----------------------------------------------------------------------------------------

def test_empty_dataset(cli_run, tmp_path, models):
    refused(cli_run, tmp_path, models["mlp"], "the dataset is empty (input 'x' has shape [0, 8])",
            x=np.zeros((0, FEATURES), np.float32), y=np.zeros(0, np.int64))


def test_lengths_of_x_and_y_differ(cli_run, tmp_path, models):
    refused(cli_run, tmp_path, models["mlp"], "arrays have different numbers of examples: 'x' has 10, 'y' has 12",
            x=x_ok(), y=np.zeros(12, np.int64))


def test_scalar_input(cli_run, tmp_path, models):
    refused(cli_run, tmp_path, models["mlp"], "input 'x' must have one row per example; got a scalar", x=np.float32(1), y=y_ok())


def test_structural_errors_come_before_value_scans(cli_run, tmp_path, models):
    """A NaN and a length mismatch: the cheap check (lengths) speaks first."""
    refused(cli_run, tmp_path, models["mlp"], "arrays have different numbers of examples: 'x' has 10, 'y' has 9",
            x=put(x_ok(), ((0, 0), np.nan)), y=np.zeros(9, np.int64))


# -- the API ---------------------------------------------------------------------------------------

def test_trainer_fit_raises_data_error_naming_training_data(tmp_path):
    trainer = Trainer(mlp(FEATURES, 16, CLASSES), tmp_path / "run", device="cpu", progress=False)
    with pytest.raises(DataError) as info:
        trainer.fit((put(x_ok(), ((3, 5), np.nan)), y_ok()), epochs=1)
    assert str(info.value) == "training data: input 'x' holds NaN at row 3, column 5; 1 NaN or Inf value in all"
    assert info.value.exit_code == 2
    with pytest.raises(DataError, match=r"^validation data: label 3 is outside \[0, 3\) for a model with 3 classes: "
                                        r"'y' holds it at row 1 \(1 label out of range in all\)$"):
        trainer.fit((x_ok(), y_ok()), (x_ok(), put(y_ok(), (1, 3))), epochs=1)
    assert trainer.step == 0 and not (tmp_path / "run").exists()


def test_trainer_fit_refuses_a_dict_with_unequal_lengths(tmp_path):
    trainer = Trainer(mlp(FEATURES, 16, CLASSES), tmp_path / "run", device="cpu", progress=False)
    with pytest.raises(DataError, match=r"^training data: arrays have different numbers of examples: 'x' has 4, 'y' has 10$"):
        trainer.fit(({"x": x_ok()[:4]}, y_ok()), epochs=1)
    with pytest.raises(DataError, match=r"^training data: array 'features' matches no model input; inputs are x$"):
        trainer.fit(({"features": x_ok()}, y_ok()), epochs=1)


def test_evaluate_raises_data_error(tmp_path):
    session = load(mlp(FEATURES, 16, CLASSES), device="cpu")
    with pytest.raises(DataError, match=r"^data: input 'x' expects float32 \[N, 8\]; got int64 \[10, 8\]"):
        evaluate(session, (np.ones((N, FEATURES), np.int64), y_ok()))


def test_float64_data_and_narrow_labels_are_still_accepted(tmp_path):
    """float64 features (same kind) are cast to float32; int32 or bool labels become int64."""
    trainer = Trainer(mlp(FEATURES, 16, CLASSES), tmp_path / "run", device="cpu", progress=False)
    history = trainer.fit((x_ok(np.float64), y_ok().astype(np.int32)), (x_ok(np.float64), y_ok().astype(np.uint8)),
                          epochs=1, batch_size=5)
    assert len(history) == 1 and np.isfinite(history[0]["loss"]) and trainer.step == 2
    assert (tmp_path / "run" / "checkpoint").is_file()
    inputs = model_inputs(mlp(FEATURES, 16, 2))
    ds = check_dataset(Dataset({"x": x_ok(np.float64)}, (y_ok() % 2).astype(bool)), inputs, task="classification",
                       classes=2)
    assert ds.inputs["x"].dtype == np.float32 and ds.inputs["x"].flags.c_contiguous and ds.y.dtype == np.int64
    np.testing.assert_array_equal(ds.inputs["x"], x_ok(np.float64).astype(np.float32))


def test_integer_ids_of_any_width_are_accepted_within_range(tmp_path):
    trainer = Trainer(lstm(vocab=6, embed=4, hidden=8, classes=CLASSES), tmp_path / "run", device="cpu", progress=False)
    ids = np.random.default_rng(1).integers(0, 6, (N, 5))
    history = trainer.fit((ids.astype(np.uint8), y_ok()), (ids.astype(np.int32), y_ok()), epochs=1)
    assert len(history) == 1 and np.isfinite(history[0]["val_loss"])


def test_ignored_labels_are_not_out_of_range():
    """A tagger's padding label (ignore_index) may lie outside [0, classes)."""
    inputs = model_inputs(mlp(FEATURES, 16, CLASSES))
    y = put(y_ok(), (0, -100))
    ds = check_dataset(Dataset({"x": x_ok()}, y), inputs, task="classification", classes=CLASSES, ignore_index=-100)
    assert ds.y[0] == -100
    with pytest.raises(DataError, match=r"label -100 is outside \[0, 3\).*at row 0 "):
        check_dataset(Dataset({"x": x_ok()}, y), inputs, task="classification", classes=CLASSES)


def test_token_ids_outside_the_vocabulary():
    model = lstm(vocab=6, embed=4, hidden=8, classes=CLASSES)
    vocab = ModelCard.from_model(model).vocabularies
    assert vocab == {"x": 6}
    inputs = model_inputs(model)
    ids = put(np.ones((N, 5), np.int64), ((2, 3), 9), ((5, 0), -1))
    with pytest.raises(DataError) as info:
        check_dataset(Dataset({"x": ids}, y_ok(), "ids.npz"), inputs, task="classification", classes=CLASSES, vocab=vocab)
    assert str(info.value) == ("ids.npz: input 'x' holds token id 9 at row 2, column 3; the model's vocabulary has ids "
                               "0 to 5 (2 ids out of range in all)")
    assert ModelCard.from_model(mlp(FEATURES, 16, CLASSES)).vocabularies == {}


def test_every_message_is_one_line_and_starts_with_its_source():
    inputs = model_inputs(mlp(FEATURES, 16, CLASSES))
    cases = [
        Dataset({"x": put(x_ok(), ((1, 1), np.nan))}, y_ok(), "a.npz"),
        Dataset({"x": x_ok()}, put(y_ok(), (2, 9)), "a.npz"),
        Dataset({"x": x_ok().astype(np.int16)}, y_ok(), "a.npz"),
        Dataset({"x": x_ok()}, None, "a.npz"),
        Dataset({"x": x_ok(), "z": x_ok()}, y_ok(), "a.npz"),
        Dataset({"x": np.zeros((0, FEATURES))}, np.zeros(0), "a.npz"),
    ]
    for ds in cases:
        with pytest.raises(DataError) as info:
            check_dataset(ds, inputs, task="classification", classes=CLASSES)
        assert str(info.value).startswith("a.npz: ") and "\n" not in str(info.value)
