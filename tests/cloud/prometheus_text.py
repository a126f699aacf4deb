"""Reading a Prometheus text exposition in tests: sample values by name and labels, and every name a query may use."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

# The series a family of each type exposes (what PromQL names), after prometheus_client's own naming.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "unknown": ("",),
}


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    """The sample's value; 0 when absent (a labelled counter has no series before its first increment)."""
    return samples(text).get((name, frozenset(labels.items())), 0.0)


def exposed_names(text: str) -> set[str]:
    """Every series name the exposition declares (by # TYPE), whether or not it has samples yet."""
    return {family.name + suffix for family in text_string_to_metric_families(text) for suffix in SUFFIXES[family.type]}
