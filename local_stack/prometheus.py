"""A real Prometheus server (Debian's `prometheus` package) for the local
stack, scraping the producer and the consumer with the project's own scrape
configuration and alert rules (deploy/prometheus/)."""

from __future__ import annotations

import json
import shutil
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Mapping, Sequence

from local_stack.errors import StackError
from local_stack.processes import BackgroundProcess

CONFIG_DIR = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
START_TIMEOUT_SECONDS = 30
# Where each job's metrics are served when the services run on this machine.
LOCAL_TARGETS = {"producer": ["127.0.0.1:9101"], "consumer": ["127.0.0.1:9102"]}


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if not found:
        raise StackError("the prometheus server is not installed (Debian: apt-get install prometheus)")
    return found


class PrometheusServer:
    def __init__(self, state_dir: Path, port: int) -> None:
        self.port = port
        self.home = Path(state_dir) / "prometheus"
        self.process = BackgroundProcess(
            "prometheus",
            (
                prometheus_binary(),
                f"--config.file={self.home / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.home / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-lifecycle",
            ),
            Path(state_dir),
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_targets(self, targets: Mapping[str, Sequence[str]]) -> None:
        """Point the jobs at these host:port targets; Prometheus picks the files up by itself."""
        (self.home / "targets").mkdir(parents=True, exist_ok=True)
        for job, hosts in targets.items():
            path = self.home / "targets" / f"{job}.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps([{"targets": list(hosts)}]))
            tmp.rename(path)  # atomic: Prometheus never reads half a file

    def start(self, targets: Mapping[str, Sequence[str]] = LOCAL_TARGETS) -> None:
        """Copy the project's configuration, write the targets, start, and block until ready."""
        self.home.mkdir(parents=True, exist_ok=True)
        for name in ("prometheus.yml", "alerts.yml"):
            shutil.copyfile(CONFIG_DIR / name, self.home / name)
        self.write_targets(targets)
        self.process.start()
        self.process.wait_ready(self._ready, START_TIMEOUT_SECONDS)

    def stop(self) -> None:
        self.process.stop()

    def _ready(self) -> bool:
        try:
            with _opener().open(f"{self.url}/-/ready", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def query(self, promql: str, time: float | None = None) -> list[dict]:
        """An instant query through the HTTP API; the result vector."""
        params = {"query": promql}
        if time is not None:
            params["time"] = str(time)
        with _opener().open(f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}", timeout=10) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise StackError(f"Prometheus query {promql!r} failed: {body}")
        return body["data"]["result"]

    def value(self, promql: str) -> float | None:
        """The single number a query yields, or None when it yields nothing."""
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None


def _opener():
    # No proxies: an HTTP_PROXY in the environment must not swallow loopback.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))
