"""The deployment files say what the CLI accepts: the KServe manifest and the Dockerfile's command
parse as `onnxforge serve` options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onnxforge.cli.serve import command

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


def _parses(args, models):
    assert args[0] == "serve"
    args = [str(models) if a == "/mnt/models" else a for a in args[1:]]
    ctx = command.make_context("serve", args)
    assert ctx.params["models"] == (str(models),)
    return ctx.params


def test_kserve_manifest_runs_the_server_as_a_v2_predictor(tmp_path):
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load((DEPLOY / "kserve-inferenceservice.yaml").read_text())
    assert doc["kind"] == "InferenceService" and doc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert doc["metadata"]["annotations"]["serving.kserve.io/protocol-version"] == "v2"
    container = doc["spec"]["predictor"]["containers"][0]
    params = _parses(container["args"], tmp_path)
    assert params["port"] == container["ports"][0]["containerPort"] == 8080 and params["host"] == "0.0.0.0"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"


def test_dockerfile_command_is_a_serve_command(tmp_path):
    lines = (DEPLOY / "Dockerfile").read_text().splitlines()
    assert json.loads(next(line for line in lines if line.startswith("ENTRYPOINT"))[len("ENTRYPOINT"):]) == ["onnxforge"]
    params = _parses(json.loads(next(line for line in lines if line.startswith("CMD"))[len("CMD"):]), tmp_path)
    assert params["watch"] and params["grpc_port"] == 8081 and params["port"] == 8080
