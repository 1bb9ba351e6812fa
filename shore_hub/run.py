"""`seawatch hub`: run the hub until Ctrl-C; `seawatch hub keys ...`: manage API keys;
`seawatch hub ships ...`: register ships before the hub starts (a running hub registers
them through its API, POST /api/v3/ships), and print their users for an external NATS;
`seawatch hub schema --cluster NAME`: the fleet store's DDL for a ClickHouse cluster;
`seawatch hub reembed`: the incident memory rebuilt from the fleet store."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from shared import log
from shared.policy import PolicyError, load_policy
from shared.settings import HubSettings, load_settings
from shore_hub.auth import Role, open_keys
from sync.registry import ShipRegistry
from sync.topology import HUB_USER, hub_config


def _settings(args: argparse.Namespace) -> HubSettings:
    return load_settings(
        HubSettings,
        args.config,
        data_dir=args.data_dir,
        http_port=args.http_port,
        nats_port=args.nats_port,
        nats_url=args.nats_url,
        leaf_port=args.leaf_port,
        clickhouse_url=args.clickhouse_url,
        qdrant_url=args.qdrant_url,
        workers=args.workers,
        host=args.host,
        policy_dir=args.policy_dir,
        memory=False if args.no_memory else None,
    )


def run_keys(args: argparse.Namespace) -> int:
    keys = open_keys(_settings(args).data_dir)
    try:
        if args.keys_command == "create":
            ships = [s for s in (args.ships or "").split(",") if s] or None
            key = keys.create(args.name, Role.parse(args.role), ships)
            print(key)
            print(f"(shown once; role {args.role}, ships {ships or 'all'})", file=sys.stderr)
            return 0
        if keys.revoke(args.key_id):
            print(f"revoked {args.key_id}", file=sys.stderr)
            return 0
        print(f"no active key {args.key_id}", file=sys.stderr)
        return 1
    finally:
        keys.close()


def run_ships(args: argparse.Namespace) -> int:
    settings = _settings(args)
    registry = ShipRegistry(settings.data_dir / "ships")
    if args.ships_command == "add":
        try:
            secret = registry.add(args.ship_id)
        except ValueError as exc:
            print(f"seawatch hub ships add: {exc}", file=sys.stderr)
            return 2
        print(secret)
        print(f"(shown once; on {args.ship_id} set SEAWATCH_SHIP_SECRET to it)", file=sys.stderr)
        return 0
    if args.ships_command == "remove":
        if registry.remove(args.ship_id):
            return 0
        print(f"no ship {args.ship_id}", file=sys.stderr)
        return 1
    if args.ships_command == "nats-auth":  # what the hub's own server is configured with
        host, port = settings.host, settings.leaf_port
        print(hub_config(host, port, registry.hub_password, registry.hashes()), end="")
        print(
            f"(the hub connects as {HUB_USER} with the password above: put both in its"
            " nats_url, nats://USER:PASSWORD@HOST:4222)",
            file=sys.stderr,
        )
        return 0
    print("\n".join(registry.ships()))
    return 0


def run_schema(args: argparse.Namespace) -> int:
    from shore_hub.fleetstore.cluster import cluster_ddl

    settings = _settings(args)
    try:
        retention = load_policy(settings.policy_dir).retention.hub
    except PolicyError as exc:
        print(exc.report(), file=sys.stderr)
        return 1
    for statement in cluster_ddl(args.cluster, settings.clickhouse_database, retention):
        print(f"{statement};\n")
    return 0


def run_reembed(args: argparse.Namespace) -> int:
    """Every stored incident's latest version through `upsert_incidents(refresh=True)`:
    after an upgrade changes the embedded text or the model, old points are embedded again
    (new versions would only re-embed the incidents that change). With the embedded
    engines, the hub must be stopped: chdb and Qdrant Edge belong to one process."""
    from shared.models import Incident
    from shore_hub.fleetstore.backends import BackendError
    from shore_hub.hub import open_memory, open_store

    settings = _settings(args)
    try:
        policy = load_policy(settings.policy_dir)
    except PolicyError as exc:
        print(exc.report(), file=sys.stderr)
        return 1
    try:  # the memory first: its folder lock tells a running hub before chdb is opened
        memory = open_memory(settings)
    except BackendError as exc:  # BackendUnavailable too
        print(f"seawatch hub reembed: {exc} (is the hub running?)", file=sys.stderr)
        return 1
    read = written = 0
    try:
        store = open_store(settings, policy)
        try:
            cursor = None
            while True:
                page = store.list_incidents(cursor=cursor, limit=500)
                incidents = [Incident.model_validate(doc) for doc in page["items"]]
                read += len(incidents)
                written += memory.upsert_incidents(incidents, refresh=True)
                print(f"\r{read:,} incidents read, {written:,} embedded again", end="", flush=True)
                cursor = page["next_cursor"]
                if cursor is None:
                    break
        finally:
            store.close()
    finally:
        memory.close()
    print()
    return 0


def run_hub(args: argparse.Namespace) -> int:
    settings = _settings(args)
    log.configure(settings.log_level)
    try:
        policy = load_policy(settings.policy_dir)
    except PolicyError as exc:
        print(exc.report(), file=sys.stderr)
        return 1
    asyncio.run(_main(settings, policy))
    return 0


async def _main(settings: HubSettings, policy: object) -> None:
    from shore_hub.hub import Hub, tune_gc

    hub = Hub(settings, policy)  # type: ignore[arg-type]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await hub.start()
    tune_gc()
    nats_url = settings.nats_url or (hub.nats_server.url if hub.nats_server else "")
    print(
        f"seawatch hub: API http://{settings.host}:{hub.http_port} (docs /schema), "
        f"NATS {nats_url}, ship leaf nodes :{hub.fleet.leaf_port}, data {settings.data_dir}",
        flush=True,
    )
    await stop.wait()
    await hub.stop()
