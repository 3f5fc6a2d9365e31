"""``onnxforge serve`` against the servers users would otherwise run, on the same ONNX Runtime
session and load: KServe's and MLServer's Python servers and a bare uvicorn/Starlette endpoint.

    python benchmarks/serve_compare.py [--rounds 3] [--seconds 1.5] [--model mlp|convnet] [--json OUT]

One command does it all: it saves the model (``mlp``: MLP 64-256-256-10 from ``onnxforge.graphs``;
``convnet``: a ConvNet on 1x28x28), makes the peers' virtualenvs once with ``uv``
(``.venv-peers/kserve`` and ``.venv-peers/mlserver`` from ``benchmarks/requirements-peers-*.txt``:
they pin conflicting packages, and neither is an onnxforge dependency), then in each round starts
every server in turn as a subprocess pinned to core 0 (``taskset``) with one intra-op thread,
checks its answers against in-process ONNX Runtime, drives it from this process pinned to core 1
(``serve_load.py``: closed-loop clients, one connection each) at batch 1 and 32 rows, concurrency
1, 8 and 32, over HTTP (v2 JSON tensors) and gRPC (``raw_input_contents``) where it has it, and
stops it. Dynamic batching is compared as its own server setting: onnxforge's ``--max-batch 1024
--max-delay-ms 2`` (rows: 32 requests of 32 rows) against MLServer's adaptive batching
(``max_batch_size`` 32 requests, ``max_batch_time`` 2 ms). The order of servers rotates each round; the table holds medians over rounds, with
``uptime``'s load before and after. The load generator's ceiling (a trivial server answering
without work) is measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from serve_load import http_request, run_grpc, run_http  # noqa: E402 - a sibling script

CORES = sorted(os.sched_getaffinity(0))
# the server on one core, the load generator on another; with a single core both share it
SERVER_CORE, CLIENT_CORE = (CORES[0], CORES[1]) if len(CORES) > 1 else (CORES[0], CORES[0])
BATCH_ARGS = {"max_batch": 32, "max_delay_ms": 2.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def uptime() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__() if Path("/proc/loadavg").exists() else "?"


def peer_python(peers: Path, name: str) -> Path:
    """The peer venv's python, made with uv from ``requirements-peers-NAME.txt`` when missing."""
    venv = peers / name
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"making the {name} venv in {venv} (once)", file=sys.stderr)
        subprocess.run(["uv", "venv", "-q", "-p", "python3.11", str(venv)], check=True)
        subprocess.run(["uv", "pip", "install", "-q", "-r", str(HERE / f"requirements-peers-{name}.txt")], check=True,
                       env={**os.environ, "VIRTUAL_ENV": str(venv)})
    return python


def make_model(kind: str, folder: Path) -> tuple[Path, str, str, tuple]:
    from onnxforge.graphs import convnet, mlp
    from onnxforge.runtime.modelio.files import save_model

    if kind == "mlp":
        model, row = mlp(64, [256, 256], 10, seed=0), (64,)
    else:
        model, row = convnet((1, 28, 28), channels=(16, 32), dense=(64,), classes=10, seed=0), (1, 28, 28)
    path = folder / f"{kind}.onnx"
    save_model(model, path)
    return path, model.graph.input[0].name, model.graph.output[0].name, row


class Servers:
    """How to start each contestant: ``start(name, model, http, grpc)`` -> Popen (pinned to core 0)."""

    def __init__(self, peers: Path, threads: int, workdir: Path, baseline: Path | None = None):
        self.peers, self.threads, self.workdir, self.baseline = peers, threads, workdir, baseline

    def command(self, name: str, model: Path, http: int, grpc: int) -> tuple[list, dict]:
        env = {"OMP_NUM_THREADS": str(self.threads), "PEER_THREADS": str(self.threads), "PYTHONUNBUFFERED": "1"}
        if name.startswith("onnxforge"):
            # served by this runner's own Python (its onnxforge)
            cmd = [sys.executable, "-m", "onnxforge.cli.main", "serve", str(model), "--port", str(http),
                   "--grpc-port", str(grpc), "--device", "cpu", "--threads", str(self.threads), "--log-level", "warning"]
            if "-base" in name:  # another checkout's onnxforge (before/after), in this venv
                if self.baseline is None:
                    raise SystemExit(f"{name} needs --baseline SRC (a checkout's src/ folder)")
                env["PYTHONPATH"] = str(self.baseline)
            if name.endswith("batching"):  # --max-batch counts rows, MLServer's max_batch_size requests:
                # 32 requests of the largest size here (32 rows) either way
                cmd += ["--max-batch", str(BATCH_ARGS["max_batch"] * 32), "--max-delay-ms", str(BATCH_ARGS["max_delay_ms"])]
            return cmd, env
        if name == "kserve":
            return [str(peer_python(self.peers, "kserve")), str(HERE / "serve_peer_kserve.py"), str(model),
                    "--http_port", str(http), "--grpc_port", str(grpc), "--threads", str(self.threads)], env
        if name == "uvicorn":
            return [str(peer_python(self.peers, "mlserver")), str(HERE / "serve_peer_uvicorn.py"), str(model),
                    "--port", str(http), "--threads", str(self.threads)], env
        if name.startswith("mlserver"):
            folder = self.workdir / name
            shutil.rmtree(folder, ignore_errors=True)
            (folder / model.stem).mkdir(parents=True)
            settings = json.loads((HERE / "serve_peer_mlserver.settings.json").read_text())
            settings.update(name=model.stem, parameters={"uri": str(model)})
            if name.endswith("batching"):
                settings.update(max_batch_size=BATCH_ARGS["max_batch"], max_batch_time=BATCH_ARGS["max_delay_ms"] / 1000)
            (folder / model.stem / "model-settings.json").write_text(json.dumps(settings))
            (folder / "settings.json").write_text(json.dumps({
                "http_port": http, "grpc_port": grpc, "metrics_port": free_port(), "parallel_workers": 0,
                "debug": False, "host": "127.0.0.1", "load_models_at_startup": True}))
            python = peer_python(self.peers, "mlserver")
            return [str(python.parent / "mlserver"), "start", str(folder)], {**env, "PYTHONPATH": str(HERE)}
        if name == "trivial":
            return [sys.executable, str(HERE / "serve_load.py"), "--trivial", str(http), str(grpc),
                    str(self.workdir / "answer.json"), str(self.workdir / "answer.pb")], env
        raise ValueError(name)

    def start(self, name: str, model: Path) -> tuple[subprocess.Popen, int, int]:
        http, grpc = free_port(), free_port()
        cmd, env = self.command(name, model, http, grpc)
        logfile = self.workdir / f"{name}.log"
        seen = logfile.stat().st_size if logfile.exists() else 0  # earlier rounds' lines are not this start's
        log = open(logfile, "ab")
        proc = subprocess.Popen(["taskset", "-c", str(SERVER_CORE), *cmd], env={**os.environ, **env}, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}: see {self.workdir / (name + '.log')}")
            if name == "trivial" and b"ready" in logfile.read_bytes()[seen:]:
                return proc, http, grpc
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        return proc, http, grpc
            except OSError:
                time.sleep(0.2)
        stop(proc)
        raise RuntimeError(f"{name} did not become ready in 90 s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its threads so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pid(proc: subprocess.Popen) -> int:
    """The server's own process under ``taskset`` (which execs it: the same pid)."""
    return proc.pid


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def bodies(model_name: str, in_name: str, row: tuple, rows: int):
    """The HTTP JSON body and gRPC message (bytes) of one request of ``rows`` rows, and its array."""
    from onnxforge.runtime.server.grpc import grpc_service_pb2 as pb

    x = np.random.default_rng(rows).standard_normal((rows, *row)).astype(np.float32)
    doc = {"inputs": [{"name": in_name, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    message = pb.ModelInferRequest(model_name=model_name)
    message.inputs.add(name=in_name, datatype="FP32", shape=list(x.shape))
    message.raw_input_contents.append(x.tobytes())
    return json.dumps(doc).encode(), message.SerializeToString(), x


def check_answers(name: str, http: int, grpc: int | None, model_name: str, out_name: str, body: bytes,
                  message: bytes, expected: np.ndarray) -> None:
    """One request each way, its outputs compared with in-process ONNX Runtime's."""
    import grpc as grpclib

    from onnxforge.runtime.server.grpc import grpc_service_pb2 as pb

    req = urllib.request.Request(f"http://127.0.0.1:{http}/v2/models/{model_name}/infer", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        doc = json.loads(r.read())
    out = next(o for o in doc["outputs"] if o["name"] == out_name)
    got = np.asarray(out["data"], np.float32).reshape(out["shape"])
    if not np.allclose(got, expected, rtol=1e-4, atol=1e-5):
        raise RuntimeError(f"{name} answered HTTP with other values than ONNX Runtime in process")
    if grpc is None:
        return
    with grpclib.insecure_channel(f"127.0.0.1:{grpc}") as channel:
        raw = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")(message, timeout=30)
    answer = pb.ModelInferResponse.FromString(raw)
    position = [o.name for o in answer.outputs].index(out_name)
    values = (np.frombuffer(answer.raw_output_contents[position], np.float32) if answer.raw_output_contents
              else np.asarray(answer.outputs[position].contents.fp32_contents, np.float32))  # KServe: typed contents
    got = values.reshape(list(answer.outputs[position].shape))
    if not np.allclose(got, expected, rtol=1e-4, atol=1e-5):
        raise RuntimeError(f"{name} answered gRPC with other values than ONNX Runtime in process")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["mlp", "convnet"], default="mlp")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.5, help="Timed seconds per load (after 0.3 s warm-up).")
    parser.add_argument("--servers", default="onnxforge,kserve,mlserver,uvicorn,onnxforge-batching,mlserver-batching")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--protocols", default="http,grpc")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads of every server.")
    parser.add_argument("--peers", type=Path, default=ROOT / ".venv-peers", help="Where the peers' venvs live.")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="src/ of another onnxforge checkout, served as onnxforge-base[-batching] (before/after).")
    parser.add_argument("--no-ceiling", action="store_true", help="Skip the load generator's ceiling.")
    parser.add_argument("--json", type=Path, default=None, help="Write every measurement here.")
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {CLIENT_CORE})
    from onnxforge.runtime import load

    servers = args.servers.split(",") + ([] if args.no_ceiling else ["trivial"])
    batches = [int(b) for b in args.batches.split(",")]
    results: dict = {"model": args.model, "load_before": uptime(), "servers": servers, "runs": [], "failures": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path, in_name, out_name, row = make_model(args.model, work)
        session = load(path, device="cpu", threads=args.threads)
        loads = {b: bodies(path.stem, in_name, row, b) for b in batches}
        expected = {b: session.run({in_name: loads[b][2]})[out_name] for b in batches}
        from onnxforge.runtime.server.grpc import grpc_service_pb2 as pb

        (work / "answer.json").write_text(json.dumps({"model_name": path.stem, "outputs": [
            {"name": out_name, "datatype": "FP32", "shape": [1, 10], "data": expected[batches[0]][:1].ravel().tolist()}]}))
        (work / "answer.pb").write_bytes(pb.ModelInferResponse(model_name=path.stem).SerializeToString())
        starter = Servers(args.peers, args.threads, work, args.baseline)
        for name in servers:  # make the venvs before any timing
            starter.command(name, path, 0, 0)
        for r in range(args.rounds):
            order = servers[r % len(servers):] + servers[: r % len(servers)]
            for name in order:
                try:
                    measure(starter, name, path, r, args, loads, expected, out_name, results)
                except Exception as exc:  # noqa: BLE001 - one server failing leaves the others' numbers
                    results["failures"].append(f"round {r} {name}: {exc!r}"[:500])
                    print(f"round {r} {name} FAILED: {exc!r}", file=sys.stderr, flush=True)
                if args.json:
                    args.json.write_text(json.dumps(results, indent=1))
    results["load_after"] = uptime()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print_table(results)
    for failure in results["failures"]:
        print(f"FAILED: {failure}")
    return 1 if results["failures"] else 0


def measure(starter: Servers, name: str, path: Path, r: int, args, loads: dict, expected: dict, out_name: str,
            results: dict) -> None:
    """One server started, its answers checked, every load run against it, and stopped."""
    import uvloop

    proc, http, grpc = starter.start(name, path)
    try:
        has_grpc = name != "uvicorn"
        if name != "trivial":
            for b in loads:
                check_answers(name, http, grpc if has_grpc else None, path.stem, out_name, loads[b][0], loads[b][1],
                              expected[b])
        for proto in args.protocols.split(","):
            if proto == "grpc" and not has_grpc:
                continue
            for b in loads:
                for c in [int(c) for c in args.concurrency.split(",")]:
                    cpu0 = cpu_seconds(server_pid(proc))
                    if proto == "http":
                        request = http_request("127.0.0.1", http, f"/v2/models/{path.stem}/infer", loads[b][0])
                        run = uvloop.run(run_http("127.0.0.1", http, request, c, 0.3, args.seconds))
                    else:
                        run = uvloop.run(run_grpc(f"127.0.0.1:{grpc}", loads[b][1], c, 0.3, args.seconds))
                    cpu = cpu_seconds(server_pid(proc)) - cpu0
                    run.update(server=name, protocol=proto, batch=b, concurrency=c, round=r, load=uptime(),
                               cpu_us=cpu * 1e6 / max(run.pop("answered"), 1))
                    results["runs"].append(run)
                    print(f"round {r} {name:<19}{proto:<5} batch {b:<3} conc {c:<3} {run['rps']:8.0f} req/s "
                          f"p50 {run['p50_ms']:7.2f} p99 {run['p99_ms']:7.2f} ms cpu {run['cpu_us']:6.0f} us/req "
                          f"errors {run['errors']} load {run['load']}", file=sys.stderr, flush=True)
    finally:
        stop(proc)


def medians(results: dict) -> dict:
    groups: dict = {}
    for run in results["runs"]:
        groups.setdefault((run["server"], run["protocol"], run["batch"], run["concurrency"]), []).append(run)
    return {k: {m: statistics.median(r[m] for r in v) for m in ("rps", "p50_ms", "p99_ms", "cpu_us")} | {
        "errors": sum(r["errors"] for r in v)} for k, v in groups.items()}


def print_table(results: dict) -> None:
    table = medians(results)
    servers = results["servers"]
    print(f"model {results['model']}, load (1/5/15 min) before {results['load_before']} after {results['load_after']}; "
          f"server on core {SERVER_CORE}, client on core {CLIENT_CORE}; medians of "
          f"{len({r['round'] for r in results['runs']})} rounds; each cell: req/s, p99 ms, server CPU us per request")
    keys = sorted({k[1:] for k in table}, key=lambda k: (k[0], k[1], k[2]))
    print(f"{'proto':<5}{'batch':>6}{'conc':>5} " + "".join(f"{s:>24}" for s in servers))
    for proto, batch, conc in keys:
        cells = []
        for s in servers:
            m = table.get((s, proto, batch, conc))
            cells.append(f"{'-':>24}" if m is None else
                         f"{m['rps']:>9.0f}{m['p99_ms']:>7.1f}{m['cpu_us']:>7.0f}" + ("!" if m["errors"] else " "))
        print(f"{proto:<5}{batch:>6}{conc:>5} " + "".join(cells))


if __name__ == "__main__":
    sys.exit(main())
