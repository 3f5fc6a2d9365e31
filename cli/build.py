"""``onnxforge build``: write a new network as a standard ONNX file."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from onnxforge.cli._common import IntList, print_json
from onnxforge.cli._data import classes_from, columns, data_path, image_shape, table_options, text_vocab
from onnxforge.graphs.lstm import HEADS, IMPLS
from onnxforge.graphs.seq2seq import ATTENTIONS, seq2seq
from onnxforge.runtime.data.images import ImageSpec, RESIZE_RULES
from onnxforge.runtime.data.tokenizers import KINDS
from onnxforge.runtime.modelio.files import save_model
from onnxforge.graphs import convnet, lstm, mlp
from onnxforge.graphs.captioner import captioner
from onnxforge.graphs.nplm import nplm
from onnxforge.runtime.data import text
from onnxforge.runtime.data.scaling import with_feature_scaling
from onnxforge.runtime.data.tables import summarize_table
from onnxforge.runtime.errors import DataError
from onnxforge.runtime.modelio.card import ModelCard


@click.group("build")
def command() -> None:
    """Build a network with freshly initialised weights and save it as an ONNX file."""


def _save(model, output: str, as_json: bool, card: dict | None = None) -> None:
    if card:
        model = ModelCard.from_model(model).updated(card).apply(model)
    path = save_model(model, output)
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type == 1)
    if as_json:
        print_json({"path": str(path), "parameters": params, "opset": model.opset_import[0].version})
    else:
        click.echo(f"wrote {path} ({params:,} parameters)")


def output_options(f):
    """--seed, -o/--output and --json, which every builder takes."""
    f = click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")(f)
    f = click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
                     help="Where to write the .onnx file.")(f)
    return click.option("--seed", type=int, default=0, show_default=True, help="Seed of the weight initialisation.")(f)


def classes_option(f):
    """--classes-from, which every classifier builder takes beside --classes."""
    return click.option("--classes-from", "classes_data", type=data_path, default=None, metavar="DATA",
                        help="Take the classes and their names from data: a table (with --target), a folder of "
                             "class subfolders of images, or a label<TAB>text file.")(f)


def _classes(classes, classes_data, target=None, features=None) -> tuple[int | None, dict]:
    """``(number of classes, card values)`` from --classes or --classes-from (not both)."""
    if classes_data is None:
        return classes, {}
    names = classes_from(classes_data, target, features)
    if classes is not None and classes != len(names):
        raise click.UsageError(f"--classes {classes} disagrees with the {len(names)} classes in {classes_data}")
    return len(names), {"labels": names}


@command.command("mlp")
@click.option("--inputs", "inputs", type=click.IntRange(min=1), default=None, help="Number of input features.")
@click.option("--inputs-from", "table", type=data_path, default=None, metavar="TABLE",
              help="Size the inputs (and, for a classifier, the classes and their names) from a .csv/.tsv/.parquet "
                   "training table with --target; its feature scaling (mean, std) becomes nodes at the model's input.")
@table_options
@click.option("--hidden", type=IntList(), default="128", show_default=True,
              help="Widths of the hidden layers, comma-separated, for example 128,64.")
@click.option("--classes", type=click.IntRange(min=2), default=None,
              help="Number of classes for a classifier (trained with cross-entropy).")
@click.option("--outputs", type=click.IntRange(min=1), default=None,
              help="Number of outputs for a regression model (trained with MSE), instead of --classes.")
@click.option("--activation", default="relu", show_default=True,
              help="Activation between layers: relu, leaky_relu, tanh, sigmoid, or a plugin op's name.")
@click.option("--dropout", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.0, show_default=True,
              help="Dropout rate after each hidden layer, active only in training.")
@classes_option
@output_options
def mlp_command(inputs, table, target, features, hidden, classes, classes_data, outputs, activation, dropout, seed,
                output, as_json):
    """Build a multi-layer perceptron: fully connected layers with an activation between them."""
    card, summary = {}, None
    if table is not None:
        if inputs is not None:
            raise click.UsageError("give --inputs or --inputs-from, not both")
        summary = summarize_table(table, target, columns(features), classify=outputs is None, progress=True)
        inputs = len(summary.features)
        card = {"features": summary.features, "target": summary.target}
        if outputs is None:
            if classes is not None and classes != len(summary.classes):
                raise click.UsageError(f"--classes {classes} disagrees with the {len(summary.classes)} classes in {table}")
            classes, card["labels"] = len(summary.classes), summary.classes
    elif inputs is None:
        raise click.UsageError("give --inputs (the number of features) or --inputs-from a training table")
    classes, labels = _classes(classes, classes_data, target, features)
    card.update(labels)
    if (classes is None) == (outputs is None):
        raise click.UsageError("give exactly one of --classes (a classifier) or --outputs (a regression model)")
    model = mlp(inputs, list(hidden), classes or outputs, activation=activation, dropout=dropout, seed=seed,
                task="classification" if classes else "regression")
    if summary is not None:
        model = with_feature_scaling(model, summary.mean, summary.std)
        card["preprocessing"] = {"feature_scaling": {"mean": summary.mean.tolist(), "std": summary.std.tolist(),
                                                     "in_graph": True}}
    _save(model, output, as_json, card)



@command.command("convnet")
@click.option("--input-shape", type=IntList(min_len=3, max_len=3), default=None,
              help="Shape of one example as channels,height,width, for example 1,8,8 [default with --classes-from "
                   "an image folder: its first image's].")
@click.option("--channels", type=IntList(), default="16,32", show_default=True,
              help="Output channels of the convolution stages, comma-separated: one stage per number.")
@click.option("--kernel", type=click.IntRange(min=1), default=3, show_default=True,
              help="Height and width of every convolution kernel (same padding keeps the map size).")
@click.option("--pool", type=click.IntRange(min=1), default=2, show_default=True,
              help="Window and stride of the max pooling after each stage; 1 means no pooling.")
@click.option("--dense", type=IntList(), default=None,
              help="Widths of fully connected hidden layers before the output layer, for example 128.")
@click.option("--classes", type=click.IntRange(min=2), default=None, help="Number of classes.")
@classes_option
@click.option("--resize", type=click.Choice(RESIZE_RULES), default="refuse", show_default=True,
              help="Images of another size than the input's: refuse them (naming the file) or stretch them to it.")
@click.option("--batchnorm", is_flag=True,
              help="Batch normalisation after every convolution (batch statistics in training, running ones after).")
@click.option("--dropout", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.0, show_default=True,
              help="Dropout rate before every fully connected layer, active only in training.")
@output_options
def convnet_command(input_shape, channels, kernel, pool, dense, classes, classes_data, resize, batchnorm, dropout, seed,
                    output, as_json):
    """Build a ConvNet classifier: convolution, ReLU and max-pooling stages, then fully connected layers."""
    classes, card = _classes(classes, classes_data)
    if classes is None:
        raise click.UsageError("give --classes or --classes-from")
    if input_shape is None:
        if classes_data is None or not Path(classes_data).is_dir():
            raise click.UsageError("give --input-shape (or --classes-from an image folder to take it from)")
        input_shape = image_shape(classes_data)
    spec = ImageSpec(*input_shape, resize=resize)
    values = spec.card_values()
    card.update(image=values["image"], preprocessing={"pixel_scale": values["pixel_scale"]})
    model = convnet(tuple(input_shape), tuple(channels), kernel, pool, tuple(dense or ()), classes,
                    dropout=dropout, batchnorm=batchnorm, seed=seed)
    _save(model, output, as_json, card)


@command.command("lstm")
@click.option("--inputs", type=click.IntRange(min=1), default=None,
              help="Float features per time step (data x of shape [N, T, inputs]).")
@click.option("--vocab", type=click.IntRange(min=2), default=None,
              help="Token vocabulary size, every id counted (data x of int ids, shape [N, T]), instead of --inputs.")
@click.option("--embed", type=click.IntRange(min=1), default=None, help="Width of the learned token embedding (with --vocab).")
@click.option("--hidden", type=click.IntRange(min=1), default=64, show_default=True, help="Hidden size of every LSTM layer.")
@click.option("--layers", type=click.IntRange(min=1), default=1, show_default=True, help="Number of stacked LSTM layers.")
@click.option("--classes", type=click.IntRange(min=2), default=None,
              help="Number of classes (for a tagger, label 0 is padding and is ignored).")
@classes_option
@click.option("--vocab-from", "vocab_data", type=data_path, default=None, metavar="TEXT",
              help="Build a tokenizer from a label<TAB>text file (or a plain .txt for a tagger language model) and "
                   "size --vocab from it; the model card keeps it, so infer --text reads raw text.")
@click.option("--tokenizer", "tokenizer_kind", type=click.Choice(KINDS), default="char", show_default=True,
              help="With --vocab-from: character or whitespace-word tokens.")
@click.option("--max-vocab", type=click.IntRange(min=5), default=None,
              help="With --vocab-from: at most this many ids (rarer tokens read as <unk>).")
@click.option("--head", type=click.Choice(HEADS), default="sequence", show_default=True,
              help="sequence: one label per sequence from the last state; tagger: one label per step.")
@click.option("--bidirectional", is_flag=True,
              help="Read the sequence both ways (built from two forward LSTMs, which ONNX Runtime can train).")
@click.option("--dropout", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.0, show_default=True,
              help="Dropout rate between stacked layers, active only in training.")
@click.option("--impl", type=click.Choice(IMPLS), default="node", show_default=True,
              help="node: ONNX LSTM nodes; unrolled: the same function from plain MatMul, Sigmoid and Tanh ops "
                   "unrolled over --steps steps (trains faster in ONNX Runtime).")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Fixed sequence length T of every example (needed by --impl unrolled; default: any length).")
@output_options
def lstm_command(inputs, vocab, embed, hidden, layers, classes, classes_data, vocab_data, tokenizer_kind, max_vocab, head,
                 bidirectional, dropout, impl, steps, seed, output, as_json):
    """Build an LSTM network over feature sequences or token ids that labels sequences or every step."""
    classes, card = _classes(classes, classes_data)
    if vocab_data is not None:
        tok = text_vocab(vocab_data, tokenizer_kind, max_vocab, "text")
        if vocab is not None and vocab != len(tok.tokens):
            raise click.UsageError(f"--vocab {vocab} disagrees with the {len(tok.tokens)} tokens in {vocab_data}")
        vocab = len(tok.tokens)
        card.update(tokens=list(tok.tokens), tokenizer=tok.card_values())
        if head == "tagger" and classes is None:
            classes = vocab  # a language model: the next token over the same vocabulary
    if classes is None:
        raise click.UsageError("give --classes or --classes-from")

    if (inputs is None) == (vocab is None):
        raise click.UsageError("give exactly one of --inputs (float features per step) or --vocab (token ids)")
    if vocab is not None and embed is None:
        raise click.UsageError("--vocab needs --embed, the width of the learned token embedding")
    if inputs is not None and embed is not None:
        raise click.UsageError("--embed applies to token models only; give --vocab instead of --inputs")
    if impl == "unrolled" and steps is None:
        raise click.UsageError("--impl unrolled needs --steps, the fixed sequence length to unroll over")
    model = lstm(inputs, vocab=vocab, embed=embed, hidden=hidden, layers=layers, classes=classes, head=head,
                 bidirectional=bidirectional, dropout=dropout, seed=seed, impl=impl, steps=steps)
    if head == "tagger" and vocab_data is not None:
        card["task"] = "tagging"
    _save(model, output, as_json, card)


def _read_vocab(path: str) -> tuple[list[str], list[str]]:
    try:
        with np.load(path, allow_pickle=False) as f:
            return [str(s) for s in f["src_vocab"]], [str(s) for s in f["tgt_vocab"]]
    except KeyError:
        raise DataError(f"'{path}' has no arrays 'src_vocab' and 'tgt_vocab' (one string per token id)") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"'{path}' is not a readable .npz file ({exc})") from None


@command.command("seq2seq")
@click.option("--src-vocab", type=click.IntRange(min=4), default=None,
              help="Source vocabulary size, counting the reserved ids 0=PAD, 1=BOS, 2=EOS.")
@click.option("--tgt-vocab", type=click.IntRange(min=4), default=None,
              help="Target vocabulary size, counting the reserved ids 0=PAD, 1=BOS, 2=EOS.")
@click.option("--vocab-from", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Take both vocabularies from a source<TAB>target text file (built by --tokenizer; the model card "
                   "keeps them, so infer --text reads raw text), or from an .npz with src_vocab and tgt_vocab arrays.")
@click.option("--tokenizer", "tokenizer_kind", type=click.Choice(KINDS), default="char", show_default=True,
              help="With --vocab-from a text file: character or whitespace-word tokens.")
@click.option("--max-vocab", type=click.IntRange(min=5), default=None,
              help="With --vocab-from a text file: at most this many ids per vocabulary (rarer tokens read as <unk>).")
@click.option("--embed", type=click.IntRange(min=1), default=32, show_default=True, help="Width of the token embeddings.")
@click.option("--hidden", type=click.IntRange(min=1), default=64, show_default=True, help="Width of the LSTM states.")
@click.option("--layers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Stacked LSTM layers in the encoder and in the decoder.")
@click.option("--attention", type=click.Choice([a or "none" for a in ATTENTIONS]), default="dot", show_default=True,
              help="Luong attention score over the encoder outputs: dot, general (bilinear), or none.")
@click.option("--max-len", type=click.IntRange(min=1), default=64, show_default=True,
              help="Longest output that decoding produces unless told otherwise.")
@click.option("--impl", type=click.Choice(IMPLS), default="node", show_default=True,
              help="node: ONNX LSTM nodes; unrolled: the same function from plain MatMul, Sigmoid and Tanh ops "
                   "unrolled over --max-len steps (trains faster in ONNX Runtime; sequences at most --max-len tokens).")
@output_options
def seq2seq_command(src_vocab, tgt_vocab, vocab_from, tokenizer_kind, max_vocab, embed, hidden, layers, attention, max_len,
                    impl, seed, output, as_json):
    """Build an LSTM encoder-decoder with attention that translates token sequences."""
    src_tokens = tgt_tokens = None
    card = {}
    if vocab_from and not vocab_from.endswith(".npz"):
        src_tok = text_vocab(vocab_from, tokenizer_kind, max_vocab, "source")
        tgt_tok = text_vocab(vocab_from, tokenizer_kind, max_vocab, "target")
        src_tokens, tgt_tokens = list(src_tok.tokens), list(tgt_tok.tokens)
        unknown = "unk" if "unk" in (src_tok.unknown, tgt_tok.unknown) else "refuse"
        card["tokenizer"] = {"kind": tokenizer_kind, "unknown": unknown}
    elif vocab_from:
        src_tokens, tgt_tokens = _read_vocab(vocab_from)
    if vocab_from:
        for flag, given, tokens in (("--src-vocab", src_vocab, src_tokens), ("--tgt-vocab", tgt_vocab, tgt_tokens)):
            if given is not None and given != len(tokens):
                raise click.UsageError(f"{flag} {given} disagrees with the {len(tokens)} tokens in {vocab_from}")
        src_vocab, tgt_vocab = len(src_tokens), len(tgt_tokens)
    if src_vocab is None or tgt_vocab is None:
        raise click.UsageError("give --src-vocab and --tgt-vocab, or --vocab-from an .npz that holds both vocabularies")
    model = seq2seq(src_vocab, tgt_vocab, embed, hidden, layers, None if attention == "none" else attention,
                    seed=seed, max_len=max_len, src_tokens=src_tokens, tgt_tokens=tgt_tokens, impl=impl)
    _save(model, output, as_json, card)


@command.command("nplm")
@click.option("--vocab-from", "vocab_data", type=data_path, required=True, metavar="TEXT",
              help="Plain text, one sentence a line: its words become the vocabulary (the card keeps the word "
                   "tokenizer), and eval --ngram counts its N-grams.")
@click.option("--context", type=click.IntRange(min=1), default=4, show_default=True,
              help="How many previous words the model reads.")
@click.option("--embed", type=click.IntRange(min=1), default=32, show_default=True, help="Width of each word vector.")
@click.option("--hidden", type=click.IntRange(min=1), default=128, show_default=True, help="Width of the tanh hidden layer.")
@click.option("--max-vocab", type=click.IntRange(min=5), default=None,
              help="At most this many ids (rarer words read as <unk>).")
@output_options
def nplm_command(vocab_data, context, embed, hidden, max_vocab, seed, output, as_json):
    """Build a neural language model: word vectors of the previous words, a hidden layer, the next word."""
    tok = text_vocab(vocab_data, "word", max_vocab, "text")
    model = nplm(len(tok.tokens), context=context, embed=embed, hidden=hidden, seed=seed, tokens=list(tok.tokens),
                 tokenizer=tok.card_values())
    args = dict(ModelCard.from_model(model).args, vocab_from=str(Path(vocab_data).resolve()))
    _save(model, output, as_json, {"args": args})


@command.command("captioner")
@click.option("--image-shape", type=IntList(min_len=3, max_len=3), required=True,
              help="Shape of one image as channels,height,width, for example 1,8,24.")
@click.option("--channels", type=IntList(), default="16,32", show_default=True,
              help="Output channels of the ConvNet stages, comma-separated: one stage per number.")
@click.option("--vocab-from", "vocab_data", type=data_path, required=True, metavar="CAPTIONS",
              help="An image_path<TAB>caption file: the captions' words become the vocabulary (the card keeps the "
                   "word tokenizer); train, eval and infer read the same form.")
@click.option("--hidden", type=click.IntRange(min=1), default=64, show_default=True,
              help="Width of the decoder's LSTM state and of each image location's vector.")
@click.option("--embed", type=click.IntRange(min=1), default=32, show_default=True, help="Width of the word embeddings.")
@click.option("--attention", type=click.Choice(["dot", "general"]), default="dot", show_default=True,
              help="Luong attention score over the image locations: dot or general (bilinear).")
@click.option("--kernel", type=click.IntRange(min=1), default=3, show_default=True, help="Convolution kernel size.")
@click.option("--pool", type=click.IntRange(min=1), default=2, show_default=True,
              help="Max pooling window and stride after each stage; 1 means no pooling.")
@click.option("--max-len", type=click.IntRange(min=1), default=None,
              help="Longest caption decoding writes, EOS counted [default: the longest in --vocab-from, plus one].")
@click.option("--impl", type=click.Choice(IMPLS), default="node", show_default=True,
              help="node: an ONNX LSTM node; unrolled: plain ops over --max-len steps (trains faster in ONNX Runtime).")
@click.option("--resize", type=click.Choice(RESIZE_RULES), default="refuse", show_default=True,
              help="Images of another size than --image-shape: refuse them (naming the file) or stretch them to it.")
@click.option("--max-vocab", type=click.IntRange(min=5), default=None,
              help="At most this many ids (rarer words read as <unk>).")
@output_options
def captioner_command(image_shape, channels, vocab_data, hidden, embed, attention, kernel, pool, max_len, impl, resize,
                      max_vocab, seed, output, as_json):
    """Build an image captioner: a ConvNet's feature map that an LSTM decoder attends over while writing."""
    tok = text_vocab(vocab_data, "word", max_vocab, "target")
    if max_len is None:
        _, captions, _ = text.read_columns(vocab_data, "image_path<TAB>caption")
        max_len = max(len(tok.split(c)) for c in captions) + 1
    spec = ImageSpec(*image_shape, resize=resize).card_values()
    model = captioner(tuple(image_shape), tuple(channels), len(tok.tokens), embed=embed, hidden=hidden,
                      attention=attention, kernel=kernel, pool=pool, max_len=max_len, seed=seed, impl=impl,
                      tokens=list(tok.tokens), tokenizer=tok.card_values())
    _save(model, output, as_json, {"image": spec["image"], "preprocessing": {"pixel_scale": spec["pixel_scale"]}})
