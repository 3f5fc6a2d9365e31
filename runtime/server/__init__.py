"""The Open Inference Protocol v2 server: request parsing, batching scheduler, the HTTP app.

May import: errors, modelio, ort, plugins, graphs, passes, inference, data, tasks.
"""

from onnxforge.runtime.server.app import Server, ServerConfig

__all__ = ["Server", "ServerConfig"]
