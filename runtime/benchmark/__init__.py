"""The benchmark: onnxforge against raw ONNX Runtime and PyTorch, as ratios measured in one process.

    workloads   each model family's ONNX graph, PyTorch twin with the same weights, and data
    peers       what onnxforge is measured against: raw ORT training, PyTorch eager, numpy's GEMM peak
    measure     training steps/s, inference latency/throughput, peak memory (fresh processes)
    report      the table
    suite       ``run_benchmarks``: the whole run, as ``onnxforge bench`` does it

May import every runtime room."""
