"""The Open Inference Protocol v2 server.

    app         ``Server``: models loaded, uvicorn started, stopped cleanly
    config      ``ServerConfig``: the ``onnxforge serve`` options and their checks
    models      what is served and under which names (files, folders, run folders)
    protocol    the connection layer: malformed HTTP, header size/time, idle and connection limits
    routes      the Starlette app: the protocol's endpoints
    handlers    errors to JSON answers, by the HTTP status each error class carries
    body        request bodies within limits, gzip/deflate, compressed answers
    oip, oip_json, datatypes, response   the wire format: requests, their JSON, tensors, responses
    scheduler   concurrency, the queue and dynamic batching
    inline      which small requests to quick models are answered on the event loop itself
    access      who may ask: repository control and its token, Host and Origin checks
    deadlines   model runs under deadlines: warm-ups, first runs, runs stopped at shutdown

May import: errors, modelio, ort, plugins, graphs, passes, inference, data, tasks.
"""

from onnxforge.runtime.server.app import Server, ServerConfig

__all__ = ["Server", "ServerConfig"]
