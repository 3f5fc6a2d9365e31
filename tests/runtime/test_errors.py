"""Every onnxforge error carries its exit code and HTTP status, and both are read in one place:
the CLI group exits with the one, the server's handlers answer with the other."""

from __future__ import annotations

import asyncio
import json

import click
import pytest

from onnxforge.cli.main import ForgeGroup
from onnxforge.runtime import errors
from onnxforge.runtime.server.handlers import EXCEPTION_HANDLERS

CLASSES = [getattr(errors, name) for name in errors.__all__ if isinstance(getattr(errors, name), type)]
EXPECTED = {  # class: (exit code, HTTP status)
    "OnnxforgeError": (1, 500), "RuntimeUnavailableError": (1, 503), "DeviceError": (1, 500),
    "ModelError": (1, 500), "UnsafeModelError": (1, 500), "NotTrainableError": (1, 500), "InputError": (2, 400),
    "DataError": (2, 400), "CheckpointError": (1, 500), "TrainingError": (1, 500), "ConfigError": (1, 400),
    "PluginError": (1, 500), "ConversionError": (1, 500), "NotFoundError": (2, 404),
    "RequestTimeoutError": (1, 408), "ServerBusyError": (1, 503),
    "ForbiddenError": (1, 403), "UnauthorizedError": (1, 401), "RunTimeoutError": (1, 504),
}


def test_every_error_class_is_listed_with_its_codes():
    assert sorted(c.__name__ for c in CLASSES) == sorted(EXPECTED)
    for cls in CLASSES:
        assert issubclass(cls, errors.OnnxforgeError)
        assert (cls.exit_code, cls.http_status) == EXPECTED[cls.__name__], cls.__name__


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_the_cli_exits_with_the_class_exit_code_and_one_line(cls):
    from click.testing import CliRunner

    @click.group(cls=ForgeGroup)
    def group():
        pass

    @group.command("fail")
    def fail():
        raise cls("the thing is wrong: expected this, got that")

    result = CliRunner().invoke(group, ["fail"])
    assert result.exit_code == cls.exit_code
    assert result.output == "Error: the thing is wrong: expected this, got that\n"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_the_server_answers_with_the_class_http_status_as_json(cls):
    handler = next(EXCEPTION_HANDLERS[k] for k in cls.__mro__ if k in EXCEPTION_HANDLERS)
    response = asyncio.run(handler(None, cls("no such thing")))
    assert response.status_code == cls.http_status
    assert response.media_type == "application/json"
    assert json.loads(response.body) == {"error": "no such thing"}
    if cls is errors.ServerBusyError:
        assert response.headers["retry-after"] == "1"


def test_first_line_quotes_one_line_of_a_library_error():
    assert errors.first_line(ValueError("\n  bad zip\nsecond line")) == "bad zip"
    assert errors.first_line(KeyError()) == "KeyError" and errors.first_line(OSError(" ")) == "OSError"
    assert errors.first_line(ValueError("x" * 300)) == "x" * 200
    assert errors.first_line(ValueError("ignored"), "from text\nmore", limit=None) == "from text"
