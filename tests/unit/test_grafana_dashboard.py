"""docs/grafana-dashboard.json imports into Grafana and asks only for series statesync
exports: a renamed or dropped metric fails here, not on someone's empty panel."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.registry import REGISTRY

import statesync.eventing.metrics
import statesync.metrics

DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana-dashboard.json"
SERIES = re.compile(r"\b(statesync_[a-z_]+)\b")
SAMPLES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
MODULES = (statesync.metrics, statesync.eventing.metrics)  # what registers the series


def exported() -> set[str]:
    """Every sample name statesync's metrics define: counters' _total, histograms' _bucket..."""
    return {family.name + suffix for family in REGISTRY.collect()
            if family.name.startswith("statesync_") for suffix in SAMPLES[family.type]}


def test_every_panel_queries_exported_series_through_the_imported_datasource() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    known = exported()
    used: set[str] = set()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(SERIES.findall(target["expr"]))
            assert names and names <= known, (panel["title"], names - known)
            used |= names
    # Each family shows up somewhere: a new metric gets a panel too.
    families = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in known}
    shown = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in used}
    assert families == shown
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
