"""One small HTTP endpoint per service: Prometheus metrics and health checks.

Runs in a daemon thread beside the service. Health routes answer 200 when
their check passes and 503 when it does not, which is what ECS and compose
health checks (and load balancers) expect.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

Check = Callable[[], bool]


class MetricsServer:
    """Serves `metrics_path` from `registry()` (called per scrape, so a
    multiprocess registry sees every process's latest files) and one route per
    health check."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        metrics_path: str = "/metrics",
        registry: Callable[[], CollectorRegistry] = lambda: REGISTRY,
        checks: Mapping[str, Check] | None = None,
    ) -> None:
        routes = {metrics_path: self._metrics, **{path: self._check(c) for path, c in (checks or {}).items()}}
        self._registry = registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                route = routes.get(self.path.split("?", 1)[0])
                status, content_type, body = route() if route else (404, "text/plain", b"not found\n")
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # scrapes are not news
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def _metrics(self) -> tuple[int, str, bytes]:
        return 200, CONTENT_TYPE_LATEST, generate_latest(self._registry())

    @staticmethod
    def _check(check: Check) -> Callable[[], tuple[int, str, bytes]]:
        def answer() -> tuple[int, str, bytes]:
            ok = check()
            return (200, "text/plain", b"ok\n") if ok else (503, "text/plain", b"unavailable\n")

        return answer

    def start(self) -> MetricsServer:
        """Start serving in a daemon thread; returns at once."""
        threading.Thread(target=self._server.serve_forever, name="metrics-server", daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
