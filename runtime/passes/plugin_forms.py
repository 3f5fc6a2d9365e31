"""The plugin passes: a model's plugin ops in the form a session or a trainer needs.

The rewrites themselves live with the plugin registry (:func:`onnxforge.plugins.prepare_inference`,
:func:`onnxforge.plugins.prepare_training`), which knows each op's implementations; these passes
put them into the pipelines. Both leave their argument as it was.
"""

from __future__ import annotations

from onnxforge import plugins
from onnxforge.runtime.passes.base import Rewrite

__all__ = ["InlinePlugins", "PluginKernels"]


class InlinePlugins(Rewrite):
    """Training: plugin function bodies added and every model-local function inlined, so ONNX
    Runtime's gradient builders see standard ops; an op with no body is refused
    (:class:`~onnxforge.runtime.errors.NotTrainableError`)."""

    name = "inline-plugins"
    function = staticmethod(plugins.prepare_training)


class PluginKernels(Rewrite):
    """Inference: plugin function bodies added where an op runs as a function, Python-kernel nodes
    pointed at their onnxruntime-extensions registration, native ops left to their library; an op
    no plugin provides is refused (:class:`~onnxforge.runtime.errors.ModelError`)."""

    name = "plugin-kernels"
    function = staticmethod(plugins.prepare_inference)
