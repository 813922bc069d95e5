"""Every replica's Prometheus exposition merged into one, each sample labelled with its replica."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

REPLICA_LABEL = "replica"


class _Families:
    def __init__(self, families: dict[str, Metric]):
        self._families = families

    def collect(self):
        return list(self._families.values())


def merge_expositions(by_replica: dict[str, str]) -> bytes:
    families: dict[str, Metric] = {}
    for replica in sorted(by_replica):
        for family in text_string_to_metric_families(by_replica[replica]):
            merged = families.setdefault(
                family.name, Metric(family.name, family.documentation, family.type, family.unit)
            )
            for sample in family.samples:
                labels = {**sample.labels, REPLICA_LABEL: replica}
                merged.samples.append(Sample(sample.name, labels, sample.value, sample.timestamp, sample.exemplar))
    return generate_latest(_Families(families))
