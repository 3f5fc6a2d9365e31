"""KServe's Python model server on an ONNX Runtime session: the peer ``serve_compare.py`` starts.

    python serve_peer_kserve.py MODEL.onnx --http_port P --grpc_port G [--threads 1]

A ``kserve.Model`` whose ``predict`` runs the session the way KServe's own examples do (a plain
``def predict``: KServe calls it on its event loop), on the v2 protocol (REST ``/v2/models/NAME/infer``,
gRPC ``GRPCInferenceService``). The model is named after its file. Runs in the KServe venv
(``benchmarks/requirements-peers-kserve.txt``), never in onnxforge's.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import kserve
import numpy as np
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse


class OnnxModel(kserve.Model):
    def __init__(self, name: str, path: str, threads: int):
        super().__init__(name)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.ids = itertools.count()  # KServe's REST answer needs an id; requests may carry none
        self.load()

    def load(self) -> bool:
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        feeds = {i.name: i.as_numpy() for i in payload.inputs}
        names = [o.name for o in self.session.get_outputs()]
        values = self.session.run(names, feeds)
        outputs = []
        for name, value in zip(names, values):
            out = InferOutput(name=name, shape=list(value.shape), datatype="FP32")
            out.set_data_from_numpy(np.ascontiguousarray(value, np.float32), binary_data=False)
            outputs.append(out)
        return InferResponse(model_name=self.name, infer_outputs=outputs, response_id=payload.id or str(next(self.ids)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("model")
    parser.add_argument("--threads", type=int, default=1)
    args, _ = parser.parse_known_args()
    model = OnnxModel(Path(args.model).stem, args.model, args.threads)
    kserve.ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, workers=1,
                       enable_docs_url=False).start([model])
