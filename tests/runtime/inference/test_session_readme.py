"""The README's "Serving" section runs as written: the ten-line embedding example, and the serve
command (on a free port instead of 8000) against the model the example saved."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

README = Path(__file__).resolve().parents[3] / "README.md"


def serving_section() -> str:
    text = README.read_text()
    assert "\n## Serving\n" in text
    return text.split("\n## Serving\n", 1)[1].split("\n## ", 1)[0]


def test_embedding_example_runs_as_written(tmp_path):
    code = re.search(r"```python\n(.*?)```", serving_section(), re.S).group(1)
    assert len([line for line in code.splitlines() if line.strip()]) == 10
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first.startswith("(10000, 3) ['cat', 'dog', 'bird'] [")
    assert re.fullmatch(r"DeviceArray\(float32 \[8, 3\] on (cpu|cuda)\) \[.*\]", second)
    assert (tmp_path / "pets.onnx").is_file()


def test_serve_command_runs_as_written(tmp_path):
    test_embedding_example_runs_as_written(tmp_path)  # writes pets.onnx
    line = re.search(r"```bash\n(onnxforge serve [^&#\n]*)", serving_section()).group(1).strip()
    args = shlex.split(line)
    assert args[:2] == ["onnxforge", "serve"] and args[args.index("--port") + 1] == "8000"
    args[args.index("--port") + 1] = "0"  # a free port: 8000 may be taken where the tests run
    proc = subprocess.Popen([sys.executable, "-m", "onnxforge.cli.main", *args[1:]], cwd=tmp_path,
                            stderr=subprocess.PIPE, text=True)
    killer = threading.Timer(120, proc.kill)
    killer.start()
    try:
        line = proc.stderr.readline()
        while line and not line.startswith("Serving"):
            line = proc.stderr.readline()
        assert line.startswith("Serving 1 model(s) (pets) on http://127.0.0.1:")
        url = line.split(" on ", 1)[1].split(" ", 1)[0]
        with urllib.request.urlopen(url + "/v2/models/pets/ready", timeout=30) as response:
            assert response.status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        killer.cancel()
        if proc.poll() is None:
            proc.kill()
