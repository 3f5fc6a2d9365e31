"""``onnxforge doctor``: what this environment can do."""

from __future__ import annotations

import platform

import click

from onnxforge.cli._common import print_json
from onnxforge import plugins
from onnxforge.runtime.ort.device import resolve_device
from onnxforge.runtime.ort.distribution import installed_distributions, preload_cuda_libraries, runtime_info


def environment_report() -> dict:
    import importlib.metadata as md

    def version(dist: str):
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return None

    report = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "onnxforge": version("onnxforge"),
        "onnx": version("onnx"),
        "numpy": version("numpy"),
        "onnxruntime_distributions": installed_distributions(),
        "problems": [],
    }
    try:
        info = runtime_info()
        report.update({"onnxruntime": info.version, "providers": list(info.providers), "training_api": info.training,
                       "max_ir_version": info.max_ir_version, "max_opset": info.max_opset})
        device = resolve_device("auto")
        report["auto_device"] = device.name
        report["auto_device_reason"] = device.reason
        report["cuda_libraries"] = preload_cuda_libraries() if "CUDAExecutionProvider" in info.providers else {}
    except Exception as exc:  # noqa: BLE001 - doctor reports problems instead of failing
        report["problems"].append(str(exc))
    report["plugins"] = plugins.installed_plugins()
    return report


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def command(as_json):
    """Report the ONNX Runtime distribution and version, providers, CUDA libraries, Python and plugins."""
    report = environment_report()
    if as_json:
        print_json(report)
    else:
        for key, value in report.items():
            if key == "problems":
                continue
            if isinstance(value, dict):
                value = ", ".join(f"{k}: {v or 'not found'}" for k, v in value.items()) or "-"
            elif isinstance(value, list):
                value = ", ".join(map(str, value)) or "-"
            click.echo(f"{key:26} {value}")
        for problem in report["problems"]:
            click.echo(f"problem: {problem}")
    if report["problems"]:
        raise SystemExit(1)
