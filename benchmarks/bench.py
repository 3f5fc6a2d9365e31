"""Benchmark onnxforge against raw ONNX Runtime and PyTorch eager (see README, "Benchmarks").

    python benchmarks/bench.py [--quick] [--threads N] [--family mlp ...] [--models [NAME,...]] [--profile] [--json] [-o result.json]

The same as ``onnxforge bench``; the measurements live in ``onnxforge.runtime.benchmark`` (workloads,
peers, measure, report; ``suite.run_benchmarks`` runs them all).
"""

from __future__ import annotations

import sys

from onnxforge.cli.main import cli

if __name__ == "__main__":
    sys.exit(cli(["bench", *sys.argv[1:]], prog_name="python benchmarks/bench.py"))
