"""A bare Starlette endpoint under uvicorn on an ONNX Runtime session: the peer ``serve_compare.py``
starts, standing for the server a user would write in twenty lines.

    python serve_peer_uvicorn.py MODEL.onnx --port P [--threads 1]

``POST /v2/models/NAME/infer`` takes the v2 protocol's JSON tensors (``data`` lists) and answers
the same way; the session runs on Starlette's thread pool, so the event loop stays free. No
checks beyond what json and numpy do, no limits, no metrics. Runs in any venv with
onnxruntime, starlette and uvicorn (the MLServer venv, by default).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.routing import Route

DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}


def make_app(path: str, threads: int) -> Starlette:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    model = Path(path).stem

    async def infer(request):
        doc = json.loads(await request.body())
        feeds = {i["name"]: np.asarray(i["data"], DTYPES[i["datatype"]]).reshape(i["shape"]) for i in doc["inputs"]}
        values = await run_in_threadpool(session.run, names, feeds)
        outputs = [{"name": n, "datatype": "FP32", "shape": list(v.shape), "data": v.ravel().tolist()}
                   for n, v in zip(names, values)]
        return Response(json.dumps({"model_name": model, "outputs": outputs}), media_type="application/json")

    async def ready(request):
        return Response(status_code=200)

    return Starlette(routes=[Route(f"/v2/models/{model}/infer", infer, methods=["POST"]),
                             Route("/v2/health/ready", ready)])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    uvicorn.run(make_app(args.model, args.threads), host="127.0.0.1", port=args.port, log_level="warning",
                access_log=False)
