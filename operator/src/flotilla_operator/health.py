"""``GET /healthz``: the replica's role and each check, as JSON; 503 when a check fails.

Other read-only JSON pages (the heap profile) can be served beside it.

kopf's own liveness endpoint runs only inside kopf, and a standby does not run kopf: this one
answers for both.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# (healthy, the report): the report is the body, healthy chooses 200 or 503.
Report = Callable[[], tuple[bool, dict[str, Any]]]
Page = Callable[[], dict[str, Any]]


def serve_health(port: int, report: Report, pages: dict[str, Page] | None = None) -> ThreadingHTTPServer:
    """Serve ``/healthz`` and ``pages`` (path: its JSON) on ``port`` (all addresses) in a daemon thread."""
    extra = dict(pages or {})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path in extra:
                self._send(200, extra[path]())
                return
            if path != "/healthz":
                known = ", ".join(["/healthz", *extra])
                self._send(404, {"error": f"no such path: {self.path}; try {known}"})
                return
            healthy, body = report()
            self._send(200 if healthy else 503, body)

        def _send(self, status: int, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            """Probes every few seconds are no news: no access log."""

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)  # noqa: S104 - the kubelet probes the pod IP
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="healthz", daemon=True).start()
    return server
