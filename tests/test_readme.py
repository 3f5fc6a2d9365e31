"""The README is the user's manual, and its examples run as written: every ``bash`` and ``python``
block, in order, in one fresh folder, with the installed ``onnxforge`` on PATH (the set-up blocks,
which make virtual environments, and the benchmark, which takes minutes, aside). The first of them,
``onnxforge samples data``, writes every file the others use.

One liberty is taken: the serving examples' port 8000 becomes a free port, since other programs on
a test machine may hold 8000. ``ONNXFORGE_README_FROM=N`` starts at block N (for debugging)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.M | re.S)


def readme_blocks(text: str | None = None) -> list[tuple[str, str]]:
    """``(language, code)`` of every bash and python block the walk runs, in README order."""
    text = README.read_text(encoding="utf-8") if text is None else text
    blocks = []
    for lang, code in BLOCK.findall(text):
        if "python3 -m venv" in code or "onnxforge bench" in code:  # set-up and the benchmark
            continue
        blocks.append((lang, code))
    return blocks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_readme_blocks_are_found():
    blocks = readme_blocks()
    assert blocks[0] == ("bash", "onnxforge samples data\n")
    assert len(blocks) >= 12 and {lang for lang, _ in blocks} == {"bash", "python"}


@pytest.mark.slow
@pytest.mark.torch  # the conversion example saves a torch.export program
def test_every_readme_example_runs_as_written_in_one_fresh_folder(tmp_path):
    if shutil.which("curl") is None:
        pytest.fail("the serving examples need curl (apt-get install curl)")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONUNBUFFERED": "1"}
    env.pop("CI", None)  # the examples are a user's, not the test suite's
    first = int(os.environ.get("ONNXFORGE_README_FROM", "0"))
    port = str(_free_port())
    timings = []
    for i, (lang, code) in enumerate(readme_blocks()):
        if i < first:
            continue
        code = code.replace("8000", port)
        argv = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
        start = time.monotonic()
        log = tmp_path.parent / f"readme-block-{i}.log"  # a file, not a pipe: a server left behind cannot hold it open
        with open(log, "w") as out_file:
            proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=out_file, stderr=subprocess.STDOUT, text=True,
                                    start_new_session=True)
            try:
                proc.wait(timeout=900)
            finally:
                try:  # a server the block left in the background
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        out = log.read_text(errors="replace")
        timings.append(f"block {i} ({lang}): {time.monotonic() - start:.0f} s")
        assert proc.returncode == 0, f"README block {i} ({lang}) failed with exit code {proc.returncode}:\n{code}\n--- output:\n{out[-4000:]}"
        assert "Traceback" not in out, f"README block {i} printed a traceback:\n{out[-4000:]}"
    print("\n".join(timings))
