"""Redaction before the link: the simulator's planted PII goes, diagnosis data stays."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import wire
from shared.ids import new_id
from shared.models import ActionResult, Anomaly, EvidenceRef, Heartbeat, Incident, TimelineEntry
from shared.policy import Policy, PrivacyPolicy
from shared.taxonomy import IncidentStatus, IncidentType, Severity
from ship_agent.simulator import Simulator
from ship_agent.simulator.syslog import split_line
from sync.privacy import Redactor, is_card_number

R = "[redacted]"
T0 = datetime(2026, 9, 22, 8, 15, tzinfo=UTC)


@pytest.fixture(scope="module")
def redactor(policy: Policy) -> Redactor:
    return Redactor.from_policy(policy.privacy)


# ------------------------------------------------------------------ text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # e-mail addresses, wherever they sit
        (
            "login failed user=anna.berg@gmail.com ip=10.10.2.5",
            f"login failed user={R} ip=10.10.2.5",
        ),
        ("to=<j.okafor@crew.oceanline.example>, relay=mail", f"to=<{R}>, relay=mail"),
        ("contact zoë.müller@web.de.", f"contact {R}."),
        # card numbers, grouped or not, Luhn-valid only
        ("pan 4111 1111 1111 1111 declined", f"pan {R} declined"),
        ("pan=5555555555554444 auth=004211", f"pan={R} auth=004211"),
        ("amex 3782-822463-10005 ok", f"amex {R} ok"),
        ("card 2223003122003222", f"card {R}"),
        ("pan=************1234 approved", "pan=************1234 approved"),
        ("serial 4111111111111112 (not Luhn-valid)", "serial 4111111111111112 (not Luhn-valid)"),
        # phone numbers, international and national forms
        ("call +49 170 1234567 now", f"call {R} now"),
        ("tel:+4917012345678", f"tel:{R}"),
        ("+1 (555) 234-5678 or (555) 234-5678 or 555.234.5678", f"{R} or {R} or {R}"),
        ("+44 (0)20 7946 0958", R),
        ("ring 030 1234567, 0170-1234567 or 06 12 34 56 78", f"ring {R}, {R} or {R}"),
        # guest-network addresses only
        (
            "to guest:10.20.5.6/51234 (185.20.3.4/40000) from outside:142.250.3.4/443",
            f"to guest:{R}/51234 (185.20.3.4/40000) from outside:142.250.3.4/443",
        ),
        ("SRC=10.20.15.254 DST=10.10.2.14 DPT=445", f"SRC={R} DST=10.10.2.14 DPT=445"),
    ],
)
def test_each_kind_of_pii_is_redacted(redactor: Redactor, text: str, expected: str) -> None:
    assert redactor.redact_text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the forms of the simulator's guest Wi-Fi, captive portal and POS lines
        (
            'client Anna-s-iPhone (3c:22:fb:11:22:33) associated to SSID "Ocean-Guest" on 5GHz',
            f'client {R} (3c:22:fb:11:22:33) associated to SSID "Ocean-Guest" on 5GHz',
        ),
        (
            "login ok user=x ip=10.10.9.9 mac=3c:22:fb:11:22:33 device=Pixel-8-Lars cabin=7012",
            f"login ok user=x ip=10.10.9.9 mac=3c:22:fb:11:22:33 device={R} cabin=7012",
        ),
        (
            'tender=room cabin=7012 guest="Sean O\'Brien" ok',
            f'tender=room cabin=7012 guest="{R}" ok',
        ),
        # the same generically: other vendors' forms, and names with spaces
        (
            "Client Marco's Galaxy Tab (8c:f5:a3:00:11:22) roamed",
            f"Client {R} (8c:f5:a3:00:11:22) roamed",
        ),
        (
            "DHCPACK on 10.10.1.5 to 3c:22:fb:11:22:33 (Lenovo-T14) via eth1",
            f"DHCPACK on 10.10.1.5 to 3c:22:fb:11:22:33 ({R}) via eth1",
        ),
        (
            "DHCPACK(wlan0) 10.10.1.5 3c:22:fb:11:22:33 Lenovo-T14",
            f"DHCPACK(wlan0) 10.10.1.5 3c:22:fb:11:22:33 {R}",
        ),
        (
            "lease hostname=Emmas-MacBook client-name='Emma B'",
            f"lease hostname={R} client-name='{R}'",
        ),
        # a log template quoted in an incident (its MAC masked by the template miner)
        (
            "new log template #77 (1 seen): client Yukis-iPad (<MAC>) associated, ip <IP>",
            f"new log template #77 (1 seen): client {R} (<MAC>) associated, ip <IP>",
        ),
    ],
)
def test_client_names_are_redacted(redactor: Redactor, text: str, expected: str) -> None:
    assert redactor.redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "link down on sw-core-01, vsat-modem-01 and ap-cabin-03",
        "device=sw-core-01 host=pos-srv-01 name=eno1",  # no client (MAC) in sight
        "address granted 3c22.fb11.2233 (10.10.3.4) to 00:1b:44:11:3a:b7 / 00-11-22-33-44-55",
        "relay=mail.oceanline.example[198.51.100.25]:587, delay=1.2, dsn=2.0.0",
        "2026-09-22T02:15:17.993Z agent 0.1.0 policy 2026.11.3, kernel 5.15.0-91-generic",
        "Sep 22 02:15:17 seen; took 0:12:34; 12:30:45; 2026-09-22 08:15:00",
        "conn 1234567 bytes 49999999 check=12345 ts=1790035200123 seq 000123456789",
        "Interface GigabitEthernet1/0/12, changed state to down (Gi1/0/13)",
        "nav.hdop = 99.99, expected about 0.791906 (+655.4 deviations): unlikely run",
        "Es/No -0.19 dB, fade margin 3 dB, rssi -61 dBm, 8PSK 3/4 -> 8PSK 5/6",
        "guest:10.10.2.3 and 10.21.0.1 are not on the guest network 10.20.0.0/16",
        "e1000e 0000:00:1f.6 eno1: NIC Link is Up 1000 Mbps Full Duplex",
        "20 lines matching /authorisation failed|authorization failed/ in 60 s",
    ],
)
def test_look_alikes_are_kept(redactor: Redactor, text: str) -> None:
    expected = text.replace("10.20.0.0", R)  # the network's own address is in it
    assert redactor.redact_text(text) == expected


_GUEST = re.compile(r"\b10\.20\.\d+\.\d+\b")
_EMAIL = re.compile(r"[\w.]+@\w")


def test_the_simulators_planted_pii_is_all_removed(redactor: Redactor) -> None:
    """An hour of busy ship traffic: no guest address, e-mail, device or guest name left."""
    sim = Simulator("MV-PRIV", seed=5, start_ts=T0.timestamp())
    lines = [split_line(ev.line)[2] for ev in sim.events(3600) if ev.kind == "log"]
    planted = [line for line in lines if _GUEST.search(line) or "@" in line or "guest=" in line]
    assert len(planted) > 1000
    for line in lines:
        out = redactor.redact_text(line)
        assert not _GUEST.search(out) and not _EMAIL.search(out), out
        for m in re.finditer(r"client (\S+) \(|device=(\S+)|guest=\"([^\"]*)\"", out):
            assert R in (m.group(1), m.group(2), m.group(3)), out
    crew = [line for line in lines if "10.10." in line]
    assert crew and all("10.10." in redactor.redact_text(line) for line in crew)


# ------------------------------------------------------------------ properties


@st.composite
def look_alike(draw: st.DrawFn) -> str:
    """Diagnosis data that must never be taken for PII."""
    octet = st.integers(0, 255)
    hexbyte = st.integers(0, 255).map("{:02x}".format)
    kind = draw(st.sampled_from(["ip", "mac", "time", "version", "counter", "port"]))
    if kind == "ip":  # anything outside the guest network 10.20.0.0/16
        a, b = draw(octet), draw(octet)
        if (a, b) == (10, 20):
            b = 10
        return f"{a}.{b}.{draw(octet)}.{draw(octet)}"
    if kind == "mac":
        parts = draw(st.lists(hexbyte, min_size=6, max_size=6))
        sep = draw(st.sampled_from([":", "-", "."]))
        if sep == ".":
            h = "".join(parts)
            return f"{h[0:4]}.{h[4:8]}.{h[8:12]}"
        return sep.join(parts)
    if kind == "time":  # epoch stamps from 2039 on could collide with card-number ranges
        ts = draw(
            st.datetimes(datetime(2000, 1, 1), datetime(2039, 12, 31), timezones=st.just(UTC))
        )
        forms = [
            ts.isoformat(),
            ts.strftime("%Y-%m-%d %H:%M:%S"),
            ts.strftime("%b %d %H:%M:%S"),
            ts.strftime("%d/%m/%Y %H:%M"),
            str(int(ts.timestamp())),
            str(int(ts.timestamp() * 1000)),
            str(int(ts.timestamp() * 1_000_000)),
            f"{ts.timestamp():.3f}",
        ]
        return draw(st.sampled_from(forms))
    if kind == "version":
        numbers = draw(st.lists(st.integers(0, 999), min_size=2, max_size=3))
        return draw(st.sampled_from(["", "v"])) + ".".join(map(str, numbers))
    if kind == "counter":
        return str(draw(st.integers(0, 10**12)))
    host = f"10.10.{draw(octet)}.{draw(octet)}"
    return f"{host}{draw(st.sampled_from([':', '/']))}{draw(st.integers(0, 65535))}"


@settings(max_examples=500, deadline=None)
@given(look_alike(), st.sampled_from(["{}", "at {} on fw-01", "x={} y", "({})", "[{}]"]))
def test_look_alikes_are_never_redacted(value: str, frame: str) -> None:
    redactor = Redactor(guest_networks=["10.20.0.0/16"])
    text = frame.format(value)
    assert redactor.redact_text(text) == text


_PII_PIECES = st.sampled_from(
    [*"0123456789 -+().:/=@_'\"\n[]<>aZé", "10.20.", "guest=", "device=", "mac=", "client "]
    + ["DHCPACK ", "@gmail.com", "3c:22:fb:11:22:33", "<MAC>", R, "<30>1 ", "Sep 22 08:15:00 "]
    + ["4111", "+49 ", "(555) ", "0170"]
)


@settings(max_examples=600, deadline=None)
@given(st.one_of(st.text(), st.lists(_PII_PIECES, max_size=40).map("".join)))
def test_redaction_is_idempotent_and_total(text: str) -> None:
    redactor = Redactor(guest_networks=["10.20.0.0/16", "192.168.128.0/17"])
    once = redactor.redact_text(text)
    assert redactor.redact_text(once) == once


@given(st.sampled_from(["4111111111111111", "5555555555554444", "378282246310005"]))
def test_card_numbers_need_scheme_length_and_luhn(card: str) -> None:
    assert is_card_number(card)
    assert not is_card_number(card[:-1] + str((int(card[-1]) + 1) % 10))
    assert not is_card_number("9" + card[1:])


# ------------------------------------------------------------------ messages


def _incident() -> Incident:
    narrative = (
        "Guest anna.berg@gmail.com (10.20.3.4, client Annas-iPhone (3c:22:fb:11:22:33)) "
        "complained at +49 170 1234567; vsat-modem-01 at 10.10.2.14 lost lock."
    )
    return Incident(
        tracking_id=new_id(),
        ship_id="MV-A",
        ts=T0,
        id=new_id(),
        version=3,
        type=IncidentType.NETWORK_ISSUE,
        severity=Severity.HIGH,
        status=IncidentStatus.OPEN,
        device="10.20.3.4",  # an identifier: whatever it looks like, it stays
        devices=["10.20.3.4", "sw-guest-01"],
        corr_key="dev:10.20.3.4:network_issue",
        suppress_key="network_issue:10.20.3.4",
        first_seen=T0,
        last_seen=T0 + timedelta(minutes=5),
        evidence=[
            EvidenceRef(
                anomaly_id=new_id(),
                tracking_id=new_id(),
                ts=T0,
                detector="template:new",
                device="sw-guest-01",
                score=0.7,
                summary="new log template #7 (1 seen): DHCPACK on 10.20.3.4 to <MAC> (Annas-PC)",
            )
        ],
        narrative=narrative,
        timeline=[TimelineEntry(ts=T0, version=1, event="opened", detail="user=x@y.org rejected")],
    )


def test_messages_keep_identifiers_and_lose_pii(redactor: Redactor) -> None:
    inc = _incident()
    before = inc.model_copy(deep=True)
    (out,) = redactor.redact([inc])
    assert inc == before, "the input is not changed"
    keep = ("id", "tracking_id", "ship_id", "device", "devices", "corr_key", "suppress_key")
    assert all(getattr(out, f) == getattr(inc, f) for f in keep)
    assert (out.type, out.severity, out.status, out.version) == (
        inc.type,
        inc.severity,
        inc.status,
        3,
    )
    assert out.evidence[0].anomaly_id == inc.evidence[0].anomaly_id
    assert out.evidence[0].detector == "template:new"
    assert out.narrative == (
        f"Guest {R} ({R}, client {R} (3c:22:fb:11:22:33)) complained at {R}; "
        "vsat-modem-01 at 10.10.2.14 lost lock."
    )
    assert out.evidence[0].summary == f"new log template #7 (1 seen): DHCPACK on {R} to <MAC> ({R})"
    assert out.timeline[0].detail == f"user={R} rejected"
    assert out.timeline[0].event == "opened"
    assert wire.decode(wire.encode([out])) == [out]


def test_unchanged_messages_are_copies_sharing_untouched_parts(redactor: Redactor) -> None:
    beat = Heartbeat(
        tracking_id=new_id(),
        ship_id="MV-A",
        ts=T0,
        agent_version="0.1.0",
        policy_version="p1",
        queue_depths={"urgent": 0, "bulk": 12},
    )
    result = ActionResult(
        tracking_id=new_id(),
        ship_id="MV-A",
        ts=T0,
        command_id=new_id(),
        action="restart_service",
        target="pos-srv-01",
        ok=True,
        detail='restarted; guest="Ingrid Nilsson" notified',
    )
    (out_beat,) = redactor.redact([beat])
    (out_result,) = redactor.redact([result])
    assert out_beat == beat and out_beat is not beat
    assert out_result.detail == f'restarted; guest="{R}" notified'
    assert out_result.target == "pos-srv-01"


def _anomaly(evidence: dict[str, object]) -> Anomaly:
    return Anomaly(
        tracking_id=new_id(),
        ship_id="MV-A",
        ts=T0,
        detector="pattern:x",
        incident_type=IncidentType.AUTH_FAILURE,
        device="ap-cabin-03",
        score=0.9,
        summary="5 lines matching /login failed/ in 300 s",
        evidence=evidence,
    )


_LINE = "login failed user=anna.berg@gmail.com ip=10.20.3.4 reason=invalid voucher code"
_TEMPLATE = "login failed user=<*> ip=<IP> reason=invalid voucher code"


def test_raw_log_lines_stay_aboard_unless_the_policy_lets_them_go() -> None:
    pattern = {"template_id": 12, "template": _TEMPLATE, "sample": _LINE, "count": 5}
    burst = {"template_id": 12, "sample": _LINE, "app": "portal"}
    strict = Redactor(guest_networks=["10.20.0.0/16"])
    a, b = strict.redact([_anomaly(pattern), _anomaly(burst)])
    assert a.evidence == {"template_id": 12, "template": _TEMPLATE, "sample": _TEMPLATE, "count": 5}
    assert b.evidence == {"template_id": 12, "app": "portal"}
    # a syslog line quoted in free text goes whole
    note = f"operator: saw\n<30>Sep 22 08:15:00 ap-cabin-03 portal: {_LINE}\nthen it recovered"
    assert strict.redact_text(note) == f"operator: saw\n{R}\nthen it recovered"

    lenient = Redactor(guest_networks=["10.20.0.0/16"], raw_logs_leave_ship=True)
    (c,) = lenient.redact([_anomaly(burst)])
    assert c.evidence["sample"] == f"login failed user={R} ip={R} reason=invalid voucher code"


def test_policy_switches_and_mistakes() -> None:
    off = PrivacyPolicy(
        raw_logs_leave_ship=True,
        redact={"email": False, "card_numbers": False, "phone_numbers": False},
        replacement="***",
    )
    text = "a@b.org 4111111111111111 +49 170 1234567 10.20.1.1 client X (3c:22:fb:11:22:33)"
    assert Redactor.from_policy(off).redact_text(text) == text.replace("client X", "client ***")
    with pytest.raises(ValueError, match="unknown key"):
        Redactor.from_policy(off.model_copy(update={"redact": {"emails": True}}))
    with pytest.raises(ValueError, match="not an IPv4 network"):
        Redactor(guest_networks=["10.20.0.0/33"])
    with pytest.raises(ValueError, match="would itself be redacted"):
        Redactor(replacement="<card 4111 1111 1111 1111>")
