"""``onnxforge serve``: models over HTTP with the Open Inference Protocol v2."""

from __future__ import annotations

import logging
import os
import sys

import click

from onnxforge.cli._common import DEVICE
from onnxforge.runtime.server.app import Server, ServerConfig

LOG_LEVELS = click.Choice(["debug", "info", "warning", "error"], case_sensitive=False)


class Host(click.ParamType):
    """A host name or IP address to listen on (no scheme, no port)."""

    name = "HOST"

    def convert(self, value, param, ctx):
        text = str(value).strip()
        if not text or any(c in text for c in "/ ") or text.count(":") == 1:
            self.fail(f"expected a host name or IP address such as 127.0.0.1; got {value!r}", param, ctx)
        return text.strip("[]")


@click.command("serve")
@click.argument("models", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--host", type=Host(), default="127.0.0.1", show_default=True,
              help="Address to listen on; the default accepts connections from this machine only.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on; 0 picks a free one and prints it.")
@click.option("--device", type=DEVICE, default="auto", show_default=True, help="Where to run the models.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="ONNX Runtime intra-op threads per model run (default: ONNX Runtime's choice).")
@click.option("--max-concurrency", type=click.IntRange(min=1), default=None,
              help="Model runs executed in parallel (default: the CPU cores this process may use, as taskset sets them).")
@click.option("--max-queue", type=click.IntRange(min=0), default=256, show_default=True,
              help="Requests that may wait for a run; more get HTTP 503.")
@click.option("--max-batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Rows that dynamic batching may merge into one run; 1 turns batching off.")
@click.option("--max-delay-ms", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="How long dynamic batching waits for more requests after the first one.")
@click.option("--max-body-mb", type=click.FloatRange(min=0, min_open=True), default=64.0, show_default=True,
              help="Largest request body accepted; larger ones get HTTP 400.")
@click.option("--body-timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="Seconds a request body may take to arrive whole; slower ones get HTTP 408.")
@click.option("--max-header-kb", type=click.FloatRange(min=0, min_open=True), default=64.0, show_default=True,
              help="Largest request line and headers accepted; larger ones get HTTP 431.")
@click.option("--header-timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Seconds a request's line and headers may take to arrive; slower ones get HTTP 408.")
@click.option("--idle-timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="Seconds a kept-alive connection may wait for its next request before it is closed.")
@click.option("--max-connections", type=click.IntRange(min=2), default=None,
              help="Connections held at once; a new one beyond it closes the oldest idle one, or gets HTTP 503 "
                   "(default: below the process's open-file limit, at most 4096).")
@click.option("--no-warmup", is_flag=True, help="Do not run each model once on zeros before listening.")
@click.option("--watch", is_flag=True,
              help="Load changed and new model files while serving: each is checked (loads, warms up, same inputs "
                   "and outputs or a new version; a run folder's epoch only if its validation metric is no worse) "
                   "and swapped in without failing a request; a broken file leaves the served model.")
@click.option("--watch-interval", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Seconds between --watch's looks at the model folders.")
@click.option("--grpc-port", type=click.IntRange(0, 65535), default=None,
              help="Also serve the protocol's gRPC service (inference.GRPCInferenceService) on this port.")
@click.option("--repository-control", is_flag=True,
              help="Allow loading and unloading models (POST /v2/repository/models/NAME/load, /unload and gRPC's "
                   "RepositoryModelLoad/Unload); off, they are refused with 403.")
@click.option("--repository-token", envvar="ONNXFORGE_REPOSITORY_TOKEN", default=None, metavar="TOKEN",
              help="With --repository-control: load and unload need 'Authorization: Bearer TOKEN' "
                   "[env: ONNXFORGE_REPOSITORY_TOKEN, which keeps it out of the process list].")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="Also answer requests whose Host is NAME (repeatable; '*': any). A server on a loopback address "
                   "answers only loopback Hosts and localhost; behind a proxy, name the Host the proxy sends.")
@click.option("--allow-origin", "allow_origins", multiple=True, metavar="ORIGIN",
              help="Also answer browser requests from ORIGIN (https://app.example.com; repeatable); requests from "
                   "other sites' pages are refused.")
@click.option("--warmup-timeout", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="Seconds a model's warm-up (its first run) may take; a model that runs longer is refused.")
@click.option("--run-timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds a request's model run may take; a run past it is stopped and answered 504 [default: no "
                   "limit; a model's first run always has the --warmup-timeout].")
@click.option("--shutdown-timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="On SIGTERM or Ctrl+C, seconds the requests in flight get to finish; model runs still going "
                   "then are stopped.")
@click.option("--adapters", "adapters", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Serve the one base MODEL with every DIR/NAME.onnx_adapter (LoRA adapters, e.g. a run's "
                   "adapters.onnx_adapter) over one session; a request picks one with {\"parameters\": {\"adapter\": "
                   "\"NAME\"}}, without it the base answers. With --watch, files that come and go are added and dropped.")
@click.option("--log-level", type=LOG_LEVELS, default="info", show_default=True,
              help="Log detail on stderr; debug logs one line per request.")
def command(models, host, port, device, threads, max_concurrency, max_queue, max_batch, max_delay_ms,
            max_body_mb, body_timeout, max_header_kb, header_timeout, idle_timeout, max_connections, no_warmup,
            watch, watch_interval, grpc_port, repository_control, repository_token, allow_hosts, allow_origins,
            warmup_timeout, run_timeout, shutdown_timeout, adapters, log_level):
    """Serve MODELS (.onnx files, or folders whose every .onnx is served) over HTTP with the Open
    Inference Protocol v2, the REST API of KServe and Triton: GET /v2/health/live,
    /v2/health/ready, /v2, /v2/models/NAME, /v2/models/NAME/ready and POST
    /v2/models/NAME/infer, with JSON or binary tensors, the model repository extension (POST
    /v2/repository/index, and with --repository-control /v2/repository/models/NAME/load and
    /unload) and GET /metrics. A
    folder may be a Triton model repository (NAME/VERSION/model.onnx); a model's name is its file
    name without .onnx; a training run folder serves its trained model.onnx under the folder's
    name. SIGTERM or Ctrl+C stops the server after the requests in flight are answered."""
    level = getattr(logging, log_level.upper())
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("uvicorn", "uvicorn.error", "asyncio"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    options = dict(host=host, port=port, device=device, threads=threads, max_queue=max_queue,
                   max_batch=max_batch, max_delay_ms=max_delay_ms, max_body_mb=max_body_mb, body_timeout_s=body_timeout,
                   max_header_kb=max_header_kb, header_timeout_s=header_timeout, idle_timeout_s=idle_timeout,
                   warmup=not no_warmup, watch=watch, watch_interval_s=watch_interval, grpc_port=grpc_port,
                   repository_control=repository_control, repository_token=repository_token,
                   allowed_hosts=tuple(allow_hosts), allowed_origins=tuple(allow_origins),
                   warmup_timeout_s=warmup_timeout, run_timeout_s=run_timeout,
                   shutdown_timeout_s=shutdown_timeout, adapters=adapters)
    if max_concurrency:
        options["max_concurrency"] = max_concurrency
    if max_connections:
        options["max_connections"] = max_connections
    server = Server(list(models), ServerConfig(**options))

    def listening(srv):
        names = ", ".join(sorted(srv.models))
        batching = f", batching up to {max_batch} rows within {max_delay_ms:g} ms" if max_batch > 1 else ""
        extra = f", gRPC on port {grpc_port}" if grpc_port is not None else ""
        extra += ", watching the model files" if watch and adapters is None else ""
        if srv.adapters is not None:
            served = srv.adapters.session.adapters
            extra += (f", {len(served)} adapter(s) from {adapters} ({', '.join(sorted(served)) or 'none yet'})"
                      + (", watching the folder" if watch else ""))
        click.echo(f"Serving {len(srv.models)} model(s) ({names}) on {srv.url} with the Open Inference "
                   f"Protocol v2{batching}{extra}; SIGTERM or Ctrl+C stops it.", err=True)

    server.run(on_listening=listening)
    click.echo("Server stopped.", err=True)
    if server.scheduler.runs.active:
        # a run ONNX Runtime could not stop would hold the interpreter's exit (it joins its worker
        # threads): the process ends without waiting for it
        click.echo(f"({server.scheduler.runs.active} model run(s) did not stop; exiting without them)", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
