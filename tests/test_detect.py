"""Each detector fires on its signal, stays quiet on normal data, resumes warm from a pickle."""

from __future__ import annotations

import pickle
import random

import pytest

from shared.policy import Policy
from ship_agent.detect import DetectStage
from ship_agent.detect.changepoint import ChangepointDetector
from ship_agent.detect.hst import HalfSpaceTreesDetector
from ship_agent.detect.logs import ErrorBurstDetector, LogPatternDetector, TemplateNoveltyDetector
from ship_agent.detect.robust import RobustDetector
from ship_agent.detect.thresholds import ThresholdDetector
from ship_agent.templates import TemplateStage
from tests.conftest import T0, logline, metric


def test_threshold_needs_its_duration_and_rearms(policy: Policy) -> None:
    d = ThresholdDetector(policy.detect)
    # SNR 6.5 dB: below the 12 dB warning and the 7 dB floor; the floor needs 60 s.
    hits = [d.observe(metric("vsat-modem-01", "vsat.snr_db", 6.5, T0 + i * 20)) for i in range(3)]
    assert [h is None for h in hits] == [True, True, True]  # 0 s, 20 s, 40 s held
    h = d.observe(metric("vsat-modem-01", "vsat.snr_db", 6.5, T0 + 60))
    assert h is not None and h.detector == "threshold:vsat_snr_floor"
    assert h.incident_type == "comms_outage" and h.score == 1.0
    assert h.evidence["held_s"] == 60 and h.evidence["threshold"] == 7.0
    # still breaking: repeated at most once a minute; recovery re-arms the duration
    assert d.observe(metric("vsat-modem-01", "vsat.snr_db", 6.5, T0 + 80)) is None
    assert d.observe(metric("vsat-modem-01", "vsat.snr_db", 15.0, T0 + 100)) is None
    assert d.observe(metric("vsat-modem-01", "vsat.snr_db", 6.5, T0 + 120)) is None
    # another device is independent
    assert d.observe(metric("vsat-modem-02", "vsat.snr_db", 6.5, T0 + 120)) is None


def test_threshold_ignores_normal_values(policy: Policy) -> None:
    d = ThresholdDetector(policy.detect)
    rng = random.Random(1)
    for i in range(1000):
        assert (
            d.observe(metric("vsat-modem-01", "vsat.snr_db", 15 + rng.gauss(0, 0.5), T0 + i * 20))
            is None
        )


def test_robust_statistics_find_a_level_shift_not_noise(policy: Policy) -> None:
    d = RobustDetector(policy.detect)
    rng = random.Random(2)
    for i in range(2000):
        assert d.observe(metric("fw-01", "net.mem_pct", 40 + rng.gauss(0, 1), T0 + i * 45)) is None
    hits = [d.observe(metric("fw-01", "net.mem_pct", 80.0, T0 + (2000 + i) * 45)) for i in range(3)]
    hit = hits[0]  # far beyond anything seen: reported at once
    assert hit is not None and hit.detector == "robust" and hit.incident_type == "resource_pressure"
    assert hit.evidence["z"] > policy.detect.robust.range_min_z
    assert hit.evidence["range"][1] < 45
    # corroborates only: below the score that opens an incident on its own
    assert hit.score < policy.correlate.open_min_score
    assert hits[1] is None and hits[2] is None  # one report per episode, not one per sample


def test_robust_likelihood_flags_a_run_of_unusual_deviations(policy: Policy) -> None:
    """No single value leaves the range, but a run of them is far out of the series' habit."""
    d = RobustDetector(policy.detect)
    rng = random.Random(6)
    for i in range(3000):
        assert d.observe(metric("fw-01", "net.mem_pct", 40 + rng.gauss(0, 1), T0 + i * 45)) is None
    hit = None
    for i in range(3000, 3040):
        hit = hit or d.observe(metric("fw-01", "net.mem_pct", 40 + 3.0 * (-1) ** i, T0 + i * 45))
    assert hit is not None
    assert hit.evidence["tail_probability"] < policy.detect.robust.likelihood_eps
    low, high = hit.evidence["range"]
    assert low < hit.evidence["value"] < high


def test_daily_profile_makes_the_evening_normal_and_its_load_at_noon_not(policy: Policy) -> None:
    """Four days of a quiet day and a busy evening, then the evening's load at noon."""

    def day_curve(ts: float) -> float:
        return 70.0 if 18 <= ts % 86_400 / 3600 < 23 else 30.0

    def run(bins: int) -> tuple[int, bool]:
        robust = policy.detect.robust.model_copy(update={"daily_bins": bins})
        d = RobustDetector(policy.detect.model_copy(update={"robust": robust}))
        rng = random.Random(7)
        start = 1_790_035_200.0  # a midnight (UTC)
        late = 0
        for i in range(4 * 1440):
            ts = start + i * 60
            if d.observe(metric("ap-1", "net.cpu_pct", day_curve(ts) + rng.gauss(0, 1), ts)):
                late += i >= 2 * 1440  # days 3 and 4
        noon = start + 4 * 86_400 + 12 * 3600
        caught = any(
            d.observe(metric("ap-1", "net.cpu_pct", 70 + rng.gauss(0, 1), noon + i * 60))
            for i in range(30)
        )
        return late, caught

    assert run(24) == (0, True)
    assert run(0)[1] is False  # without the profile, 70 is just the series' usual range


def test_changepoint_finds_a_sustained_shift_and_not_noise(policy: Policy) -> None:
    d = ChangepointDetector(policy.detect)
    rng = random.Random(8)
    for i in range(2000):
        assert d.observe(metric("sw-1", "net.temp_c", 36 + rng.gauss(0, 1), T0 + i * 60)) is None
    hits = [
        d.observe(metric("sw-1", "net.temp_c", 42 + rng.gauss(0, 1), T0 + i * 60))
        for i in range(2000, 2100)
    ]
    found = [h for h in hits if h is not None]
    assert len(found) == 1 and found[0].detector == "changepoint"
    assert (
        found[0].evidence["direction"] == "up" and found[0].incident_type == "hardware_environment"
    )
    assert found[0].score < policy.correlate.open_min_score


def test_statistical_hold_off_is_per_series(policy: Policy) -> None:
    d = RobustDetector(policy.detect)
    hold = policy.detect.robust.holdoff_points
    rng = random.Random(9)
    for i in range(2000):
        for dev in ("h1", "h2"):
            d.observe(metric(dev, "host.mem_pct", 50 + rng.gauss(0, 1), T0 + i * 30))
    first = d.observe(metric("h1", "host.mem_pct", 99.0, T0 + 2000 * 30))
    other = d.observe(metric("h2", "host.mem_pct", 99.0, T0 + 2000 * 30))
    assert first is not None and other is not None
    quiet = [
        d.observe(metric("h1", "host.mem_pct", 200.0 + i, T0 + (2001 + i) * 30))
        for i in range(hold)
    ]
    assert quiet == [None] * hold
    assert d.observe(metric("h1", "host.mem_pct", 500.0, T0 + (2001 + hold) * 30)) is not None


def test_robust_skips_excluded_series(policy: Policy) -> None:
    d = RobustDetector(policy.detect)
    for i in range(200):
        assert d.observe(metric("gps-01", "nav.heading_deg", 0 if i < 150 else 180, T0 + i)) is None


def test_half_space_trees_flag_an_unusual_kpi_vector(policy: Policy) -> None:
    d = HalfSpaceTreesDetector(policy.detect)
    rng = random.Random(3)
    hit = None
    n = policy.detect.hst.warmup_vectors + 300
    for i in range(n):
        ts = T0 + i * 60
        for name, mu in (("net.cpu_pct", 30), ("net.mem_pct", 50), ("net.temp_c", 36)):
            assert d.observe(metric("sw-core-01", name, mu + rng.gauss(0, 1), ts)) is None
    for i in range(n, n + 10):
        ts = T0 + i * 60
        for name, value in (("net.cpu_pct", 99.0), ("net.mem_pct", 95.0), ("net.temp_c", 70.0)):
            hit = hit or d.observe(metric("sw-core-01", name, value, ts))
    assert hit is not None and hit.detector == "hst" and hit.device == "sw-core-01"
    assert set(hit.evidence["vector"]) == {"net.cpu_pct", "net.mem_pct", "net.temp_c"}


def test_log_pattern_counts_within_its_window(policy: Policy) -> None:
    d = LogPatternDetector(policy.detect)
    line = "Failed password for invalid user admin from 203.0.113.9 port 4242 ssh2"
    # 19 failures spread over 10 minutes: auth failures, but no brute force
    hits = [d.observe(logline("crew-srv-01", "sshd", line, T0 + i * 30)) for i in range(19)]
    fired = [h for h in hits if h is not None]
    assert fired and {h.incident_type for h in fired} == {"auth_failure"}
    # 20 within a minute: a security alert
    burst = [d.observe(logline("crew-srv-01", "sshd", line, T0 + 1000 + i)) for i in range(20)]
    alert = [h for h in burst if h is not None and h.incident_type == "security_alert"]
    assert len(alert) == 1 and alert[0].evidence["count"] == 20
    assert alert[0].evidence["sample"] == line


def test_error_burst(policy: Policy) -> None:
    d = ErrorBurstDetector(policy.detect)
    p = policy.detect.error_burst
    hits = [
        d.observe(logline("pos-srv-01", "pos", f"txn {i} failed", T0 + i * 0.1, severity=3))
        for i in range(p.count)
    ]
    assert hits[-1] is not None and all(h is None for h in hits[:-1])
    info = [d.observe(logline("res-srv-01", "app", "ok", T0 + i * 0.1)) for i in range(200)]
    assert all(h is None for h in info)


def test_new_and_rare_templates_after_grace(policy: Policy) -> None:
    stage = TemplateStage(policy.detect.templates)
    d = TemplateNoveltyDetector(policy.detect)
    grace = policy.detect.templates.new_template_grace_s
    early = [logline("ent-srv-01", "app", f"session {i} opened", T0 + i) for i in range(50)]
    stage.apply(early)
    assert all(d.observe(e) is None for e in early)
    late = [
        logline(
            "ent-srv-01",
            "kernel",
            "eth0: NIC firmware crashed, resetting",
            T0 + grace + i,
            severity=2,
        )
        for i in range(5)
    ]
    stage.apply(late)
    hits = [d.observe(e) for e in late]
    assert hits[0] is not None and hits[0].detector == "template:new"
    assert hits[1] is not None and hits[1].detector == "template:rare"
    assert hits[4] is None  # seen often enough now
    again = logline("ent-srv-01", "app", "session 9 opened", T0 + grace)
    stage.apply([again])
    assert d.observe(again) is None


def test_templates_mask_variables(policy: Policy) -> None:
    stage = TemplateStage(policy.detect.templates)
    evs = [
        logline(
            "fw-01", "fw", f"DENY TCP 10.0.{i}.7:{1000 + i} -> 192.0.2.1:22 id 0x{i:04x}", T0 + i
        )
        for i in range(30)
    ]
    stage.apply(evs)
    assert len({e.template_id for e in evs}) == 1
    assert "<IP>" in evs[-1].template and "<HEX>" in evs[-1].template
    changed, created = stage.take_changes()
    assert len(created) == 1 and changed[0].size == 30


@pytest.mark.parametrize("kind", ["metric", "log"])
def test_every_detector_pickles_and_resumes_warm(policy: Policy, kind: str) -> None:
    stage = DetectStage(policy)
    rng = random.Random(4)
    logs, metrics = [], []
    for i in range(700):
        ts = T0 + i * 20
        metrics.append(metric("vsat-modem-01", "vsat.snr_db", 15 + rng.gauss(0, 0.3), ts))
        metrics.append(metric("vsat-modem-01", "vsat.ber", 1e-7, ts))
        logs.append(logline("crew-srv-01", "sshd", "Failed password for root from 1.2.3.4", ts))
    stage.apply(logs, metrics)
    blob = stage.dump_state()
    restored = DetectStage(policy)
    restored.load_state(blob)
    fresh = DetectStage(policy)

    def run(s: DetectStage) -> list[tuple[str, float, str]]:
        if kind == "metric":
            nxt = [
                metric("vsat-modem-01", "vsat.snr_db", 3.0, T0 + 14_000 + i * 20) for i in range(6)
            ]
            hits = s.apply([], nxt)
        else:
            nxt = [
                logline("crew-srv-01", "sshd", "Failed password for root", T0 + 14_000 + i)
                for i in range(25)
            ]
            hits = s.apply(nxt, [])
        return [(h.detector, h.score, h.summary) for h in hits]

    expected = run(stage)
    assert run(restored) == expected  # resumes exactly where it stopped
    assert run(fresh) != expected  # and that differs from starting cold


def test_log_patterns_take_plain_words_and_regular_expressions(policy: Policy) -> None:
    fleet = policy.model_copy(deep=True)
    patterns = [
        p.model_copy(update={"pattern": "disk [0-9]+ failed", "count": 2, "name": "rx"})
        if p.name == "overheat_log"
        else p
        for p in policy.detect.log_patterns
    ]
    detect = fleet.detect.model_copy(update={"log_patterns": patterns})
    d = LogPatternDetector(detect)
    assert d.observe(logline("srv-01", "k", "disk 3 failed", T0)) is None
    hit = d.observe(logline("srv-01", "k", "raid: disk 12 failed", T0 + 1))
    assert hit is not None and hit.detector == "pattern:rx"
    assert d.observe(logline("srv-01", "k", "disk x failed", T0 + 2)) is None
    # a plain-word alternation matches any of its words anywhere in the line
    words = [
        d.observe(logline("h", "sshd", f"{w} for root", T0 + i))
        for i, w in enumerate(["authentication failure", "Failed password"] * 3)
    ]
    assert [h.detector for h in words if h] == ["pattern:ssh_auth_failures"]


def test_device_models_checkpoint_one_by_one_and_restore_lazily(policy: Policy) -> None:
    hst = policy.detect.hst.model_copy(update={"warmup_vectors": 20, "min_features": 1})
    detect = policy.detect.model_copy(update={"hst": hst})
    live = HalfSpaceTreesDetector(detect)
    rng = random.Random(5)

    def poll(d: HalfSpaceTreesDetector, i: int, cpu: float) -> list[float]:
        hits = [
            d.observe(metric(dev, "net.cpu_pct", cpu + rng.gauss(0, 1), T0 + i * 60))
            for dev in ("sw-1", "sw-2")
        ]
        return [h.score for h in hits if h is not None]

    for i in range(400):  # more than one HalfSpaceTrees window
        poll(live, i, 30.0)
    restored = HalfSpaceTreesDetector(detect)
    restored.saved = {dev: live.dump_device(dev) for dev in live.devices}
    assert restored.devices == {}  # nothing unpickled until a device reports again
    state = rng.getstate()
    expected = [poll(live, 400 + i, 99.0) for i in range(5)]
    rng.setstate(state)
    assert [poll(restored, 400 + i, 99.0) for i in range(5)] == expected
    assert set(restored.devices) == {"sw-1", "sw-2"} and restored.saved == {}
    assert any(expected)  # the models were warm enough to score the jump


def test_half_space_trees_leave_one_kpi_devices_to_the_series_detectors(policy: Policy) -> None:
    hst = policy.detect.hst.model_copy(update={"warmup_vectors": 20})
    d = HalfSpaceTreesDetector(policy.detect.model_copy(update={"hst": hst}))
    rng = random.Random(10)
    hits = [
        d.observe(
            metric("ups-1", "ups.load_pct", (30 if i < 400 else 99) + rng.gauss(0, 1), T0 + i)
        )
        for i in range(420)
    ]
    assert hits == [None] * 420 and d.devices["ups-1"].seen == 0


def test_a_checkpoint_from_an_older_state_layout_restores_the_rest_cold(policy: Policy) -> None:
    """Before the upgrade robust kept a list of floats per series; that must not crash."""
    old = pickle.dumps(
        {
            "robust": {"series": {("fw-01", "net.mem_pct"): [600.0, 40.0, 1.0, 0.0, 0.0]}},
            "pattern": {"windows": {("crew-srv-01", 0): "kept"}},
        }
    )
    stage = DetectStage(policy)
    stage.load_state(old)
    robust = next(d for d in stage.metric_detectors if d.name == "robust")
    pattern = next(d for d in stage.log_detectors if d.name == "pattern")
    assert robust.series == {} and pattern.windows == {("crew-srv-01", 0): "kept"}
    assert stage.apply([], [metric("fw-01", "net.mem_pct", 41.0, T0)]) == []
