"""The ONNX Runtime layer: which distribution is installed, devices, threads, IOBinding.

Owns every direct contact with the onnxruntime module. May import: errors, modelio."""
