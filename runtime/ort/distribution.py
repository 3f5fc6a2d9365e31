"""Finding and importing ONNX Runtime: which distribution is installed, its providers, and the
training API without PyTorch.

Every ONNX Runtime distribution installs the same import package ``onnxruntime``; this module is
the only place that imports it, so the rest of onnxforge sees one well-defined runtime.
"""

from __future__ import annotations

import ctypes
import glob
import importlib.metadata
import importlib.util
import os
import sys
import types
from dataclasses import dataclass, field
from functools import lru_cache

from onnx import TensorProto, helper

from onnxforge.runtime.errors import RuntimeUnavailableError

# Distributions that install the `onnxruntime` module, and what each can do.
KNOWN_DISTRIBUTIONS = {
    "onnxruntime-training-cpu": {"training": True, "cuda": False},
    "onnxruntime-training": {"training": True, "cuda": True},
    "onnxruntime-gpu": {"training": False, "cuda": True},
    "onnxruntime": {"training": False, "cuda": False},
    "onnxruntime-directml": {"training": False, "cuda": False},
    "onnxruntime-openvino": {"training": False, "cuda": False},
}

# Highest versions ONNX Runtime training 1.19 loads (see shared notes); newer runtimes accept more:
# for those the installed runtime is asked (ONNX Runtime 1.31 loads IR 13 and opset 26).
_MAX_IR = {(1, 19): 10, (1, 20): 10, (1, 21): 10, (1, 22): 11}
_MAX_OPSET = {(1, 19): 21, (1, 20): 21, (1, 21): 22, (1, 22): 22}

# The CUDA 11 runtime libraries that onnxruntime-training 1.19 (built for CUDA 11.8) needs, as
# shipped by the nvidia-*-cu11 wheels: (package folder under site-packages/nvidia, library glob).
_CUDA11_LIBS = [
    ("cuda_runtime", "libcudart.so.11*"),
    ("cublas", "libcublasLt.so.11*"),
    ("cublas", "libcublas.so.11*"),
    ("cufft", "libcufft.so.10*"),
    ("curand", "libcurand.so.10*"),
    # cuDNN 8 opens its sub-libraries by name at run time: load them first, in dependency order.
    ("cudnn", "libcudnn_ops_infer.so.8*"),
    ("cudnn", "libcudnn_ops_train.so.8*"),
    ("cudnn", "libcudnn_cnn_infer.so.8*"),
    ("cudnn", "libcudnn_cnn_train.so.8*"),
    ("cudnn", "libcudnn_adv_infer.so.8*"),
    ("cudnn", "libcudnn_adv_train.so.8*"),
    ("cudnn", "libcudnn.so.8*"),
]


@dataclass(frozen=True)
class RuntimeInfo:
    """What is installed: the distribution(s) providing ``onnxruntime``, version, providers."""

    distributions: tuple[str, ...]
    version: str
    providers: tuple[str, ...]
    training: bool
    cuda_libraries: dict = field(default_factory=dict)

    @property
    def distribution(self) -> str:
        return self.distributions[0] if self.distributions else "unknown"

    @property
    def max_ir_version(self) -> int:
        return self._limits()[0]

    @property
    def max_opset(self) -> int:
        return self._limits()[1]

    def _limits(self) -> tuple[int, int]:
        version = _major_minor(self.version)
        if version in _MAX_IR:
            return _MAX_IR[version], _MAX_OPSET[version]
        if version < max(_MAX_IR):
            return 10, 21
        return _probed_limits(self.version)


def _loads(ir_version: int, opset: int) -> bool:
    """Whether the installed ONNX Runtime opens a one-Identity model of that IR version and opset."""
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("x", "y")]
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", io[:1], io[1:]),
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    try:
        ort().InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001  ORT's refusals are pybind classes deriving from Exception only
        return False
    return True


@lru_cache(maxsize=None)
def _probed_limits(version: str) -> tuple[int, int]:
    """The highest IR version and opset a runtime newer than the tables loads, found by asking it
    (a few milliseconds, once a process), up from the tables' highest."""
    ir_version, opset = _MAX_IR[max(_MAX_IR)], _MAX_OPSET[max(_MAX_OPSET)]
    while ir_version < 64 and _loads(ir_version + 1, 17):
        ir_version += 1
    while opset < 256 and _loads(ir_version, opset + 1):
        opset += 1
    return ir_version, opset


def _major_minor(version: str) -> tuple[int, int]:
    parts = version.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return (0, 0)


def installed_distributions() -> list[str]:
    """Names of every installed distribution that provides the ``onnxruntime`` module."""
    found = []
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name in KNOWN_DISTRIBUTIONS and name not in found:
            found.append(name)
    return sorted(found)


def check_single_distribution() -> list[str]:
    """Raise a plain error when two ONNX Runtime distributions share this environment."""
    dists = installed_distributions()
    if len(dists) > 1:
        raise RuntimeUnavailableError(
            "several ONNX Runtime distributions are installed in this environment "
            f"({', '.join(dists)}); they overwrite each other's `onnxruntime` module. "
            "Keep exactly one: pip uninstall -y " + " ".join(dists) + ", then reinstall onnxforge "
            "with one extra (cpu, cuda or serve-gpu)."
        )
    return dists


def _site_dirs() -> list[str]:
    import site

    dirs = list(getattr(site, "getsitepackages", lambda: [])())
    user = getattr(site, "getusersitepackages", lambda: None)()
    if user:
        dirs.append(user)
    dirs.extend(p for p in sys.path if p.endswith("site-packages"))
    return list(dict.fromkeys(dirs))


@lru_cache(maxsize=1)
def preload_cuda_libraries() -> dict:
    """Load the CUDA 11 libraries from the nvidia-*-cu11 wheels (ORT 1.19 has no preload_dlls).

    Returns ``{library: path or None}``. Loading them globally before ONNX Runtime's CUDA
    provider is created lets the provider find them without LD_LIBRARY_PATH.
    """
    result = {}
    for package, pattern in _CUDA11_LIBS:
        path = None
        for site_dir in _site_dirs():
            hits = sorted(glob.glob(os.path.join(site_dir, "nvidia", package, "lib", pattern)))
            if hits:
                path = hits[0]
                break
        if path is not None:
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            except OSError:
                path = None
        result[pattern.split(".so")[0]] = path
    return result


def _register_bare_package(name: str, folder: str) -> None:
    if name in sys.modules:
        return
    module = types.ModuleType(name)
    module.__path__ = [folder]
    module.__package__ = name
    sys.modules[name] = module


@lru_cache(maxsize=1)
def ort():
    """Import and return the ``onnxruntime`` module, without importing PyTorch.

    ``onnxruntime/__init__`` validates training builds by importing ``ortmodule`` (which imports
    torch) and ``onnxruntime.tools`` imports torch when it is installed; neither is needed by the
    parts onnxforge uses, so their package ``__init__`` files are bypassed.
    """
    check_single_distribution()
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeUnavailableError(
            "ONNX Runtime is not installed; install onnxforge with one extra: "
            "pip install 'onnxforge[cpu]' (training on the CPU), 'onnxforge[cuda]' or 'onnxforge[serve-gpu]'"
        )
    root = list(spec.submodule_search_locations)[0]
    if "onnxruntime" not in sys.modules:
        if os.path.isdir(os.path.join(root, "training")):
            _register_bare_package("onnxruntime.training", os.path.join(root, "training"))
            sys.modules.setdefault("onnxruntime.training.ortmodule", None)
        if os.path.isdir(os.path.join(root, "tools")):
            _register_bare_package("onnxruntime.tools", os.path.join(root, "tools"))
    try:
        import onnxruntime
    except ImportError as exc:  # a broken install
        raise RuntimeUnavailableError(f"ONNX Runtime could not be imported: {exc}") from None
    for sub in ("training", "tools"):
        if f"onnxruntime.{sub}" in sys.modules and not hasattr(onnxruntime, sub):
            setattr(onnxruntime, sub, sys.modules[f"onnxruntime.{sub}"])
    onnxruntime.set_default_logger_severity(3)
    return onnxruntime


@lru_cache(maxsize=1)
def training_api():
    """Return ``(artifacts, onnxblock, api)`` of ONNX Runtime training, or raise plainly."""
    rt = ort()
    try:
        from onnxruntime.training import api, artifacts, onnxblock
    except ImportError as exc:
        raise RuntimeUnavailableError(
            f"the installed ONNX Runtime ({runtime_info().distribution} {rt.__version__}) has no training "
            f"API ({exc}); the artifacts backend needs onnxruntime-training (CPython 3.10-3.12: the `cpu` or "
            "`cuda-artifacts` extra), the onnx backend (`--backend onnx`) trains on this runtime"
        ) from None
    rt.set_default_logger_severity(3)
    return artifacts, onnxblock, api


@lru_cache(maxsize=1)
def runtime_info() -> RuntimeInfo:
    rt = ort()
    providers = tuple(rt.get_available_providers())
    root = os.path.dirname(rt.__file__)
    training = os.path.isdir(os.path.join(root, "training", "api"))
    cuda_libs = preload_cuda_libraries() if "CUDAExecutionProvider" in providers else {}
    return RuntimeInfo(
        distributions=tuple(installed_distributions()),
        version=rt.__version__,
        providers=providers,
        training=training,
        cuda_libraries=cuda_libs,
    )


class quiet_native_stderr:
    """Silence what native code writes to file descriptor 2 (ORT's gradient builder logs every
    graph transformer at info level, ignoring the logger severity). Failures still surface as
    the Python exceptions ORT raises."""

    def __enter__(self):
        try:
            sys.stderr.flush()
            self._saved = os.dup(2)
        except (OSError, ValueError):
            self._saved = None
            return self
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        return self

    def __exit__(self, *exc):
        if self._saved is not None:
            os.dup2(self._saved, 2)
            os.close(self._saved)
        return False
