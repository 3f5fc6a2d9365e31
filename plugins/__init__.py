"""Custom ops that plugins add.

An op is declared once (:class:`Op`: domain, name, version, inputs, outputs, attributes) with one
or more implementations: an ONNX function body (runs everywhere and trains: it is inlined before
training artifacts are generated), a Python kernel (numpy, through onnxruntime-extensions; inference
only) or a native custom-op library loaded by path (inference only). Ops come in :class:`Plugin`
objects: the built-in pack, every entry point of the group ``onnxforge.plugins`` (its value is a
``Plugin`` or a function returning one) and plugins passed to :func:`register`.

Sessions and trainers call the hooks below on every model, so every op a model uses is registered
automatically. Native libraries are loaded only from plugin declarations, never from a path found
in a model file.
"""

from __future__ import annotations

from onnx import ModelProto, helper

from onnxforge.plugins import _pykernel
from onnxforge.plugins._declaration import PYTHON_KERNEL_DOMAIN, RESERVED_DOMAINS, Op, Plugin, Port
from onnxforge.plugins._registry import ENTRY_POINT_GROUP, REGISTRY
from onnxforge.runtime.errors import ConfigError, ModelError, NotTrainableError, PluginError
from onnxforge.runtime.modelio.protos import copy_model as _copy
from onnxforge.plugins._native import register_library

__all__ = [
    "ENTRY_POINT_GROUP",
    "Op",
    "PYTHON_KERNEL_DOMAIN",
    "Plugin",
    "Port",
    "activation_names",
    "activation_op",
    "find_op",
    "installed_plugins",
    "kernel_guard",
    "list_ops",
    "plugin_of",
    "prepare_inference",
    "prepare_training",
    "problems",
    "refresh",
    "register",
    "register_custom_ops",
    "unregister",
]


# -- the registry ---------------------------------------------------------------------------------
def register(plugin: Plugin) -> Plugin:
    """Add ``plugin`` to this process's registry (the user names it, so its libraries may load).
    Raises :class:`PluginError` when one of its ops is already provided by another plugin."""
    REGISTRY.discover()
    REGISTRY.add(plugin, "registered in this process")
    return plugin


def unregister(name: str) -> None:
    """Remove the plugin called ``name`` from this process's registry."""
    REGISTRY.discover()
    REGISTRY.remove(name)


def refresh() -> None:
    """Discover installed plugins again (after installing or removing one in this process)."""
    import importlib

    importlib.invalidate_caches()
    REGISTRY.refresh()


def installed_plugins() -> list[str]:
    """Names of the plugins available: the built-in pack, installed entry points, registered ones."""
    return REGISTRY.names()


def problems() -> list[str]:
    """Installed plugins that could not be loaded, and why."""
    REGISTRY.discover()
    return list(REGISTRY.problems)


def list_ops() -> list[Op]:
    """Every op the registry provides, sorted by domain and name."""
    REGISTRY.discover()
    return sorted(REGISTRY.ops.values(), key=lambda op: (op.domain, op.name))


def plugin_of(op: Op) -> str:
    return REGISTRY.plugin_of(op)


def find_op(name: str) -> Op:
    """The op called ``name`` (case-insensitive short name, or ``domain.Name``)."""
    hits = REGISTRY.find(name)
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise PluginError(f"no installed plugin provides an op called {name!r}; available: "
                          f"{', '.join(op.qualified_name for op in list_ops()) or '(none)'}")
    raise PluginError(f"several plugins provide an op called {name!r}: "
                      f"{', '.join(op.qualified_name for op in hits)}; give the domain too, e.g. {hits[0].qualified_name!r}")


def kernel_guard():
    """Context manager around a session run: a Python kernel that raised becomes a PluginError."""
    return _pykernel.kernel_guard(plugin_of)


# -- what a model uses ----------------------------------------------------------------------------
def _graphs(graph):
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.g is not None and attr.HasField("g"):
                yield from _graphs(attr.g)
            for g in attr.graphs:
                yield from _graphs(g)


def _all_nodes(model: ModelProto):
    for graph in _graphs(model.graph):
        yield from graph.node
    for function in model.functions:
        yield from function.node


def _standard(domain: str) -> bool:
    return domain in RESERVED_DOMAINS


def _installed_summary() -> str:
    parts = []
    for name in installed_plugins():
        ops = [op.name for op in REGISTRY.plugins[name].plugin.ops]
        parts.append(f"{name} ({', '.join(ops)})")
    return "; ".join(parts) or "(none)"


def used_ops(model: ModelProto) -> list[tuple[Op, str]]:
    """The plugin ops a model uses, with the name of the first node using each. Raises
    :class:`ModelError` naming the op, its domain and the installed plugins when a node needs an
    op that no plugin provides (and the model does not define as a local function)."""
    # A local function is the model's own op, unless it is exactly a plugin op's body (as the
    # builders embed it): then the plugin's other implementations may serve it.
    local = {(f.domain, f.name): f for f in model.functions}
    found: dict[tuple[str, str], tuple[Op, str]] = {}
    for node in _all_nodes(model):
        domain = node.domain or ""
        key = (domain, node.op_type)
        if _standard(domain) or key in found:
            continue
        op = REGISTRY.get(domain, node.op_type)
        if key in local and (op is None or not _same_function(local[key], op)):
            continue
        if op is None:
            hint = f" ({'; '.join(REGISTRY.problems)})" if REGISTRY.problems else ""
            raise ModelError(
                f"the model needs op {node.op_type} of domain {domain!r} (node {node.name or '?'!r}), which no "
                f"installed plugin provides; installed plugins: {_installed_summary()}{hint}. Install or register "
                "a plugin that declares it (see `onnxforge plugins list`)"
            )
        found[op.key] = (op, node.name)
    return list(found.values())


def _same_function(function, op: Op) -> bool:
    if op.body is None:
        return False
    mine = op.function_proto()
    return (list(function.input) == list(mine.input) and list(function.output) == list(mine.output)
            and [n.SerializeToString(deterministic=True) for n in function.node]
            == [n.SerializeToString(deterministic=True) for n in mine.node])


def _ensure_opset(model: ModelProto, domain: str, version: int) -> None:
    for imp in model.opset_import:
        if imp.domain == domain:
            return
    model.opset_import.append(helper.make_opsetid(domain, version))


def _add_function(model: ModelProto, op: Op) -> None:
    if not any(f.domain == op.domain and f.name == op.name for f in model.functions):
        model.functions.append(op.function_proto())
    _ensure_opset(model, op.domain, op.version)
    _ensure_opset(model, "", op.body_opset)


def _inference_kind(op: Op) -> str:
    """Native code first (fastest), then the function body, then the Python kernel."""
    for kind in ("native", "function", "python"):
        if kind in op.kinds:
            return kind
    raise PluginError(f"op {op.qualified_name} has no implementation")  # unreachable: declarations check it


# -- hooks the runtime calls ------------------------------------------------------------------------
def prepare_inference(model: ModelProto) -> ModelProto:
    """Return the model as the inference session should load it: plugin functions added, Python-
    kernel nodes pointed at their onnxruntime-extensions registration. Unknown ops fail here."""
    used = used_ops(model)
    if not used:
        return model
    model = _copy(model)
    python_ops = {}
    for op, _ in used:
        kind = _inference_kind(op)
        if kind == "function":
            _add_function(model, op)
        elif kind == "python":
            python_ops[op.key] = _pykernel.ensure_registered(op)
        else:  # native: the library's kernel replaces the embedded body
            keep = [f for f in model.functions if (f.domain, f.name) != op.key]
            del model.functions[:]
            model.functions.extend(keep)
            _ensure_opset(model, op.domain, op.version)
    if python_ops:
        for node in _all_nodes(model):
            mangled = python_ops.get((node.domain, node.op_type))
            if mangled:
                node.domain, node.op_type = PYTHON_KERNEL_DOMAIN, mangled
        _ensure_opset(model, PYTHON_KERNEL_DOMAIN, 1)
    return model


def register_custom_ops(model: ModelProto, options) -> None:
    """Register with ONNX Runtime ``options`` the custom-op libraries ``model`` (as returned by
    :func:`prepare_inference`) needs: onnxruntime-extensions for Python kernels, and the native
    libraries that installed or registered plugins declare."""
    libraries = []
    for node in _all_nodes(model):
        if node.domain == PYTHON_KERNEL_DOMAIN and node.op_type in _pykernel._current:
            path = _pykernel.library_path()
        else:
            op = REGISTRY.get(node.domain, node.op_type) if node.domain and not _standard(node.domain) else None
            if op is None or _inference_kind(op) != "native":
                continue
            path = str(op.library)
        if path not in libraries:
            libraries.append(path)
    for path in libraries:
        register_library(options, path, REGISTRY)


def prepare_training(model: ModelProto) -> ModelProto:
    """Return the model as training artifacts should be generated from it: plugin functions added
    and every local function inlined, so that ONNX Runtime's gradient builders see standard ops.
    A model using an op with no function body is refused with :class:`NotTrainableError`."""
    used = used_ops(model)
    for op, node in used:
        if not op.trainable:
            kinds = " and ".join({"python": "a Python kernel", "native": "a native library"}[k] for k in op.kinds)
            raise NotTrainableError(
                f"op {op.qualified_name} (node {node or '?'!r}, plugin {plugin_of(op)!r}) is implemented only by "
                f"{kinds}, which ONNX Runtime cannot differentiate; a model that uses it can be run but not trained"
            )
    if used:
        model = _copy(model)
        for op, _ in used:
            _add_function(model, op)
    if model.functions:
        from onnx import inliner

        model = inliner.inline_local_functions(model)
        still = {n.domain for n in _all_nodes(model)}
        keep = [imp for imp in model.opset_import if _standard(imp.domain) or imp.domain in still]
        del model.opset_import[:]
        model.opset_import.extend(keep)
    return model


# -- activations for the builders -------------------------------------------------------------------
class _Activation:
    """A plugin op used as a builder's ``activation=``."""

    def __init__(self, op: Op):
        self.op = op

    def apply(self, builder, x: str, prefix: str) -> str:
        op = self.op
        out = builder.node(op.name, [x], [f"{prefix}.out"], name=prefix, domain=op.domain, **op.attributes)
        if op.body is not None and not any(f.domain == op.domain and f.name == op.name for f in builder.functions):
            builder.functions.append(op.function_proto())
        builder.opsets[op.domain] = op.version
        return out


def activation_names() -> list[str]:
    """Names of plugin ops usable as activations (one float input and output, trainable)."""
    ops = [op for op in list_ops() if op.activation]
    short = [op.name.lower() for op in ops]
    return [s if short.count(s) == 1 else op.qualified_name for s, op in zip(short, ops)]


def activation_op(name: str):
    """The plugin op called ``name``, usable as an activation, or ``None``."""
    hits = [op for op in REGISTRY.find(name) if op.activation]
    if len(hits) > 1:
        raise ConfigError(f"activation {name!r} is ambiguous: {', '.join(op.qualified_name for op in hits)}; "
                          "give the domain too")
    return _Activation(hits[0]) if hits else None
