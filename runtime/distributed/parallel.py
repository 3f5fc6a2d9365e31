"""Data-parallel steps: :class:`DataParallelBackend` is the ``onnx`` backend whose step is split
at the gradient (see :mod:`onnxforge.runtime.training.stepgraph.split`), with an allreduce in between.

Every worker gets the same global batch (the same seeded order, so the same batches as one
worker with the global batch size), computes the loss and gradients of its contiguous shard, and
the shards' gradients are summed by the collective, each weighted by the examples it counts (the
loss's denominator: rows for mse, targets other than ``ignore_index`` for cross-entropy), then
divided by the total: exactly the gradient of the global batch's mean loss, so N workers with
batch B take the steps one worker takes with batch N*B (up to float rounding), SGD and AdamW
alike. The update runs on every worker with the averaged gradient, so the weights stay equal
without being sent. Running statistics (batch norm) are each shard's, averaged by rows (PyTorch
DDP without SyncBatchNorm does the same; the statistics of a shard's batch are not the global
batch's, so a model with batch norm trains close to, not exactly like, one worker). Dropout draws
its masks per shard.

State (parameters, moments, statistics, step) lives in numpy between steps, in the ``onnx``
backend's own form, so checkpoints are the ``onnx`` backend's: a run started on N workers
resumes on any number that divides its global batch, one included.
"""

from __future__ import annotations

import numpy as np

from onnxforge.runtime.autodiff import AutodiffError
from onnxforge.runtime.training.stepgraph.split import GRAD, build_gradient_step, build_update, opset_of
from onnxforge.runtime.errors import NotTrainableError
from onnxforge.runtime.inference.session import session_options
from onnxforge.runtime.ort.distribution import ort
from onnxforge.runtime.training.backends.onnx import OnnxBackend
from onnxforge.runtime.training.stepgraph import NEW, SEED, STEP
from onnxforge.runtime.training.stepgraph.loss import LOSS
from onnxforge.runtime.training.stepgraph.runner import providers_for

__all__ = ["DataParallelBackend", "LocalCollective", "TorchCollective", "shard"]


class LocalCollective:
    """One worker: the sum of one array is itself."""

    rank, world = 0, 1

    def allreduce_sum(self, array: np.ndarray) -> np.ndarray:
        return array

    def broadcast(self, obj, src: int = 0):
        return obj


class TorchCollective:
    """torch.distributed's default process group (the gloo group Ray Train's TorchTrainer sets up
    on CPU): sums in float64, objects broadcast from one rank."""

    def __init__(self):
        import torch.distributed as dist  # the ray extra brings torch

        self._dist = dist
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    def allreduce_sum(self, array: np.ndarray) -> np.ndarray:
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(array, np.float64))
        self._dist.all_reduce(tensor)
        return tensor.numpy()

    def broadcast(self, obj, src: int = 0):
        box = [obj]
        self._dist.broadcast_object_list(box, src=src)
        return box[0]


def shard(n: int, rank: int, world: int) -> slice:
    """This rank's contiguous rows of a batch of ``n`` (sizes differ by at most one)."""
    return slice(rank * n // world, (rank + 1) * n // world)


class DataParallelBackend(OnnxBackend):
    """The ``onnx`` backend (same name, state and checkpoints) with the step split at the
    gradient and ``collective`` averaging it (see the module docstring)."""

    def __init__(self, spec, collective):
        super().__init__(spec)
        self.collective = collective
        self._sessions = None

    def _build(self, inputs):
        s = self.spec
        try:
            grad = build_gradient_step(s.model, output=s.output, loss=s.loss, trainable=list(s.trainable),
                                       buffers=list(s.state_buffers), ignore_index=s.ignore_index,
                                       feed_shapes={n: tuple(x.shape) for n, x in zip(s.inputs, inputs)})
        except AutodiffError as exc:
            raise NotTrainableError(f"the training step could not be built: {exc}") from None
        infos = {i.name: i for i in grad.model.graph.input}
        update = build_update({p: infos[p] for p in s.trainable}, s.optimizer, s.weight_decay, opset_of(grad.model))
        rt, options, providers = ort(), session_options(self._threads), providers_for(s.device.name)

        def make(model):
            return rt.InferenceSession(model.SerializeToString(), sess_options=options, providers=providers)

        self._grad_outputs = [LOSS, *(GRAD + p for p in s.trainable), *(NEW + b for b in grad.buffers)]
        self._sessions = grad, make(grad.model), update, make(update.model)
        return self._sessions

    def _count(self, targets: np.ndarray) -> float:
        """The examples the loss averages over (its denominator)."""
        if self.spec.loss != "cross-entropy":
            return float(len(targets))
        if self.spec.ignore_index is None:
            return float(targets.size)
        return float(np.count_nonzero(targets != self.spec.ignore_index))

    def train_step(self, inputs, targets, lr) -> float:
        s, c = self.spec, self.collective
        grad, grad_session, update, update_session = self._sessions or self._build(inputs)
        values = self._current()
        at = shard(len(targets), c.rank, c.world)
        count, rows = self._count(targets[at]), float(at.stop - at.start)
        if at.stop > at.start:
            feeds = {**dict(zip(grad.feeds, [x[at] for x in inputs])), grad.target: targets[at],
                     STEP: np.array(self._steps + 1, np.float32), **{n: values[n] for n in (*s.trainable, *s.state_buffers)}}
            if grad.seeded:
                feeds[SEED] = np.array((self._seed + 7919 * c.rank) % 2147483647, np.int64)
            loss, *rest = grad_session.run(self._grad_outputs, feeds)
        else:  # fewer rows than workers at an epoch's end: this rank adds nothing
            loss, rest = 0.0, [np.zeros_like(values[p]) for p in s.trainable] + [values[b] for b in grad.buffers]
        grads, stats = rest[: len(s.trainable)], rest[len(s.trainable):]
        total = c.allreduce_sum(np.concatenate([[count * float(loss), count, rows]] + [g.ravel() * count for g in grads]
                                               + [b.ravel() * rows for b in stats]))
        examples, all_rows = max(total[1], 1.0), max(total[2], 1.0)
        averaged, offset = {}, 3
        for name, divisor in [(p, examples) for p in s.trainable] + [(b, all_rows) for b in grad.buffers]:
            size = values[name].size
            mean = (total[offset : offset + size] / divisor).astype(np.float32).reshape(values[name].shape)
            offset += size
            if name in grad.buffers:
                values[name] = mean
            else:
                averaged[name] = mean
        new = update_session.run([NEW + name for name in update.carried], update.feeds(values, averaged, lr, self._steps + 1))
        values.update(update.results(new))
        self._steps += 1
        return float(total[0] / examples)
