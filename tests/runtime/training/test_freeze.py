from __future__ import annotations

import numpy as np
import pytest

from onnxforge.graphs import mlp
from onnxforge.runtime import ConfigError, NotTrainableError, Trainer


def test_frozen_parameters_stay_bit_for_bit(tmp_path, digits):
    (x, y), _ = digits
    model = mlp(64, [32, 16], 10, seed=5)
    trainer = Trainer(model, tmp_path / "run", lr=1e-2, freeze=["fc1.*", "fc2.bias"], device="cpu", progress=False)
    assert trainer.frozen == ["fc1.weight", "fc1.bias", "fc2.bias"]
    before = trainer.parameters()
    trainer.fit((x[:256], y[:256]), epochs=2, batch_size=32)
    after = trainer.parameters()
    for name in trainer.frozen:
        assert after[name].tobytes() == before[name].tobytes(), name
    for name in trainer.trainable:
        assert not np.array_equal(after[name], before[name]), name
    from onnx import numpy_helper

    from onnxforge.runtime.modelio.files import load_model

    exported = {t.name: numpy_helper.to_array(t) for t in load_model(tmp_path / "run" / "model.onnx").graph.initializer}
    assert exported["fc1.weight"].tobytes() == before["fc1.weight"].tobytes()
    np.testing.assert_array_equal(exported["fc3.weight"], after["fc3.weight"])


def test_freeze_pattern_matching_nothing(tmp_path):
    with pytest.raises(ConfigError, match=r"freeze pattern 'conv\*' matches no parameter; parameters are: fc1.weight"):
        Trainer(mlp(4, [3], 2), tmp_path, freeze=["conv*"], device="cpu")


def test_everything_frozen(tmp_path):
    with pytest.raises(NotTrainableError, match=r"no trainable float parameters \(every one is frozen\)"):
        Trainer(mlp(4, [3], 2), tmp_path, freeze=["*"], device="cpu")
