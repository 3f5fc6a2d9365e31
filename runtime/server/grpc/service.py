"""``inference.GRPCInferenceService`` on grpcio's asyncio server, on the HTTP server's event loop.

A ``ModelInfer`` request becomes the REST body it stands for (the tensors' descriptions as the
JSON header, ``raw_input_contents`` or typed ``contents`` as data) and goes through the same
:meth:`Engine.infer`: the same checks, limits, scheduler and answers, outputs returned in
``raw_output_contents``. Errors get the status their HTTP status stands for: 400 (a bad request)
INVALID_ARGUMENT with the same message, 404 NOT_FOUND, 503 UNAVAILABLE, anything else INTERNAL.
Messages larger than ``--max-body-mb`` are refused by grpcio (RESOURCE_EXHAUSTED).
"""

from __future__ import annotations

import functools
import json
import logging
import struct

import grpc
import numpy as np
from grpc import aio
from starlette.concurrency import run_in_threadpool

from onnxforge.runtime.errors import ConfigError, ForbiddenError, InputError, NotFoundError, OnnxforgeError
from onnxforge.runtime.server.access import Access
from onnxforge.runtime.server.config import ServerConfig
from onnxforge.runtime.server.datatypes import DATATYPES
from onnxforge.runtime.server.grpc import grpc_service_pb2 as pb
from onnxforge.runtime.server.grpc import grpc_service_pb2_grpc as pb_grpc
from onnxforge.runtime.server.infer import Engine
from onnxforge.runtime.server.metrics import Metrics
from onnxforge.runtime.server.oip_json import clip
from onnxforge.runtime.server.repository import Repository
from onnxforge.runtime.server.response import output_arrays, tensor_bytes

__all__ = ["GrpcServer", "infer_response", "request_body", "status_of"]

log = logging.getLogger("onnxforge.serve")

# the typed contents field that carries each datatype's values (FP16 travels raw only)
CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
            "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
            "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
            "FP64": "fp64_contents", "BYTES": "bytes_contents"}


CONVERT_CHUNK = 1 << 16
# each typed contents field read whole into numpy at its own width, then checked and narrowed
WIDE = {"bool_contents": np.bool_, "int_contents": np.int64, "int64_contents": np.int64, "uint_contents": np.uint64,
        "uint64_contents": np.uint64, "fp32_contents": np.float32, "fp64_contents": np.float64}


def _numpy(values, dtype) -> np.ndarray:
    """A repeated field as numpy, 65,536 values at a time: one conversion of millions holds the GIL
    (and so the event loop's thread) for the whole of it, half a second for 1.6 million floats."""
    out = np.empty(len(values), dtype)
    for start in range(0, len(out), CONVERT_CHUNK):
        out[start : start + CONVERT_CHUNK] = values[start : start + CONVERT_CHUNK]
    return out


def _typed_bytes(name: str, datatype: str, values: np.ndarray) -> bytes:
    want = DATATYPES[datatype]
    if want.kind in "iu" and values.size:
        info = np.iinfo(want)  # type: ignore[type-var]  # an integer dtype here (kind "i" or "u")
        low, high = values.min(), values.max()
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise InputError(f"input '{clip(name)}' is {datatype}: value {bad} is outside [{info.min}, {info.max}]")
    return values.astype(want.newbyteorder("<")).tobytes()


def status_of(exc: OnnxforgeError) -> grpc.StatusCode:
    status = exc.http_status
    if status == 401:
        return grpc.StatusCode.UNAUTHENTICATED
    if status == 403:
        return grpc.StatusCode.PERMISSION_DENIED
    if status == 404:
        return grpc.StatusCode.NOT_FOUND
    if status == 503:
        return grpc.StatusCode.UNAVAILABLE
    return grpc.StatusCode.INVALID_ARGUMENT if 400 <= status < 500 else grpc.StatusCode.INTERNAL


def _params(entries) -> dict:
    out = {}
    for key, value in entries.items():
        choice = value.WhichOneof("parameter_choice")
        if choice is not None:
            out[key] = getattr(value, choice)
    return out


def _input_entry(tensor, raw: bytes | None, chunks: list) -> dict:
    name = tensor.name
    entry = {"name": name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
    params = _params(tensor.parameters)
    if raw is not None:
        if tensor.HasField("contents"):
            raise InputError(f"input '{clip(name)}' has both contents and raw_input_contents; send one of them")
        params["binary_data_size"] = len(raw)
        chunks.append(raw)
    elif tensor.HasField("contents"):
        field = CONTENTS.get(tensor.datatype)
        if field is None:
            if tensor.datatype in DATATYPES:
                raise InputError(f"input '{clip(name)}' is {tensor.datatype}, which has no typed contents; "
                                 f"send it in raw_input_contents")
            entry["data"] = []  # the datatype check names what is wrong
        else:
            others = [f.name for f, _ in tensor.contents.ListFields() if f.name != field]
            if others:
                raise InputError(f"input '{clip(name)}' is {tensor.datatype}: its values belong in contents.{field}; "
                                 f"the request fills contents.{others[0]}")
            values = getattr(tensor.contents, field)
            if field == "bytes_contents":
                data = b"".join(struct.pack("<I", len(v)) + v for v in values)
            else:  # as the binary data it stands for: never a JSON list of millions of numbers
                data = _typed_bytes(name, tensor.datatype, _numpy(values, WIDE[field]))
            params["binary_data_size"] = len(data)
            chunks.append(data)
    else:
        raise InputError(f"input '{clip(name)}' has no data: fill its contents or raw_input_contents")
    if params:
        entry["parameters"] = params
    return entry


def request_body(request) -> tuple[bytes, int]:
    """The REST body (JSON header, then binary data) and header length a ``ModelInferRequest`` stands for."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InputError(f"the request has {len(request.inputs)} inputs but {len(raw)} raw_input_contents; "
                         "send one per input, in the same order")
    chunks: list = []
    doc: dict = {"inputs": [_input_entry(t, raw[i] if raw else None, chunks) for i, t in enumerate(request.inputs)]}
    if request.id:
        doc["id"] = request.id
    params = _params(request.parameters)
    if params:
        doc["parameters"] = params
    if request.outputs:
        doc["outputs"] = [{"name": o.name, "parameters": {**_params(o.parameters), "binary_data": True}}
                          for o in request.outputs]
    else:
        doc.setdefault("parameters", {})["binary_data_output"] = True
    header = json.dumps(doc, separators=(",", ":")).encode()
    return b"".join([header, *chunks]), len(header)


def infer_response(answer, request_id: str) -> pb.ModelInferResponse:
    """The ``ModelInferResponse`` of ``answer``: every output in ``raw_output_contents``."""
    model = answer.model
    response = pb.ModelInferResponse(model_name=model.name, model_version=model.version, id=request_id)
    for want, array, datatype in output_arrays(answer.results, answer.request.outputs, answer.labels):
        out = response.outputs.add(name=want.name, datatype=datatype)
        out.shape.extend(array.shape)
        response.raw_output_contents.append(tensor_bytes(array, datatype))
    return response


class Servicer(pb_grpc.GRPCInferenceServiceServicer):
    """The protocol's calls over one server's repository, engine and metrics."""

    def __init__(self, repository: Repository, engine: Engine, metrics: Metrics, server_info, access: Access | None = None):
        self.repository, self.engine, self.metrics, self.server_info = repository, engine, metrics, server_info
        self.access = access

    def _control(self, context, what: str) -> None:
        if self.access is None:
            raise ForbiddenError(f"{what} is refused: repository control is off on this server")
        token = next((v for k, v in context.invocation_metadata() or () if k == "authorization"), None)
        self.access.control_allowed(token, what)

    async def _fail(self, context, exc: Exception):
        if isinstance(exc, OnnxforgeError):
            await context.abort(status_of(exc), str(exc))
        log.error("gRPC request failed", exc_info=exc)
        await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=bool(self.repository.names()))

    async def ModelReady(self, request, context):
        try:
            self.repository.get(request.name, request.version or None)
        except NotFoundError:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(**self.server_info())

    async def ModelMetadata(self, request, context):
        try:
            doc = self.repository.metadata(self.repository.get(request.name, request.version or None))
        except OnnxforgeError as exc:
            return await self._fail(context, exc)
        doc.pop("parameters", None)
        return pb.ModelMetadataResponse(**doc)

    async def ModelInfer(self, request, context):
        try:
            with self.metrics.track("grpc") as note:
                model = self.repository.get(request.model_name, request.model_version or None)
                note.of(model)
                return await self.engine.respond(model, functools.partial(request_body, request), None,
                                                 functools.partial(infer_response, request_id=request.id),
                                                 size=request.ByteSize())
        except Exception as exc:  # noqa: BLE001 - every failure becomes the call's status
            return await self._fail(context, exc)

    async def RepositoryIndex(self, request, context):
        entries = self.repository.index(ready_only=request.ready)
        return pb.RepositoryIndexResponse(models=[pb.RepositoryIndexResponse.ModelIndex(**e) for e in entries])

    async def RepositoryModelLoad(self, request, context):
        try:
            self._control(context, f"RepositoryModelLoad of model '{clip(request.model_name)}'")
            await run_in_threadpool(self.repository.load, request.model_name)
        except Exception as exc:  # noqa: BLE001
            return await self._fail(context, exc)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request, context):
        try:
            self._control(context, f"RepositoryModelUnload of model '{clip(request.model_name)}'")
            self.repository.unload(request.model_name)
        except Exception as exc:  # noqa: BLE001
            return await self._fail(context, exc)
        return pb.RepositoryModelUnloadResponse()


class GrpcServer:
    """The gRPC server's life on the event loop: :meth:`start` binds and serves, :meth:`stop`
    finishes the calls in flight."""

    def __init__(self, servicer: Servicer, config: ServerConfig):
        self.servicer, self.config = servicer, config
        self.port: int | None = None
        self._server = None

    async def start(self) -> None:
        limit = self.config.max_body_bytes + (1 << 16)  # the tensors plus their descriptions
        server = aio.server(options=[("grpc.max_receive_message_length", limit),
                                     ("grpc.max_send_message_length", -1), ("grpc.so_reuseport", 0)])
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(self.servicer, server)
        host = self.config.host
        address = f"[{host}]:{self.config.grpc_port}" if ":" in host else f"{host}:{self.config.grpc_port}"
        try:
            self.port = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise ConfigError(f"cannot listen for gRPC on {address}: {exc}") from None
        if not self.port:
            raise ConfigError(f"cannot listen for gRPC on {address}")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=5)
            self._server = None
