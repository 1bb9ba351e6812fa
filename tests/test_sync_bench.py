"""`seawatch bench sync` at a tiny scale: the figures that do not depend on wall time meet
their targets (bytes on the wire, eviction order, gap records), the others are sane."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import pytest

from seawatch.cli import build_parser


def _options(parser: argparse.ArgumentParser) -> list[tuple[str, object, str | None]]:
    return [
        (a.dest, a.default, a.help)
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction)
    ]


@pytest.mark.parametrize("name", ["wire", "insight"])
def test_cli_repeats_the_options_of_benchmarks_slow_to_import(name: str) -> None:
    """The CLI repeats these benchmarks' flags so that it need not import them to build."""
    module = importlib.import_module(f"bench.{name}")
    own = argparse.ArgumentParser()
    module.add_arguments(own)
    bench = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices["bench"]
    sub = next(a for a in bench._actions if isinstance(a, argparse._SubParsersAction))
    assert _options(sub.choices[name]) == _options(own)


def test_sync_bench_small(tmp_path: Path) -> None:
    pytest.importorskip("chdb")
    from bench import sync

    cfg = sync.Config(
        catchup_items=300,
        outage_s=5.0,
        bytes_incidents=50,
        bytes_fault_rounds=1,
        retention_days=0.25,
        retention_bound=400,  # small enough that the quarter day must evict
        seed=5,  # whose plan has a bulk-lane fault (crew logins) in the first hour
    )
    figures = sync.run(("catchup", "bytes", "retention"), cfg, tmp_path)
    by = {(f.scenario, f.name.strip()): f for f in figures}

    def value(scenario: str, name: str) -> float:
        v = by[(scenario, name)].value
        assert v is not None, (scenario, name)
        return v

    assert value("catchup", "incidents queued during the outage (10/30/60 % urgent/normal/bulk)")
    first = value("catchup", "first arrival at the hub after restore")
    assert 0 < first <= value("catchup", "all stored at the hub after restore")
    assert value("catchup", "hub sourcing restarts on reconnect (kicks)") >= 1

    judged = [f for f in figures if f.scenario == "bytes" and f.ok is not None]
    assert judged and all(f.ok for f in judged), judged  # <= 30 % of plain JSON
    assert value("bytes", "simulated faults: versions delivered, one per message") > 0
    assert value("bytes", "synthetic incidents: versions delivered, one per message") >= 45

    bulk, normal = value("retention", "evicted: bulk"), value("retention", "evicted: normal")
    assert bulk >= 1 and normal >= 1, "the bound must make the outbox evict from two lanes"
    retention = [f for f in figures if f.scenario == "retention" and f.ok is not None]
    assert all(f.ok for f in retention), [f for f in retention if not f.ok]
    assert value("retention", "evictions of a lane while a lower lane kept rows") == 0
    assert value("retention", "keys in queued gap records") == bulk + normal
    assert value("retention", "evicted keys in the hub's gap table after delivery") == bulk + normal
    assert sync.report(figures)[0].split()[:2] == ["scenario", "measure"]
