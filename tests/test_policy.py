"""Policy bundle: defaults load, merge order, every error with file and key path, CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shared.policy import PolicyError, default_dir, load_policy
from shared.taxonomy import IncidentType, Severity


def test_defaults_match_the_domain_notes() -> None:
    p = load_policy()
    assert p.correlate.windows_s[IncidentType.LINK_DEGRADATION] == 600
    assert p.correlate.windows_s[IncidentType.COMMS_OUTAGE] == 1200
    assert p.correlate.dedup_ttl_s == 900 and p.correlate.suppression_ttl_s == 1800
    assert p.correlate.max_evidence == 50
    assert p.correlate.severity[IncidentType.SAFETY] is Severity.CRITICAL
    assert p.correlate.severity[IncidentType.AUTH_FAILURE] is Severity.LOW
    assert p.retention.ship.events_days == 5 and p.retention.ship.incidents_days == 30
    assert p.remediate.actions["reboot_device"].approval == "two_person"
    assert {r.name for r in p.detect.thresholds} >= {"vsat_snr_floor", "vsat_ber_high"}
    floor = next(r for r in p.detect.thresholds if r.name == "vsat_snr_floor")
    assert (floor.value, floor.for_s, floor.type) == (7.0, 60, IncidentType.COMMS_OUTAGE)


def test_every_segment_file_ships_in_the_package() -> None:
    names = {f.name for f in default_dir().iterdir()}
    for seg in (
        "ingest",
        "detect",
        "correlate",
        "notify",
        "remediate",
        "llm",
        "retention",
        "privacy",
        "slo",
        "sync",
    ):
        assert f"{seg}.yaml" in names


def _fleet(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_fleet_then_profile_then_ship_overrides(tmp_path: Path) -> None:
    fleet = _fleet(
        tmp_path,
        {
            "correlate.yaml": "correlate:\n  dedup_ttl_s: 600\n  max_evidence: 20\n",
            "policy.yaml": (
                "profile: standard\n"
                "ships:\n  MV-A:\n    profile: constrained\n    correlate: {max_evidence: 10}\n"
            ),
            "ships/MV-B.yaml": "ingest:\n  queue_limit: 5000\n",
        },
    )
    fleet_default = load_policy(fleet)
    assert fleet_default.correlate.dedup_ttl_s == 600
    assert fleet_default.correlate.max_evidence == 20
    assert fleet_default.correlate.suppression_ttl_s == 1800  # untouched default survives
    a = load_policy(fleet, "MV-A")
    assert a.correlate.max_evidence == 10 and a.profile == "constrained"
    assert a.detect.hst.n_trees == 5  # from the profile overlay
    assert load_policy(fleet, "MV-B").ingest.queue_limit == 5000


def test_errors_name_file_and_key_path_for_every_problem(tmp_path: Path) -> None:
    fleet = _fleet(
        tmp_path,
        {
            "detect.yaml": (
                "detect:\n  thresholds:\n"
                "    - {name: x, metric: m, op: '!=', value: 1, for_s: 0, type: link_degradation}\n"
                "  robust: {alpha: 2}\n"
            ),
            "correlate.yaml": "correlate:\n  dedup_ttl_s: -5\n  bogus_key: 1\n",
        },
    )
    with pytest.raises(PolicyError) as info:
        load_policy(fleet)
    problems = info.value.problems
    text = "\n".join(problems)
    assert f"{fleet / 'detect.yaml'}: detect.thresholds[0].op" in text
    assert f"{fleet / 'detect.yaml'}: detect.robust.alpha" in text
    assert f"{fleet / 'correlate.yaml'}: correlate.dedup_ttl_s" in text
    assert f"{fleet / 'correlate.yaml'}: correlate.bogus_key" in text
    assert len(problems) >= 4


def test_yaml_syntax_error_has_line_number(tmp_path: Path) -> None:
    fleet = _fleet(tmp_path, {"slo.yaml": "slo:\n  fast_path_p99_ms: [1,\n"})
    with pytest.raises(PolicyError, match=r"slo.yaml:\d+:\d+: YAML syntax"):
        load_policy(fleet)


def test_bad_regex_in_log_pattern_is_reported(tmp_path: Path) -> None:
    fleet = _fleet(
        tmp_path,
        {
            "detect.yaml": (
                "detect:\n  log_patterns:\n"
                "    - {name: x, pattern: '(unclosed', count: 1, window_s: 1, type: safety}\n"
            )
        },
    )
    with pytest.raises(PolicyError, match=r"detect.log_patterns\[0\].pattern.*regular expression"):
        load_policy(fleet)


def test_policy_check_cli_prints_effective_policy_or_errors(tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "seawatch", "policy", "check", str(default_dir()), "--ship", "MV-X"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "ship_id: MV-X" in ok.stdout and "dedup_ttl_s: 900" in ok.stdout
    fleet = _fleet(tmp_path, {"slo.yaml": "slo:\n  agent_rss_mb: lots\n"})
    bad = subprocess.run(
        [sys.executable, "-m", "seawatch", "policy", "check", str(fleet)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1
    assert "slo.yaml: slo.agent_rss_mb" in bad.stderr


@pytest.mark.parametrize(
    ("root", "expected"),
    [
        ("profile: [1]\n", "profile: not a name"),
        ("profiles: 3\n", "profiles: not a mapping"),
        ("profiles: {standard: 3}\n", "profiles.standard: not a mapping"),
    ],
)
def test_malformed_profiles_are_reported_not_raised(
    tmp_path: Path, root: str, expected: str
) -> None:
    """A bundle from shore can hold anything: the loader reports it, never crashes."""
    (tmp_path / "policy.yaml").write_text(root, encoding="utf-8")
    with pytest.raises(PolicyError) as err:
        load_policy(tmp_path)
    assert expected in str(err.value)
