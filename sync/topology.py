"""Names, subjects and generated nats-server configs of the fleet topology.

    ship leaf (domain = ship id)                      hub (domain "hub")
    OUTBOX   fleet.up.<ship>.>    --- sourced by -->  FLEET_UP    fleet.up.>
    DOWNLINK (sources filtered)   <-- sources from -  FLEET_DOWN  fleet.down.>

Each ship's leaf connection authenticates as that ship, and its permissions are what
crosses the link: the ship may answer the hub's requests into its own domain, deliver its
own outbox on its own delivery prefix and ask for a consumer on FLEET_DOWN filtered to its
own subjects; it receives only its own deliveries. Plain publishes on `fleet.up.>` never
cross the link (the hub's copy comes only through sourcing, exactly once per message).
"""

from __future__ import annotations

import json
import re

HUB_DOMAIN = "hub"
FLEET_UP = "FLEET_UP"
FLEET_DOWN = "FLEET_DOWN"
OUTBOX = "OUTBOX"
DOWNLINK = "DOWNLINK"
HUB_USER = "seawatch-hub"
# A ship's OUTBOX stream keeps messages twice as long as its SQLite outbox keeps unsent rows,
# so the outbox's own (reported) eviction always comes first.
STREAM_AGE_FACTOR = 2  # the hub's own client connection
SHIP_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


def check_ship_id(ship_id: str) -> str:
    """Ship ids become subjects, stream filters and user names: keep them to safe tokens."""
    if not SHIP_ID.match(ship_id) or ship_id == HUB_DOMAIN:
        raise ValueError(f"invalid ship id {ship_id!r}: letters, digits, '-' and '_' only")
    return ship_id


def up_subject(ship_id: str, kind: str) -> str:
    return f"fleet.up.{ship_id}.{kind}"


def down_subject(ship_id: str, kind: str) -> str:
    return f"fleet.down.{ship_id}.{kind}"


def up_deliver(ship_id: str) -> str:
    """Delivery prefix of the hub's sourcing consumer on a ship's outbox."""
    return f"sw.up.{ship_id}"


def down_deliver(ship_id: str) -> str:
    """Delivery prefix of a ship's sourcing consumer on FLEET_DOWN."""
    return f"sw.down.{ship_id}"


def ship_permissions(ship_id: str) -> dict[str, list[str]]:
    """What a ship's leaf connection may send to the hub (publish) and receive (subscribe)."""
    # Replies to the servers' own API calls for sourcing, and flow control. Never `_INBOX.>`:
    # the hub's clients get their replies there, and the messages they pull (every ship's
    # uplink, as the ingest workers fetch it), as do ships' local clients whose inbox
    # traffic would then cross their links: a ship allowed it could read the whole fleet.
    reply = ["$JSC.R.>", "$JS.FC.>"]
    return {
        "publish": [
            f"$JS.{HUB_DOMAIN}.API.CONSUMER.CREATE.{FLEET_DOWN}.*.fleet.down.{ship_id}.>",
            f"{up_deliver(ship_id)}.>",
            *reply,
        ],
        "subscribe": [f"$JS.{ship_id}.API.>", f"{down_deliver(ship_id)}.>", *reply],
    }


def _q(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid quoted string in the config format


def hub_config(leaf_host: str, leaf_port: int, hub_password: str, ships: dict[str, str]) -> str:
    """Hub server config: the hub's own user, one user per ship (password bcrypt hashes),
    and a leafnode listener that does not advertise other addresses (ships must keep
    using the address they were given, e.g. through a proxy or a satellite gateway)."""
    users = [f"    {{user: {_q(HUB_USER)}, password: {_q(hub_password)}}}"]
    for ship_id, password_hash in sorted(ships.items()):
        perms = ship_permissions(ship_id)
        users.append(
            f"    {{user: {_q(ship_id)}, password: {_q(password_hash)}, permissions: {{"
            f" publish: {json.dumps(perms['publish'])},"
            f" subscribe: {json.dumps(perms['subscribe'])} }}}}"
        )
    return (
        "authorization {\n  users = [\n" + ",\n".join(users) + "\n  ]\n}\n"
        f'leafnodes {{\n  listen: "{leaf_host}:{leaf_port}"\n  no_advertise: true\n}}\n'
    )


def ship_config(ship_id: str, hub_leaf_url: str, password: str) -> str:
    """Ship leaf config: one remote to the hub, retried every second while the link is down."""
    scheme, _, rest = hub_leaf_url.partition("://")
    url = f"{scheme}://{ship_id}:{password}@{rest}"
    return f"leafnodes {{\n  reconnect: 1\n  remotes = [ {{ url: {_q(url)} }} ]\n}}\n"
