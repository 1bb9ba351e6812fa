"""Wire codec 2: zstd with a shipped dictionary, beside the format-1 frames it must still read."""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import orjson
import pytest
import zstandard
from pydantic import BaseModel

from shared import wire
from shared.ids import new_id
from shared.models import Heartbeat, Incident
from shared.policy import Policy
from ship_agent.simulator import Simulator
from sync import dictionary
from sync.privacy import Redactor

# A shipped dictionary's bytes never change: frames in outboxes and archives name it by
# version. Train a new version instead of editing one, and add its digest here.
SHIPPED = {
    1: "a54a8357e85991d364e9c1bf23bbd8a4655860b5abea4dd3bd9f7a08a95a6cb3",
    2: "66c7ce953d3b16338abc3d7c20822b5f03a04a6e600da32063aaa5ba6dd7375d",
}
START = 1_790_035_200.0
FAULTS = ("gps_fix_loss", "service_crash_loop", "rain_fade", "sshd_bruteforce")


@pytest.fixture(scope="module")
def incidents(policy: Policy) -> list[Incident]:
    """Incident versions from the real pipeline, on a seed the dictionary never saw."""
    assert dictionary.TRAIN_SEED != 7
    sim = Simulator("MV-HELD-OUT", seed=7, start_ts=START)
    for i, name in enumerate(FAULTS):
        sim.inject(name, START + 1200 + 900 * i)
    messages = dictionary.outbox_messages(sim, 3 * 3600, policy)
    out = Redactor.from_policy(policy.privacy).redact(messages)
    found = [m for m in out if isinstance(m, Incident)]
    assert len(found) >= 8
    return found


def _plain_json(m: BaseModel) -> int:
    return len(orjson.dumps(m.model_dump(mode="json")))


def test_shipped_dictionaries_never_change() -> None:
    assert set(wire.DICTIONARIES) == set(SHIPPED)
    for version, name in wire.DICTIONARIES.items():
        data = resources.files("shared").joinpath("dicts", name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == SHIPPED[version], name
    assert max(SHIPPED) == wire.DICTIONARY_VERSION


def test_single_incidents_round_trip_through_the_dictionary(incidents: list[Incident]) -> None:
    for inc in incidents:
        frame = wire.encode([inc])
        assert frame[:5] == b"SW" + bytes((2, wire.ZSTD_DICT, wire.DICTIONARY_VERSION))
        assert wire.decode(frame) == [inc]
    # a few versions in one frame, still small enough for the dictionary
    frame = wire.encode(incidents[:3])
    assert frame[3] == wire.ZSTD_DICT and wire.decode(frame) == incidents[:3]


def test_the_dictionary_is_what_makes_single_incidents_small(incidents: list[Incident]) -> None:
    plain = zstandard.ZstdCompressor(level=wire.LEVEL)
    ratios = [len(wire.encode([i])) / len(plain.compress(wire.dumps([i]))) for i in incidents]
    # random ids vary a frame by a few bytes; the largest incidents (long evidence, the
    # readings) gain least, up to ~0.5 of plain zstd
    assert max(ratios) < 0.6 and statistics.mean(ratios) < 0.45, ratios
    share = statistics.mean(len(wire.encode([m])) / _plain_json(m) for m in incidents)
    assert share <= 0.25


def test_format_1_frames_are_still_read_and_still_written_on_request(
    incidents: list[Incident],
) -> None:
    body = wire.dumps(incidents[:2])
    old = b"SW\x01\x01" + zstandard.ZstdCompressor(level=3).compress(body)
    assert wire.decode(old) == incidents[:2]
    assert wire.decode(b"SW\x01\x00" + body) == incidents[:2]
    frame = wire.encode(incidents[:1], dictionary=None)
    assert frame[:4] == b"SW\x01\x01" and wire.decode(frame) == incidents[:1]
    beat = Heartbeat(
        tracking_id=new_id(),
        ship_id="MV-A",
        ts=datetime.now(UTC),
        agent_version="0.1.0",
        policy_version="p1",
    )
    assert wire.encode([beat])[:4] == b"SW\x01\x00", "small bodies stay raw format 1"


def test_unknown_dictionary_versions_are_refused_with_the_version(
    incidents: list[Incident],
) -> None:
    frame = bytearray(wire.encode(incidents[:1]))
    frame[4] = 9
    with pytest.raises(wire.WireError, match="unknown zstd dictionary version 9"):
        wire.decode(bytes(frame))
    with pytest.raises(wire.WireError, match="unknown zstd dictionary version 9"):
        wire.encode(incidents[:1], dictionary=9)


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda f: f[:5] + bytes(b ^ 0x5A for b in f[5:]), "zstd|invalid message"),
        (lambda f: f[: len(f) // 2], "zstd"),
        (lambda f: f[:4], "without a dictionary version"),
        (lambda f: f[:5], "zstd"),
        (lambda f: b"SW\x01" + f[3:], "unknown codec 2 in wire format 1"),
        (lambda f: b"SW\x03" + f[3:], "newer than this reader"),
    ],
)
def test_corrupt_dictionary_frames_are_refused_with_a_reason(
    incidents: list[Incident], mangle: Callable[[bytes], bytes], reason: str
) -> None:
    frame = wire.encode(incidents[:1])
    with pytest.raises(wire.WireError, match=reason):
        wire.decode(mangle(frame))


def test_training_makes_a_dictionary_and_refuses_too_little_data(
    incidents: list[Incident], tmp_path: Path
) -> None:
    samples = dictionary.bodies(incidents) * 20
    data = dictionary.train(samples, size=4096)
    assert len(data) <= 4096 and data[:4] == b"\x37\xa4\x30\xec"  # zstd dictionary magic
    with pytest.raises(ValueError, match="simulate more ship-days"):
        dictionary.train(samples[:2], size=64 * 1024)
    taken = tmp_path / "incidents-v1.zdict"
    taken.write_bytes(data)
    with pytest.raises(SystemExit):
        dictionary.main(["train", "--out", str(taken)])
    assert taken.read_bytes() == data
