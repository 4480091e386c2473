"""A TCP forwarder on a loopback port, started and stopped by a test: a server that appears late."""

from __future__ import annotations

import selectors
import socket
import socketserver
import threading


class _Pipe(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        with socket.create_connection(self.server.target) as upstream:
            pair = {self.request: upstream, upstream: self.request}
            with selectors.DefaultSelector() as selector:
                for end in pair:
                    selector.register(end, selectors.EVENT_READ)
                while True:
                    for key, _ in selector.select():
                        data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                        if not data:
                            return
                        pair[key.fileobj].sendall(data)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.target = target
        super().__init__(("127.0.0.1", port), _Pipe)


class Forwarder:
    """Forward 127.0.0.1:``port`` to ``target`` from ``start()`` until ``stop()``."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port = port
        self.target = target
        self._server: _Server | None = None

    def start(self) -> None:
        self._server = _Server(self.port, self.target)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
