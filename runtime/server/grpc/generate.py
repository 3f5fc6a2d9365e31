"""Regenerate the committed gRPC stubs from ``grpc_service.proto`` (grpcio-tools, a dev dependency):
``python -m onnxforge.runtime.server.grpc.generate``.

Two edits follow protoc: the service module imports the messages from this package, and the
messages are built in a private descriptor pool, so a process that also imports tritonclient's
stubs (the same ``inference.*`` names) loads both.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = "grpc_service.proto"
PACKAGE = "onnxforge.runtime.server.grpc"


def generated() -> dict[str, str]:
    """``{file name: text}`` of the two stubs, as they are committed."""
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as out:
        rc = protoc.main(["protoc", f"-I{HERE}", f"--python_out={out}", f"--grpc_python_out={out}", str(HERE / PROTO)])
        if rc != 0:
            raise SystemExit(f"protoc failed on {PROTO} (exit {rc})")
        messages = (Path(out) / "grpc_service_pb2.py").read_text()
        service = (Path(out) / "grpc_service_pb2_grpc.py").read_text()
    default = "_descriptor_pool.Default().AddSerializedFile("
    if default not in messages:
        raise SystemExit("protoc's output changed: no default descriptor pool to replace")
    messages = messages.replace(default, "_POOL.AddSerializedFile(", 1).replace(
        "_sym_db = _symbol_database.Default()", "_sym_db = _symbol_database.Default()\n"
        "_POOL = _descriptor_pool.DescriptorPool()  # private: tritonclient's stubs use the same names", 1)
    service = service.replace("import grpc_service_pb2 as", f"from {PACKAGE} import grpc_service_pb2 as", 1)
    return {"grpc_service_pb2.py": messages, "grpc_service_pb2_grpc.py": service}


def main() -> int:
    for name, text in generated().items():
        (HERE / name).write_text(text)
        print(f"wrote {HERE / name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
