"""Unit tests of the Lambda Runtime API server of the host executor (no LocalStack needed).

A runtime client is played by urllib, as a `bootstrap` would speak to AWS_LAMBDA_RUNTIME_API.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from shardflow_localstack.runtime_api import Invocation, RuntimeApiServer, now_ms


@pytest.fixture
def api():
    server = RuntimeApiServer(max_response_bytes=1024)
    server.start()
    yield server
    server.close()


def call(api: RuntimeApiServer, method: str, path: str, body: bytes | None = None, headers=None):
    request = urllib.request.Request(
        f"http://{api.address}/2018-06-01/runtime{path}", data=body, method=method, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def invocation(request_id: str = "req-1", payload: bytes = b'{"k": 1}') -> Invocation:
    return Invocation(
        request_id=request_id,
        payload=payload,
        invoked_function_arn="arn:aws:lambda:us-east-1:000000000000:function:f",
        deadline_ms=now_ms() + 3000,
        trace_id="Root=1-0-0",
    )


def next_event(api: RuntimeApiServer, result: dict) -> threading.Thread:
    thread = threading.Thread(target=lambda: result.update(zip(("status", "headers", "body"), call(api, "GET", "/invocation/next"))))
    thread.start()
    return thread


def test_next_delivers_the_event_with_its_headers_and_marks_ready(api):
    result: dict = {}
    thread = next_event(api, result)
    assert api.ready.wait(5)
    inv = invocation()
    api.submit(inv)
    thread.join(5)
    assert result["status"] == 200
    assert result["body"] == b'{"k": 1}'
    assert result["headers"]["Lambda-Runtime-Aws-Request-Id"] == "req-1"
    assert result["headers"]["Lambda-Runtime-Invoked-Function-Arn"].endswith(":function:f")
    assert int(result["headers"]["Lambda-Runtime-Deadline-Ms"]) == inv.deadline_ms
    assert result["headers"]["Lambda-Runtime-Trace-Id"] == "Root=1-0-0"
    assert inv.delivered.is_set()


def test_response_completes_the_invocation_once(api):
    inv = invocation()
    api.submit(inv)
    status, _, _ = call(api, "POST", "/invocation/req-1/response", b'{"ok": true}')
    assert status == 202
    assert inv.done.is_set() and inv.outcome == "response" and inv.body == b'{"ok": true}'
    status, _, body = call(api, "POST", "/invocation/req-1/response", b"{}")
    assert status == 400 and json.loads(body)["errorType"] == "InvalidStateTransition"


def test_error_carries_the_error_type_header(api):
    inv = invocation()
    api.submit(inv)
    body = b'{"errorType": "Boom", "errorMessage": "bad"}'
    status, _, _ = call(
        api, "POST", "/invocation/req-1/error", body, {"Lambda-Runtime-Function-Error-Type": "Boom"}
    )
    assert status == 202
    assert inv.outcome == "error" and inv.error_type == "Boom" and inv.body == body


def test_unknown_request_id_is_rejected(api):
    status, _, body = call(api, "POST", "/invocation/nope/response", b"{}")
    assert status == 400 and json.loads(body)["errorType"] == "InvalidRequestID"


def test_oversized_response_fails_the_invocation(api):
    inv = invocation()
    api.submit(inv)
    status, _, _ = call(api, "POST", "/invocation/req-1/response", b"x" * 2048)
    assert status == 413
    assert inv.outcome == "error" and json.loads(inv.body)["errorType"] == "Function.ResponseSizeTooLarge"


def test_chunked_response_is_read_whole(api):
    import http.client

    inv = invocation()
    api.submit(inv)
    host, port = api.address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("POST", "/2018-06-01/runtime/invocation/req-1/response", body=iter([b'{"a":', b" 1}"]), encode_chunked=True)
    assert conn.getresponse().status == 202
    assert inv.body == b'{"a": 1}'


def test_init_error_is_recorded(api):
    status, _, _ = call(api, "POST", "/init/error", b'{"errorType": "Init", "errorMessage": "no config"}')
    assert status == 202
    assert api.init_error_event.is_set() and b"no config" in api.init_error


def test_a_timed_out_invocation_is_not_delivered(api):
    stale = invocation("stale")
    api.submit(stale)
    stale.complete("error", b"")  # the executor gave up on it
    fresh = invocation("fresh")
    api.submit(fresh)
    result: dict = {}
    next_event(api, result).join(5)
    assert result["headers"]["Lambda-Runtime-Aws-Request-Id"] == "fresh"


def test_close_releases_a_waiting_runtime(api):
    result: dict = {}
    thread = next_event(api, result)
    assert api.ready.wait(5)
    api.close()
    thread.join(5)
    assert not thread.is_alive()
