"""ONNX's own node tests (generated from the installed onnx package) as a check of the gradients:
on every 40th eligible test, the gradients are never wrong against central differences, and at
least the floor below are correct (benchmarks/autodiff_conformance.py runs them all)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "autodiff_conformance.py"


def _script():
    spec = importlib.util.spec_from_file_location("autodiff_conformance", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_every_40th_node_test_is_never_wrong():
    ac = _script()
    cases = ac.node_cases()
    assert len(cases) > 1000  # the generator still yields ONNX's node tests
    subset = cases[::40]
    results = [ac.evaluate(c, "onnxforge") for c in subset]
    wrong = [f"{r.case}: {r.detail}" for r in results if r.status == "wrong"]
    assert not wrong, wrong
    counts = ac.counts(results)["onnxforge"]
    # measured on the full run: 80% correct; this floor fails if a rule regresses into a refusal
    assert counts["correct"] >= 0.7 * len(subset), counts


def test_harness_flags_a_wrong_gradient(monkeypatch):
    """The harness itself: a rule broken on purpose (Tanh's derivative doubled) is counted wrong."""
    from onnxforge.runtime.autodiff.ops import RULES

    ac = _script()
    tanh = RULES["Tanh"]
    real = tanh.vjp

    def broken(ctx, node, dys, need):
        g = real(ctx, node, dys, need)[0]
        return [ctx.op("Mul", [g, ctx.scalar(2.0, g)])]

    monkeypatch.setattr(tanh, "vjp", broken)
    case = next(c for c in ac.node_cases("test_tanh_example") if c.name == "test_tanh_example")
    assert ac.evaluate(case, "onnxforge").status == "wrong"
    monkeypatch.setattr(tanh, "vjp", real)
    assert ac.evaluate(case, "onnxforge").status == "correct"
