"""Whether a PyTorch file can be read without running code from it.

Loading PyTorch files can run Python their author chose: a TorchScript archive (``.pt``,
``.ts``) runs its methods and ``__setstate__`` when ``torch.jit.load`` reads it (one can write a
file anywhere with ``torch.from_file``), and ``torch.export.load`` unpickles, with
``weights_only=False``, any weight or constant a ``.pt2`` marks as pickled, custom and opaque
objects, legacy ``.pt`` weight files, the pickled state of the old (2.7) archive format, and
sample inputs that PyTorch's safe unpickler refuses.

:func:`check_source` refuses those, before PyTorch opens the file, unless the caller says it
trusts the file (``trust_source=True``, ``--trust-source``). A ``.pt2`` whose weights and
constants are plain tensors (what ``torch.export.save`` writes for ordinary modules) is read
without trust: its entries are checked from the zip's directory and its JSON configs, and its
sample inputs with PyTorch's ``weights_only=True`` unpickler (tensors only).
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from onnxforge.runtime.errors import ModelError, UnsafeModelError

__all__ = ["check_source", "pt2_risks"]

FLAG = "--trust-source"
_CONFIGS = ("data/weights/", "data/constants/")
_NATIVE = ("data/aotinductor/", "data/executorch/", "data/mtia")  # compiled code, loaded as is
_OBJECT_PREFIXES = ("custom_obj_", "opaque_obj_")  # constants that are pickled objects
_PICKLES = (".pt", ".pkl", ".pickle", ".pth", ".bin")  # legacy weights, old-format state
MAX_CONFIG_BYTES = 64 << 20


def _refuse(path: Path, why: str) -> UnsafeModelError:
    return UnsafeModelError(f"'{path}' {why}: loading it would run code its author chose; convert it only if you "
                            f"trust where it came from, with {FLAG} (trust_source=True)")


def check_source(path: Path, kind: str, trust_source: bool) -> None:
    """Raise :class:`UnsafeModelError` when reading ``path`` (a ``kind`` of ``"torchscript"`` or
    ``"pt2"``) could run code from it and ``trust_source`` is not given."""
    if trust_source or kind not in ("torchscript", "pt2"):
        return
    if kind == "torchscript":
        raise _refuse(path, "is a TorchScript archive, whose methods and __setstate__ run when it is loaded")
    risks = pt2_risks(path)
    if risks:
        raise _refuse(path, f"holds pickled content ({risks[0]}{f' and {len(risks) - 1} more' if len(risks) > 1 else ''})")


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> bytes:
    if info.file_size > MAX_CONFIG_BYTES:
        raise ModelError(f"'{path}': entry '{info.filename}' is {info.file_size} bytes, over the "
                         f"{MAX_CONFIG_BYTES} a torch.export config or sample input may take")
    return archive.read(info)


def pt2_risks(path: Path) -> list[str]:
    """The entries of a ``.pt2`` that ``torch.export.load`` would unpickle unsafely (or load as
    native code); empty for an archive of plain tensors. Raises :class:`ModelError` when the file
    is not a readable zip archive."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ModelError(f"'{path}' is not a torch.export program (not a readable zip archive: {exc})") from None
    risks, current_format = [], False
    with archive:
        for info in archive.infolist():
            name = info.filename.split("/", 1)[1] if "/" in info.filename else info.filename
            if info.is_dir():
                continue
            if name == "archive_format":
                current_format = _read(archive, info, path).strip() == b"pt2"
            elif name.startswith(_NATIVE):
                risks.append(f"compiled code '{info.filename}'")
            elif name.startswith(_CONFIGS) and name.endswith("_config.json"):
                risks += _config_risks(_read(archive, info, path), info.filename, path)
            elif name.startswith("data/sample_inputs/") and name.endswith(".pt"):
                if not _tensors_only(_read(archive, info, path)):
                    risks.append(f"sample inputs '{info.filename}' that are not plain tensors")
            elif name.endswith(_PICKLES):
                risks.append(f"pickled entry '{info.filename}'")
    if not current_format:  # torch.export.load falls back to the old format, whose state is pickled
        risks.insert(0, "an old-format torch.export archive, whose state is pickled")
    return risks


def _config_risks(raw: bytes, entry: str, path: Path) -> list[str]:
    try:
        config = json.loads(raw)["config"]
        items = [(str(fqn), bool(meta.get("use_pickle")), str(meta.get("path_name", "")))
                 for fqn, meta in config.items()]
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise ModelError(f"'{path}': '{entry}' is not a torch.export payload config") from None
    return [f"'{fqn}' in '{entry}'" for fqn, pickled, file in items if pickled or file.startswith(_OBJECT_PREFIXES)]


def _tensors_only(raw: bytes) -> bool:
    """Whether PyTorch's restricted unpickler (tensors and containers only) reads ``raw``; if it
    does not, ``torch.export.load`` would fall back to the unrestricted one."""
    import torch

    try:
        torch.load(io.BytesIO(raw), weights_only=True)
    except Exception:  # noqa: BLE001 - any refusal means "needs the unsafe unpickler"
        return False
    return True
