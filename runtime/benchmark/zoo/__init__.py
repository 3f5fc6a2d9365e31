"""The benchmark's zoo: real architectures from tiny configs with random weights (nothing is
downloaded), exported with ``torch.onnx.export`` and trained by ``onnxforge bench --models``; the
export tests (tests/runtime/zoo) build their ConvNets from the same blocks.

    models     the registry: name -> architecture, batch, input; ``build(name)``
    convnets   torchvision's ConvNet families written in torch (for where torchvision does not load)
    export     ``torch.onnx.export`` of a model: inputs by name, its first output

PyTorch and transformers are imported on first use (this package imports without them)."""
