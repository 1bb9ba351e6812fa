"""Link security as the hub's nats-server enforces it, not as well-behaved code follows it.

A real fleet (hub with its own nats-server, two ship agents with their leaf servers) and,
for the attacks, raw NATS clients on a ship's own leaf server: what a compromised ship
could send into its leaf connection. Every refusal is checked against a control that
shows the same path working for what is allowed, so a silence is a refusal and not a
dead link.
"""

from __future__ import annotations

import json
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import nats
import pytest
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from shared import wire
from shared.ids import new_id
from shared.models import Command, Heartbeat
from shared.policy import load_policy
from shared.timeutil import utcnow
from ship_agent.agent import AGENT_VERSION
from sync.natsserver import NatsServer
from sync.topology import FLEET_DOWN, FLEET_UP, HUB_DOMAIN, down_deliver, ship_config, up_deliver
from tests.conftest import wait_for
from tests.fleet import Fleet

A, B = "SHIP-A", "SHIP-B"
API = f"$JS.{HUB_DOMAIN}.API"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, chdb_path: Path) -> Iterator[Fleet]:
    f = Fleet(tmp_path_factory.mktemp("sync-sec"), chdb_path, "sync_sec", load_policy(), [A, B])
    try:
        f.start()
        wait_for(lambda: {A, B} <= leaf_names(f), 30)
        yield f
    finally:
        f.stop()


def leaf_names(fleet: Fleet) -> set[str]:
    assert fleet.hub.nats_server is not None
    return {str(leaf.get("name")) for leaf in fleet.hub.nats_server.leafnodes()}


class Client:
    """A raw NATS client (on the fleet's event loop) that keeps every message it receives."""

    def __init__(self, fleet: Fleet, url: str, **auth: Any) -> None:
        self.fleet = fleet
        self.nc: Any = fleet.call(nats.connect(url, allow_reconnect=False, **auth))
        self.got: list[Msg] = []

    async def _keep(self, msg: Msg) -> None:
        self.got.append(msg)

    def subscribe(self, *subjects: str) -> None:
        async def go() -> None:
            for subject in subjects:
                await self.nc.subscribe(subject, cb=self._keep)
            await self.nc.flush()

        self.fleet.call(go())

    def publish(self, *messages: tuple[str, bytes]) -> None:
        async def go() -> None:
            for subject, data in messages:
                await self.nc.publish(subject, data)
            await self.nc.flush()

        self.fleet.call(go())

    def request(self, subject: str, body: dict[str, Any] | None = None) -> Msg | Exception:
        """The answer, or the exception (no responders, timeout) that says there was none."""

        async def go() -> Msg | Exception:
            data = json.dumps(body).encode() if body is not None else b""
            try:
                msg: Msg = await self.nc.request(subject, data, timeout=1.0)
                return msg
            except (NoRespondersError, NatsTimeout) as exc:
                return exc

        result: Msg | Exception = self.fleet.call(go())
        return result

    def received(self, subject: str) -> list[Msg]:
        return [m for m in list(self.got) if m.subject == subject]

    def close(self) -> None:
        self.fleet.call(self.nc.close())


def on_ship(fleet: Fleet, ship: str) -> Client:
    """A client on a ship's own leaf server: what a compromised ship can do. Its requests
    take their replies on the one inbox prefix a ship's link may receive (the servers' own
    for sourcing), so that an answer, if the hub gives one, can come back."""
    return Client(fleet, fleet.agents[ship].agent.link.server.url, inbox_prefix="$JSC.R")


def on_hub(fleet: Fleet) -> Client:
    assert fleet.hub.nats_server is not None
    return Client(fleet, fleet.hub.nats_server.url, **fleet.hub.nats_auth)


def barrier(ship: Client, hub: Client, subject: str) -> None:
    """Wait until a message the ship may send has crossed its link: the link carries a
    connection's messages in order, so whatever the ship sent before it has arrived too.
    Sent again until it comes, for the hub's interest needs a moment to reach the leaf."""
    token = uuid.uuid4().hex.encode()

    def crossed() -> bool:
        ship.publish((subject, token))
        return wait_quietly(lambda: any(m.data == token for m in hub.received(subject)), 0.5)

    wait_for(crossed, 15, interval=0)


def wait_quietly(predicate: Any, timeout: float) -> bool:
    try:
        wait_for(predicate, timeout)
    except AssertionError:
        return False
    return True


def fleet_up_since(fleet: Fleet, seq: int) -> list[Any]:
    """Every message FLEET_UP stored after sequence `seq`."""

    async def go() -> list[Any]:
        last = (await fleet.hub.js.stream_info(FLEET_UP)).state.last_seq
        return [await fleet.hub.js.get_msg(FLEET_UP, s) for s in range(seq + 1, last + 1)]

    msgs: list[Any] = fleet.call(go())
    return msgs


def consumer_create(ship: Client, name: str, subject_filter: str, body_filter: str) -> Any:
    """Ask the hub's JetStream for a push consumer on FLEET_DOWN, as a ship's server does
    for its DOWNLINK source (the request subject names the filter, and so does the body)."""
    body = {
        "stream_name": FLEET_DOWN,
        "config": {
            "name": name,
            "filter_subject": body_filter,
            "deliver_subject": f"{down_deliver(A)}.{name}",
            "deliver_policy": "all",
            "ack_policy": "none",
            "inactive_threshold": 5_000_000_000,
        },
    }
    return ship.request(f"{API}.CONSUMER.CREATE.{FLEET_DOWN}.{name}.{subject_filter}", body)


def hub_consumer_exists(fleet: Fleet, stream: str, name: str) -> bool:
    async def go() -> bool:
        try:
            await fleet.hub.js.consumer_info(stream, name)
        except nats.js.errors.NotFoundError:
            return False
        return True

    exists: bool = fleet.call(go())
    return exists


def test_a_ships_leaf_cannot_publish_as_another_ship_nor_use_the_hubs_api(fleet: Fleet) -> None:
    """Whatever a ship sends into its leaf connection, only its sourced outbox reaches
    FLEET_UP: a plain publish on another ship's uplink subject (or its own) never crosses,
    and the hub's JetStream API, which could delete or read the fleet's streams, does not
    answer it; its one allowed API call, a consumer on its own downlink, does answer."""
    hub, ship = on_hub(fleet), on_ship(fleet, A)
    try:
        probe = f"{up_deliver(A)}.probe-{uuid.uuid4().hex}"  # a subject SHIP-A may send on
        hub.subscribe("fleet.up.>", probe)
        barrier(ship, hub, probe)  # the hub's interest has reached the leaf
        start = fleet.call(fleet.hub.js.stream_info(FLEET_UP)).state.last_seq
        marker = f"forged-{uuid.uuid4().hex}".encode()
        ship.publish(("fleet.up.SHIP-B.incident", marker), ("fleet.up.SHIP-A.incident", marker))
        barrier(ship, hub, probe)

        # SHIP-A's own subject is its OUTBOX's: the hub gets that copy through sourcing only
        forged = wait_for(lambda: [m for m in fleet_up_since(fleet, start) if m.data == marker])
        assert [m.subject for m in forged] == ["fleet.up.SHIP-A.incident"]
        assert [m.subject for m in hub.got if m.data == marker] == []
        sources = [
            (m.headers or {}).get("Nats-Stream-Source", "") for m in fleet_up_since(fleet, start)
        ]
        assert all(s.startswith("OUTBOX:") for s in sources), sources  # nothing came directly

        for call in (
            f"STREAM.INFO.{FLEET_UP}",
            f"STREAM.DELETE.{FLEET_UP}",
            f"STREAM.PURGE.{FLEET_UP}",
            f"STREAM.DELETE.{FLEET_DOWN}",
            f"CONSUMER.DELETE.{FLEET_UP}.hub-ingest",
            f"STREAM.MSG.GET.{FLEET_DOWN}",
            "INFO",
        ):
            answer = ship.request(f"{API}.{call}", {} if "GET" not in call else {"seq": 1})
            assert isinstance(answer, NoRespondersError | NatsTimeout), (call, answer)
        info = fleet.call(fleet.hub.js.stream_info(FLEET_UP))
        assert info.state.last_seq >= start + 1 and info.state.messages > 0
        assert hub_consumer_exists(fleet, FLEET_UP, "hub-ingest")

        name = f"own{uuid.uuid4().hex[:8]}"
        own = consumer_create(ship, name, "fleet.down.SHIP-A.>", "fleet.down.SHIP-A.>")
        assert isinstance(own, Msg), own  # the control: this client does reach the hub's API
        assert "error" not in json.loads(own.data), own.data
        fleet.call(fleet.hub.js.delete_consumer(FLEET_DOWN, name))
    finally:
        ship.close()
        hub.close()


def test_a_ship_cannot_read_another_ships_commands_or_uplink(fleet: Fleet) -> None:
    """A ship subscribing to everything another ship's traffic could pass through (its
    downlink subjects and delivery prefix, its uplink, and the reply inboxes of the hub's
    API calls and fetches) receives none of it, and the hub refuses it a consumer on the
    other ship's share of FLEET_DOWN, asked for openly or smuggled in the request body;
    meanwhile the other ship gets its command and the hub its results and incidents."""
    hub, spy = on_hub(fleet), on_ship(fleet, A)
    try:
        spy.subscribe(
            "fleet.down.SHIP-B.>",
            "sw.down.SHIP-B.>",
            "fleet.up.SHIP-B.>",
            "sw.up.SHIP-B.>",
            "$JS.SHIP-B.API.>",
            "_INBOX.>",
            "$JSC.R.>",
            "$JS.FC.>",
        )
        openly = consumer_create(spy, "spyopen", "fleet.down.SHIP-B.>", "fleet.down.SHIP-B.>")
        assert isinstance(openly, NoRespondersError | NatsTimeout), openly
        smuggled = consumer_create(spy, "spysmug", "fleet.down.SHIP-A.>", "fleet.down.SHIP-B.>")
        assert isinstance(smuggled, Msg) and "error" in json.loads(smuggled.data), smuggled
        assert not hub_consumer_exists(fleet, FLEET_DOWN, "spyopen")
        assert not hub_consumer_exists(fleet, FLEET_DOWN, "spysmug")

        secret = f"for-b-only-{uuid.uuid4().hex}"
        cmd = Command(
            tracking_id=new_id(),
            ship_id=B,
            ts=utcnow(),
            actor="officer",
            action="approval_decision",
            payload={"approval_id": secret, "decision": "approved"},
        )
        fleet.call(fleet.hub.send_command(cmd))
        fleet.raise_incidents(B, 1, "urgent", prefix=secret)
        b = fleet.agents[B]
        wait_for(lambda: b.sql("SELECT 1 FROM downlink WHERE command_id=?", cmd.id), 30)
        wait_for(lambda: any(r["command_id"] == cmd.id for r in fleet.hub.store.actions([B])), 30)
        wait_for(lambda: fleet.committed(B).items() <= fleet.stored(B).items(), 30)
        probe = f"{down_deliver(A)}.probe-{uuid.uuid4().hex}"  # a subject SHIP-A may receive
        spy.subscribe(probe)

        def after() -> bool:  # sent by the hub after everything above: arrives after it
            hub.publish((probe, b"after"))
            return bool(spy.received(probe))

        wait_for(after, 15, interval=0.2)

        assert not fleet.agents[A].sql("SELECT 1 FROM downlink WHERE command_id=?", cmd.id)
        leaked = [m.subject for m in spy.got if carries_ship_data(m.data, B, [cmd.id, secret])]
        assert leaked == []
    finally:
        spy.close()
        hub.close()


def carries_ship_data(data: bytes, ship: str, needles: list[str]) -> bool:
    """Whether a message holds one ship's traffic: a wire frame of its messages, or one of
    the given strings (an id, a device name) in the clear."""
    if any(n.encode() in data for n in needles):
        return True
    try:
        items = wire.decode(data)
    except wire.WireError:
        return False
    return any(getattr(item, "ship_id", None) == ship for item in items)


def test_a_ships_outbox_cannot_speak_for_another_ship(fleet: Fleet) -> None:
    """A ship owns its OUTBOX, so it can put anything on its own uplink subjects, but what
    it says there in another ship's name is a dead letter at the hub, never that ship's."""
    ship = on_ship(fleet, A)
    try:
        forged_version = f"forged-{uuid.uuid4().hex[:12]}"
        hb = Heartbeat(
            tracking_id=new_id(),
            ship_id=B,
            ts=utcnow(),
            agent_version=AGENT_VERSION,
            policy_version=forged_version,
            link_state="up",
        )
        js = ship.nc.jetstream(domain=A)
        fleet.call(js.publish("fleet.up.SHIP-A.heartbeat", wire.encode([hb])))
        reason = "message for ship 'SHIP-B' arrived on fleet.up.SHIP-A.heartbeat"
        wait_for(lambda: any(d["reason"] == reason for d in fleet.hub.store.dead_letters()), 30)
        assert forged_version not in [r["policy_version"] for r in fleet.hub.store.fleet([B])]
    finally:
        ship.close()


def test_wrong_missing_or_revoked_credentials_are_refused(fleet: Fleet, tmp_path: Path) -> None:
    """The hub's leaf listener admits a ship only with its own current secret: a wrong or
    missing password, another ship's secret, an unregistered ship id, and a ship's former
    secret once it is re-keyed or removed are each refused (an authentication error in the
    hub's log, no leaf of that name), while the right secret connects."""
    hub = fleet.hub
    assert hub.nats_server is not None
    log = hub.nats_server.data_dir / "nats-server.log"
    url = f"nats-leaf://127.0.0.1:{hub.fleet.leaf_port}"
    secret_c = fleet.call(hub.fleet.add_ship("SHIP-C"))

    def refused(name: str, user: str | None, leaf_config: str) -> None:
        """A leaf server with this remote tries at least twice and is refused each time."""
        offset = log.stat().st_size
        needle = f'authentication error - User "{user}"' if user else "authentication error"
        server = leaf_server(name, tmp_path / uuid.uuid4().hex, leaf_config)
        try:

            def errors() -> int:
                with log.open("rb") as f:
                    f.seek(offset)
                    return f.read().decode(errors="replace").count(needle)

            wait_for(lambda: errors() >= 2, 15, interval=0.05)
            assert name not in leaf_names(fleet), name
            assert server.leafnodes() == []
        finally:
            server.stop()

    remote = "leafnodes {\n  reconnect: 1\n  remotes = [ { url: %s } ]\n}\n"
    try:
        refused("SHIP-C", "SHIP-C", ship_config("SHIP-C", url, "not-the-secret"))
        refused("SHIP-C", "SHIP-C", ship_config("SHIP-C", url, ""))
        refused("SHIP-C", None, remote % json.dumps(url))  # no credential at all
        refused("SHIP-C", "SHIP-C", ship_config("SHIP-C", url, fleet.secrets[A]))
        refused("SHIP-X", "SHIP-X", ship_config("SHIP-X", url, secret_c))  # not registered

        good = leaf_server("SHIP-C", tmp_path / "good", ship_config("SHIP-C", url, secret_c))
        try:
            wait_for(lambda: "SHIP-C" in leaf_names(fleet), 15)  # the control
        finally:
            good.stop()
        wait_for(lambda: "SHIP-C" not in leaf_names(fleet), 15)
        rekeyed = fleet.call(hub.fleet.add_ship("SHIP-C"))
        refused("SHIP-C", "SHIP-C", ship_config("SHIP-C", url, secret_c))  # re-keyed
        assert fleet.call(hub.fleet.remove_ship("SHIP-C"))
        refused("SHIP-C", "SHIP-C", ship_config("SHIP-C", url, rekeyed))  # removed
    finally:
        fleet.call(hub.fleet.remove_ship("SHIP-C"))
    assert {A, B} <= leaf_names(fleet)


def leaf_server(name: str, data_dir: Path, leaf_config: str) -> NatsServer:
    """A bare ship leaf server (named, and in a JetStream domain, after the ship)."""
    server = NatsServer(name, data_dir, domain=name, extra_config=leaf_config)
    server.start()
    return server


def test_ships_file_holds_only_bcrypt_hashes_for_the_hub_alone(fleet: Fleet) -> None:
    """The hub keeps no ship's secret: its ships file holds a bcrypt hash per ship (which
    the secret matches) and is readable and writable by the hub's user only, and no file
    the hub writes (ships file, server config and log, streams) holds a secret in the clear."""
    ships_dir = fleet.settings.data_dir / "ships"
    path = ships_dir / "ships.json"
    text = path.read_text(encoding="utf-8")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    hashes = json.loads(text)
    assert set(hashes) == set(fleet.hub.fleet.registry.ships()) >= {A, B}
    for ship, secret in fleet.secrets.items():
        assert hashes[ship].startswith("$2b$")
        assert bcrypt.checkpw(secret.encode(), hashes[ship].encode())
        assert secret not in text
        assert fleet.hub.nats_server is not None
        assert secret not in fleet.hub.nats_server.config()
    assert stat.S_IMODE((ships_dir / "hub-nats.secret").stat().st_mode) == 0o600
    assert not list(ships_dir.glob("*.tmp"))
    files = [p for p in fleet.settings.data_dir.rglob("*") if p.is_file()]
    assert path in files and len(files) > 3
    for secret in fleet.secrets.values():
        assert [p.name for p in files if secret.encode() in p.read_bytes()] == []
