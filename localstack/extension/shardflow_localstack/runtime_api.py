"""The AWS Lambda Runtime API, served to one host process (one execution environment).

A custom runtime (the ``bootstrap`` of ``provided.al2023``) talks to Lambda over HTTP at
``$AWS_LAMBDA_RUNTIME_API``:

* ``GET  /2018-06-01/runtime/invocation/next``              long-poll for the next event
* ``POST /2018-06-01/runtime/invocation/{request_id}/response``  the result
* ``POST /2018-06-01/runtime/invocation/{request_id}/error``     a function error
* ``POST /2018-06-01/runtime/init/error``                    an initialisation error

This module only implements that contract (one server per environment, bound to
127.0.0.1 on a free port). Turning it into LocalStack invocation results is the job of
:mod:`shardflow_localstack.executor`.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG = logging.getLogger(__name__)

API_PREFIX = "/2018-06-01/runtime"
# AWS's limit for a synchronous response; LocalStack passes its configured limit on as
# LOCALSTACK_MAX_PAYLOAD_SIZE.
DEFAULT_MAX_RESPONSE_BYTES = 6 * 1024 * 1024 + 100

_INVOCATION_PATH = re.compile(rf"^{API_PREFIX}/invocation/(?P<request_id>[^/]+)/(?P<kind>response|error)$")


@dataclass
class Invocation:
    """One event handed to the runtime and, once it answers, its outcome."""

    request_id: str
    payload: bytes
    invoked_function_arn: str
    deadline_ms: int
    trace_id: str | None = None
    client_context: str | None = None
    cognito_identity: str | None = None

    # outcome
    done: threading.Event = field(default_factory=threading.Event)
    delivered: threading.Event = field(default_factory=threading.Event)
    outcome: str | None = None  # "response" | "error"
    body: bytes = b""
    error_type: str | None = None

    def complete(self, outcome: str, body: bytes, error_type: str | None = None) -> bool:
        """Records the outcome once; returns False if the invocation was already complete."""
        if self.done.is_set():
            return False
        self.outcome = outcome
        self.body = body
        self.error_type = error_type
        self.done.set()
        return True


class RuntimeApiServer:
    """A Lambda Runtime API endpoint for a single runtime process."""

    def __init__(self, max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES):
        self.max_response_bytes = max_response_bytes
        self.ready = threading.Event()  # the runtime asked for its first event
        self.init_error: bytes | None = None
        self.init_error_event = threading.Event()
        self._queue: queue.Queue[Invocation] = queue.Queue()
        self._invocations: dict[str, Invocation] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.api = self
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name=f"lambda-runtime-api-{self.address}",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        try:
            self._httpd.shutdown()
        finally:
            self._httpd.server_close()
        with self._lock:
            pending = list(self._invocations.values())
            self._invocations.clear()
        for invocation in pending:
            invocation.delivered.set()

    def submit(self, invocation: Invocation) -> None:
        with self._lock:
            self._invocations[invocation.request_id] = invocation
        self._queue.put(invocation)

    def forget(self, invocation: Invocation) -> None:
        with self._lock:
            self._invocations.pop(invocation.request_id, None)

    # called by the handler threads

    def next_invocation(self) -> Invocation | None:
        self.ready.set()
        while not self._closed.is_set():
            try:
                invocation = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if invocation.done.is_set():  # timed out or cancelled before delivery
                continue
            invocation.delivered.set()
            return invocation
        return None

    def lookup(self, request_id: str) -> Invocation | None:
        with self._lock:
            return self._invocations.get(request_id)

    def report_init_error(self, body: bytes) -> None:
        if self.init_error is None:
            self.init_error = body
        self.init_error_event.set()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    api: RuntimeApiServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    # quiet: the runtime polls continuously
    def log_message(self, format: str, *args) -> None:  # noqa: A002
        LOG.debug("runtime api %s: " + format, self.server.api.address, *args)

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if body and not (headers and "Content-Type" in headers):
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _send_json(self, status: int, document: dict) -> None:
        self._send(status, json.dumps(document).encode())

    def _read_body(self, limit: int | None = None) -> tuple[bytes, bool]:
        """Reads a fixed-length or chunked body; returns (body, too_large)."""
        too_large = False
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            size = 0
            while True:
                line = self.rfile.readline()
                chunk_len = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if chunk_len == 0:
                    # trailers (streaming responses send error info here) end with an empty line
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                data = self.rfile.read(chunk_len)
                self.rfile.readline()
                size += len(data)
                if limit is None or size <= limit:
                    chunks.append(data)
                else:
                    too_large = True
            return b"".join(chunks), too_large
        length = int(self.headers.get("Content-Length") or 0)
        remaining = length
        chunks = []
        while remaining > 0:
            data = self.rfile.read(min(remaining, 1 << 20))
            if not data:
                break
            remaining -= len(data)
            chunks.append(data)
        body = b"".join(chunks)
        if limit is not None and len(body) > limit:
            return b"", True
        return body, False

    def do_GET(self) -> None:  # noqa: N802
        if self.path != f"{API_PREFIX}/invocation/next":
            self._send_json(HTTPStatus.NOT_FOUND, {"errorMessage": f"no route for GET {self.path}", "errorType": "NotFound"})
            return
        invocation = self.server.api.next_invocation()
        if invocation is None:  # shutting down
            self.close_connection = True
            self._send_json(HTTPStatus.GONE, {"errorMessage": "execution environment is shutting down", "errorType": "Shutdown"})
            return
        headers = {
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": invocation.invoked_function_arn,
        }
        if invocation.trace_id:
            headers["Lambda-Runtime-Trace-Id"] = invocation.trace_id
        if invocation.client_context:
            headers["Lambda-Runtime-Client-Context"] = invocation.client_context
        if invocation.cognito_identity:
            headers["Lambda-Runtime-Cognito-Identity"] = invocation.cognito_identity
        self._send(HTTPStatus.OK, invocation.payload, headers)

    def do_POST(self) -> None:  # noqa: N802
        api = self.server.api
        if self.path == f"{API_PREFIX}/init/error":
            body, _ = self._read_body()
            api.report_init_error(body or b'{"errorType":"Runtime.Unknown","errorMessage":"init error"}')
            self._send_json(HTTPStatus.ACCEPTED, {"status": "OK"})
            return
        match = _INVOCATION_PATH.match(self.path)
        if not match:
            self._read_body()
            self._send_json(HTTPStatus.NOT_FOUND, {"errorMessage": f"no route for POST {self.path}", "errorType": "NotFound"})
            return
        invocation = api.lookup(match["request_id"])
        kind = match["kind"]
        body, too_large = self._read_body(api.max_response_bytes if kind == "response" else None)
        if invocation is None:
            self._send_json(HTTPStatus.BAD_REQUEST, {"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"})
            return
        if too_large:
            invocation.complete(
                "error",
                json.dumps(
                    {
                        "errorMessage": f"Response payload size exceeded maximum allowed payload size ({api.max_response_bytes} bytes).",
                        "errorType": "Function.ResponseSizeTooLarge",
                    }
                ).encode(),
                "Function.ResponseSizeTooLarge",
            )
            self._send_json(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                {"errorMessage": "Payload Too Large", "errorType": "RequestEntityTooLarge"},
            )
            return
        error_type = self.headers.get("Lambda-Runtime-Function-Error-Type") if kind == "error" else None
        if not invocation.complete(kind, body, error_type):
            self._send_json(
                HTTPStatus.BAD_REQUEST,
                {"errorMessage": f"Invocation {invocation.request_id} is already complete", "errorType": "InvalidStateTransition"},
            )
            return
        self._send_json(HTTPStatus.ACCEPTED, {"status": "OK"})


def now_ms() -> int:
    return int(time.time() * 1000)
