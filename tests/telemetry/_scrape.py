"""Scraping a Prometheus endpoint over HTTP, as Prometheus does."""

from __future__ import annotations

import urllib.request

import anyio.to_thread
from prometheus_client.parser import text_string_to_metric_families


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return str(answer.read().decode())


class Scrape:
    """One scrape's samples, looked up by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples = [
            sample
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples of that name whose labels include these."""
        found = [
            sample.value
            for sample in self.samples
            if sample.name == name
            and all(sample.labels.get(k) == v for k, v in labels.items())
        ]
        assert found, f"no sample {name}{labels} in:\n{self.text}"
        return float(sum(found))

    def label_values(self, name: str, label: str) -> set[str]:
        return {s.labels[label] for s in self.samples if s.name == name}


async def scrape(address: str) -> Scrape:
    """GETs /metrics from host:port (off the event loop)."""
    text = await anyio.to_thread.run_sync(_get, f"http://{address}/metrics")
    return Scrape(text)
