"""The word map's labels do not overlap where there is room: ``place_labels`` moves a label to the
first free spot around its point (greedy), so words t-SNE puts together stay readable."""

from __future__ import annotations

import numpy as np
import pytest


def _overlaps(boxes) -> int:
    return sum(1 for i, a in enumerate(boxes) for b in boxes[i + 1:]
               if min(a.x1, b.x1) > max(a.x0, b.x0) and min(a.y1, b.y1) > max(a.y0, b.y0))


def test_labels_of_words_at_one_spot_do_not_overlap():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from onnxforge.cli.embeddings import place_labels

    rng = np.random.default_rng(0)
    xy = np.concatenate([np.full((6, 2), 5.0) + rng.normal(0, 0.01, (6, 2)), rng.uniform(0, 10, (14, 2))])
    words = ["robin", "finch", "wren", "lark", "owl", "hen"] + [f"w{i}" for i in range(14)]
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.scatter(xy[:, 0], xy[:, 1])
    ax.set_xlim(-1, 11)
    ax.set_ylim(-1, 11)
    texts = place_labels(fig, ax, xy, words)
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in texts]
    assert [t.get_text() for t in texts] == words and len(ax.texts) == len(words)  # one label each, no leftovers
    assert _overlaps(boxes[:6]) == 0
    naive = [ax.annotate(w, p, fontsize=8, xytext=(4, 2), textcoords="offset points").get_window_extent(renderer)
             for w, p in zip(words[:6], xy[:6])]
    assert _overlaps(naive) > 5  # what one fixed offset gave
    plt.close(fig)
