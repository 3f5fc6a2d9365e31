"""Load test for ``onnxforge serve``: concurrent Triton HTTP clients against a real server process.

    python benchmarks/serve_bench.py [--clients 16] [--requests 800] [--rows 1] [--hidden 128]
                                     [--json-tensors] [--max-batch 1 --max-batch 16] [--json]

It saves an MLP 64-128-10 (``--hidden`` for others), starts ``onnxforge serve`` on a free
loopback port once per server setting (dynamic batching off, then on), and has ``--clients``
threads, each with its own ``tritonclient.http`` client, send ``--requests`` requests in all
(after two untimed ones each, which open the connections). Every answer is checked against
in-process inference on the same rows. It prints requests per second and latency percentiles,
and the ratio against in-process ``Session.run`` on the same requests, measured in this process.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def percentiles(latencies: list[float]) -> dict:
    ms = np.asarray(latencies) * 1000
    return {f"p{q}": float(np.percentile(ms, q)) for q in (50, 90, 99)} | {"max": float(ms.max())}


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), or None where that is not readable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def start_server(model: Path, max_batch: int, max_delay_ms: float, extra: list[str]):
    cmd = [sys.executable, "-m", "onnxforge.cli.main", "serve", str(model), "--port", "0", "--device", "cpu",
           "--max-batch", str(max_batch), "--max-delay-ms", str(max_delay_ms), "--log-level", "warning", *extra]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    while line and not line.startswith("Serving"):
        line = proc.stderr.readline()
    if not line:
        proc.kill()
        raise SystemExit(f"the server did not start: {proc.stderr.read()}")
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep its stderr drained
    return proc, line.split(" on ", 1)[1].split(" ", 1)[0]


def load_test(url: str, requests: list[np.ndarray], expected: list[np.ndarray], clients: int, binary: bool,
              exact: bool, progress) -> dict:
    import tritonclient.http as httpclient

    host = url.split("://", 1)[1]
    latencies = [0.0] * len(requests)
    wrong, errors = [], []
    ready = threading.Barrier(clients + 1, timeout=120)

    def infer(client, x):
        item = httpclient.InferInput("x", list(x.shape), "FP32")
        item.set_data_from_numpy(x, binary_data=binary)
        out = httpclient.InferRequestedOutput("logits", binary_data=binary)
        return client.infer("mlp", [item], outputs=[out]).as_numpy("logits")

    def client_loop(index: int):
        client = httpclient.InferenceServerClient(host, connection_timeout=60, network_timeout=60)
        try:
            for _ in range(2):  # untimed: open the connection, start the server's worker threads
                infer(client, requests[0])
            ready.wait()
            for i in range(index, len(requests), clients):
                x = requests[i]
                start = time.perf_counter()
                got = infer(client, x)
                latencies[i] = time.perf_counter() - start
                same = np.array_equal(got, expected[i]) if exact else np.allclose(got, expected[i], rtol=1e-6, atol=1e-6)
                if not same:
                    wrong.append(i)
                progress.update(1)
        except Exception as exc:  # noqa: BLE001 - counted and reported
            errors.append(repr(exc))
        finally:
            client.close()

    threads = [threading.Thread(target=client_loop, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    try:
        ready.wait()
    except threading.BrokenBarrierError:
        pass  # a client failed before the timed part; its error is reported below
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    answered = len(requests) - sum(1 for v in latencies if v == 0.0)
    return {"requests": len(requests), "answered": answered, "correct": answered - len(wrong),
            "errors": errors[:3], "seconds": elapsed, "requests_per_s": len(requests) / elapsed,
            "latency_ms": percentiles([v for v in latencies if v > 0] or [0.0])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16, help="Concurrent clients (threads).")
    parser.add_argument("--requests", type=int, default=800, help="Requests in all, shared by the clients.")
    parser.add_argument("--rows", type=int, default=1, help="Rows per request.")
    parser.add_argument("--hidden", default="128", help="Hidden layer widths of the MLP, e.g. 1024,1024.")
    parser.add_argument("--max-batch", type=int, action="append", default=None,
                        help="Server settings to compare (repeatable); 1 means no dynamic batching. Default: 1 and 16.")
    parser.add_argument("--max-delay-ms", type=float, default=2.0, help="Batching delay for --max-batch > 1.")
    parser.add_argument("--json-tensors", action="store_true", help="Send and receive JSON tensors, not binary.")
    parser.add_argument("--server-arg", action="append", default=[], help="Extra argument for onnxforge serve.")
    parser.add_argument("--json", action="store_true", help="Print the results as one JSON object.")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.requests < 1 or args.rows < 1:
        parser.error("--clients, --requests and --rows must be at least 1")

    from tqdm import tqdm

    from onnxforge.graphs import mlp
    from onnxforge.runtime import load
    from onnxforge.runtime.modelio.files import save_model

    hidden = [int(h) for h in args.hidden.split(",")]
    name = f"MLP 64-{'-'.join(map(str, hidden))}-10"
    rng = np.random.default_rng(0)
    requests = [rng.standard_normal((args.rows, 64)).astype(np.float32) for _ in range(args.requests)]
    results = {"model": name, "clients": args.clients, "requests": args.requests, "rows": args.rows,
               "tensors": "json" if args.json_tensors else "binary", "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "mlp.onnx"
        save_model(mlp(64, hidden, 10, seed=0), model)
        session = load(model, device="cpu", warmup=True)
        expected = [session.run({"x": x})["logits"] for x in requests]
        start = time.perf_counter()  # the baseline: the same requests in process, one after another
        latencies = []
        for x in requests:
            t0 = time.perf_counter()
            session.run({"x": x})
            latencies.append(time.perf_counter() - t0)
        base = {"requests_per_s": len(requests) / (time.perf_counter() - start), "latency_ms": percentiles(latencies)}
        results["in_process"] = base
        for max_batch in args.max_batch or [1, 16]:
            proc, url = start_server(model, max_batch, args.max_delay_ms, args.server_arg)
            try:
                with tqdm(total=len(requests), desc=f"max-batch {max_batch}", unit="req", file=sys.stderr,
                          leave=False) as bar:
                    cpu_before = process_cpu_seconds(proc.pid)
                    run = load_test(url, requests, expected, args.clients, not args.json_tensors,
                                    exact=max_batch == 1, progress=bar)
                    cpu_after = process_cpu_seconds(proc.pid)
                run["server_cpu_us_per_request"] = (None if cpu_before is None or cpu_after is None else
                                                    (cpu_after - cpu_before) * 1e6 / len(requests))
            finally:
                proc.send_signal(signal.SIGTERM)
                run_exit = proc.wait(timeout=60)
            run.update(max_batch=max_batch, server_exit_code=run_exit,
                       ratio_to_in_process=run["requests_per_s"] / base["requests_per_s"])
            results["runs"].append(run)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0 if all(r["correct"] == r["requests"] for r in results["runs"]) else 1
    print(f"{args.clients} clients, {args.requests} requests of {args.rows} row(s), {results['tensors']} tensors, "
          f"{name}")
    header = (f"{'setting':<22}{'correct':>12}{'req/s':>10}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}"
              f"{'vs in-process':>15}{'server CPU/req':>16}")
    print(header)
    lat = base["latency_ms"]
    print(f"{'in-process run()':<22}{'-':>12}{base['requests_per_s']:>10.0f}{lat['p50']:>9.3f}{lat['p90']:>9.3f}"
          f"{lat['p99']:>9.3f}{lat['max']:>9.3f}{1.0:>14.3f}x{'-':>16}")
    for run in results["runs"]:
        lat = run["latency_ms"]
        name = "server, no batching" if run["max_batch"] == 1 else f"server, max-batch {run['max_batch']}"
        print(f"{name:<22}{run['correct']:>6}/{run['requests']:<5}{run['requests_per_s']:>10.0f}{lat['p50']:>9.3f}"
              f"{lat['p90']:>9.3f}{lat['p99']:>9.3f}{lat['max']:>9.3f}{run['ratio_to_in_process']:>14.3f}x"
              + (f"{run['server_cpu_us_per_request']:>13.0f} us" if run["server_cpu_us_per_request"] else f"{'-':>16}"))
        if run["errors"]:
            print(f"  errors: {run['errors']}")
        if run["server_exit_code"] != 0:
            print(f"  the server exited with {run['server_exit_code']} after SIGTERM")
    return 0 if all(r["correct"] == r["requests"] for r in results["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
