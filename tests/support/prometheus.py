"""A real Prometheus server (Debian's ``prometheus`` package) for tests, and its HTTP API."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.support.kube import ROOT
from tests.support.processes import free_port, wait_until_answering


def node_prometheus_url() -> str:
    """The real node's Prometheus (``make node-up`` writes its URL beside the kubeconfig)."""
    path = Path(os.environ.get("FLOTILLA_CLUSTER_DIR") or ROOT / ".cluster") / "prometheus-url"
    assert path.exists(), f"{path} is missing: the node's Prometheus is not running (make node-up)"
    return path.read_text().strip()


@dataclass(frozen=True)
class ScrapeJob:
    """One scrape job: its name (the ``job`` label), ``host:port`` targets and extra target labels."""

    name: str
    targets: list[str]
    labels: dict[str, str] = field(default_factory=dict)


class PrometheusServer:
    """``prometheus`` on a loopback port, scraping ``jobs`` every second and evaluating ``rule_files``."""

    def __init__(
        self, directory: Path, jobs: list[ScrapeJob], rule_files: list[Path], *, exemplars: bool = False
    ) -> None:
        self.directory = directory
        self.exemplar_storage = exemplars
        self.jobs = jobs
        self.rule_files = rule_files
        self.port = free_port()
        self.log_path = directory / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the web UI and HTTP API."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> PrometheusServer:
        """Write the configuration, start the server and wait until it is ready."""
        binary = shutil.which("prometheus")
        assert binary, "prometheus is missing: run scripts/prometheus.sh (make test does)"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": [
                {"job_name": job.name, "static_configs": [{"targets": job.targets, "labels": job.labels}]}
                for job in self.jobs
            ],
        }
        config_path = self.directory / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={self.directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
                *(["--enable-feature=exemplar-storage"] if self.exemplar_storage else []),
            ],
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_until_answering(
            f"{self.url}/-/ready",
            self.process,
            "prometheus",
            lambda: self.log_path.read_text()[-3000:],
            timeout,
        )
        return self

    def stop(self) -> None:
        """Stop the server (its data directory goes with the test's temporary directory)."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def _get(self, path: str, **params: Any) -> Any:
        response = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The result of an instant query at the current time (a vector, or a scalar as one entry)."""
        data = self._get("query", query=expr)
        return data["result"] if data["resultType"] in ("vector", "matrix") else [{"value": data["result"]}]

    def wait_for_scrapes(self, rounds: int = 2, timeout: float = 30) -> None:
        """Until every target has been scraped ``rounds`` times from now (``rate`` needs two)."""
        for _ in range(rounds):
            since = time.time()
            deadline = time.monotonic() + timeout
            while True:
                oldest = self.query("min(timestamp(up))")
                if oldest and float(oldest[0]["value"][1]) > since:
                    break
                assert time.monotonic() < deadline, f"a target was not scraped within {timeout}s"
                time.sleep(0.2)

    def exemplars(self, selector: str, minutes: int = 10) -> list[dict[str, Any]]:
        """The stored exemplars of the series ``selector`` picks, over the last ``minutes``."""
        now = time.time()
        return list(self._get("query_exemplars", query=selector, start=now - minutes * 60, end=now))

    def label_values(self, label: str, metric: str) -> set[str]:
        """The values of ``label`` on the series of ``metric`` (Grafana's ``label_values``)."""
        return set(self._get(f"label/{label}/values", **{"match[]": metric}))

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets with their health."""
        return list(self._get("targets")["activeTargets"])

    def rules(self) -> list[dict[str, Any]]:
        """Every loaded rule, with its health, last error and state."""
        return [rule for group in self._get("rules")["groups"] for rule in group["rules"]]

    def alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts."""
        return list(self._get("alerts")["alerts"])
