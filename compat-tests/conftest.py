"""Real Kafka clients against the real `jet` binary.

The `jet` fixture starts the binary on a free loopback port with a fresh data directory, waits
until it answers a Kafka ApiVersions request, yields a handle (`.bootstrap`, `.restart()`,
`.kill9()`, `.stop()`), and stops it afterwards. Extra flags for one test:

    @pytest.mark.jet_args("--retention-check-interval-ms", "500")

The binary is `$JET_BIN`, else `$CARGO_TARGET_DIR/release/jet`, else
`~/.cache/jet-target/release/jet`, else `target/release/jet` in the repository.

A test that needs a client this machine lacks (kcat, a Python package) calls `need(...)`: it
fails when `CI=true` (CI must run everything) and otherwise skips with a loud message.

Every wait here is bounded, and every test is stopped after TEST_TIMEOUT_S whatever it does.
"""

from __future__ import annotations

import faulthandler
import importlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TEST_TIMEOUT_S = int(os.environ.get("JET_TEST_TIMEOUT_S", "300"))
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(*names: str):
    """Returns the Python module (or the executable path) for each name; a missing one fails the
    test in CI and skips it, loudly, elsewhere. A name starting with 'bin:' is an executable."""
    found = []
    for name in names:
        if name.startswith("bin:"):
            exe = shutil.which(name[4:])
            if exe is None:
                _missing(
                    f"the '{name[4:]}' executable is not installed",
                    f"apt-get install {name[4:]}",
                )
            found.append(exe)
        else:
            try:
                found.append(importlib.import_module(name))
            except ImportError as e:
                _missing(
                    f"the Python package for '{name}' is not installed ({e})",
                    "pip install -r compat-tests/requirements.txt",
                )
    return found[0] if len(found) == 1 else found


def _missing(what: str, fix: str):
    msg = f"{what}; install it: {fix} (see README.md)"
    if in_ci():
        pytest.fail(f"CI=true and {msg}", pytrace=False)
    banner = "!" * 78
    sys.stderr.write(f"\n{banner}\nSKIPPING: {msg}\n{banner}\n")
    pytest.skip(f"LOUD SKIP: {msg}")


def jet_binary() -> Path:
    candidates = []
    if os.environ.get("JET_BIN"):
        candidates.append(Path(os.environ["JET_BIN"]))
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(Path(os.environ["CARGO_TARGET_DIR"]) / "release" / "jet")
    candidates.append(Path.home() / ".cache" / "jet-target" / "release" / "jet")
    candidates.append(REPO / "target" / "release" / "jet")
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    pytest.fail(
        "no jet binary: build it with `cargo build --release -p jet` "
        f"(looked at {', '.join(str(c) for c in candidates)})",
        pytrace=False,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_versions_ok(host: str, port: int, timeout_s: float) -> bool:
    """Sends ApiVersions v0 and checks the reply carries our correlation id and error code 0.
    Pure sockets, so readiness does not depend on any client library."""
    corr = 0x4A4554  # "JET"
    client_id = b"jet-compat-probe"
    body = struct.pack(">hhih", 18, 0, corr, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as s:
            s.settimeout(timeout_s)
            s.sendall(struct.pack(">i", len(body)) + body)
            head = _recv_exact(s, 4)
            (size,) = struct.unpack(">i", head)
            if size < 6 or size > 1 << 20:
                return False
            resp = _recv_exact(s, size)
            got_corr, error = struct.unpack(">ih", resp[:6])
            return got_corr == corr and error == 0
    except (OSError, struct.error):
        return False


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    return buf


class Jet:
    """One `jet` process, restartable on the same data dir and port."""

    def __init__(
        self, binary: Path, data_dir: Path, log_path: Path, extra_args=(), env=None,
        listen_host: str = "127.0.0.1",
    ):
        self.binary = binary
        self.data_dir = data_dir
        self.log_path = log_path
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.port = free_port()
        self.http_port = free_port()
        self.host = "127.0.0.1"  # where clients dial
        self.listen_host = listen_host  # what jet binds
        self.proc: subprocess.Popen | None = None
        self.exit_codes: list[int] = []

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def http(self) -> str:
        """Base URL of the node's HTTP listener (health, metrics, REST API, console)."""
        return f"http://{self.host}:{self.http_port}"

    def args(self) -> list[str]:
        return [
            str(self.binary),
            "--listen",
            f"{self.listen_host}:{self.port}",
            # Every node gets its own HTTP port: the default (8080) would clash between tests.
            "--http-listen",
            f"127.0.0.1:{self.http_port}",
            "--data-dir",
            str(self.data_dir),
            "--log-level",
            os.environ.get("JET_TEST_LOG_LEVEL", "info"),
            *self.extra_args,
        ]

    def start(self, timeout_s: float = START_TIMEOUT_S) -> "Jet":
        assert self.proc is None or self.proc.poll() is not None, "jet is already running"
        for attempt in range(3):
            log = open(self.log_path, "ab")
            log.write(f"\n--- start {' '.join(self.args())}\n".encode())
            log.flush()
            env = {k: v for k, v in os.environ.items() if not k.startswith("JET_")}
            env.update(self.env)
            self.proc = subprocess.Popen(
                self.args(), stdout=log, stderr=subprocess.STDOUT, env=env
            )
            log.close()
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                code = self.proc.poll()
                if code is not None:
                    self.exit_codes.append(code)
                    tail = self.log_tail()
                    if "cannot listen" in tail and attempt < 2:
                        # Lost a race for a port; try others.
                        self.port = free_port()
                        self.http_port = free_port()
                        break
                    raise RuntimeError(f"jet exited with {code} while starting:\n{tail}")
                if api_versions_ok(self.host, self.port, timeout_s=2.0):
                    return self
                time.sleep(0.1)
            else:
                self.kill9()
                raise RuntimeError(
                    f"jet did not answer ApiVersions on {self.bootstrap} within {timeout_s}s:\n"
                    + self.log_tail()
                )
        raise RuntimeError("jet could not get a free port")

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, then SIGKILL if it does not exit in time. Returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout=10)
            sys.stderr.write(f"jet ignored SIGTERM for {timeout_s}s and was killed\n")
        self.exit_codes.append(code)
        return code

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.exit_codes.append(self.proc.wait(timeout=10))

    def restart(self, hard: bool = False) -> "Jet":
        """Stops (SIGKILL when `hard`, else SIGTERM) and starts again on the same data dir and
        port."""
        if hard:
            self.kill9()
        else:
            self.stop()
        return self.start()

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def pytest_configure(config):
    config.addinivalue_line("markers", "jet_args(*args): extra command-line flags for jet")


@pytest.fixture(autouse=True)
def _bounded_test():
    """Every test ends by itself: a hung test gets its stacks dumped and a TimeoutError."""

    def on_alarm(signum, frame):
        raise TimeoutError(f"test exceeded {TEST_TIMEOUT_S}s")

    faulthandler.dump_traceback_later(TEST_TIMEOUT_S + 30, exit=True)
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_TIMEOUT_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def jet_bin() -> Path:
    return jet_binary()


@pytest.fixture
def jet(request, tmp_path, jet_bin):
    marker = request.node.get_closest_marker("jet_args")
    extra = list(marker.args) if marker else []
    j = Jet(jet_bin, tmp_path / "data", tmp_path / "jet.log", extra)
    j.start()
    try:
        yield j
    finally:
        j.stop()
        # Shown by pytest only when the test failed.
        print(f"--- jet log ({j.log_path}) ---\n{j.log_tail()}")


@pytest.fixture
def topic(request) -> str:
    """A topic name unique to the test."""
    name = request.node.name
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
    return f"t-{safe}"[:200]
