"""Training bundles: a model, its training step and its data as files any ONNX Runtime trains
from (a browser tab with onnxruntime-web, Node.js with onnxruntime-node, or any other binding).

Room map:

- :mod:`.build`: ``build_bundle`` writes the bundle folder (``onnxforge bundle``);
- :mod:`.describe`: the manifest's description of the step and evaluation models and of the
  per-step recipes (schedule, AdamW scalars, step count, dropout seed);
- :mod:`.offsets`: where each parameter's bytes lie in ``model.onnx`` (the JS writes the trained
  model by overwriting them);
- :mod:`.ortweb`: onnxruntime-web's files for ``--web`` bundles;
- ``js/``: the JavaScript library copied into every bundle (``onnxforge-train.mjs``,
  ``safetensors.mjs``), ``train.mjs`` (Node.js) and ``index.html`` (the page), with its tests.

A bundle folder::

    manifest.json          format, models' inputs/outputs, state layout, recipes, data layout
    step.onnx              the onnx backend's training step (step_unpacked.onnx for WebGPU if needed)
    eval.onnx              loss and output with the parameters as inputs (inference semantics)
    model.onnx             the inference model (parameters as raw float32, offsets in the manifest)
    parameters.safetensors initial parameters (and running statistics), by the model's names
    optimizer.safetensors  initial optimizer state (adamw.m/NAME, adamw.v/NAME)
    train.safetensors      with --data: input/NAME, target (and order [epochs, N] when shuffled)
    val.safetensors        with --val
    onnxforge-train.mjs, safetensors.mjs, train.mjs   the JS library and the Node.js runner
    index.html, ort/       with --web: the page and onnxruntime-web's files
    README.md              how to train it (browser, Node.js, any ONNX Runtime)
"""

from onnxforge.runtime.bundle.build import FORMAT, FORMAT_VERSION, BundleOptions, build_bundle

__all__ = ["FORMAT", "FORMAT_VERSION", "BundleOptions", "build_bundle"]
