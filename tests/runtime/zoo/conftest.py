"""The zoo's table at the end of a run: per model and exporter, what happened and the worst error."""

from __future__ import annotations


def pytest_terminal_summary(terminalreporter):
    import sys

    zoo = sys.modules.get("test_zoo_torch")
    results = getattr(zoo, "RESULTS", None)
    if not results:
        return
    write = terminalreporter.write_line
    terminalreporter.section("export zoo: onnxforge's gradients vs PyTorch's")
    for (model, exporter), r in sorted(results.items()):
        worst = f"worst {r.worst:.2g}" if r.status == "ok" else ""
        write(f"{model:20s} {exporter:13s} {r.status:13s} {worst:12s} {r.detail[:110]}")
