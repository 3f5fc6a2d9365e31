"""onnxruntime-web's files for a ``--web`` bundle, found without the internet at bundle time when
a copy exists.

onnxruntime-web is an npm package (not on PyPI). A bundle copies the few files a page loads into
``DIR/ort/``: the WASM build (``ort.wasm.min.mjs`` and its ``.wasm``, about 15 MB) and, for
WebGPU, the native WebGPU build (``ort.webgpu.min.mjs`` and the asyncify ``.wasm``, about 28 MB).
They are looked for, in order, in:

1. ``--ort-web PATH`` (or ``$ONNXFORGE_ORT_WEB``): a folder holding those files (an
   onnxruntime-web package's ``dist/``, the package folder, or a ``node_modules`` above it);
2. the JS folder shipped in onnxforge (``onnxforge/runtime/bundle/js/node_modules``, present in a
   checkout after ``npm ci`` there);
3. the cache ``~/.cache/onnxforge/onnxruntime-web-<version>/`` (``$XDG_CACHE_HOME`` respected);
4. otherwise ``npm pack onnxruntime-web@<version>`` (npm's registry, once) unpacked into that cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from onnxforge.runtime.errors import ConfigError

__all__ = ["ORT_WEB_VERSION", "BACKEND_FILES", "find_ort_web", "copy_ort_web"]

ORT_WEB_VERSION = "1.31.1"  # the version the JS folder's package.json pins and the tests run
JS_DIR = Path(__file__).resolve().parent / "js"
BACKEND_FILES = {
    "wasm": ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"),
    "webgpu": ("ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.wasm"),
}


def _cache() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "onnxforge" / f"onnxruntime-web-{ORT_WEB_VERSION}"


def _dist(folder: Path, backends) -> Path | None:
    """The folder under ``folder`` that holds every file ``backends`` need, or None."""
    for d in (folder, folder / "dist", folder / "onnxruntime-web" / "dist",
              folder / "node_modules" / "onnxruntime-web" / "dist", folder / "package" / "dist"):
        if all((d / f).is_file() for b in backends for f in BACKEND_FILES[b]):
            return d
    return None


def _npm_pack(into: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise ConfigError(f"onnxruntime-web {ORT_WEB_VERSION} files were not found, and npm is not installed to fetch "
                          "them; pass --ort-web PATH (a folder with onnxruntime-web's dist files)")
    with tempfile.TemporaryDirectory() as tmp:
        run = subprocess.run([npm, "pack", f"onnxruntime-web@{ORT_WEB_VERSION}", "--silent"], cwd=tmp,
                             capture_output=True, text=True, timeout=600)
        tarballs = list(Path(tmp).glob("*.tgz"))
        if run.returncode != 0 or not tarballs:
            raise ConfigError(f"npm pack onnxruntime-web@{ORT_WEB_VERSION} failed ({(run.stderr or '').strip()[:200]}); "
                              "pass --ort-web PATH (a folder with onnxruntime-web's dist files)")
        with tarfile.open(tarballs[0]) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith("package/dist/")
                       and Path(m.name).name in {f for fs in BACKEND_FILES.values() for f in fs}]
            staging = into.with_name(into.name + ".partial")
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            for m in members:
                (staging / Path(m.name).name).write_bytes(tar.extractfile(m).read())  # type: ignore[union-attr]  # regular files
        shutil.rmtree(into, ignore_errors=True)
        staging.rename(into)


def find_ort_web(backends=("wasm",), given: str | None = None) -> Path:
    """The folder holding onnxruntime-web's files for ``backends`` (see the module docstring)."""
    given = given or os.environ.get("ONNXFORGE_ORT_WEB")
    if given:
        found = _dist(Path(given), backends)
        if found is None:
            need = ", ".join(f for b in backends for f in BACKEND_FILES[b])
            raise ConfigError(f"--ort-web '{given}' does not hold onnxruntime-web's files ({need})")
        return found
    for folder in (JS_DIR, _cache()):
        found = _dist(folder, backends)
        if found is not None:
            return found
    _npm_pack(_cache())
    found = _dist(_cache(), backends)
    if found is None:
        raise ConfigError(f"the onnxruntime-web {ORT_WEB_VERSION} package lacks files for {', '.join(backends)}")
    return found


def copy_ort_web(dest: Path, backends=("wasm",), given: str | None = None) -> list[str]:
    """Copy the files ``backends`` need into ``dest``; returns their names."""
    src = find_ort_web(backends, given)
    dest.mkdir(parents=True, exist_ok=True)
    names = [f for b in backends for f in BACKEND_FILES[b]]
    for f in names:
        shutil.copyfile(src / f, dest / f)
    return names
