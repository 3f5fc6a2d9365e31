"""The benchmark: onnxforge against raw ONNX Runtime and PyTorch, as ratios measured in one process.

May import every runtime room."""
