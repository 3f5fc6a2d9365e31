"""The ``onnxforge`` command line."""
