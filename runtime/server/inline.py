"""Which requests are answered on the event loop itself, with no hand-off to a worker thread.

Handing a request to a worker thread and back costs two thread wake-ups and the GIL passing twice;
on one busy core that cost more than reading, running and answering a small MLP request (see
docs/notes/serving-speed.md). So a request is answered inline, on the event loop, when it is
small and its model is known to be quick, and everything else still goes to a worker thread:

- the body (or gRPC message) is at most :data:`INLINE_BODY_BYTES`;
- the model's cost is fixed by the size of its inputs: every input is floating point, and no op
  in :data:`DATA_DEPENDENT` (loops, branches, sizes computed from data) nor a Python kernel is
  in it, so a small request cannot make it run long;
- its requests measured so far (the first :data:`MEASURE_FIRST` on worker threads) took under
  :data:`INLINE_BUDGET_S` each on average (exponentially weighted), in the CPU time of the thread
  that did the work (ONNX Runtime's caller is one of its intra-op threads; waiting for the GIL or
  for a core other processes hold does not count: wall time on a loaded machine flipped the
  choice back and forth). Inline, one request in :data:`SAMPLE_EVERY` is measured (a thread's CPU
  time is a system call); one slow one (a request taking 5 ms lifts the average by 0.5 ms at once)
  sends the next ones to worker threads;
- a run slot is free (the concurrency limit holds inline too).

So the event loop is held by one request for well under a millisecond, and health checks, other
connections and the deadlines (``--run-timeout`` stops an inline run as it stops any) keep working.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["InlinePolicy", "INLINE_BODY_BYTES", "INLINE_BUDGET_S", "READ_ON_LOOP_BYTES", "SAMPLE_EVERY", "DATA_DEPENDENT",
           "fixed_cost"]

INLINE_BODY_BYTES = 16 << 10
READ_ON_LOOP_BYTES = 64 << 10  # a request dynamic batching may merge is read on the loop up to this size
SAMPLE_EVERY = 16  # inline requests whose CPU time is measured: one in this many
INLINE_BUDGET_S = 0.0005
MEASURE_FIRST = 8
# ops whose work or output size a request's values (not only its size) can choose
DATA_DEPENDENT = frozenset({
    "Loop", "Scan", "If", "Range", "ConstantOfShape", "Expand", "Tile", "Resize", "Upsample", "NonZero",
    "NonMaxSuppression", "Pad", "TopK", "OneHot", "Compress", "Unique", "SequenceConstruct", "SplitToSequence",
    "RoiAlign", "StringNormalizer", "TfIdfVectorizer", "Multinomial", "RandomNormalLike", "RandomUniformLike",
})


@dataclass
class _Cost:
    fixed: bool  # the model's cost is fixed by its inputs' size (see the module docstring)
    average: float = 0.0  # seconds per request, exponentially weighted
    measured: int = 0
    unmeasured: int = 0  # inline requests since the last one measured


def fixed_cost(session) -> bool:
    """Whether ``session``'s run time is fixed by the size of its inputs (see the module docstring)."""
    model = getattr(session, "model", None)
    if model is None or getattr(session, "_kernel_guard", None) is not None:
        return False
    if not all(np.dtype(i.dtype).kind == "f" for i in session.inputs):
        return False
    graphs, ops = [model.graph], set()
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            ops.add(node.op_type)
            graphs.extend(a.g for a in node.attribute if a.HasField("g"))
    local = {f.name for f in model.functions}
    return not (ops & DATA_DEPENDENT or ops & local)


class InlinePolicy:
    """Per served session: whether its next small request may be answered on the event loop."""

    def __init__(self) -> None:
        self._costs: dict[int, _Cost] = {}

    def _cost(self, session) -> _Cost:
        cost = self._costs.get(id(session))
        if cost is None:
            cost = self._costs[id(session)] = _Cost(fixed_cost(session))
        return cost

    def allows(self, session, size: int) -> bool:
        cost = self._cost(session)
        return (cost.fixed and size <= INLINE_BODY_BYTES and cost.measured >= MEASURE_FIRST
                and cost.average < INLINE_BUDGET_S)

    def sample(self, session) -> bool:
        """Whether this inline request to ``session`` is one to measure (one in :data:`SAMPLE_EVERY`)."""
        cost = self._cost(session)
        cost.unmeasured += 1
        if cost.unmeasured < SAMPLE_EVERY:
            return False
        cost.unmeasured = 0
        return True

    def note(self, session, seconds: float) -> None:
        """A request to ``session`` took ``seconds`` of work."""
        cost = self._cost(session)
        cost.average = seconds if not cost.measured else 0.9 * cost.average + 0.1 * seconds
        cost.measured += 1

    def forget(self, session) -> None:
        self._costs.pop(id(session), None)
