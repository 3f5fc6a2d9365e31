"""The zoo's architectures: Hugging Face classes, torchvision's ConvNet families and torch-written models, each
from a tiny config with random weights (built from config objects: nothing is downloaded), with an
example input. ``MODELS[name]()`` returns ``(module, inputs)``: inputs a dict name -> numpy array."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from onnxforge.runtime.benchmark.zoo.convnets import BasicBlock, EfficientNet, MobileNetV3, ResNet


def _seeded(module: nn.Module) -> nn.Module:
    """Random weights (seeded) with every parameter away from its default init (zero biases,
    unit norms) so no gradient is trivially symmetric."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return module.eval()


def _image(c=3, h=32, w=32, n=2):
    return {"x": np.random.default_rng(0).standard_normal((n, c, h, w)).astype(np.float32)}


def _tokens(vocab, n=2, t=8, name="input_ids"):
    return {name: np.random.default_rng(1).integers(0, vocab, (n, t)).astype(np.int64)}


# -- torchvision's architectures ----------------------------------------------------------------
# written in torch in the package (onnxforge.runtime.benchmark.zoo.convnets: torchvision's PyPI wheels
# fail beside the CPU build of PyTorch the tests run on), shared with `onnxforge bench --models`; here at
# reduced sizes: ResNet(BasicBlock, [1, 1, 1, 1]) at a quarter of its widths, mobilenet_v3_small's first
# blocks at a quarter width, EfficientNet's MBConv stages at their smallest.
MOBILENET_V3 = ((8, 3, 8, 8, True, False, 2), (8, 3, 16, 8, False, False, 2), (8, 3, 24, 8, False, False, 1),
                (8, 5, 24, 16, True, True, 2), (16, 5, 64, 16, True, True, 1))
EFFICIENTNET = ((1, 3, 1, 8, 8, 1), (6, 3, 2, 8, 8, 2), (6, 5, 2, 8, 16, 1))


def resnet():
    return _seeded(ResNet(BasicBlock, (1, 1, 1, 1), classes=5, widths=(16, 32, 64, 128))), _image(h=32, w=32)


def mobilenet_v3():
    """Depthwise convs, squeeze-excite, HardSwish / HardSigmoid."""
    return _seeded(MobileNetV3(5, MOBILENET_V3, last_channel=32, head=64)), _image(h=32, w=32)


def efficientnet():
    """MBConv: depthwise convs, squeeze-excite with SiLU and a sigmoid gate."""
    return _seeded(EfficientNet(5, EFFICIENTNET, head=64)), _image(h=32, w=32)


class TinyUNet(nn.Module):
    """A two-level U-Net: a strided encoder, one decoder path upsampled by interpolation to the
    skip connection's size (a Resize whose sizes come from a shape at run time), one by
    ConvTranspose; skip joined by Concat."""

    def __init__(self, c=8, classes=2):
        super().__init__()
        self.enc1 = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU())
        self.enc2 = nn.Sequential(nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.BatchNorm2d(2 * c), nn.ReLU())
        self.up = nn.ConvTranspose2d(2 * c, c, 2, stride=2)
        self.dec = nn.Sequential(nn.Conv2d(3 * c, c, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(c, classes, 1)

    def forward(self, x):
        s1 = self.enc1(x)
        s2 = self.enc2(s1)
        resized = F.interpolate(s2, size=s1.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(self.dec(torch.cat([s1, resized[:, : s1.shape[1]] + self.up(s2), resized[:, s1.shape[1]:]], 1)))


def unet():
    return _seeded(TinyUNet()), _image(h=16, w=16)


# -- Hugging Face transformers -----------------------------------------------------------------
def _hf(model):
    model.config.use_cache = False
    return _seeded(model)


def bert():
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=32, num_labels=3)
    return _hf(BertForSequenceClassification(cfg)), _tokens(64)


def vit():
    from transformers import ViTConfig, ViTForImageClassification

    cfg = ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=16, num_hidden_layers=2,
                    num_attention_heads=2, intermediate_size=32, num_labels=3)
    return _hf(ViTForImageClassification(cfg)), {"pixel_values": _image(h=16, w=16)["x"]}


def gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=2, n_head=2)
    return _hf(GPT2LMHeadModel(cfg)), _tokens(64)


def t5():
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = T5Config(vocab_size=64, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_decoder_layers=2, num_heads=2,
                   decoder_start_token_id=0, pad_token_id=0)
    ids = _tokens(64)["input_ids"]
    return _hf(T5ForConditionalGeneration(cfg)), {"input_ids": ids, "decoder_input_ids": ids[:, :5].copy()}


def bart():
    from transformers import BartConfig, BartForConditionalGeneration

    cfg = BartConfig(vocab_size=64, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                     decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=32)
    ids = _tokens(64)["input_ids"]
    return _hf(BartForConditionalGeneration(cfg)), {"input_ids": ids, "decoder_input_ids": ids[:, :5].copy()}


def whisper_encoder():
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    cfg = WhisperConfig(num_mel_bins=8, d_model=16, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=32,
                        max_source_positions=8, vocab_size=64)
    feats = np.random.default_rng(0).standard_normal((2, 8, 16)).astype(np.float32)
    return _hf(WhisperEncoder(cfg)), {"input_features": feats}


def wav2vec2():
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    cfg = Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                         conv_dim=(8, 8), conv_kernel=(10, 3), conv_stride=(5, 2), num_conv_pos_embeddings=4,
                         num_conv_pos_embedding_groups=2, feat_extract_norm="group", do_stable_layer_norm=False,
                         apply_spec_augment=False)
    return _hf(Wav2Vec2Model(cfg)), {"input_values": np.random.default_rng(0).standard_normal((2, 400)).astype(np.float32)}


# -- torch-written -----------------------------------------------------------------------------
class LSTMText(nn.Module):
    def __init__(self, vocab=32, emb=8, hidden=8, classes=3):
        super().__init__()
        self.emb = nn.Embedding(vocab, emb)
        self.rnn = nn.LSTM(emb, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, input_ids):
        y, _ = self.rnn(self.emb(input_ids))
        return self.fc(y[:, -1])


class GRUText(nn.Module):
    def __init__(self, vocab=32, emb=8, hidden=8, classes=3):
        super().__init__()
        self.emb = nn.Embedding(vocab, emb)
        self.rnn = nn.GRU(emb, hidden, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, classes)

    def forward(self, input_ids):
        y, _ = self.rnn(self.emb(input_ids))
        return self.fc(y.mean(1))


class EinsumCumsumTopK(nn.Module):
    """Bilinear scores by einsum, a running sum over time, the top-k positions' features."""

    def __init__(self, d=8, k=3, classes=3):
        super().__init__()
        self.k = k
        self.proj = nn.Linear(d, d)
        self.bil = nn.Parameter(torch.randn(d, d) * 0.1)
        self.fc = nn.Linear(d, classes)

    def forward(self, x):
        h = torch.tanh(self.proj(x))
        scores = torch.einsum("btd,de,bte->bt", h, self.bil, h)
        run = torch.cumsum(h, dim=1) / torch.arange(1, h.shape[1] + 1, dtype=h.dtype).view(1, -1, 1)
        top, idx = torch.topk(scores, self.k, dim=1)
        picked = torch.gather(run, 1, idx.unsqueeze(-1).expand(-1, -1, h.shape[-1]))
        return self.fc((picked * torch.softmax(top, 1).unsqueeze(-1)).sum(1))


def lstm_text():
    return _seeded(LSTMText()), _tokens(32)


def gru_text():
    return _seeded(GRUText()), _tokens(32)


def einsum_cumsum_topk():
    return _seeded(EinsumCumsumTopK()), {"x": np.random.default_rng(0).standard_normal((2, 6, 8)).astype(np.float32)}


def _deterministic(build):
    """The builder with PyTorch's generator seeded first: a module's default initialisation draws from
    it, so without this the weights would depend on which tests ran before (and so would near-ties
    such as two equal top-k scores, where any two implementations may pick differently)."""

    def fresh():
        torch.manual_seed(0)
        return build()

    fresh.__name__ = fresh.__qualname__ = build.__name__
    return fresh


MODELS = {
    "resnet": resnet, "mobilenet_v3": mobilenet_v3, "efficientnet": efficientnet, "unet": unet,
    "bert": bert, "vit": vit, "gpt2": gpt2, "t5": t5, "bart": bart, "whisper_encoder": whisper_encoder,
    "wav2vec2": wav2vec2, "lstm_text": lstm_text, "gru_text": gru_text, "einsum_cumsum_topk": einsum_cumsum_topk,
}
MODELS = {name: _deterministic(build) for name, build in MODELS.items()}
