"""A LocalStack Lambda runtime executor that runs a function's ``bootstrap`` as a host process.

LocalStack's own executor (``docker``) starts a container per execution environment with
its ``init`` (a fork of AWS's runtime interface emulator) inside, and talks to it over
HTTP: LocalStack POSTs ``/invoke`` to the container, the init reports back to
``/_localstack_lambda/<executor_id>/...``. This executor needs neither Docker nor the
init binary (which LocalStack downloads from GitHub): it implements the same
:class:`RuntimeExecutor` contract in-process.

* ``prepare_version``: LocalStack unpacks the deployment package (``S3Code.prepare_for_execution``).
* ``start``: a :class:`RuntimeApiServer` on 127.0.0.1, then ``bootstrap`` with the
  function's environment (the one LocalStack computes: credentials of the execution
  role, ``AWS_ENDPOINT_URL`` pointing at LocalStack, the user's variables ...) plus
  ``AWS_LAMBDA_RUNTIME_API``. The environment is ready once the runtime asks for its
  first event; ``/init/error`` or an early exit fail the start like the init's
  ``status/error`` report.
* ``invoke``: hands the event to the runtime and waits for ``/response`` or ``/error``,
  enforcing the function timeout (the process is killed and re-initialised on the next
  invoke, as on AWS) and the memory size (resident set size polled; killed when above).
  The result carries the logs of the invocation (START/END/REPORT lines plus the
  runtime's stdout and stderr), which LocalStack stores in CloudWatch Logs.
* ``stop``: kills the process group and closes the API server.

Only OS-only runtimes (``provided.al2023``, ``provided.al2``, ``provided``) with zip
packages are supported: their code is a native executable that runs on the host.
"""

from __future__ import annotations

import json
import logging
import math
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import CancelledError
from datetime import datetime, timezone
from pathlib import Path

from localstack import config
from localstack.aws.api.lambda_ import PackageType, Runtime
from localstack.services.lambda_.invocation.executor_endpoint import StatusErrorException
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion, InvocationResult
from localstack.services.lambda_.invocation.runtime_executor import (
    LambdaRuntimeException,
    RuntimeExecutor,
)

from .runtime_api import DEFAULT_MAX_RESPONSE_BYTES, Invocation, RuntimeApiServer, now_ms

LOG = logging.getLogger(__name__)

SUPPORTED_RUNTIMES = {Runtime.provided_al2023, Runtime.provided_al2, Runtime.provided}

# Environment variables LocalStack passes for its own init; the runtime must not see them.
_INIT_ONLY_VARIABLES = {
    "LOCALSTACK_RUNTIME_ID",
    "LOCALSTACK_RUNTIME_ENDPOINT",
    "LOCALSTACK_FUNCTION_ACCOUNT_ID",
    "LOCALSTACK_CHMOD_PATHS",
    "LOCALSTACK_USER",
    "LOCALSTACK_INIT_LOG_LEVEL",
    "LOCALSTACK_POST_INVOKE_WAIT_MS",
    "LOCALSTACK_MAX_PAYLOAD_SIZE",
}

_LOG_TAIL_LINES = 2000
_POLL_SECONDS = 0.01
_MEMORY_POLL_SECONDS = 0.1


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _gateway_host() -> str:
    """The address of LocalStack as seen from a host process."""
    listen = config.GATEWAY_LISTEN[0]
    host = listen.host
    if host in ("0.0.0.0", "", "::"):
        return "127.0.0.1"
    return host


def _error_payload(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


class _ProcessOutput:
    """Collects the runtime's stdout/stderr: a tail for ``get_logs`` and a per-invocation capture."""

    def __init__(self, fd: int, log_file: Path | None, prefix: str):
        self._fd = fd
        self._lock = threading.Lock()
        self._tail: deque[str] = deque(maxlen=_LOG_TAIL_LINES)
        # output before the first invocation (the runtime's init) is captured too
        self._capture: list[str] | None = []
        self._partial = b""
        self._busy = False
        self._eof = threading.Event()
        self._prefix = prefix
        self._file = open(log_file, "a", buffering=1, encoding="utf-8") if log_file else None  # noqa: SIM115
        self._thread = threading.Thread(target=self._run, name=f"lambda-output-{prefix}", daemon=True)
        self._thread.start()

    def _emit(self, line: str) -> None:
        with self._lock:
            self._tail.append(line)
            if self._capture is not None:
                self._capture.append(line)
        if self._file:
            try:
                self._file.write(f"{self._prefix} {line}\n")
            except ValueError:  # closed
                pass

    def _run(self) -> None:
        try:
            while True:
                try:
                    data = os.read(self._fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                self._busy = True
                try:
                    *lines, self._partial = (self._partial + data).split(b"\n")
                    for line in lines:
                        self._emit(line.rstrip(b"\r").decode("utf-8", "replace"))
                finally:
                    self._busy = False
            if self._partial:
                self._emit(self._partial.decode("utf-8", "replace"))
                self._partial = b""
        finally:
            self._eof.set()
            try:
                os.close(self._fd)
            except OSError:
                pass

    def begin_capture(self) -> None:
        with self._lock:
            self._capture = []

    def end_capture(self) -> list[str]:
        with self._lock:
            captured, self._capture = self._capture or [], None
        return captured

    def drain(self, max_wait: float = 0.2) -> None:
        """Waits (briefly) until everything the runtime wrote so far has been read."""
        deadline = time.monotonic() + max_wait
        while time.monotonic() < deadline and not self._eof.is_set():
            try:
                readable, _, _ = select.select([self._fd], [], [], 0)
            except (OSError, ValueError):
                return
            if not readable and not self._busy:
                return
            time.sleep(0.002)

    def wait_eof(self, timeout: float) -> None:
        self._eof.wait(timeout)

    def tail(self) -> str:
        with self._lock:
            return "\n".join(self._tail)

    def close(self) -> None:
        if self._file:
            self._file.close()


class _RuntimeProcess:
    """One running ``bootstrap`` with its Runtime API server."""

    def __init__(self, executor: HostRuntimeExecutor, env: dict[str, str], code_dir: Path):
        self.api = RuntimeApiServer(
            int(env.pop("_SHARDFLOW_MAX_RESPONSE_BYTES", DEFAULT_MAX_RESPONSE_BYTES))
        )
        self.api.start()
        env["AWS_LAMBDA_RUNTIME_API"] = self.api.address
        read_fd, write_fd = os.pipe()
        try:
            self.popen = subprocess.Popen(
                [str(code_dir / "bootstrap")],
                cwd=str(code_dir),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                close_fds=True,
                process_group=0,  # its own group (killed as one) in LocalStack's session
            )
        except BaseException:
            os.close(read_fd)
            self.api.close()
            raise
        finally:
            os.close(write_fd)
        self.output = _ProcessOutput(read_fd, executor.log_file, f"[{executor.id[:8]}]")
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exited(self) -> int | None:
        return self.popen.poll()

    def rss_kib(self) -> tuple[int, int]:
        """(current, peak) resident set size in KiB, from /proc."""
        current = peak = 0
        try:
            with open(f"/proc/{self.pid}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        current = int(line.split()[1])
                    elif line.startswith("VmHWM:"):
                        peak = int(line.split()[1])
        except (OSError, ValueError):
            pass
        return current, peak

    def kill(self, grace: float = 0.5) -> None:
        if self.popen.poll() is None:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.popen.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        else:
            # the runtime is gone; children it left in its group go too
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.api.close()
        self.output.wait_eof(1.0)
        self.output.close()

    @staticmethod
    def describe_exit(returncode: int) -> str:
        if returncode < 0:
            try:
                name = signal.Signals(-returncode).name[3:].lower()
            except ValueError:
                name = str(-returncode)
            return f"signal: {name}"
        return f"exit status {returncode}"


class HostRuntimeExecutor(RuntimeExecutor):
    """Runs a Lambda execution environment as a process on the LocalStack host."""

    def __init__(self, id: str, function_version: FunctionVersion) -> None:  # noqa: A002
        super().__init__(id=id, function_version=function_version)
        self._lock = threading.RLock()
        self._invoke_lock = threading.Lock()
        self._stopped = threading.Event()
        self._process: _RuntimeProcess | None = None
        self._env: dict[str, str] | None = None
        self._code_dir: Path | None = None
        self._workdir: Path | None = None
        self._pending_init_ms: float | None = None
        self._pending_init_lines: list[str] = []
        self._last_tail = ""
        log_dir = os.environ.get("SHARDFLOW_LAMBDA_LOG_DIR")
        self.log_file: Path | None = None
        if log_dir:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            self.log_file = Path(log_dir) / f"{function_version.id.function_name}.log"

    # ---- lifecycle ---------------------------------------------------------------

    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        cls._check_supported(function_version)
        if function_version.config.code:
            function_version.config.code.prepare_for_execution()

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        pass

    @classmethod
    def validate_environment(cls) -> bool:
        return True

    @staticmethod
    def _check_supported(function_version: FunctionVersion) -> None:
        cfg = function_version.config
        if cfg.package_type != PackageType.Zip:
            raise LambdaRuntimeException(
                f"Function {function_version.id.function_name}: the host runtime executor runs zip packages only "
                f"(got package type {cfg.package_type}); use LocalStack in Docker for container images."
            )
        if cfg.runtime not in SUPPORTED_RUNTIMES:
            supported = ", ".join(sorted(SUPPORTED_RUNTIMES))
            raise LambdaRuntimeException(
                f"Function {function_version.id.function_name}: the host runtime executor runs OS-only runtimes "
                f"({supported}) only, got {cfg.runtime}; use LocalStack in Docker for other runtimes."
            )

    def start(self, env_vars: dict[str, str]) -> None:
        self._check_supported(self.function_version)
        code = self.function_version.config.code
        code.prepare_for_execution()
        self._code_dir = Path(code.get_unzipped_code_location())
        self._workdir = Path(
            tempfile.mkdtemp(prefix=f"lambda-{self.function_version.id.function_name}-{self.id[:8]}-", dir=config.dirs.tmp)
        )
        (self._workdir / "tmp").mkdir()
        self._env = self._build_environment(env_vars)
        bootstrap = self._code_dir / "bootstrap"
        if not (bootstrap.is_file() and os.access(bootstrap, os.X_OK)):
            raise StatusErrorException(
                "Environment startup failed",
                payload=_error_payload(
                    "Runtime.InvalidEntrypoint",
                    "Error: Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap] "
                    f"(host executor looked for {bootstrap})",
                ),
            )
        LOG.debug("Starting %s for %s in %s", bootstrap, self.function_version.qualified_arn, self._workdir)
        self._init_runtime()

    def _build_environment(self, env_vars: dict[str, str]) -> dict[str, str]:
        code_dir = str(self._code_dir)
        tmp = str(self._workdir / "tmp")
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "en_US.UTF-8",
            # a home of its own: the runtime must not pick up the developer's ~/.aws
            "HOME": str(self._workdir),
            "TMPDIR": tmp,
            "LD_LIBRARY_PATH": f"{code_dir}/lib:{code_dir}",
        }
        max_response = env_vars.get("LOCALSTACK_MAX_PAYLOAD_SIZE")
        for key, value in env_vars.items():
            if key in _INIT_ONLY_VARIABLES or value is None:
                continue
            env[key] = str(value)
        env["LAMBDA_TASK_ROOT"] = code_dir
        env["LAMBDA_RUNTIME_DIR"] = code_dir
        env["_SHARDFLOW_MAX_RESPONSE_BYTES"] = str(max_response or DEFAULT_MAX_RESPONSE_BYTES)
        return env

    def _init_runtime(self) -> None:
        """Starts ``bootstrap`` and waits until it polls for its first event."""
        started = time.monotonic()
        with self._lock:
            if self._stopped.is_set():
                raise CancelledError("execution environment stopped")
            try:
                process = _RuntimeProcess(self, dict(self._env), self._code_dir)
            except OSError as e:  # e.g. an arm64 binary on an x86_64 host
                raise StatusErrorException(
                    "Environment startup failed",
                    payload=_error_payload(
                        "Runtime.InvalidEntrypoint",
                        f"Error: fork/exec {self._code_dir / 'bootstrap'}: {e.strerror or e}",
                    ),
                ) from e
            self._process = process
        while True:
            if process.api.ready.wait(_POLL_SECONDS):
                break
            if process.api.init_error is not None:
                payload = process.api.init_error
                self._discard(process)
                raise StatusErrorException("Environment startup failed", payload=payload)
            returncode = process.exited()
            if returncode is not None:
                process.output.drain()
                self._discard(process)
                raise StatusErrorException(
                    "Environment startup failed",
                    payload=_error_payload(
                        "Runtime.ExitError",
                        f"Error: Runtime exited with error: {process.describe_exit(returncode)}",
                    ),
                )
            if self._stopped.is_set():
                self._discard(process)
                raise CancelledError("execution environment stopped during startup")
        self._pending_init_ms = (time.monotonic() - started) * 1000
        process.output.drain()
        self._pending_init_lines = process.output.end_capture()

    def _discard(self, process: _RuntimeProcess) -> None:
        process.kill()
        with self._lock:
            self._last_tail = process.output.tail()
            if self._process is process:
                self._process = None

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            process, self._process = self._process, None
        if process:
            process.kill()
            self._last_tail = process.output.tail()
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)

    # ---- addresses -----------------------------------------------------------------

    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        return _gateway_host()

    def get_runtime_endpoint(self) -> str:
        port = config.GATEWAY_LISTEN[0].port
        return f"http://{_gateway_host()}:{port}/_localstack_lambda/{self.id}"

    def get_logs(self) -> str:
        with self._lock:
            process = self._process
        return process.output.tail() if process else self._last_tail

    # ---- invocations ---------------------------------------------------------------

    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        with self._invoke_lock:
            return self._invoke(payload)

    def _invoke(self, payload: dict[str, str]) -> InvocationResult:
        cfg = self.function_version.config
        request_id = payload["invoke-id"]
        timeout_s = float(cfg.timeout)
        memory_mb = int(cfg.memory_size)
        enforce_memory = _env_flag("SHARDFLOW_LAMBDA_ENFORCE_MEMORY", True)

        with self._lock:
            process = self._process
        if process is None or process.exited() is not None:
            # the previous invocation timed out or crashed: initialise again (as AWS does)
            try:
                self._init_runtime()
            except StatusErrorException as e:
                return InvocationResult(request_id, e.payload, is_error=True, logs=self._last_tail)
            with self._lock:
                process = self._process
        init_ms, self._pending_init_ms = self._pending_init_ms, None
        init_lines, self._pending_init_lines = self._pending_init_lines, []

        start_wall = time.monotonic()
        invocation = Invocation(
            request_id=request_id,
            payload=str(payload.get("payload") or "").encode(),
            invoked_function_arn=payload.get("invoked-function-arn") or self.function_version.qualified_arn,
            deadline_ms=now_ms() + int(timeout_s * 1000),
            trace_id=payload.get("trace-id"),
            client_context=payload.get("client-context"),
        )
        process.output.begin_capture()
        process.api.submit(invocation)

        failure: tuple[str, str] | None = None  # (errorType, message)
        next_memory_check = 0.0
        deadline = start_wall + timeout_s
        while not invocation.done.wait(_POLL_SECONDS):
            now = time.monotonic()
            if self._stopped.is_set():
                invocation.complete("cancelled", b"")
                process.api.forget(invocation)
                raise CancelledError(f"execution environment {self.id} stopped during invocation {request_id}")
            returncode = process.exited()
            if returncode is not None:
                failure = (
                    "Runtime.ExitError",
                    f"RequestId: {request_id} Error: Runtime exited with error: {process.describe_exit(returncode)}",
                )
                break
            if now >= deadline:
                failure = ("Sandbox.Timedout", f"RequestId: {request_id} Error: Task timed out after {timeout_s:.2f} seconds")
                break
            if enforce_memory and now >= next_memory_check:
                next_memory_check = now + _MEMORY_POLL_SECONDS
                rss_kib, _ = process.rss_kib()
                if rss_kib > memory_mb * 1024:
                    failure = (
                        "Runtime.OutOfMemory",
                        f"RequestId: {request_id} Error: Runtime exited with error: signal: killed",
                    )
                    break
        duration_ms = (time.monotonic() - start_wall) * 1000
        _, peak_kib = process.rss_kib()

        if failure is not None:
            invocation.complete("error", b"")  # late answers are refused from now on
            process.api.forget(invocation)
            process.kill(grace=0.0)
            process.output.drain()
            lines = process.output.end_capture()
            with self._lock:
                self._last_tail = process.output.tail()
                if self._process is process:
                    self._process = None
            error_type, message = failure
            timestamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            lines.append(f"{timestamp} {message}")
            body = _error_payload(error_type, message)
            is_error = True
        else:
            process.api.forget(invocation)
            process.output.drain()
            lines = process.output.end_capture()
            body = invocation.body
            is_error = invocation.outcome != "response"

        report = (
            f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
            f"Billed Duration: {max(1, math.ceil(duration_ms + (init_ms or 0)))} ms\t"
            f"Memory Size: {memory_mb} MB\tMax Memory Used: {max(1, math.ceil(peak_kib / 1024))} MB\t"
        )
        if init_ms is not None:
            report += f"Init Duration: {init_ms:.2f} ms\t"
        if failure is not None:
            report += f"Status: {'timeout' if failure[0] == 'Sandbox.Timedout' else 'error'}\tError Type: {failure[0]}"
        logs = "\n".join(
            [
                *init_lines,
                f"START RequestId: {request_id} Version: {self.function_version.id.qualifier}",
                *lines,
                f"END RequestId: {request_id}",
                report,
                "",
            ]
        )
        return InvocationResult(request_id, body, is_error=is_error, logs=logs)
