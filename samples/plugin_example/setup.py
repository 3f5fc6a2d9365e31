"""Builds the native Squareplus kernel (a plain C shared library for ONNX Runtime, not a Python
extension module) next to the package; everything else is in pyproject.toml. Without a C compiler
the package still installs, and Squareplus runs through its ONNX function body instead."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "onnxforge_plugin_example._squareplus",
            sources=["src/onnxforge_plugin_example/squareplus.c"],
            libraries=["m"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
