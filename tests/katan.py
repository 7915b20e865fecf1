"""A real OpenAI-compatible server on loopback for tests: llm-katan's echo backend.

``Katan(*options)`` runs ``llm-katan --backend echo`` (no model is loaded; the reply echoes the
request: ``[echo] model=... max_tokens=... temperature=...`` then ``User: <message>``) on
127.0.0.1 at a free port, with llm-katan's fault options (``--error-rate``, ``--latency-ms``,
``--timeout-after``, ``--rate-limit-after``, ``--max-inflight``). ``FaultProxy`` sits in front of
a server and scripts what the upstream options cannot: a 429 with ``Retry-After``, one slow
reply; it records when each request arrived. The ``katan`` fixture starts servers and always
stops them (and the proxies) afterwards, failure or not.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

KATAN_VERSION = "0.22.0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Katan:
    """``model_dir``: serve that transformers model directory (llm-katan's transformers backend,
    float32, no int8 quantization) under the name ``served`` instead of the echo backend."""

    def __init__(self, *options: str, log_dir: Path, served: str = "katan-echo",
                 model_dir: Path | None = None):
        self.options, self.served, self.port = list(options), served, free_port()
        self.model_dir = model_dir
        self.log = log_dir / f"katan-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 30.0) -> "Katan":
        # "-d cpu" keeps llm-katan from importing torch to pick a device; no stats file
        what = (["-m", self.served, "-b", "echo"] if self.model_dir is None else
                ["-m", str(self.model_dir), "-n", self.served, "-b", "transformers",
                 "--no-quantize"])
        cmd = [sys.executable, "-m", "llm_katan.cli", *what, "-d", "cpu",
               "-h", "127.0.0.1", "-p", str(self.port), "--stats-file", "", "--disable-dashboard",
               "--log-level", "warning", *self.options]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llm-katan exited ({self.proc.returncode}): "
                                   f"{self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"llm-katan did not answer within {timeout} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # the echo server keeps no state worth a graceful shutdown
            self.proc.wait(10)
        self.proc = None


class FaultProxy:
    """HTTP proxy to ``upstream`` (a Katan); ``script[i]`` says what request ``i`` gets:
    ``None`` (forwarded), ``("status", code, headers)`` or ``("delay", seconds)`` (then
    forwarded). ``times`` holds each request's arrival time (``time.monotonic()``)."""

    def __init__(self, upstream: Katan, script: list | None = None):
        self.upstream, self.script, self.times = upstream, list(script or []), []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with proxy._lock:
                    i = len(proxy.times)
                    proxy.times.append(time.monotonic())
                act = proxy.script[i] if i < len(proxy.script) else None
                if act and act[0] == "status":
                    return self._send(act[1], json.dumps({"error": {"message": "scripted"}})
                                      .encode(), act[2])
                if act and act[0] == "delay":
                    time.sleep(act[1])
                req = urllib.request.Request(
                    f"http://127.0.0.1:{proxy.upstream.port}{self.path}", data=body,
                    headers={k: v for k, v in self.headers.items()
                             if k.lower() in ("authorization", "content-type")})
                try:
                    with urllib.request.urlopen(req, timeout=30) as r:
                        self._send(r.status, r.read(), {})
                except urllib.error.HTTPError as e:
                    self._send(e.code, e.read(), {})

            def _send(self, code, payload, headers):
                try:
                    self.send_response(code)
                    for k, v in {"Content-Type": "application/json", **headers}.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Servers:
    def __init__(self, log_dir: Path):
        self.log_dir, self.started = log_dir, []

    def __call__(self, *options: str, model_dir: Path | None = None, served: str = "katan-echo",
                 timeout: float = 30.0) -> Katan:
        k = Katan(*options, log_dir=self.log_dir, model_dir=model_dir, served=served)
        self.started.append(k)
        return k.start(timeout)

    def proxy(self, upstream: Katan, script: list | None = None) -> FaultProxy:
        p = FaultProxy(upstream, script)
        self.started.append(p)
        return p

    def stop_all(self) -> None:
        for s in reversed(self.started):
            s.stop()


@pytest.fixture
def katan(tmp_path_factory):
    """``katan(*llm_katan_options) -> Katan`` (started); ``katan.proxy(server, script)``."""
    servers = _Servers(tmp_path_factory.mktemp("katan"))
    try:
        yield servers
    finally:
        servers.stop_all()


@pytest.fixture(scope="module")
def katan_echo(tmp_path_factory):
    """One plain echo server shared by a test module."""
    servers = _Servers(tmp_path_factory.mktemp("katan"))
    try:
        yield servers()
    finally:
        servers.stop_all()
