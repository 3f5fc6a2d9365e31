"""Plain HTTP helpers the serving tests share (http.client: no client library between the test
and the bytes on the wire)."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit


def post(url: str, path: str, body: bytes, headers=None):
    """``(status, headers, body)`` of one POST."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def get(url: str, path: str):
    """``(status, body)`` of one GET."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def live(url: str) -> bool:
    """Whether the server answers ``/v2/health/live`` with 200."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", "/v2/health/live")
        return conn.getresponse().status == 200
    finally:
        conn.close()
