"""torchvision's ConvNet families written in torch, block for block as ``torchvision.models`` defines
them (the same layers in the same order, the same channel rounding), for where torchvision does not
load: its PyPI wheels link to PyTorch's CUDA build, and beside the CPU build CI installs they fail
(``operator torchvision::nms does not exist``). This module imports torch: import it only once
PyTorch is known to be there (:mod:`.models` does, on first use).

    ResNet          BasicBlock (resnet18/34) or Bottleneck with groups (ResNeXt)
    MobileNetV2     inverted residuals: 1x1 expand, depthwise 3x3, linear 1x1 project, ReLU6
    MobileNetV3     the same with squeeze-excite, HardSwish and a HardSigmoid gate
    EfficientNet    MBConv: depthwise, squeeze-excite to a quarter of the block's input, SiLU
    ShuffleNetV2    channel split, depthwise branch, concat, channel shuffle
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ResNet", "BasicBlock", "Bottleneck", "MobileNetV2", "MobileNetV3", "EfficientNet", "ShuffleNetV2",
           "InvertedResidual", "SqueezeExcite", "make_divisible", "V3_SMALL", "B0_STAGES"]


def make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's ``_make_divisible``: the nearest multiple of ``divisor``, never 10% below ``v``."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def _conv_bn(cin, cout, k, stride=1, groups=1, act=None) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, *([act()] if act else []))


class _Head(nn.Module):
    """``features``, global average pool, flatten, ``classifier``: the tail every family shares."""

    features: nn.Module
    classifier: nn.Module

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


# -- ResNet, ResNeXt ---------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock."""

    expansion = 1

    def __init__(self, cin, planes, stride, groups=1, base_width=64):
        super().__init__()
        self.body = nn.Sequential(_conv_bn(cin, planes, 3, stride, act=nn.ReLU), _conv_bn(planes, planes, 3))
        self.down = _conv_bn(cin, planes, 1, stride) if stride != 1 or cin != planes else nn.Identity()

    def forward(self, x):
        return F.relu(self.body(x) + self.down(x))


class Bottleneck(nn.Module):
    """torchvision.models.resnet.Bottleneck: 1x1, grouped 3x3 (ResNeXt's ``groups`` x ``base_width``), 1x1 x4."""

    expansion = 4

    def __init__(self, cin, planes, stride, groups=1, base_width=64):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        out = planes * self.expansion
        self.body = nn.Sequential(_conv_bn(cin, width, 1, act=nn.ReLU), _conv_bn(width, width, 3, stride, groups, nn.ReLU),
                                  _conv_bn(width, out, 1))
        self.down = _conv_bn(cin, out, 1, stride) if stride != 1 or cin != out else nn.Identity()

    def forward(self, x):
        return F.relu(self.body(x) + self.down(x))


class ResNet(_Head):
    """torchvision's ResNet: 7x7/2 stem, 3x3/2 max pool, four stages of ``block``, pool, Linear.
    ``widths`` are the stages' planes (torchvision: 64, 128, 256, 512)."""

    def __init__(self, block=BasicBlock, layers: Sequence[int] = (1, 1, 1, 1), classes: int = 5,
                 widths: Sequence[int] = (16, 32, 64, 128), groups: int = 1, width_per_group: int = 64):
        super().__init__()
        stem = nn.Sequential(_conv_bn(3, widths[0], 7, 2, act=nn.ReLU), nn.MaxPool2d(3, 2, 1))
        blocks, cin = [], widths[0]
        for i, (planes, n) in enumerate(zip(widths, layers)):
            for j in range(n):
                blocks.append(block(cin, planes, 2 if i > 0 and j == 0 else 1, groups, width_per_group))
                cin = planes * block.expansion
        self.features = nn.Sequential(stem, *blocks)
        self.classifier = nn.Linear(cin, classes)


# -- MobileNetV2, MobileNetV3, EfficientNet ------------------------------------------------------------
class SqueezeExcite(nn.Module):
    """torchvision.ops.SqueezeExcitation: pool, 1x1 conv, activation, 1x1 conv, gate, scale."""

    def __init__(self, chans, squeezed, act=nn.ReLU, gate=nn.Hardsigmoid):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(chans, squeezed, 1), nn.Conv2d(squeezed, chans, 1)
        self.act, self.gate = act(), gate()

    def forward(self, x):
        return x * self.gate(self.fc2(self.act(self.fc1(F.adaptive_avg_pool2d(x, 1)))))


class InvertedResidual(nn.Module):
    """MobileNetV2's block (expand, depthwise, project), MobileNetV3's (with squeeze-excite) and
    EfficientNet's MBConv (SiLU, a sigmoid gate, squeeze to a quarter of the block's input).
    ``se``: the squeezed channels, or None for no squeeze-excite."""

    def __init__(self, cin, expanded, cout, k, stride, act, se: int | None, gate=nn.Hardsigmoid):
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(cin, expanded, 1, act=act)] if expanded != cin else []
        layers.append(_conv_bn(expanded, expanded, k, stride, groups=expanded, act=act))
        if se:
            layers.append(SqueezeExcite(expanded, se, act=nn.ReLU if gate is nn.Hardsigmoid else act, gate=gate))
        layers.append(_conv_bn(expanded, cout, 1))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


# torchvision's mobilenet_v2 inverted_residual_setting: expand ratio t, channels c, repeats n, stride s
V2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class MobileNetV2(_Head):
    """torchvision's MobileNetV2(width_mult): stem 3x3/2, the inverted residuals, 1x1 to 1280, Dropout, Linear."""

    def __init__(self, classes: int = 10, width_mult: float = 1.0):
        super().__init__()
        cin = make_divisible(32 * width_mult)
        last = make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [_conv_bn(3, cin, 3, 2, act=nn.ReLU6)]
        for t, c, n, s in V2_SETTING:
            cout = make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(cin, int(round(cin * t)), cout, 3, s if i == 0 else 1, nn.ReLU6, None))
                cin = cout
        layers.append(_conv_bn(cin, last, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, classes))


# torchvision's mobilenet_v3_small: (in, kernel, expanded, out, squeeze-excite, HardSwish, stride)
V3_SMALL = ((16, 3, 16, 16, True, False, 2), (16, 3, 72, 24, False, False, 2), (24, 3, 88, 24, False, False, 1),
            (24, 5, 96, 40, True, True, 2), (40, 5, 240, 40, True, True, 1), (40, 5, 240, 40, True, True, 1),
            (40, 5, 120, 48, True, True, 1), (48, 5, 144, 48, True, True, 1), (48, 5, 288, 96, True, True, 2),
            (96, 5, 576, 96, True, True, 1), (96, 5, 576, 96, True, True, 1))


class MobileNetV3(_Head):
    """torchvision's MobileNetV3 from its block settings (``V3_SMALL``: mobilenet_v3_small) at
    ``width_mult``: stem 3x3/2 HardSwish, the blocks (squeeze to ``make_divisible(expanded // 4)``),
    1x1 to 6x the last block's channels, then Linear, HardSwish, Dropout, Linear.
    ``head``/``last_channel`` override those two widths (the zoo's truncated variant)."""

    def __init__(self, classes: int = 10, setting=V3_SMALL, width_mult: float = 1.0, last_channel: int = 1024,
                 head: int | None = None):
        super().__init__()
        adjust = lambda c: make_divisible(c * width_mult)  # noqa: E731
        layers: list[nn.Module] = [_conv_bn(3, adjust(setting[0][0]), 3, 2, act=nn.Hardswish)]
        for cin, k, exp, cout, se, hs, stride in setting:
            e = adjust(exp)
            layers.append(InvertedResidual(adjust(cin), e, adjust(cout), k, stride, nn.Hardswish if hs else nn.ReLU,
                                           make_divisible(e // 4) if se else None))
        last_out = adjust(setting[-1][3])
        head = head or 6 * last_out
        layers.append(_conv_bn(last_out, head, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        last = make_divisible(last_channel * width_mult)
        self.classifier = nn.Sequential(nn.Linear(head, last), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(last, classes))


# torchvision's efficientnet_b0 MBConv stages: (expand ratio, kernel, stride, in, out, layers)
B0_STAGES = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
             (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))


class EfficientNet(_Head):
    """torchvision's EfficientNet from MBConv stages at ``width_mult``/``depth_mult`` (``B0_STAGES``
    at 1.0/1.0 is efficientnet_b0): stem 3x3/2 SiLU, MBConv blocks, 1x1 head to 4x the last
    channels, Dropout, Linear. Stochastic depth is left out (it drops whole examples at random
    in training, which no two frameworks would draw alike)."""

    def __init__(self, classes: int = 10, stages=B0_STAGES, width_mult: float = 1.0, depth_mult: float = 1.0,
                 head: int | None = None):
        super().__init__()
        ch = lambda c: make_divisible(c * width_mult)  # noqa: E731
        silu = nn.SiLU
        layers: list[nn.Module] = [_conv_bn(3, ch(stages[0][3]), 3, 2, act=silu)]
        for t, k, stride, cin, cout, n in stages:
            cin, cout = ch(cin), ch(cout)
            for i in range(int(math.ceil(n * depth_mult))):
                layers.append(InvertedResidual(cin, make_divisible(cin * t), cout, k, stride if i == 0 else 1, silu,
                                               max(1, cin // 4), gate=nn.Sigmoid))
                cin = cout
        head = head or 4 * cin
        layers.append(_conv_bn(cin, head, 1, act=silu))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(head, classes))


# -- ShuffleNetV2 --------------------------------------------------------------------------------------
def channel_shuffle(x, groups: int):
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    """torchvision.models.shufflenetv2.InvertedResidual: stride 1 splits the channels in two and
    convolves one half; stride 2 convolves both (one through a depthwise branch); concat, shuffle."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.stride = stride
        half = cout // 2
        if stride > 1:
            self.branch1 = nn.Sequential(_conv_bn(cin, cin, 3, stride, groups=cin), _conv_bn(cin, half, 1, act=nn.ReLU))
        else:
            self.branch1 = nn.Sequential()
        first = cin if stride > 1 else half
        self.branch2 = nn.Sequential(_conv_bn(first, half, 1, act=nn.ReLU), _conv_bn(half, half, 3, stride, groups=half),
                                     _conv_bn(half, half, 1, act=nn.ReLU))

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(_Head):
    """torchvision's ShuffleNetV2(stages_repeats, stages_out_channels): stem 3x3/2 and 3x3/2 max
    pool, three stages of shuffle units, 1x1 conv, pool, Linear (x0.5: (4, 8, 4), (24, 48, 96, 192, 1024))."""

    def __init__(self, classes: int = 10, repeats: Sequence[int] = (4, 8, 4),
                 channels: Sequence[int] = (24, 48, 96, 192, 1024)):
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(3, channels[0], 3, 2, act=nn.ReLU), nn.MaxPool2d(3, 2, 1)]
        cin = channels[0]
        for n, cout in zip(repeats, channels[1:4]):
            layers += [ShuffleUnit(cin, cout, 2), *[ShuffleUnit(cout, cout, 1) for _ in range(n - 1)]]
            cin = cout
        layers.append(_conv_bn(cin, channels[-1], 1, act=nn.ReLU))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels[-1], classes)
