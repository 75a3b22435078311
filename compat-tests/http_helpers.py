"""Helpers for the HTTP listener's tests: REST Proxy v2 content types, base64, a bounded poll of a
consumer instance's records, and the exact size of the record batch a REST produce request
becomes (so byte counters can be checked to the byte)."""

from __future__ import annotations

import base64
import time

V2 = "application/vnd.kafka.v2+json"
BINARY = "application/vnd.kafka.binary.v2+json"
JSON = "application/vnd.kafka.json.v2+json"


def b64(b: bytes | str) -> str:
    if isinstance(b, str):
        b = b.encode()
    return base64.b64encode(b).decode()


def unb64(s: str | None) -> bytes | None:
    return None if s is None else base64.b64decode(s)


def assert_json_error(resp, status: int, error_code: int | None = None):
    """A refusal in the proxy's format: the status, a JSON body with an int error_code and a
    message."""
    assert resp.status_code == status, f"{resp.request.method} {resp.request.url}: {resp.status_code} {resp.text}"
    assert "json" in resp.headers.get("Content-Type", ""), resp.headers
    body = resp.json()
    assert isinstance(body.get("error_code"), int), body
    assert isinstance(body.get("message"), str) and body["message"], body
    if error_code is not None:
        assert body["error_code"] == error_code, body
    return body


def poll_records(session, base: str, want: int, fmt: str = BINARY, deadline_s: float = 30.0):
    """Reads a consumer instance's records until `want` arrived (bounded in time)."""
    got = []
    deadline = time.monotonic() + deadline_s
    while len(got) < want and time.monotonic() < deadline:
        r = session.get(f"{base}/records", params={"timeout": 2000}, headers={"Accept": fmt}, timeout=30)
        assert r.status_code == 200, r.text
        got.extend(r.json())
    return got


def _varint_len(n: int) -> int:
    """Bytes of a zigzag varint, as record fields are encoded."""
    z = (n << 1) ^ (n >> 63)
    z &= (1 << 64) - 1
    size = 1
    while z >= 0x80:
        z >>= 7
        size += 1
    return size


def batch_size(records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]]) -> int:
    """Bytes of one magic-2 uncompressed batch holding `records` (key, value, headers) with one
    timestamp, offsets 0..n-1: what one REST produce request to one partition appends."""
    total = 61  # the batch header
    for i, (key, value, headers) in enumerate(records):
        body = 1  # attributes
        body += _varint_len(0)  # timestamp delta
        body += _varint_len(i)  # offset delta
        body += _varint_len(-1) if key is None else _varint_len(len(key)) + len(key)
        body += _varint_len(-1) if value is None else _varint_len(len(value)) + len(value)
        body += _varint_len(len(headers))
        for name, hv in headers:
            hk = name.encode()
            body += _varint_len(len(hk)) + len(hk)
            body += _varint_len(-1) if hv is None else _varint_len(len(hv)) + len(hv)
        total += _varint_len(body) + body
    return total
