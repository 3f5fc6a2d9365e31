"""`onnxforge serve`: option checks with one-line errors, and a real server process that answers,
logs each request at debug level and exits 0 on SIGTERM."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.request

JSON = {"Content-Type": "application/json"}  # urllib sends a form type otherwise




def test_help_names_the_protocol_and_endpoints(cli_run):
    result = cli_run("serve", "--help")
    assert result.exit_code == 0
    assert "Open Inference Protocol v2" in result.output and "/v2/models/NAME/infer" in result.output


def test_bad_arguments_end_with_one_line_and_nonzero_exit(cli_run, tmp_path, model_dir):
    result = cli_run("serve", tmp_path / "missing.onnx")
    assert result.exit_code == 2 and "does not exist" in result.output
    result = cli_run("serve", tmp_path)  # an empty folder
    assert result.exit_code == 1 and result.output.strip() == f"Error: folder '{tmp_path}' holds no .onnx files to serve"
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(model_dir / "digits.onnx", other / "digits.onnx")
    result = cli_run("serve", model_dir, other / "digits.onnx")
    assert result.exit_code == 1 and "Error: two models would be named 'digits'" in result.output
    assert "Traceback" not in result.output
    result = cli_run("serve", model_dir, "--host", "http://127.0.0.1")
    assert result.exit_code == 2 and "expected a host name or IP address" in result.output
    result = cli_run("serve", model_dir, "--max-batch", "0")
    assert result.exit_code == 2 and "--max-batch" in result.output


def test_a_taken_port_is_a_one_line_error(cli_run, model_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = cli_run("serve", model_dir, "--port", port, "--no-warmup")
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: cannot listen on 127.0.0.1 port {port}: ")


def test_server_process_answers_and_exits_cleanly_on_sigterm(model_dir):
    proc = subprocess.Popen(
        [sys.executable, "-m", "onnxforge.cli.main", "serve", str(model_dir), "--port", "0", "--device", "cpu",
         "--log-level", "debug"],
        stderr=subprocess.PIPE, text=True,
    )
    killer = threading.Timer(120, proc.kill)  # a bound on the whole test, whatever happens
    killer.start()
    try:
        lines = []
        while not any(line.startswith("Serving") for line in lines):
            line = proc.stderr.readline()
            assert line, "the server exited before listening:\n" + "".join(lines)
            lines.append(line)
        url = lines[-1].split(" on ", 1)[1].split(" ", 1)[0]
        assert url.startswith("http://127.0.0.1:")
        assert "Serving 2 model(s) (digits, mixed)" in lines[-1]
        with urllib.request.urlopen(url + "/v2/health/live", timeout=30) as response:
            assert response.status == 200
        body = json.dumps({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]})
        with urllib.request.urlopen(urllib.request.Request(url + "/v2/models/digits/infer", data=body.encode(), headers=JSON),
                                    timeout=30) as response:
            assert json.loads(response.read())["outputs"][0]["shape"] == [1, 10]
        proc.send_signal(signal.SIGTERM)
        rest = proc.stderr.read()
        assert proc.wait(timeout=60) == 0
    finally:
        killer.cancel()
        if proc.poll() is None:
            proc.kill()
    assert "GET /v2/health/live 200" in rest and "POST /v2/models/digits/infer 200" in rest
    assert rest.rstrip().endswith("Server stopped.") and "Traceback" not in rest
