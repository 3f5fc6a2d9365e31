"""Who may ask what: repository control off by default (403), on with --repository-control and an
optional token (401 without it), over REST and gRPC alike; readiness false when nothing is
served; a loopback-bound server answers only loopback Hosts (DNS rebinding) and no other site's
Origin; the checks are fuzzed with arbitrary header values."""

from __future__ import annotations

import http.client
import json
import os

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnxforge.runtime.errors import ConfigError, ForbiddenError
from onnxforge.runtime.server.access import Access, is_loopback
from onnxforge.runtime.server.app import ServerConfig
from onnxforge.runtime.server.config import check_config
from onnxforge.runtime.server.grpc import grpc_service_pb2 as pb
from onnxforge.runtime.server.grpc import grpc_service_pb2_grpc as pb_grpc

# ONNXFORGE_FUZZ_SCALE=N runs N times the examples from a random seed (CI: 1, fixed seed)
SCALE = int(os.environ.get("ONNXFORGE_FUZZ_SCALE", "1"))


def request(srv, method: str, path: str, headers=None, body: bytes | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", srv.address[1], timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def error(raw: bytes) -> str:
    return json.loads(raw)["error"]


def test_repository_control_is_off_by_default_over_rest_and_grpc(model_dir, start_server):
    srv = start_server([model_dir], grpc_port=0)
    status, raw = request(srv, "POST", "/v2/repository/models/digits/unload")
    assert status == 403 and "repository control is off" in error(raw) and "--repository-control" in error(raw)
    status, raw = request(srv, "POST", "/v2/repository/models/digits/load")
    assert status == 403
    with grpc.insecure_channel(srv.grpc_address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="digits"), timeout=30)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert stub.ModelReady(pb.ModelReadyRequest(name="digits"), timeout=30).ready
    assert request(srv, "GET", "/v2/models/digits/ready")[0] == 200  # still served
    assert request(srv, "POST", "/v2/repository/index")[0] == 200  # reading the index stays open


def test_a_token_is_needed_when_given_and_readiness_follows_what_is_served(model_dir, start_server):
    srv = start_server([model_dir / "digits.onnx"], grpc_port=0, repository_control=True, repository_token="s3cret")
    path = "/v2/repository/models/digits/unload"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}, {"Authorization": "Basic s3cret"}):
        status, raw = request(srv, "POST", path, headers)
        assert status == 401 and "Authorization: Bearer <token>" in error(raw), headers
    assert request(srv, "GET", "/v2/health/ready")[0] == 200
    with grpc.insecure_channel(srv.grpc_address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="digits"), timeout=30,
                                       metadata=[("authorization", "Bearer nope")])
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=30).ready
        assert request(srv, "POST", path, {"Authorization": "Bearer s3cret"})[0] == 200
        # nothing served: not ready (live still), over both protocols
        assert request(srv, "GET", "/v2/health/ready")[0] == 503
        assert request(srv, "GET", "/v2/health/live")[0] == 200
        assert not stub.ServerReady(pb.ServerReadyRequest(), timeout=30).ready
        stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="digits"), timeout=60,
                                 metadata=[("authorization", "Bearer s3cret")])
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=30).ready
    assert request(srv, "GET", "/v2/health/ready")[0] == 200


@pytest.mark.parametrize("host,status", [
    ("evil.example", 403), ("evil.example:{port}", 403), ("127.0.0.1.evil.example", 403), ("localhost.evil", 403),
    ("127.0.0.1:{port}", 200), ("localhost:{port}", 200), ("LOCALHOST", 200), ("[::1]:{port}", 200),
    ("127.8.9.10", 200), ("app.localhost:{port}", 200),
])
def test_a_loopback_server_answers_only_loopback_hosts(server, host, status):
    got, raw = request(server, "GET", "/v2/models/digits", {"Host": host.format(port=server.address[1])})
    assert got == status, raw
    if status == 403:
        assert "is not served here" in error(raw) and "--allow-host" in error(raw)


@pytest.mark.parametrize("origin,status", [
    ("http://evil.example", 403), ("null", 403), ("http://127.0.0.1:1", 403), ("http://localhost:{port}.evil", 403),
    ("http://127.0.0.1:{port}", 200), ("http://localhost:{port}", 200),
])
def test_other_sites_pages_are_refused_before_the_request_is_read(server, origin, status):
    port = server.address[1]
    got, raw = request(server, "POST", "/v2/models/digits/infer",
                       {"Origin": origin.format(port=port), "Host": f"localhost:{port}" if "localhost" in origin
                        else f"127.0.0.1:{port}", "Content-Type": "application/json"},
                       json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 64],
                                               "data": [0.0] * 64}]}).encode())
    assert got == status, raw
    if status == 403:
        assert "may not call this server" in error(raw)


def test_allowed_hosts_and_origins_let_a_proxy_through(model_dir, start_server):
    srv = start_server([model_dir / "digits.onnx"], allowed_hosts=("models.example.com",),
                       allowed_origins=("https://app.example.com",))
    assert request(srv, "GET", "/v2", {"Host": "models.example.com"})[0] == 200
    assert request(srv, "GET", "/v2", {"Host": "other.example.com"})[0] == 403
    assert request(srv, "GET", "/v2", {"Host": "models.example.com", "Origin": "https://app.example.com"})[0] == 200
    assert request(srv, "GET", "/v2", {"Host": "models.example.com", "Origin": "https://models.example.com"})[0] == 200
    assert request(srv, "GET", "/v2", {"Host": "models.example.com", "Origin": "https://evil.example"})[0] == 403


def test_a_public_bind_checks_hosts_only_when_told_to():
    public = Access(ServerConfig(host="0.0.0.0"))
    public.host_allowed("anything.example")
    with pytest.raises(ForbiddenError):
        public.origin_allowed("http://evil.example", "anything.example")
    assert is_loopback("::1") and is_loopback("127.0.0.2") and not is_loopback("10.0.0.1")


def test_token_settings_are_checked():
    with pytest.raises(ConfigError, match="repository control is off; add --repository-control"):
        check_config(ServerConfig(repository_token="t"))
    with pytest.raises(ConfigError, match="printable ASCII"):
        check_config(ServerConfig(repository_control=True, repository_token="a\nb"))


HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=60)


@pytest.mark.fuzz
@settings(max_examples=300 * SCALE, deadline=None, derandomize=SCALE == 1, database=None)
@given(host=HEADER_TEXT, origin=st.none() | HEADER_TEXT, authorization=st.none() | HEADER_TEXT)
def test_fuzz_the_checks_answer_allowed_or_one_typed_refusal(host, origin, authorization):
    access = Access(ServerConfig(repository_control=True, repository_token="tok"))
    for check in (lambda: access.host_allowed(host), lambda: access.origin_allowed(origin, host),
                  lambda: access.control_allowed(authorization, "unload")):
        try:
            check()
        except ForbiddenError as exc:
            assert "\n" not in str(exc)
        except Exception as exc:  # noqa: BLE001
            assert type(exc).__name__ == "UnauthorizedError", exc


@pytest.mark.fuzz
@settings(max_examples=60 * SCALE, deadline=None, derandomize=SCALE == 1, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(host=HEADER_TEXT.filter(str.strip), origin=st.none() | HEADER_TEXT.filter(str.strip))
def test_fuzz_the_endpoint_with_hosts_and_origins(server, host, origin):
    headers = {"Host": host.strip()} | ({"Origin": origin.strip()} if origin else {})
    status, raw = request(server, "GET", "/v2/models/digits", headers)
    assert status in (200, 400, 403), (status, raw)
    if status != 200 and raw:
        assert "\n" not in error(raw)
    assert request(server, "GET", "/v2/health/live")[0] == 200


def test_a_repository_request_nested_past_the_stack_is_a_400(server):
    status, raw = request(server, "POST", "/v2/repository/index", {"Content-Type": "application/json"},
                          b"[" * 30_000 + b"]" * 30_000)
    assert status == 400 and "nested too deep" in error(raw)
    assert request(server, "GET", "/v2/health/live")[0] == 200


def test_the_command_line_refuses_a_token_without_control_in_one_line(cli_run, model_dir):
    result = cli_run("serve", model_dir, "--no-warmup", env={"ONNXFORGE_REPOSITORY_TOKEN": "abc"})
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == ["Error: a repository token (--repository-token or "
                                                  "ONNXFORGE_REPOSITORY_TOKEN) is given but repository control is off; "
                                                  "add --repository-control"]
