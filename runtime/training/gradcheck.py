"""Gradient check: the onnx backend's parameter gradients against central finite differences.

The objective is ``sum(dY * output)`` for a seeded random ``dY`` on the trained output (a random
linear functional, so every op on the path from a parameter to the output is exercised, whatever
the loss). The analytic gradient is the one the onnx training backend builds
(:func:`onnxforge.runtime.autodiff.gradient_model`, run in float32 by ONNX Runtime); the reference
is a central difference of the objective in float64 (the model converted to double, run by ONNX
Runtime where it has double kernels for every op, else by ``onnx.reference``) on ``samples``
random elements of each parameter. Per parameter, the worst error relative to the larger of the
tensor's largest gradient and 1e-3 of the model's largest (a tensor whose exact gradient is zero is
judged against that floor).

May import: errors, modelio, ort, passes, autodiff, inference.
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxforge.runtime.errors import ConfigError, InputError, NotTrainableError, TrainingError
from onnxforge.runtime.autodiff import AutodiffError, describe_missing, gradient_model, missing_rules
from onnxforge.runtime.inference.session import model_inputs
from onnxforge.runtime.ort.distribution import ort, quiet_native_stderr
from onnxforge.runtime.ort.failures import failure_line, run_errors
from onnxforge.runtime.passes.plugin_forms import InlinePlugins
from onnxforge.runtime.training.parameters import ParameterPlan
from onnxforge.runtime.passes.precision import to_float64

__all__ = ["GradcheckReport", "ParameterCheck", "gradcheck", "to_float64", "DEFAULT_TOLERANCE"]

DEFAULT_TOLERANCE = 1e-4


@dataclass
class ParameterCheck:
    name: str
    shape: list
    samples: int
    max_rel_error: float
    max_abs_error: float
    worst_index: list
    analytic: float  # the analytic gradient at the worst element
    numeric: float   # the central difference there
    ok: bool


@dataclass
class GradcheckReport:
    output: str
    tolerance: float
    epsilon: float
    engine: str  # what ran the float64 forward
    parameters: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(p.ok for p in self.parameters)

    @property
    def failed(self) -> list:
        return [p.name for p in self.parameters if not p.ok]

    def to_dict(self) -> dict:
        return {"passed": self.passed, "failed": self.failed, "output": self.output, "tolerance": self.tolerance,
                "epsilon": self.epsilon, "engine": self.engine, "parameters": [asdict(p) for p in self.parameters]}


def _params_as_inputs(model: onnx.ModelProto, names) -> onnx.ModelProto:
    names = set(names)
    keep = [t for t in model.graph.initializer if t.name not in names]
    moved = [t for t in model.graph.initializer if t.name in names]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    model.graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in moved)
    return model


class _Forward:
    """The float64 objective, on ONNX Runtime when it runs the double model (some kernels, e.g.
    LSTM's, have no double version: found at load or at the first run), else onnx.reference."""

    def __init__(self, model: onnx.ModelProto, output: str):
        self.model, self.output = model, output
        self._ref: Any = None
        self._session: Any = None
        try:
            rt = ort()
            options = rt.SessionOptions()
            options.log_severity_level = 4
            with quiet_native_stderr():
                self._session = rt.InferenceSession(model.SerializeToString(), options,
                                                    providers=["CPUExecutionProvider"])
            self.engine = "onnxruntime (float64)"
        except Exception:  # noqa: BLE001 - no double kernel for some op
            self._use_reference()

    def _use_reference(self) -> None:
        from onnx.reference import ReferenceEvaluator

        self._session, self._ref = None, ReferenceEvaluator(self.model, new_ops=_float64_ops())
        self.engine = "onnx.reference (float64)"

    def output_value(self, feeds: dict) -> np.ndarray:
        if self._session is not None:
            try:
                return self._session.run([self.output], feeds)[0]
            except Exception:  # noqa: BLE001 - a kernel without double support, found at run time
                self._use_reference()
        return self._ref.run([self.output], feeds)[0]

    def __call__(self, feeds: dict, dy: np.ndarray) -> float:
        return float(np.sum(np.asarray(self.output_value(feeds), np.float64) * dy))


def _float64_ops() -> list:
    """Ops for onnx.reference computed in float64 where its own compute in float32 or expand a
    function body with float32 pieces (central differences divide that rounding by the step:
    BERT's Erf gave errors of 1e-3, ViT's opset-20 Gelu 1e-1). ``new_ops`` keys by class name."""
    import math

    from onnx.reference.op_run import OpRun

    erf = np.vectorize(math.erf, otypes=[np.float64])

    def erf_run(self, x):
        return (erf(x).astype(x.dtype),)

    def gelu_run(self, x, approximate="none"):
        if approximate == "tanh":
            y = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
        else:
            y = 0.5 * x * (1 + erf(x / math.sqrt(2)))
        return (y.astype(x.dtype),)

    return [type("Erf", (OpRun,), {"op_domain": "", "_run": erf_run}),
            type("Gelu", (OpRun,), {"op_domain": "", "_run": gelu_run})]


def _select(names: list[str], patterns) -> list[str]:
    if not patterns:
        return names
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not chosen:
        shown = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")
        raise ConfigError(f"--params {' '.join(patterns)} matches none of the model's float parameters ({shown})")
    return chosen


def _check_feeds(model: onnx.ModelProto, feeds: dict) -> dict:
    out = {}
    for info in model_inputs(model):
        if info.name not in feeds:
            raise InputError(f"the data has no array for the model's input '{info.name}' (it has {', '.join(feeds)})")
        x = np.asarray(feeds[info.name])
        if x.ndim != len(info.shape) or any(isinstance(d, int) and d != s for d, s in zip(info.shape, x.shape)):
            raise InputError(f"input '{info.name}' expects shape {list(info.shape)}; the data has {list(x.shape)}")
        out[info.name] = x.astype(info.dtype) if info.dtype != object else x
    return out


def gradcheck(model: onnx.ModelProto, feeds: dict, *, output: str | None = None, params=(), samples: int = 8,
              tolerance: float = DEFAULT_TOLERANCE, epsilon: float = 1e-6, seed: int = 0,
              progress=None) -> GradcheckReport:
    """Check ``model``'s parameter gradients (see the module docstring). ``feeds``: one batch of
    the model's inputs. ``params``: glob patterns of the parameters to check (when empty, every
    parameter ``train`` would train: float initialisers, batch-norm statistics excluded). ``progress``: a callable given the number of finished evaluations and the total."""
    if samples < 1:
        raise ConfigError(f"samples must be at least 1; got {samples}")
    try:
        base = InlinePlugins()(model).model
    except NotTrainableError:
        base = model
    output = output or base.graph.output[0].name
    names = _select(list(ParameterPlan.of(base, []).trainable), list(params))  # as train picks them: no statistics
    feeds = _check_feeds(base, feeds)
    try:
        blockers = missing_rules(base, names, output, reasons=True)
        if blockers:
            raise NotTrainableError(f"no gradient in standard ONNX through: {describe_missing(blockers)}")
        grad_model = gradient_model(base, names, output, seed="dY")
    except AutodiffError as exc:
        raise NotTrainableError(f"the gradient could not be built: {exc}") from None
    rng = np.random.default_rng(seed)
    forward = _Forward(_params_as_inputs(to_float64(base), names), output)
    inits = {t.name: numpy_helper.to_array(t) for t in base.graph.initializer}
    values = {n: inits[n].astype(np.float64) for n in names}
    feeds64 = {k: (v.astype(np.float64) if v.dtype == np.float32 else v) for k, v in feeds.items()}
    shape = np.shape(forward.output_value({**feeds64, **values}))
    dy = rng.standard_normal(shape)
    analytic = _analytic(grad_model, feeds, dy.astype(np.float32), names)
    floor = 1e-3 * max([float(np.max(np.abs(g))) for g in analytic.values() if g.size] + [0.0])
    report = GradcheckReport(output, tolerance, epsilon, forward.engine)
    picks = {n: rng.choice(values[n].size, min(samples, values[n].size), replace=False) for n in names}
    total, done = 2 * sum(len(p) for p in picks.values()), 0
    for n in names:
        g = analytic[n].astype(np.float64)
        scale = max(float(np.max(np.abs(g))) if g.size else 0.0, floor, 1e-30)
        worst = (-1.0, 0.0, 0, 0.0, 0.0)
        for flat in picks[n]:
            w = values[n].reshape(-1)
            keep = w[flat]
            step = epsilon * max(1.0, abs(keep))
            w[flat] = keep + step
            plus = forward({**feeds64, **values}, dy)
            w[flat] = keep - step
            minus = forward({**feeds64, **values}, dy)
            w[flat] = keep
            numeric = (plus - minus) / (2 * step)
            err = abs(float(g.reshape(-1)[flat]) - numeric)
            if err / scale > worst[0]:
                worst = (err / scale, err, int(flat), float(g.reshape(-1)[flat]), numeric)
            done += 2
            if progress is not None:
                progress(done, total)
        rel, err, flat, a, num = worst
        report.parameters.append(ParameterCheck(n, list(values[n].shape), len(picks[n]), rel, err,
                                                [int(i) for i in np.unravel_index(flat, values[n].shape)], a, num,
                                                rel <= tolerance))
    return report


def _analytic(grad_model: onnx.ModelProto, feeds: dict, dy: np.ndarray, names) -> dict:
    rt = ort()
    options = rt.SessionOptions()
    options.log_severity_level = 4
    try:
        with quiet_native_stderr():
            session = rt.InferenceSession(grad_model.SerializeToString(), options, providers=["CPUExecutionProvider"])
            wanted = [f"{n}_grad" for n in names]
            got = session.run(wanted, {**feeds, "dY": dy})
    except run_errors() as exc:
        raise TrainingError(f"the gradient model failed in ONNX Runtime: {failure_line(exc)}") from None
    return dict(zip(names, got))
