"""One custom op, declared once: its domain, name, version, inputs, outputs, attributes and the
implementations that run it (an ONNX function body, a Python kernel, a native library)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from onnx import FunctionProto, NodeProto, helper

from onnxforge.runtime.errors import PluginError

# Element types a declaration may name, with their ONNX tensor type.
TYPES = {
    "float": onnx.TensorProto.FLOAT,
    "double": onnx.TensorProto.DOUBLE,
    "int64": onnx.TensorProto.INT64,
    "int32": onnx.TensorProto.INT32,
    "bool": onnx.TensorProto.BOOL,
    "string": onnx.TensorProto.STRING,
}
# Domains whose ops ONNX Runtime implements itself; a plugin may not declare ops there.
RESERVED_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "ai.onnx.training", "ai.onnx.preview.training",
                              "com.microsoft", "com.microsoft.nchwc", "com.ms.internal.nhwc"})
# Domain under which onnxruntime-extensions runs Python kernels (it ignores any other).
PYTHON_KERNEL_DOMAIN = "ai.onnx.contrib"
FUNCTION_OPSET = 17

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DOMAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")

KINDS = ("function", "python", "native")


@dataclass(frozen=True)
class Port:
    """One input or output of an op: its name and element type."""

    name: str
    type: str = "float"


@dataclass(eq=False)
class Op:
    """A custom op declaration.

    ``inputs``/``outputs`` are names (``"X"``, element type float) or ``(name, type)`` pairs.
    ``attributes`` maps each attribute name to its default (a float, int or str; the type follows).
    Implementations, at least one:

    - ``body``: ONNX nodes (default domain, opset ``body_opset``) computing the outputs from the
      inputs; attributes are referenced with ``ref_attr_name``. Such an op runs everywhere and trains.
    - ``kernel``: a Python function ``kernel(*arrays, **attributes) -> array or tuple of arrays``,
      run through onnxruntime-extensions; inference only.
    - ``library``: path of a shared library built against the ONNX Runtime C API whose
      ``RegisterCustomOps`` registers this op in ``domain``; inference only.
    """

    domain: str
    name: str
    inputs: list
    outputs: list
    version: int = 1
    attributes: dict = field(default_factory=dict)
    body: list | None = None
    body_opset: int = FUNCTION_OPSET
    kernel: object = None
    library: str | os.PathLike | None = None
    doc: str = ""
    activation: bool | None = None  # usable as ``activation=``; default: one float input and output

    def __post_init__(self):
        self.inputs = [_port(p, self, "input") for p in _as_list(self.inputs, self, "inputs")]
        self.outputs = [_port(p, self, "output") for p in _as_list(self.outputs, self, "outputs")]
        self.validate()
        if self.activation is None:
            self.activation = (len(self.inputs) == 1 and len(self.outputs) == 1 and self.trainable
                               and self.inputs[0].type == "float" and self.outputs[0].type == "float")

    # -- identity ---------------------------------------------------------------------------------
    @property
    def qualified_name(self) -> str:
        return f"{self.domain}.{self.name}"

    @property
    def key(self) -> tuple[str, str]:
        return (self.domain, self.name)

    @property
    def kinds(self) -> list[str]:
        """Implementations this op has, in the order onnxforge prefers them."""
        have = {"function": self.body is not None, "python": self.kernel is not None, "native": self.library is not None}
        return [k for k in KINDS if have[k]]

    @property
    def trainable(self) -> bool:
        """Whether a model using this op can be trained: only a function body has gradients."""
        return self.body is not None

    # -- checks -----------------------------------------------------------------------------------
    def _fail(self, what: str) -> PluginError:
        label = f"{self.domain}.{self.name}" if isinstance(self.domain, str) and isinstance(self.name, str) else repr(self.name)
        return PluginError(f"malformed declaration of op {label}: {what}")

    def validate(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise self._fail(f"name must be an identifier like 'Swish'; got {self.name!r}")
        if not isinstance(self.domain, str) or not _DOMAIN.match(self.domain):
            raise self._fail(f"domain must be dotted identifiers like 'com.example'; got {self.domain!r}")
        if self.domain in RESERVED_DOMAINS or self.domain == PYTHON_KERNEL_DOMAIN:
            raise self._fail(f"domain {self.domain!r} belongs to ONNX or ONNX Runtime; choose your own")
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise self._fail(f"version must be a positive integer; got {self.version!r}")
        for kind, ports in (("input", self.inputs), ("output", self.outputs)):
            if not ports:
                raise self._fail(f"it needs at least one {kind}")
            names = [p.name for p in ports]
            if len(set(names)) != len(names):
                raise self._fail(f"{kind} names must be unique; got {names}")
        if set(p.name for p in self.inputs) & set(p.name for p in self.outputs):
            raise self._fail("an output may not share its name with an input")
        if not isinstance(self.attributes, dict):
            raise self._fail(f"attributes must be a dict of name to default value; got {type(self.attributes).__name__}")
        for key, default in self.attributes.items():
            if not isinstance(key, str) or not _NAME.match(key):
                raise self._fail(f"attribute names must be identifiers; got {key!r}")
            if isinstance(default, bool) or not isinstance(default, (int, float, str)):
                raise self._fail(f"attribute {key!r} needs a default that is a float, int or str; got {default!r}")
        if not self.kinds:
            raise self._fail("it has no implementation; give a function body, a Python kernel or a native library")
        if self.kernel is not None and not callable(self.kernel):
            raise self._fail(f"kernel must be callable; got {type(self.kernel).__name__}")
        if self.library is not None:
            if not isinstance(self.library, (str, os.PathLike)) or not str(self.library):
                raise self._fail(f"library must be a path; got {self.library!r}")
            if not Path(self.library).is_absolute():
                raise self._fail(f"library must be an absolute path (relative paths depend on the working folder); "
                                 f"got {str(self.library)!r}")
        if self.body is not None:
            self._validate_body()

    def _validate_body(self) -> None:
        if not isinstance(self.body, (list, tuple)) or not self.body or not all(isinstance(n, NodeProto) for n in self.body):
            raise self._fail("body must be a non-empty list of onnx NodeProto (onnx.helper.make_node)")
        known = {p.name for p in self.inputs}
        for node in self.body:
            if node.domain not in ("", "ai.onnx"):
                raise self._fail(f"body node {node.op_type} is in domain {node.domain!r}; bodies use standard ops only")
            missing = [i for i in node.input if i and i not in known]
            if missing:
                raise self._fail(f"body node {node.op_type} reads {missing[0]!r}, which is neither an input nor "
                                 "computed by an earlier body node")
            for attr in node.attribute:
                if attr.ref_attr_name and attr.ref_attr_name not in self.attributes:
                    raise self._fail(f"body node {node.op_type} refers to attribute {attr.ref_attr_name!r}, "
                                     "which the op does not declare")
            known.update(o for o in node.output if o)
        absent = [p.name for p in self.outputs if p.name not in known]
        if absent:
            raise self._fail(f"the body never computes output {absent[0]!r}")
        try:
            onnx.checker.check_function(self.function_proto())
        except Exception as exc:  # noqa: BLE001 - the checker raises ValidationError and others
            raise self._fail(f"the body is not valid ONNX: {str(exc).strip().splitlines()[0]}") from None

    # -- ONNX pieces --------------------------------------------------------------------------------
    def function_proto(self) -> FunctionProto:
        """The op's body as a model-local ONNX function."""
        if self.body is None:
            raise PluginError(f"op {self.qualified_name} has no function body")
        return helper.make_function(
            self.domain, self.name, [p.name for p in self.inputs], [p.name for p in self.outputs],
            list(self.body), [helper.make_opsetid("", self.body_opset)], attributes=list(self.attributes),
            doc_string=self.doc or None,
        )

    def make_node(self, inputs: list, outputs: list, *, name: str | None = None, **attrs) -> NodeProto:
        """A node calling this op, with every declared attribute written out (defaults filled in)."""
        unknown = [k for k in attrs if k not in self.attributes]
        if unknown:
            raise PluginError(f"op {self.qualified_name} has no attribute {unknown[0]!r}; "
                              f"it has: {', '.join(self.attributes) or '(none)'}")
        values = {**self.attributes, **attrs}
        return helper.make_node(self.name, inputs, outputs, name=name, domain=self.domain, **values)

    def describe(self) -> dict:
        out = {
            "name": self.name,
            "domain": self.domain,
            "version": self.version,
            "inputs": [{"name": p.name, "type": p.type} for p in self.inputs],
            "outputs": [{"name": p.name, "type": p.type} for p in self.outputs],
            "attributes": dict(self.attributes),
            "implementations": self.kinds,
            "trainable": self.trainable,
            "activation": bool(self.activation),
            "doc": self.doc,
        }
        if self.body is not None:
            out["body"] = [_node_text(n) for n in self.body]
        if self.library is not None:
            out["library"] = str(self.library)
        return out


@dataclass(eq=False)
class Plugin:
    """A named set of ops; what an ``onnxforge.plugins`` entry point provides."""

    name: str
    ops: list
    version: str = ""
    description: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise PluginError(f"a plugin needs a non-empty name; got {self.name!r}")
        if not isinstance(self.ops, (list, tuple)) or not all(isinstance(o, Op) for o in self.ops):
            raise PluginError(f"plugin {self.name!r}: ops must be a list of onnxforge.plugins.Op")
        seen = set()
        for op in self.ops:
            if op.key in seen:
                raise PluginError(f"plugin {self.name!r} declares op {op.qualified_name} twice")
            seen.add(op.key)
        self.ops = list(self.ops)


def _as_list(value, op, what):
    if isinstance(value, (str, Port)) or (isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], str)
                                          and value[1] in TYPES):
        return [value]
    if not isinstance(value, (list, tuple)):
        raise PluginError(f"malformed declaration of op {op.name!r}: {what} must be a list of names; got {value!r}")
    return list(value)


def _port(value, op, kind) -> Port:
    if isinstance(value, Port):
        name, typ = value.name, value.type
    elif isinstance(value, str):
        name, typ = value, "float"
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        name, typ = value
    else:
        raise PluginError(f"malformed declaration of op {op.name!r}: each {kind} is a name or (name, type); got {value!r}")
    if not isinstance(name, str) or not _NAME.match(name):
        raise PluginError(f"malformed declaration of op {op.name!r}: {kind} names must be identifiers; got {name!r}")
    if typ not in TYPES:
        raise PluginError(f"malformed declaration of op {op.name!r}: {kind} {name!r} has type {typ!r}; "
                          f"expected one of {', '.join(TYPES)}")
    return Port(name, typ)


def _node_text(node: NodeProto) -> str:
    attrs = []
    for a in node.attribute:
        if a.ref_attr_name:
            attrs.append(f"{a.name}=@{a.ref_attr_name}")
        elif a.type == onnx.AttributeProto.TENSOR:
            attrs.append(f"{a.name}={onnx.numpy_helper.to_array(a.t).tolist()}")
        else:
            attrs.append(f"{a.name}={helper.get_attribute_value(a)!r}")
    extra = f" [{', '.join(attrs)}]" if attrs else ""
    return f"{', '.join(node.output)} = {node.op_type}({', '.join(node.input)}){extra}"
