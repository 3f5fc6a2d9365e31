"""``onnxforge embeddings``: word vectors: nearest neighbours, a 2-D map, projector files."""

from __future__ import annotations

from pathlib import Path

import click

from onnxforge.cli._common import print_json
from onnxforge.runtime.errors import ConfigError, DataError
from onnxforge.runtime.modelio.files import load_model
from onnxforge.runtime.tasks.word_vectors import nearest, word_vectors, write_projector


def tsne_png(words: list[str], vectors, path, seed: int = 0) -> Path:
    """A labelled scatter of the words at their 2-D t-SNE positions, written atomically as PNG."""
    from onnxforge.cli.plot import _pyplot, _save
    if len(words) < 3:
        raise DataError(f"a map needs at least 3 words; the model has {len(words)}")
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        raise ConfigError("the map needs scikit-learn: pip install 'onnxforge[plot]'") from None
    import time

    plt = _pyplot()
    perplexity = float(min(30.0, max(1.0, (len(words) - 1) / 3)))
    start = time.perf_counter()
    click.echo(f"laying out {len(words)} words with t-SNE (scikit-learn; about {max(2, len(words) // 5)} s)...", err=True)
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, metric="cosine").fit_transform(vectors)
    click.echo(f"laid out in {time.perf_counter() - start:.1f} s; drawing {path}", err=True)
    size = min(16.0, 4.0 + 0.12 * len(words))
    fig, ax = plt.subplots(figsize=(size, size))
    ax.scatter(xy[:, 0], xy[:, 1], s=8, color="tab:blue")
    pad = 0.08 * (xy.max(axis=0) - xy.min(axis=0) + 1e-9)
    ax.set_xlim(xy[:, 0].min() - pad[0], xy[:, 0].max() + pad[0])
    ax.set_ylim(xy[:, 1].min() - pad[1], xy[:, 1].max() + pad[1])
    place_labels(fig, ax, xy, words)
    ax.set_title(f"word vectors (t-SNE, {len(words)} words): words used alike lie close together")
    ax.set_xticks([])
    ax.set_yticks([])
    return _save(fig, plt, Path(path), f"t-SNE map of {len(words)} word vectors: " + " ".join(words[:200]))


# offsets (points) tried in turn for a label: right, left, above, below, then further out
_OFFSETS = [(4, 2), (-4, 2), (4, -10), (-4, -10), (0, 8), (0, -14), (10, 10), (-10, 10), (10, -18), (-10, -18),
            (0, 18), (0, -24), (16, 0), (-16, 0)]


def place_labels(fig, ax, xy, words) -> list:
    """Label each point with its word where the label overlaps no label placed before (greedy, the
    offsets above in turn, the first that fits; the least-overlapping one when none does)."""
    renderer = fig.canvas.get_renderer()
    placed: list = []
    texts: list = []
    for (x, y), word in zip(xy, words):
        best_overlap, best_text, best_box = float("inf"), None, None
        for dx, dy in _OFFSETS:
            text = ax.annotate(word, (x, y), fontsize=8, xytext=(dx, dy), textcoords="offset points",
                               ha="left" if dx >= 0 else "right")
            box = text.get_window_extent(renderer).expanded(1.05, 1.1)
            overlap = sum(max(0.0, min(box.x1, b.x1) - max(box.x0, b.x0)) * max(0.0, min(box.y1, b.y1) - max(box.y0, b.y0))
                          for b in placed)
            if overlap < best_overlap:
                if best_text is not None:
                    best_text.remove()
                best_overlap, best_text, best_box = overlap, text, box
            else:
                text.remove()
            if overlap == 0:
                break
        placed.append(best_box)
        texts.append(best_text)
    return texts


@click.command("embeddings")
@click.argument("model", metavar="MODEL_OR_RUNDIR", type=click.Path())
@click.option("--nearest", "word", default=None, metavar="WORD", help="List the words closest to WORD (cosine similarity).")
@click.option("-k", "k", type=click.IntRange(min=1), default=5, show_default=True, help="How many neighbours --nearest lists.")
@click.option("--map", "map_png", type=click.Path(dir_okay=False), default=None, metavar="PNG",
              help="Draw every word at its 2-D t-SNE position, labelled, into this PNG.")
@click.option("--projector", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Write DIR/vectors.tsv and DIR/metadata.tsv for TensorBoard's embedding projector.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the t-SNE layout.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def command(model, word, k, map_png, projector, seed, as_json):
    """Show MODEL's word vectors: nearest neighbours, a t-SNE map, or the projector's files.

    The vectors are the model's embedding table (an NPLM's, an LSTM's or a captioner's built with
    --vocab-from); the reserved ids are left out. ``--nearest WORD -k N`` lists the N words of highest
    cosine similarity, closest first (``--json``: ``{"word": WORD, "neighbours": [{"word", "similarity"}, ...]}``);
    ``--map out.png`` draws every word at its t-SNE position, labelled (scikit-learn's TSNE and
    matplotlib, from the plot extra); ``--projector DIR`` writes DIR/vectors.tsv and DIR/metadata.tsv,
    the two files TensorBoard's embedding projector loads.
    """
    if word is None and map_png is None and projector is None:
        raise click.UsageError("give --nearest WORD, --map PNG or --projector DIR")
    words, vectors = word_vectors(load_model(model))
    result = {}
    if word is not None:
        result = {"word": word, "neighbours": [{"word": w, "similarity": s} for w, s in nearest(words, vectors, word, k)]}
    if map_png is not None:
        result["map"] = str(tsne_png(words, vectors, map_png, seed))
    if projector is not None:
        vectors_tsv, metadata_tsv = write_projector(projector, words, vectors)
        result["projector"] = {"vectors": str(vectors_tsv), "metadata": str(metadata_tsv)}
    if as_json:
        print_json(result)
        return
    for n in result.get("neighbours", []):
        click.echo(f"{n['word']}\t{n['similarity']:.4f}")
    if "map" in result:
        click.echo(f"wrote {result['map']}")
    if "projector" in result:
        click.echo(f"wrote {result['projector']['vectors']} and {result['projector']['metadata']}")
