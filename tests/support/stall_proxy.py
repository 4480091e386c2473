"""A plain-HTTP proxy in front of ``kubectl proxy`` that a test can stall: watch streams silenced
(connections held open, bytes swallowed), or the whole API server out of reach (a partition).

``kubectl proxy`` does the authentication (as the kubeconfig given); the process under test
talks to this proxy through ``kubeconfig()``, a kubeconfig with no credentials.
"""

from __future__ import annotations

import http.client
import itertools
import re
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from tests.support.kube import BIN

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade"}


class StallProxy:
    """``kubectl proxy`` with this forwarder before it; ``silence()``, ``partition()``, ``heal()``."""

    def __init__(self, kubeconfig: Path) -> None:
        self._kubectl = subprocess.Popen(
            [str(BIN / "kubectl"), "--kubeconfig", str(kubeconfig), "proxy", "--port=0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self._kubectl.stdout is not None
        line = self._kubectl.stdout.readline()
        found = re.search(r"127\.0\.0\.1:(\d+)", line)
        if not found:
            self._kubectl.kill()
            raise RuntimeError(f"kubectl proxy did not start: {line!r}")
        self.upstream_port = int(found.group(1))
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self.open_streams: set[int] = set()
        self._silenced: set[int] = set()
        self.silence_new = False
        self.partitioned = threading.Event()
        self.watch_requests = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def kubeconfig(self, path: Path) -> Path:
        """A kubeconfig that reaches the API server through this proxy."""
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "proxy", "cluster": {"server": self.url}}],
                    "users": [{"name": "proxy", "user": {}}],
                    "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}],
                    "current-context": "proxy",
                }
            )
        )
        return path

    def silence(self, *, new_streams: bool = False) -> int:
        """Swallow what the open watch streams (and with ``new_streams``, every later one) carry."""
        with self._lock:
            self._silenced |= self.open_streams
            self.silence_new = new_streams
            return len(self.open_streams)

    def partition(self) -> None:
        """No request reaches the API server, none is answered; the watches go silent."""
        self.partitioned.set()
        self.silence(new_streams=True)

    def heal(self) -> None:
        """Forward everything again (silenced streams stay silent until they end)."""
        self.partitioned.clear()
        with self._lock:
            self.silence_new = False

    def silenced(self, stream: int) -> bool:
        with self._lock:
            return stream in self._silenced

    def stream_opened(self) -> int:
        with self._lock:
            stream = next(self._ids)
            self.open_streams.add(stream)
            self.watch_requests += 1
            if self.silence_new:
                self._silenced.add(stream)
            return stream

    def stream_closed(self, stream: int) -> None:
        with self._lock:
            self.open_streams.discard(stream)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._kubectl.terminate()
        self._kubectl.wait(10)


def _handler(proxy: StallProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._forward()

        do_POST = do_PUT = do_PATCH = do_DELETE = do_GET  # noqa: N815 - http.server's names

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            while proxy.partitioned.is_set():
                time.sleep(0.1)  # the request is never answered while the partition lasts
            upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=600)
            headers = {key: value for key, value in self.headers.items() if key.lower() not in HOP_BY_HOP}
            try:
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value)
                if re.search(r"[?&]watch=(true|1)", self.path):
                    self._stream(response)
                else:
                    data = response.read()
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
            except (OSError, http.client.HTTPException):
                self.close_connection = True  # the client went away, or kubectl proxy did
            finally:
                upstream.close()

        def _stream(self, response: Any) -> None:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            stream = proxy.stream_opened()
            try:
                while chunk := response.read1(65536):
                    if proxy.silenced(stream):
                        continue  # swallowed: the connection stays open and says nothing
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            finally:
                proxy.stream_closed(stream)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: a test reads the proxy's counters, not an access log."""

    return Handler
