"""MLServer's runtime for an ONNX Runtime session: the peer ``serve_compare.py`` starts.

``serve_compare.py`` writes a model folder with ``model-settings.json`` (from
``serve_peer_mlserver.settings.json``: this runtime, the .onnx as its URI, ``parallel_workers``
0 so the session runs in the server's own process as onnxforge's does, and MLServer's adaptive
batching ``max_batch_size``/``max_batch_time`` when batching is compared) and runs
``mlserver start FOLDER`` with this file's folder on ``PYTHONPATH``. ``predict`` decodes with
MLServer's ``NumpyCodec`` and runs the session inline, as MLServer's own runtimes do. Runs in the
MLServer venv (``benchmarks/requirements-peers-mlserver.txt``), never in onnxforge's.
"""

from __future__ import annotations

import os

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxRuntime(MLModel):
    async def load(self) -> bool:
        path = await get_model_uri(self._settings)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("PEER_THREADS", "1"))
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.names = [o.name for o in self.session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {i.name: NumpyCodec.decode_input(i) for i in payload.inputs}
        values = self.session.run(self.names, feeds)
        return InferenceResponse(model_name=self.name, id=payload.id,
                                 outputs=[NumpyCodec.encode_output(n, v) for n, v in zip(self.names, values)])
