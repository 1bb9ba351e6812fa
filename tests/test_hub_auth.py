"""Hub authentication: keys hashed at rest, scopes, JWT, revocation; the live feed's bounds."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest

from shared.models import Incident
from shared.taxonomy import IncidentStatus, IncidentType, Severity
from shore_hub.auth import Authenticator, AuthError, Role, open_keys
from shore_hub.live import LiveFeed


def test_keys_are_hashed_at_rest_and_carry_role_and_scope(tmp_path: Path) -> None:
    keys = open_keys(tmp_path)
    key = keys.create("ops-desk", Role.OPERATOR, ["MV-A", "MV-B"])
    raw = (tmp_path / "auth.db").read_bytes()
    secret = key.split("_", 2)[2]  # the secret may hold "_" itself (URL-safe base64)
    assert key.encode() not in raw and secret.encode() not in raw
    p = keys.verify(key)
    assert (p.name, p.role, p.ships) == ("ops-desk", Role.OPERATOR, ("MV-A", "MV-B"))
    assert p.may_see("MV-A") and not p.may_see("MV-C")
    with pytest.raises(AuthError, match="unknown"):
        keys.verify(key + "x")
    assert keys.revoke(p.key_id)
    with pytest.raises(AuthError, match="revoked"):
        keys.verify(key)
    rows = sqlite3.connect(tmp_path / "auth.db").execute("SELECT hash FROM api_keys").fetchall()
    assert len(rows[0][0]) == 64


def test_roles_are_ordered_and_parsed() -> None:
    assert Role.VIEWER < Role.OPERATOR < Role.APPROVER < Role.ADMIN
    assert Role.parse("Approver") is Role.APPROVER
    with pytest.raises(ValueError, match="unknown role"):
        Role.parse("captain")


def test_bearer_tokens_carry_the_key_and_die_with_it(tmp_path: Path) -> None:
    keys = open_keys(tmp_path)
    auth = Authenticator(keys)
    key = keys.create("eto", Role.VIEWER, None)
    p = auth.from_headers(None, key)
    token = auth.issue_token(p)
    back = auth.from_headers(f"Bearer {token}", None)
    assert (back.name, back.role, back.ships) == ("eto", Role.VIEWER, None)
    # a token signed with another secret, an expired one, and one whose key was revoked
    forged = jwt.encode(
        {"sub": "x", "role": "admin", "kid": p.key_id, "exp": 2**31},
        "not-the-hub-secret-but-long-enough-for-hs256",
        algorithm="HS256",
    )
    with pytest.raises(AuthError, match="invalid token"):
        auth.from_headers(f"Bearer {forged}", None)
    with pytest.raises(AuthError, match="invalid token"):
        auth.from_headers(f"Bearer {auth.issue_token(p, ttl_s=-10)}", None)
    keys.revoke(p.key_id)
    with pytest.raises(AuthError, match="revoked"):
        auth.from_headers(f"Bearer {token}", None)
    with pytest.raises(AuthError, match="missing credentials"):
        auth.from_headers(None, None)
    # the signing secret is made once and kept, so tokens survive a hub restart
    assert Authenticator(open_keys(tmp_path)).keys.signing_secret() == keys.signing_secret()


def _incident(ship: str, severity: Severity, n: int) -> Incident:
    now = datetime.now(UTC)
    return Incident(
        tracking_id="t",
        ship_id=ship,
        ts=now,
        id=f"I{n:05d}",
        version=1,
        type=IncidentType.NETWORK_ISSUE,
        severity=severity,
        status=IncidentStatus.OPEN,
        device="sw-1",
        devices=["sw-1"],
        corr_key="k",
        suppress_key="k",
        first_seen=now,
        last_seen=now,
    )


def test_live_feed_filters_and_disconnects_a_slow_client() -> None:
    async def scenario() -> None:
        feed = LiveFeed(buffer=3)
        fast = feed.subscribe(("MV-A",), Severity.HIGH)
        slow = feed.subscribe(None, Severity.INFO)
        feed.publish(
            [
                _incident("MV-A", Severity.HIGH, 1),
                _incident("MV-B", Severity.HIGH, 2),
                _incident("MV-A", Severity.LOW, 3),
            ]
        )
        got = [await anext(feed.events(fast))]
        assert [g["id"] for g in got if g] == ["I00001"]
        feed.publish([_incident("MV-C", Severity.LOW, n) for n in range(10, 20)])
        assert slow.overflowed and slow not in feed.subscribers
        assert [e async for e in feed.events(slow)] == []  # its stream ends
        assert feed.disconnected_slow == 1 and fast in feed.subscribers

    asyncio.run(scenario())
