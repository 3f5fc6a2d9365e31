"""``onnxforge build``: write a new network as a standard ONNX file."""

from __future__ import annotations

import click
import numpy as np

from onnxforge.cli._common import IntList, print_json
from onnxforge.graphs.lstm import HEADS, IMPLS
from onnxforge.graphs.seq2seq import ATTENTIONS
from onnxforge.runtime.modelio.files import save_model


@click.group("build")
def command() -> None:
    """Build a network with freshly initialised weights and save it as an ONNX file."""


def _save(model, output: str, as_json: bool) -> None:
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


@command.command("mlp")
@click.option("--inputs", "inputs", type=click.IntRange(min=1), required=True, help="Number of input features.")
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
@output_options
def mlp_command(inputs, hidden, classes, outputs, activation, dropout, seed, output, as_json):
    """Build a multi-layer perceptron: fully connected layers with an activation between them."""
    from onnxforge.graphs import mlp

    if (classes is None) == (outputs is None):
        raise click.UsageError("give exactly one of --classes (a classifier) or --outputs (a regression model)")
    model = mlp(inputs, list(hidden), classes or outputs, activation=activation, dropout=dropout, seed=seed,
                task="classification" if classes else "regression")
    _save(model, output, as_json)



@command.command("convnet")
@click.option("--input-shape", type=IntList(min_len=3, max_len=3), required=True,
              help="Shape of one example as channels,height,width, for example 1,8,8.")
@click.option("--channels", type=IntList(), default="16,32", show_default=True,
              help="Output channels of the convolution stages, comma-separated: one stage per number.")
@click.option("--kernel", type=click.IntRange(min=1), default=3, show_default=True,
              help="Height and width of every convolution kernel (same padding keeps the map size).")
@click.option("--pool", type=click.IntRange(min=1), default=2, show_default=True,
              help="Window and stride of the max pooling after each stage; 1 means no pooling.")
@click.option("--dense", type=IntList(), default=None,
              help="Widths of fully connected hidden layers before the output layer, for example 128.")
@click.option("--classes", type=click.IntRange(min=2), required=True, help="Number of classes.")
@click.option("--batchnorm", is_flag=True,
              help="Batch normalisation after every convolution (batch statistics in training, running ones after).")
@click.option("--dropout", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.0, show_default=True,
              help="Dropout rate before every fully connected layer, active only in training.")
@output_options
def convnet_command(input_shape, channels, kernel, pool, dense, classes, batchnorm, dropout, seed, output, as_json):
    """Build a ConvNet classifier: convolution, ReLU and max-pooling stages, then fully connected layers."""
    from onnxforge.graphs import convnet

    model = convnet(tuple(input_shape), tuple(channels), kernel, pool, tuple(dense or ()), classes,
                    dropout=dropout, batchnorm=batchnorm, seed=seed)
    _save(model, output, as_json)


@command.command("lstm")
@click.option("--inputs", type=click.IntRange(min=1), default=None,
              help="Float features per time step (data x of shape [N, T, inputs]).")
@click.option("--vocab", type=click.IntRange(min=2), default=None,
              help="Token vocabulary size, every id counted (data x of int ids, shape [N, T]), instead of --inputs.")
@click.option("--embed", type=click.IntRange(min=1), default=None, help="Width of the learned token embedding (with --vocab).")
@click.option("--hidden", type=click.IntRange(min=1), default=64, show_default=True, help="Hidden size of every LSTM layer.")
@click.option("--layers", type=click.IntRange(min=1), default=1, show_default=True, help="Number of stacked LSTM layers.")
@click.option("--classes", type=click.IntRange(min=2), required=True,
              help="Number of classes (for a tagger, label 0 is padding and is ignored).")
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
def lstm_command(inputs, vocab, embed, hidden, layers, classes, head, bidirectional, dropout, impl, steps, seed, output,
                 as_json):
    """Build an LSTM network over feature sequences or token ids that labels sequences or every step."""
    from onnxforge.graphs import lstm

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
    _save(model, output, as_json)


def _read_vocab(path: str) -> tuple[list[str], list[str]]:
    from onnxforge.runtime.errors import DataError

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
              help="Take both vocabularies (sizes and token strings) from an .npz with src_vocab and tgt_vocab arrays.")
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
def seq2seq_command(src_vocab, tgt_vocab, vocab_from, embed, hidden, layers, attention, max_len, impl, seed, output,
                    as_json):
    """Build an LSTM encoder-decoder with attention that translates token sequences."""
    from onnxforge.graphs.seq2seq import seq2seq

    src_tokens = tgt_tokens = None
    if vocab_from:
        src_tokens, tgt_tokens = _read_vocab(vocab_from)
        for flag, given, tokens in (("--src-vocab", src_vocab, src_tokens), ("--tgt-vocab", tgt_vocab, tgt_tokens)):
            if given is not None and given != len(tokens):
                raise click.UsageError(f"{flag} {given} disagrees with the {len(tokens)} tokens in {vocab_from}")
        src_vocab, tgt_vocab = len(src_tokens), len(tgt_tokens)
    if src_vocab is None or tgt_vocab is None:
        raise click.UsageError("give --src-vocab and --tgt-vocab, or --vocab-from an .npz that holds both vocabularies")
    model = seq2seq(src_vocab, tgt_vocab, embed, hidden, layers, None if attention == "none" else attention,
                    seed=seed, max_len=max_len, src_tokens=src_tokens, tgt_tokens=tgt_tokens, impl=impl)
    _save(model, output, as_json)
