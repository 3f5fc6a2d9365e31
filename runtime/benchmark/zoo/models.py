"""The models ``onnxforge bench --models`` trains: torchvision's ConvNets and Hugging Face
transformers from tiny configs, random weights (seeded), nothing downloaded.

``MODELS[name]`` is a :class:`ZooModel`; ``build(name)`` returns a :class:`Built`: the module in
training mode (dropout off, so every framework computes the same function), one batch maker, and
where the architecture came from. torchvision's own classes are used where torchvision imports and
runs its operators; otherwise :mod:`.convnets` (the same blocks written in torch). PyTorch and
transformers are imported on first use; :func:`missing` says why a model cannot be built here."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from onnxforge.runtime.benchmark.workloads import TORCH_MISSING, optional_torch, torch_module
from onnxforge.runtime.errors import ConfigError

__all__ = ["ZooModel", "Built", "MODELS", "DEFAULT_MODELS", "build", "missing", "torchvision_missing", "parse_names"]

CLASSES = 10


@dataclass(frozen=True)
class ZooModel:
    name: str
    summary: str          # the architecture and its config, in words
    batch: int
    input: tuple          # one example's input shape (images: C, H, W; tokens: T)
    needs: str            # "torch" | "transformers"
    exporter: str = "torchscript"  # see .export.EXPORTERS


@dataclass
class Built:
    module: Any           # torch.nn.Module, training mode, dropout off
    data: Callable        # (rng) -> ({input name: array}, int64 targets): one batch
    source: str           # "torchvision 0.x", "torch-written torchvision blocks", "transformers 5.x"


def torchvision_missing() -> str | None:
    """Why torchvision's own model classes cannot be used here (None: they can)."""
    if importlib.util.find_spec("torchvision") is None:
        return "torchvision is not installed"
    try:
        import torch
        import torchvision  # noqa: F401

        torch.ops.torchvision.nms  # noqa: B018 - the operator its CPU/CUDA mismatch loses
    except Exception as exc:  # noqa: BLE001 - any failure to load means: use the torch-written blocks
        return f"torchvision does not load ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})"
    return None


def _image_data(shape, batch):
    def make(rng):
        x = rng.standard_normal((batch, *shape)).astype(np.float32)
        return {"x": x}, rng.integers(0, CLASSES, batch).astype(np.int64)
    return make


def _convnet(spec: ZooModel, tv_build: Callable, own_build: Callable) -> Built:
    import torch

    torch.manual_seed(0)
    source = "torch-written torchvision blocks"
    module = None
    if torchvision_missing() is None:
        try:
            import torchvision

            module, source = tv_build(torchvision.models), f"torchvision {torchvision.__version__}"
        except Exception:  # noqa: BLE001 - an older torchvision without this constructor: the written blocks
            module = None
    if module is None:
        from onnxforge.runtime.benchmark.zoo import convnets

        module = own_build(convnets)
    return Built(_training(module), _image_data(spec.input, spec.batch), source)


def _training(module):
    """Training mode (batch norm on batch statistics) with dropout off: the exported (eval) graph has
    none, and random masks would differ between frameworks anyway."""
    torch = torch_module()
    module.train()
    for m in module.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return module


def _tv_mobilenet_v3(tv):
    from torchvision.models.mobilenetv3 import MobileNetV3, _mobilenet_v3_conf

    setting, last = _mobilenet_v3_conf("mobilenet_v3_small", width_mult=0.5)
    return MobileNetV3(setting, last, num_classes=CLASSES)


def _tv_efficientnet(tv):
    from torchvision.models.efficientnet import EfficientNet, _efficientnet_conf

    setting, last = _efficientnet_conf("efficientnet_b0", width_mult=0.5, depth_mult=0.5)
    return EfficientNet(setting, 0.2, stochastic_depth_prob=0.0, num_classes=CLASSES, last_channel=last)


CONVNETS: dict[str, tuple[ZooModel, Callable, Callable]] = {
    "resnet18": (ZooModel("resnet18", "torchvision resnet18 (BasicBlock, 2-2-2-2, widths 64-512)", 8, (3, 32, 32), "torch"),
                 lambda tv: tv.resnet18(num_classes=CLASSES),
                 lambda c: c.ResNet(c.BasicBlock, (2, 2, 2, 2), CLASSES, widths=(64, 128, 256, 512))),
    "mobilenet_v2": (ZooModel("mobilenet_v2", "torchvision mobilenet_v2(width_mult=0.5): inverted residuals, depthwise, "
                              "ReLU6", 16, (3, 64, 64), "torch"),
                     lambda tv: tv.mobilenet_v2(num_classes=CLASSES, width_mult=0.5),
                     lambda c: c.MobileNetV2(CLASSES, width_mult=0.5)),
    "mobilenet_v3_small": (ZooModel("mobilenet_v3_small", "torchvision mobilenet_v3_small(width_mult=0.5): depthwise, "
                                    "squeeze-excite, HardSwish", 16, (3, 64, 64), "torch"),
                           _tv_mobilenet_v3, lambda c: c.MobileNetV3(CLASSES, width_mult=0.5)),
    "efficientnet_b0": (ZooModel("efficientnet_b0", "torchvision efficientnet_b0 at width 0.5, depth 0.5: MBConv, "
                                 "squeeze-excite, SiLU", 16, (3, 64, 64), "torch"),
                        _tv_efficientnet, lambda c: c.EfficientNet(CLASSES, width_mult=0.5, depth_mult=0.5)),
    "resnext": (ZooModel("resnext", "torchvision ResNet(Bottleneck, 1-1-1-1, groups=8, width_per_group=4): grouped 3x3",
                         8, (3, 32, 32), "torch"),
                lambda tv: tv.ResNet(tv.resnet.Bottleneck, [1, 1, 1, 1], num_classes=CLASSES, groups=8,
                                     width_per_group=4),
                lambda c: c.ResNet(c.Bottleneck, (1, 1, 1, 1), CLASSES, widths=(64, 128, 256, 512), groups=8,
                                   width_per_group=4)),
    "shufflenet_v2": (ZooModel("shufflenet_v2", "torchvision shufflenet_v2_x0_5: channel split and shuffle, depthwise",
                               16, (3, 64, 64), "torch"),
                      lambda tv: tv.shufflenet_v2_x0_5(num_classes=CLASSES),
                      lambda c: c.ShuffleNetV2(CLASSES)),
}


def _token_data(spec: ZooModel, vocab: int, per_token: bool):
    def make(rng):
        ids = rng.integers(0, vocab, (spec.batch, *spec.input)).astype(np.int64)
        y = rng.integers(0, vocab if per_token else CLASSES, (spec.batch, *spec.input) if per_token else spec.batch)
        return {"input_ids": ids}, y.astype(np.int64)
    return make


def _bert(spec: ZooModel) -> Built:
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(vocab_size=1000, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=512, max_position_embeddings=64, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    cfg.num_labels = CLASSES
    return Built(_training(BertForSequenceClassification(cfg)), _token_data(spec, 1000, False), _transformers())


def _gpt2(spec: ZooModel) -> Built:
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=1000, n_positions=64, n_embd=128, n_layer=2, n_head=2, resid_pdrop=0.0,
                     embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False, bos_token_id=0, eos_token_id=0)
    return Built(_training(GPT2LMHeadModel(cfg)), _token_data(spec, 1000, True), _transformers())


def _vit(spec: ZooModel) -> Built:
    from transformers import ViTConfig, ViTForImageClassification

    cfg = ViTConfig(image_size=32, patch_size=4, num_channels=3, hidden_size=128, num_hidden_layers=2,
                    num_attention_heads=2, intermediate_size=256, hidden_dropout_prob=0.0,
                    attention_probs_dropout_prob=0.0)
    cfg.num_labels = CLASSES
    make = _image_data(spec.input, spec.batch)

    def data(rng):
        inputs, y = make(rng)
        return {"pixel_values": inputs["x"]}, y
    return Built(_training(ViTForImageClassification(cfg)), data, _transformers())


def _transformers() -> str:
    import transformers

    return f"transformers {transformers.__version__}"


# Hugging Face architectures from config objects (BERT-tiny's and a GPT-2's shape at 2 layers, width 128)
TRANSFORMERS: dict[str, tuple[ZooModel, Callable]] = {
    "bert_tiny": (ZooModel("bert_tiny", "transformers BertForSequenceClassification: 2 layers, hidden 128, 2 heads, "
                           "vocab 1000", 16, (32,), "transformers"), _bert),
    "gpt2_tiny": (ZooModel("gpt2_tiny", "transformers GPT2LMHeadModel: 2 layers, 128 wide, 2 heads, vocab 1000; "
                           "next-token loss on every position", 8, (32,), "transformers", "dynamo-noopt"), _gpt2),
    "vit_tiny": (ZooModel("vit_tiny", "transformers ViTForImageClassification: 32x32, patch 4, 2 layers, hidden 128",
                          16, (3, 32, 32), "transformers"), _vit),
}

MODELS: dict[str, ZooModel] = {**{name: spec for name, (spec, _, _) in CONVNETS.items()},
                               **{name: spec for name, (spec, _) in TRANSFORMERS.items()}}
DEFAULT_MODELS = tuple(MODELS)


def missing(name: str) -> str | None:
    """Why model ``name`` cannot be built here (None: it can)."""
    spec = MODELS[name]
    if optional_torch() is None:
        return TORCH_MISSING
    if spec.needs == "transformers" and importlib.util.find_spec("transformers") is None:
        return "Hugging Face transformers is not installed (pip install transformers)"
    return None


def build(name: str) -> Built:
    """The module, batch maker and source of model ``name`` (a fresh one each call, seeded)."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; models are: {', '.join(MODELS)}")
    if name in TRANSFORMERS:
        spec, make = TRANSFORMERS[name]
        torch_module().manual_seed(0)
        return make(spec)
    spec, tv_build, own_build = CONVNETS[name]
    return _convnet(spec, tv_build, own_build)


def parse_names(value: str | None) -> tuple[str, ...]:
    """``"resnet18,mobilenet_v2"`` -> those names, checked; ``None``/``"all"``/``""``: every model."""
    if value is None or value.strip() in ("", "all"):
        return DEFAULT_MODELS
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise ConfigError(f"unknown model {unknown[0]!r} in --models; models are: {', '.join(MODELS)}")
    return tuple(dict.fromkeys(names))
