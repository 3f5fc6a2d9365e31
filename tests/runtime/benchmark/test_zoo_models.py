"""The models of ``bench --models`` train the same function in every contestant: the onnx backend's
first step on the export and PyTorch's on the module (training mode: batch statistics, no dropout)
give the same loss on the same batch, and the written torchvision blocks have torchvision's shapes."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from onnxforge.runtime.benchmark import model_rows
from onnxforge.runtime.benchmark.peers import LR
from onnxforge.runtime.benchmark.zoo import models
from onnxforge.runtime.benchmark.zoo.export import export, first_output

pytestmark = pytest.mark.torch


# every kind of block but the plain ones the export zoo (tests/runtime/zoo) already trains: resnet18's
# BasicBlock, mobilenet_v2's inverted residual (in mobilenet_v3's and efficientnet's)
CHECKED = ("mobilenet_v3_small", "efficientnet_b0", "resnext", "shufflenet_v2", "bert_tiny", "gpt2_tiny", "vit_tiny")


@pytest.mark.slow  # exports and builds a training step per model: 2-45 s each on the shared machine
@pytest.mark.parametrize("name", CHECKED)
def test_the_onnx_step_and_pytorchs_start_from_the_same_loss(name, tmp_path):
    spec = models.MODELS[name]
    built = models.build(name)
    inputs, y = built.data(np.random.default_rng(0))
    names = list(inputs)
    assert inputs[names[0]].shape == (spec.batch, *spec.input)
    model = export(copy.deepcopy(built.module).eval(), inputs, spec.exporter)
    xs = [inputs[n] for n in names]
    ours = model_rows._onnx_step(model, tmp_path, "sgd", 1)(xs, y, LR)
    theirs = model_rows._torch_step(first_output(built.module, names), names, "sgd", False)(xs, y, LR)
    assert np.isfinite(ours) and ours == pytest.approx(theirs, rel=2e-4), (ours, theirs)


def _convnets():
    from onnxforge.runtime.benchmark.zoo import convnets

    return convnets


def test_make_divisible_rounds_as_torchvision_does():
    assert [_convnets().make_divisible(v) for v in (4, 8, 12, 20, 36.0, 1280 * 0.5)] == [8, 8, 16, 24, 40, 640]


def test_the_written_convnets_have_torchvisions_parameter_counts():
    """At full size with 1000 classes, the parameter counts torchvision's model docs give."""
    c = _convnets()
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    wide = (64, 128, 256, 512)
    assert count(c.ResNet(c.BasicBlock, (2, 2, 2, 2), 1000, widths=wide)) == 11_689_512  # resnet18
    assert count(c.ResNet(c.Bottleneck, (3, 4, 6, 3), 1000, widths=wide, groups=32, width_per_group=4)) == 25_028_904
    assert count(c.MobileNetV2(1000)) == 3_504_872
    assert count(c.MobileNetV3(1000)) == 2_542_856  # mobilenet_v3_small
    assert count(c.EfficientNet(1000)) == 5_288_548  # efficientnet_b0
    assert count(c.ShuffleNetV2(1000)) == 1_366_792  # shufflenet_v2_x0_5
