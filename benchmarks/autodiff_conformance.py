"""ONNX's own node tests as a check of reverse-mode gradients: correct / wrong / refused / failed.

The node test models are generated from the installed ``onnx`` package's test definitions
(``onnx.backend.test.case.node``: the wheel need not ship the data folder). A test takes part
when every node is in the default domain and it has a float32/float64 graph input and output.
For each, the vector-Jacobian product of all float outputs (one seeded random cotangent per
output, the same for every tool) with respect to all float inputs is compared with central
finite differences of the forward model, in float64 where the model converts (float32, with a
looser tolerance, where it does not); the test's own input values are used.

- correct: every sampled coordinate matches the central difference, or, where the function has a
  kink there (the two one-sided differences disagree), lies between the one-sided differences;
- wrong: a gradient was returned and some coordinate does not match: the silent failure;
- refused: the tool declined to build the gradient (onnxforge: ``AutodiffError``; onnx-ad:
  ``UnsupportedOperator``/``UnrollTooLarge``);
- failed: the tool crashed while building, or its gradient model did not run
  (``onnx.reference`` first, ONNX Runtime second);
- excluded (for every tool alike): no float input with elements, a forward that is random (two
  runs differ), not finite, or not what the test itself expects from onnx.reference. Coordinates where the forward jumps (the difference quotient
  grows as the step shrinks: Sign, a norm at 0) are not compared.

Usage: ``python benchmarks/autodiff_conformance.py [--tool onnxforge|onnx-ad|both] [--only SUBSTR]
[--json] [--details FILE]``. onnx-ad (PyPI ``onnx-ad``) is optional: install it to compare.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

from onnxforge.runtime.passes.precision import to_float64

F32, F64 = TensorProto.FLOAT, TensorProto.DOUBLE
COORDS = 6          # sampled coordinates per differentiated input
CASE_TIMEOUT_S = 60


@dataclass
class Outcome:
    case: str
    op: str
    tool: str
    status: str       # correct | wrong | refused | failed | excluded
    detail: str = ""
    error: float = 0.0
    precision: str = "float64"


def node_cases(only: str | None = None) -> list:
    """The node test cases (generated, not read from disk) that take part, in name order."""
    from onnx.backend.test.case.node import collect_testcases

    cases = [c for c in collect_testcases() if c.model is not None and _eligible(c.model)]
    if only:
        cases = [c for c in cases if any(s in c.name for s in only.split(","))]
    return sorted(cases, key=lambda c: c.name)


def _eligible(model) -> bool:
    g = model.graph
    if any(n.domain not in ("", "ai.onnx") for n in g.node):
        return False
    floats = (F32, F64)
    has_in = any(i.type.tensor_type.elem_type in floats for i in g.input if i.type.HasField("tensor_type"))
    has_out = any(o.type.tensor_type.elem_type in floats for o in g.output if o.type.HasField("tensor_type"))
    return has_in and has_out


def _op_of(case) -> str:
    return case.model.graph.node[0].op_type if len(case.model.graph.node) == 1 else "(expanded)"


# ---- float64 ----------------------------------------------------------------------------------

def _double_feeds(model, feeds):
    kinds = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
    return {k: (v.astype(np.float64) if isinstance(v, np.ndarray) and kinds.get(k) == F64 and v.dtype == np.float32
                else v) for k, v in feeds.items()}


# ---- running ----------------------------------------------------------------------------------

def _erf64(self, x):
    import math

    return (np.vectorize(math.erf, otypes=[x.dtype])(x),)


def _lp_norm(self, x, axis=None, p=None):
    axis = axis or self.axis
    p = p or self.p
    norm = np.expand_dims(np.power(np.power(np.abs(x), p).sum(axis=axis), 1.0 / p), axis)
    return (np.where(norm == 0, 0, x / np.where(norm == 0, 1, norm)).astype(x.dtype),)


def _evaluator(model):
    """onnx.reference, with two ops as the spec says: Erf in the input's precision (its own is
    float32 only, also inside the function bodies it runs for Gelu and others) and the p-norm of
    LpNormalization over |X| (its own sums X^p: for p=1 the sum of X)."""
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.ops import op_erf, op_lp_normalization

    op_erf.Erf._run = _erf64
    op_lp_normalization.LpNormalization._run = _lp_norm
    return ReferenceEvaluator(model)


def _run(model, feeds, names=None):
    """Outputs by name: onnx.reference, else ONNX Runtime (raises when neither runs it)."""
    try:
        ref = _evaluator(model)
        return dict(zip(names or ref.output_names, ref.run(names, feeds)))
    except Exception as first:  # noqa: BLE001 - any failure: try the other runtime
        try:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            so.log_severity_level = 4
            sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
            out = [o.name for o in sess.get_outputs()] if names is None else names
            return dict(zip(out, sess.run(out, feeds)))
        except Exception as second:
            raise RuntimeError(f"reference: {_line(first)}; onnxruntime: {_line(second)}") from second


def _line(exc) -> str:
    text = str(exc).strip().splitlines()
    return (f"{type(exc).__name__}: {text[0] if text else ''}")[:300]


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout(f"over {CASE_TIMEOUT_S} s")


# ---- the tools --------------------------------------------------------------------------------

def _onnxforge(model, wrt, outs):
    """VJP model by onnxforge: the gradient of sum_k <dY_k, Y_k> (dY_k new graph inputs)."""
    from onnxforge.runtime.autodiff import AutodiffError, gradient_model

    m = onnx.ModelProto()
    m.CopyFrom(model)
    terms = []
    for k, (o, elem) in enumerate(outs):
        m.graph.input.append(helper.make_tensor_value_info(f"dY{k}", elem, None))
        m.graph.node.append(helper.make_node("Mul", [o, f"dY{k}"], [f"_vjp_prod{k}"]))
        m.graph.node.append(helper.make_node("ReduceSum", [f"_vjp_prod{k}"], [f"_vjp_term{k}"], keepdims=0))
        terms.append(f"_vjp_term{k}")
    m.graph.node.append(helper.make_node("Sum", terms, ["_vjp_loss"]))
    m.graph.output.append(helper.make_tensor_value_info("_vjp_loss", outs[0][1], []))
    try:
        g = gradient_model(m, wrt, "_vjp_loss")
    except AutodiffError as exc:
        from onnxforge.runtime.autodiff import missing_rules

        try:  # did missing_rules, which inspect and train ask first, predict the refusal?
            predicted = bool(missing_rules(m, wrt, "_vjp_loss"))
        except AutodiffError:
            predicted = True
        return None, ("" if predicted else "NOT PREDICTED by missing_rules: ") + _line(exc)
    return (g, {f"dY{k}": k for k in range(len(outs))}, {w: f"{w}_grad" for w in wrt}), None


def _onnx_ad(model, wrt, outs):
    import onnx_ad

    try:
        g = onnx_ad.reverse(model, inputs=wrt, outputs=[o for o, _ in outs], layout="onnx")
    except (onnx_ad.UnsupportedOperator, onnx_ad.UnrollTooLarge) as exc:
        return None, _line(exc)
    seeds = {f"adj_{o}": k for k, (o, _) in enumerate(outs)}
    names = {i.name for i in g.graph.input}
    if not set(seeds) <= names:  # its own naming when adj_* is taken: the seeds come after the inputs
        extra = [i.name for i in g.graph.input][len(model.graph.input):]
        seeds = {n: k for k, n in enumerate(extra)}
    grads = [o.name for o in g.graph.output][len(model.graph.output):]
    return (g, seeds, dict(zip(wrt, grads)), "trailing"), None


TOOLS = {"onnxforge": _onnxforge, "onnx-ad": _onnx_ad}


# ---- one case ---------------------------------------------------------------------------------

def evaluate(case, tool: str, seed: int = 0) -> Outcome:
    op = _op_of(case)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_TIMEOUT_S)
    try:
        return _evaluate(case, tool, seed, op)
    except _Timeout as exc:
        return Outcome(case.name, op, tool, "failed", f"timeout: {exc}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _evaluate(case, tool, seed, op) -> Outcome:
    model = case.model
    inputs = case.data_sets[0][0]
    names = [i.name for i in model.graph.input]
    feeds = {k: (np.asarray(v) if isinstance(v, np.generic) else v) for k, v in zip(names, inputs)}
    precision = "float64"
    try:
        m = to_float64(model, stash_type=True)
        onnx.checker.check_model(m, full_check=True)  # type constraints: float-only ops stay float32
        f = _double_feeds(m, feeds)
        _run(m, f)
    except Exception:  # noqa: BLE001 - the model has no float64 form: stay in float32
        m, f, precision = model, feeds, "float32"
    kinds = {i.name: i.type.tensor_type.elem_type for i in m.graph.input if i.type.HasField("tensor_type")}
    wrt = [n for n in names if kinds.get(n) in (F32, F64) and isinstance(f.get(n), np.ndarray) and f[n].size]
    outs = [(o.name, o.type.tensor_type.elem_type) for o in m.graph.output
            if o.type.HasField("tensor_type") and o.type.tensor_type.elem_type in (F32, F64)]
    if not wrt:
        return Outcome(case.name, op, tool, "excluded", precision=precision)
    try:
        forward = _run(m, f)
        again = _run(m, f)
    except Exception as exc:  # noqa: BLE001
        return Outcome(case.name, op, tool, "excluded", f"forward does not run: {_line(exc)}", precision=precision)
    why = _unusable(case, m, f, wrt, forward, again)
    if why:
        return Outcome(case.name, op, tool, "excluded", why, precision=precision)
    rng = np.random.default_rng(seed)
    dys = [rng.standard_normal(np.shape(forward[o])).astype(forward[o].dtype) for o, _ in outs]
    try:
        built, why = TOOLS[tool](m, wrt, outs)
    except Exception as exc:  # noqa: BLE001 - a crash while building is a failure, not a refusal
        return Outcome(case.name, op, tool, "failed", f"build: {_line(exc)}", precision=precision)
    if built is None:
        return Outcome(case.name, op, tool, "refused", why or "", precision=precision)
    g, seeds, grad_names = built[:3]
    trailing = len(built) > 3
    gfeeds = dict(f)
    for name, k in seeds.items():
        gfeeds[name] = dys[k][..., None] if trailing else dys[k]
    try:
        got = _run(g, gfeeds, list(grad_names.values()))
    except Exception as exc:  # noqa: BLE001
        return Outcome(case.name, op, tool, "failed", f"run: {exc}"[:300], precision=precision)
    grads = {w: np.asarray(got[n])[..., 0] if trailing else np.asarray(got[n]) for w, n in grad_names.items()}
    try:
        return _compare(case.name, op, tool, m, f, wrt, outs, dys, grads, rng, precision)
    except Exception as exc:  # noqa: BLE001 - the forward fails at a perturbed point: not the tool's
        return Outcome(case.name, op, tool, "excluded", f"differences: {_line(exc)}", precision=precision)


def _central(objective, f, w, x, idx, eps) -> float:
    vals = []
    for s in (1, -1):
        xv = x.copy()
        xv[idx] += s * eps
        vals.append(objective({**f, w: xv}))
    return (vals[0] - vals[1]) / (2 * eps)


def _jumps(objective, f, w, x, idx, eps, central) -> bool:
    """The forward is discontinuous at this coordinate: a step 10x smaller gives a difference
    quotient far larger (a smooth function gives the same)."""
    small = eps / 10
    vals = []
    for s in (1, -1):
        xv = x.copy()
        xv[idx] += s * small
        vals.append(objective({**f, w: xv}))
    c = (vals[0] - vals[1]) / (2 * small)
    return bool(np.isfinite(c) and abs(c) > 3 * abs(central) + 1.0)


def _unusable(case, m, f, wrt, forward, again) -> str | None:
    """Why central differences of this forward say nothing (None when they do)."""
    if any(not np.all(np.isfinite(f[w])) for w in wrt):
        return "an input is not finite"
    outs = [o.name for o in m.graph.output]
    for o in outs:
        a, b = np.asarray(forward[o]), np.asarray(again[o])
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            return f"output {o} is not finite"
        if a.shape != b.shape or not np.array_equal(a, b, equal_nan=True):
            return "the forward is random (two runs differ)"
    for o, want in zip(outs, case.data_sets[0][1]):
        want = np.asarray(want) if isinstance(want, np.ndarray) else None
        got = np.asarray(forward[o])
        if want is not None and want.dtype.kind == "f" and got.dtype.kind == "f" and want.shape == got.shape:
            if not np.allclose(got, want, rtol=1e-3, atol=1e-4, equal_nan=True):
                return f"onnx.reference's {o} is not the test's expected output"
    return None


def _compare(name, op, tool, m, f, wrt, outs, dys, grads, rng, precision) -> Outcome:
    ref = _evaluator(m)
    out_names = [o for o, _ in outs]

    def objective(feeds):
        """sum_k <dY_k, Y_k>; NaN where a perturbation changes an output's shape (Range's limit)."""
        ys = ref.run(out_names, feeds)
        if any(np.shape(y) != np.shape(d) for y, d in zip(ys, dys)):
            return float("nan")
        return float(sum(np.sum(np.asarray(y, np.float64) * d) for y, d in zip(ys, dys)))

    eps, tol = (1e-6, 1e-4) if precision == "float64" else (1e-3, 2e-2)
    worst = 0.0
    for w in wrt:
        x = f[w]
        g = grads[w]
        if np.shape(g) != np.shape(x):
            return Outcome(name, op, tool, "wrong", f"gradient of {w} has shape {np.shape(g)}, not {np.shape(x)}",
                           precision=precision)
        picks = list(rng.choice(x.size, min(COORDS, x.size), replace=False))
        picks += list(np.flatnonzero(~np.isfinite(g))[:COORDS])  # where it is not finite, always
        g = np.asarray(g, np.float64)
        for i in picks:
            idx = np.unravel_index(int(i), x.shape)
            vals = {}
            for s in (1, -1):
                xv = x.copy()
                xv[idx] += s * eps
                vals[s] = objective({**f, w: xv})
            base = objective(f)
            central = (vals[1] - vals[-1]) / (2 * eps)
            right, left = (vals[1] - base) / eps, (base - vals[-1]) / eps
            a = float(g[idx])
            if not np.isfinite(a):  # right only where the forward is singular there (acosh at 1)
                if np.isfinite(central) and abs(central) < 1e3 and not _jumps(objective, f, w, x, idx, eps, central):
                    return Outcome(name, op, tool, "wrong", f"d{w}{list(map(int, idx))} is {a} (central difference "
                                   f"{central:.6g})", precision=precision)
                continue
            scale = max(1.0, abs(central))
            err = abs(a - central) / scale
            if not np.isfinite(central) or not np.isfinite(base):
                continue
            if err > tol and _jumps(objective, f, w, x, idx, eps, central):
                continue
            if err > tol and precision == "float64":
                # onnx.reference computes some ops in float32 inside (GroupNormalization-18): then
                # differences at 1e-6 are noise; they are unstable across steps, and a step of 1e-3
                # with float32's tolerance is what such a forward can tell
                coarse = _central(objective, f, w, x, idx, 1e-3)
                if abs(_central(objective, f, w, x, idx, 1e-4) - central) > tol * scale:
                    err = abs(a - coarse) / max(1.0, abs(coarse))
                    central = coarse
                    if err <= 2e-2:
                        worst = max(worst, err)
                        continue
            if err > tol:
                lo, hi = min(left, right), max(left, right)
                kink = abs(left - right) > 10 * tol * scale
                if kink and lo - tol * scale <= a <= hi + tol * scale:
                    continue
                return Outcome(name, op, tool, "wrong", f"d{w}{list(map(int, idx))}: {a:.6g} vs central "
                               f"difference {central:.6g}", err, precision)
            worst = max(worst, err)
    return Outcome(name, op, tool, "correct", error=worst, precision=precision)


# ---- the report -------------------------------------------------------------------------------

def run(tools, only=None, progress=True) -> list[Outcome]:
    cases = node_cases(only)
    results = []
    t0 = time.time()
    for k, case in enumerate(cases):
        for tool in tools:
            results.append(evaluate(case, tool))
        if progress and (k + 1) % 50 == 0:
            print(f"  {k + 1}/{len(cases)} cases, {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    return results


def counts(results) -> dict:
    table: dict = {}
    for r in results:
        row = table.setdefault(r.tool, {"correct": 0, "wrong": 0, "refused": 0, "failed": 0, "excluded": 0})
        row[r.status] += 1
    return table


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tool", choices=["onnxforge", "onnx-ad", "both"], default="onnxforge")
    p.add_argument("--only", help="comma-separated substrings of test names")
    p.add_argument("--json", action="store_true", help="print the counts (and each case) as JSON")
    p.add_argument("--details", help="write every case's outcome to this JSON file")
    a = p.parse_args(argv)
    tools = ["onnxforge", "onnx-ad"] if a.tool == "both" else [a.tool]
    if "onnx-ad" in tools:
        try:
            import onnx_ad  # noqa: F401
        except ImportError:
            p.error("onnx-ad is not installed (pip install onnx-ad)")
    results = run(tools, a.only, progress=not a.json)
    table = counts(results)
    if a.details:
        with open(a.details, "w") as fh:
            json.dump([asdict(r) for r in results], fh, indent=1)
    if a.json:
        print(json.dumps({"counts": table, "cases": len({r.case for r in results})}))
    else:
        print(f"{'tool':<10} {'correct':>8} {'wrong':>6} {'refused':>8} {'failed':>7} {'excluded':>9}")
        for tool, row in table.items():
            print(f"{tool:<10} {row['correct']:>8} {row['wrong']:>6} {row['refused']:>8} {row['failed']:>7} "
                  f"{row['excluded']:>9}")
        unpredicted = sum(1 for r in results if r.tool == "onnxforge" and r.status == "refused"
                          and r.detail.startswith("NOT PREDICTED"))
        if "onnxforge" in table:
            print(f"onnxforge refusals missing_rules did not predict: {unpredicted}")
        for r in results:
            if r.status == "wrong":
                print(f"WRONG {r.tool}: {r.case}: {r.detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
