"""Property-based fuzzing of the loader's limits (hypothesis, a bounded number of examples):
random function call graphs, nesting depths and declared tensor shapes against independent
references (a reachability matrix for recursion, onnx's own inliner for the inlined size, numpy
for the bytes). Loading either succeeds or raises one ModelError line; nothing else escapes."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import inliner

import _bomb_models as bombs

from onnxforge.runtime import ModelError
from onnxforge.runtime.modelio.files import load_model
from onnxforge.runtime.modelio.limits import LoadLimits

pytestmark = pytest.mark.fuzz

SCALE = int(os.environ.get("ONNXFORGE_FUZZ_SCALE", "1"))
FUZZ = settings(max_examples=300 * SCALE, deadline=2000, derandomize=SCALE == 1, database=None,
                suppress_health_check=[HealthCheck.too_slow])

CALL_GRAPHS = st.integers(1, 6).flatmap(
    lambda n: st.dictionaries(st.integers(0, n - 1), st.lists(st.integers(0, n - 1), max_size=3),
                              min_size=n, max_size=n))


@FUZZ
@given(calls=CALL_GRAPHS, limit=st.integers(1, 60))
def test_call_graphs_against_references(calls, limit):
    model = bombs.call_graph(calls)
    try:
        load_model(model.SerializeToString(), limits=LoadLimits(max_inlined_nodes=limit))
    except ModelError as exc:
        message = str(exc)
        assert "\n" not in message
        if "calls itself" in message:
            assert _any_cycle(calls)
            return
        assert not _any_cycle(calls)
        inlined = len(inliner.inline_local_functions(model).graph.node)
        assert f"inline to {inlined} nodes" in message and inlined > limit
        return
    assert not _any_cycle(calls)
    assert len(inliner.inline_local_functions(model).graph.node) <= limit


def _any_cycle(calls: dict) -> bool:
    """Any function of the file reaches itself (every local function is checked, called or not)."""
    n = len(calls)
    adj = np.zeros((n, n), int)
    for i, callees in calls.items():
        adj[i, callees] = 1
    reach = adj.copy()
    for _ in range(n):
        reach = ((reach + reach @ adj) > 0).astype(int)
    return bool(np.diag(reach).any())


@FUZZ
@given(depth=st.integers(0, 14), limit=st.integers(0, 14))
def test_nesting_depth_against_the_limit(depth, limit):
    model = bombs.nested_if(depth)
    if depth > limit:
        with pytest.raises(ModelError, match=f"subgraphs nest {limit + 1} deep, over the limit max_depth={limit}"):
            load_model(model, limits=LoadLimits(max_depth=limit))
    else:
        assert load_model(model, limits=LoadLimits(max_depth=limit)).graph == model.graph


SHAPES = st.lists(st.integers(-2, 2**40), min_size=0, max_size=4)


@FUZZ
@given(shape=SHAPES, kind=st.sampled_from(["sparse", "constant-of-shape", "expand"]), cap=st.integers(0, 64))
def test_declared_bytes_against_numpy(shape, kind, cap):
    if kind == "sparse":
        dims = [max(d, 1) for d in shape] or [1]
        model, size = bombs.sparse_initializer(dims), math.prod(dims) * 4
    elif kind == "constant-of-shape":
        model = bombs.constant_of_shape(shape)
        size = 0 if any(d < 0 for d in shape) else math.prod(shape) * 4
    else:
        model = bombs.expand([1], shape)
        # [1] broadcast with ``shape``: ``shape`` itself, or [1] for an empty one
        size = 0 if any(d < 0 for d in shape) else math.prod(shape or [1]) * 4
    limits = LoadLimits(max_materialized_mb=cap)
    if size > cap * 2**20:
        with pytest.raises(ModelError, match=f"more than {cap} MiB, the limit max_materialized_mb"):
            load_model(model, limits=limits)
    else:
        assert load_model(model, limits=limits).graph == model.graph
