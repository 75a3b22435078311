"""A minimal Chrome DevTools Protocol client over the standard library, for driving the console
in headless Chromium (filling forms, clicking) where `--dump-dom` can only read a page.

Only what the tests need: start Chromium with a debugging port, attach to its page over a
WebSocket (RFC 6455 text frames, client-masked), and evaluate JavaScript (awaiting promises).
Every wait is bounded, and `close()` stops the browser."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import struct
import subprocess
import time
import urllib.request


class Browser:
    def __init__(self, chromium: str, profile_dir: str, url: str, timeout_s: float = 60.0):
        self.proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--disable-extensions", "--remote-debugging-port=0",
             f"--user-data-dir={profile_dir}", "--window-size=1280,900", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        self.next_id = 0
        self.sock = None
        try:
            port = self._devtools_port(profile_dir, timeout_s)
            self.sock = self._attach(port, timeout_s)
        except Exception:
            self.close()
            raise

    def _devtools_port(self, profile_dir: str, timeout_s: float) -> int:
        # Chromium writes the port it picked to DevToolsActivePort in the profile.
        path = os.path.join(profile_dir, "DevToolsActivePort")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited: {self.proc.stderr.read().decode(errors='replace')[-2000:]}")
            try:
                with open(path) as f:
                    return int(f.readline().strip())
            except (OSError, ValueError):
                time.sleep(0.1)
        raise TimeoutError("chromium did not open its debugging port")

    def _attach(self, port: int, timeout_s: float) -> socket.socket:
        deadline = time.monotonic() + timeout_s
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=10) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            if pages or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        ws_url = pages[0]["webSocketDebuggerUrl"]
        m = re.match(r"ws://([^/:]+):(\d+)(/.*)", ws_url)
        host, wport, path = m.group(1), int(m.group(2)), m.group(3)
        s = socket.create_connection((host, wport), timeout=timeout_s)
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{wport}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                raise RuntimeError("devtools closed the websocket handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"websocket handshake refused: {head[:200]!r}")
        return s

    def _send(self, text: str):
        payload = text.encode()
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise RuntimeError("devtools closed the websocket")
            buf += chunk
        return buf

    def _recv(self) -> str:
        parts = b""
        while True:
            b0, b1 = self._recv_exact(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self._recv_exact(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self._recv_exact(8))
            data = self._recv_exact(n)
            if b0 & 0x0F == 0x8:
                raise RuntimeError("devtools closed the websocket")
            parts += data
            if b0 & 0x80:
                return parts.decode()

    def evaluate(self, expression: str, timeout_s: float = 30.0):
        """Evaluates `expression` in the page, awaiting a promise; returns its JSON value."""
        self.next_id += 1
        self.sock.settimeout(timeout_s)
        self._send(json.dumps({"id": self.next_id, "method": "Runtime.evaluate", "params": {
            "expression": expression, "awaitPromise": True, "returnByValue": True}}))
        while True:
            msg = json.loads(self._recv())
            if msg.get("id") == self.next_id:
                result = msg.get("result", {})
                if "exceptionDetails" in result:
                    raise RuntimeError(f"page error: {result['exceptionDetails']}")
                return result.get("result", {}).get("value")

    def wait_for(self, js_condition: str, timeout_s: float = 20.0):
        """Polls a JavaScript expression until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout_s
        last_error = None
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(js_condition)
            except RuntimeError as e:
                # The page may not exist yet (still loading): try again until the deadline.
                last_error = e
                value = None
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"page never satisfied: {js_condition} (last error: {last_error})")

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
