"""The pass infrastructure, after onnx-ir's ``passes/_pass_infra.py`` reduced to what onnxforge needs.

A :class:`Pass` is one model-to-model rewrite. Its class says whether it edits its argument
(``in_place``, onnx-ir's ``InPlacePass``) or returns a new model and leaves the argument as it was
(:class:`FunctionalPass`); onnxforge has functional passes only, so a model handed to a pass, a
pipeline or a session is never changed by it. Calling a pass gives a :class:`PassResult`: the
model and whether the pass changed anything. A pass that changed nothing may return its argument
itself (no copy); one that changed something returns another object. :class:`Sequential` chains
passes under a name; the pipelines onnxforge runs are named in :mod:`.pipelines`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from onnx import ModelProto

from onnxforge.runtime.modelio.protos import copy_model  # re-exported (__all__): the passes' copy

__all__ = ["FunctionalPass", "Pass", "PassResult", "Rewrite", "Sequential", "copy_model"]


@dataclass(frozen=True)
class PassResult:
    """What a pass gives back: the model, and whether the pass changed it."""

    model: ModelProto
    modified: bool


class Pass(abc.ABC):
    """One model-to-model rewrite; call it on a model to get a :class:`PassResult`."""

    in_place: ClassVar[bool]
    name: str = ""

    def __call__(self, model: ModelProto) -> PassResult:
        if not isinstance(model, ModelProto):
            raise TypeError(f"pass {self.label} takes an onnx.ModelProto; got {type(model).__name__}")
        result = self.call(model)
        if not isinstance(result, PassResult):
            raise TypeError(f"pass {self.label} returned {type(result).__name__}, not a PassResult")
        if not self.in_place and result.modified and result.model is model:
            raise RuntimeError(f"pass {self.label} is functional but changed the model it was given")
        return result

    @property
    def label(self) -> str:
        return self.name or type(self).__name__

    @abc.abstractmethod
    def call(self, model: ModelProto) -> PassResult:
        """Rewrite ``model``; a functional pass must not edit it."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label!r})"


class FunctionalPass(Pass):
    """A pass that returns a new model and never edits its argument."""

    in_place = False


class Rewrite(FunctionalPass):
    """A functional pass made from a function ``model -> model`` that returns its argument when it
    changes nothing and a new model otherwise (the project's rewrite functions all do). Subclass
    it with ``name`` and ``function = staticmethod(...)``, or give both to the constructor."""

    function: Callable[[ModelProto], ModelProto]

    def __init__(self, name: str | None = None, function: Callable[[ModelProto], ModelProto] | None = None):
        if name is not None:
            self.name = name
        if function is not None:
            self.function = function
        if getattr(self, "function", None) is None:
            raise TypeError(f"{type(self).__name__} needs a function")

    def call(self, model: ModelProto) -> PassResult:
        out = self.function(model)
        return PassResult(out, out is not model)


class Sequential(FunctionalPass):
    """Passes run one after the other under one name; modified when any of them changed the model."""

    def __init__(self, name: str, *passes: Pass):
        if not passes:
            raise ValueError(f"pipeline {name!r} needs at least one pass")
        self.name = name
        self.passes = tuple(passes)

    def call(self, model: ModelProto) -> PassResult:
        modified = False
        for p in self.passes:
            result = p(model)
            model, modified = result.model, modified or result.modified
        return PassResult(model, modified)

    @property
    def names(self) -> list[str]:
        """The label of each pass, in the order they run."""
        return [p.label for p in self.passes]

    def __repr__(self) -> str:
        return f"Sequential({self.name!r}: {' -> '.join(self.names)})"
