"""The Prometheus endpoint of a server under test, scraped and parsed."""

from __future__ import annotations

import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.conftest import RunningServer


class Exposition:
    """A parsed `/metrics` page: families by name, samples by name and exact labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self._samples: list[Sample] = [s for f in self.families.values() for s in f.samples]

    def value(self, name: str, **labels: str) -> float:
        found = [s.value for s in self._samples if s.name == name and s.labels == labels]
        assert len(found) == 1, (name, labels, self.series(name))
        return found[0]

    def series(self, name: str) -> list[dict[str, str]]:
        return [s.labels for s in self._samples if s.name == name]


def metrics_port(server: RunningServer) -> int:
    port = server.wait_for_log(message="listening")["metrics_port"]
    assert isinstance(port, int), port
    return port


def scrape(server: RunningServer) -> Exposition:
    url = f"http://127.0.0.1:{metrics_port(server)}/metrics"
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        return Exposition(answer.read().decode())


def settled(server: RunningServer, in_flight: int = 0) -> Exposition:
    """A scrape once `in_flight` calls remain: a call is counted just before it leaves
    "in flight", which is just after its caller has the answer."""
    deadline = time.monotonic() + 10
    while (page := scrape(server)).value("qulab_rpcs_in_flight") != in_flight:
        assert time.monotonic() < deadline, page.value("qulab_rpcs_in_flight")
        time.sleep(0.02)
    return page
