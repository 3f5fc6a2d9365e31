"""``onnxforge generate``: sample text from a language model, word by word after a prompt."""

from __future__ import annotations

import click

from onnxforge.cli._common import DEVICE, print_json
from onnxforge.runtime import load
from onnxforge.runtime.data.tokenizers import Tokenizer
from onnxforge.runtime.tasks.generation import generate


@click.command("generate")
@click.argument("model", metavar="MODEL_OR_RUNDIR", type=click.Path())
@click.option("--prompt", default="", show_default=True, help="The text to continue (words of the model's vocabulary).")
@click.option("--max-len", type=click.IntRange(min=1), default=20, show_default=True,
              help="At most this many words after the prompt (fewer when the model ends the sentence).")
@click.option("--temperature", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Divide the logits by this before sampling; 0 takes the most probable word every time.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sampling.")
@click.option("--samples", type=click.IntRange(min=1), default=1, show_default=True,
              help="How many continuations to draw (seeds SEED, SEED+1, ...).")
@click.option("--device", type=DEVICE, default="auto", show_default=True, help="Where to run the model.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def command(model, prompt, max_len, temperature, seed, samples, device, as_json):
    """Continue --prompt with words sampled from MODEL (an NPLM or an LSTM tagger language model)."""
    session = load(model, device=device)
    texts = []
    for i in range(samples):
        ids = generate(session, prompt, max_len=max_len, temperature=temperature, seed=seed + i)
        texts.append(Tokenizer.from_card(session.card, "tokens").decode(ids))
    if as_json:
        print_json({"prompt": prompt, "texts": texts})
        return
    for text in texts:
        click.echo(" ".join(p for p in (prompt.strip(), text) if p))
