"""`seawatch` — one command line for every part; each subcommand is a thin shell over a library.

seawatch ship --ship-id MV-AURORA --data-dir data/aurora --http-port 8470 --syslog-port 5514
seawatch demo                         # a hub and five simulated ships playing a story
seawatch status                       # the running fleet, from the hub's API
seawatch ship --simulate              # agent + simulator, incidents shown as they open/close
seawatch simulate --to udp://127.0.0.1:5514 --duration 3600 --speed 60
seawatch policy check policies/ --ship MV-AURORA
seawatch bench fastpath
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _policy_check(args: argparse.Namespace) -> int:
    from shared.policy import PolicyError, effective_yaml, load_policy

    try:
        policy = load_policy(args.dir, args.ship)
    except PolicyError as exc:
        print(exc.report(), file=sys.stderr)
        return 1
    print(effective_yaml(policy), end="")
    return 0


def _demo(args: argparse.Namespace) -> int:
    try:
        from seawatch.demo import run_demo
    except ImportError as exc:  # a vessel install, without the hub extra
        print(f"seawatch demo: {HUB_EXTRA} ({exc})", file=sys.stderr)
        return 2
    return run_demo(args)


def _status(args: argparse.Namespace) -> int:
    from seawatch.status import run_status

    return run_status(args)


def _ship(args: argparse.Namespace) -> int:
    from ship_agent.run import run_ship

    return run_ship(args)


HUB_EXTRA = "the shore hub needs its engines: pip install 'seawatch[hub]'"


def _hub(args: argparse.Namespace) -> int:
    try:
        from shore_hub.run import run_hub, run_keys, run_reembed, run_schema, run_ships
    except ImportError as exc:  # a vessel install, without the hub extra
        print(f"seawatch hub: {HUB_EXTRA} ({exc})", file=sys.stderr)
        return 2
    if getattr(args, "keys_command", None):
        return run_keys(args)
    if getattr(args, "ships_command", None):
        return run_ships(args)
    if getattr(args, "hub_command", None) == "schema":
        return run_schema(args)
    if getattr(args, "hub_command", None) == "reembed":
        return run_reembed(args)
    return run_hub(args)


def _add_hub_benches(bench_sub: Any) -> None:
    """The hub's benchmarks define their flags beside their code; listed only where the
    hub extra is installed."""
    try:
        from bench import ask, capacity, chaos, hubingest, hubstore, memory
        from bench import sync as sync_bench
    except ImportError:
        return
    for name, module, text in (
        ("hubstore", hubstore, "fleet store: ingest rate, query p50/p99"),
        ("hubingest", hubingest, "hub: FLEET_UP -> fleet store, versions/s"),
        ("capacity", capacity, "hub disk per incident and heartbeat, heartbeat bytes"),
        ("memory", memory, "incident memory: embedding rate, search p99"),
        ("sync", sync_bench, "store-and-forward: catch-up, slow link, bytes, retention"),
        ("chaos", chaos, "a fleet of processes under link cuts and kill -9: what is lost"),
        ("ask", ask, "/ask with the local model: latency, fallback rate, citation validity"),
    ):
        _add_bench(bench_sub, name, module, text)


def _add_bench(bench_sub: Any, name: str, module: Any, text: str) -> None:
    """A benchmark whose module defines add_arguments(parser) and main(args)."""
    parser = bench_sub.add_parser(name, help=text)
    module.add_arguments(parser)
    parser.set_defaults(func=module.main)


def _simulate(args: argparse.Namespace) -> int:
    from ship_agent.simulator.cli import run_simulate

    return run_simulate(args)


def _bench_fastpath(args: argparse.Namespace) -> int:
    from bench.fastpath import main as fastpath

    return fastpath(args)


def _bench_nab(args: argparse.Namespace) -> int:
    from bench.nab.run import main as nab

    return nab(args)


def _bench_scenarios(args: argparse.Namespace) -> int:
    from bench.scenarios.run import main as scenarios

    return scenarios(args)


def _bench_insight(args: argparse.Namespace) -> int:
    from bench.insight import main as insight

    return insight(args)


def _bench_wire(args: argparse.Namespace) -> int:
    from bench.wire import main as wire

    return wire(args)


def _add_ship_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ship-id", help="this vessel's id (default MV-DEMO or $SEAWATCH_SHIP_ID)")
    p.add_argument("--data-dir", type=Path, help="where the agent keeps its SQLite store")
    p.add_argument("--http-port", type=int, help="local API port (0 = any free port)")
    p.add_argument("--syslog-port", type=int, help="syslog UDP and TCP port (0 = any free port)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--policy-dir", type=Path, help="fleet policy directory (default: built-in)")
    p.add_argument("--nats-url", help="local nats-server for on-board producers")
    p.add_argument(
        "--hub-leaf-url",
        help="hub leafnode address, e.g. nats-leaf://hub:7422 (secret: $SEAWATCH_SHIP_SECRET)",
    )
    p.add_argument(
        "--no-llm", action="store_true", help="explain incidents by rules only (no local model)"
    )
    p.add_argument("--config", type=Path, help="settings file (YAML)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seawatch", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    ship = sub.add_parser("ship", help="run the ship agent")
    _add_ship_flags(ship)
    ship.add_argument(
        "--simulate",
        action="store_true",
        help="also run the ship simulator against this agent, with scripted faults",
    )
    ship.add_argument(
        "--speed",
        type=float,
        default=30.0,
        help="with --simulate: simulated seconds per wall second",
    )
    ship.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stop after this many seconds (simulated time with --simulate)",
    )
    ship.add_argument("--seed", type=int, default=1)
    ship.set_defaults(func=_ship)

    demo = sub.add_parser("demo", help="a hub and simulated ships playing a scripted story")
    demo.add_argument("--ships", type=int, default=5, help="how many ships")
    demo.add_argument("--data-dir", type=Path, default=Path("data/demo"), help="all state")
    demo.add_argument("--http-port", type=int, default=8480, help="hub API and console port")
    demo.add_argument("--speed", type=float, default=30.0, help="simulated s per wall s")
    demo.add_argument("--duration", type=float, default=None, help="stop after (wall s)")
    demo.add_argument("--report-every", type=float, default=15.0, help="wall s between reports")
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--no-memory", action="store_true", help="do not embed incidents")
    demo.add_argument("--no-llm", action="store_true", help="ships explain by rules only")
    demo.set_defaults(func=_demo)

    status = sub.add_parser("status", help="a terminal summary of the running fleet")
    status.add_argument("--hub", help="hub API root (default: the running demo's, else :8480)")
    status.add_argument("--api-key", help="an API key (default: SEAWATCH_API_KEY, the demo's)")
    status.add_argument(
        "--data-dir", type=Path, default=Path("data/demo"), help="a running demo's state"
    )
    status.set_defaults(func=_status)

    hub = sub.add_parser("hub", help="run the shore hub (or manage its API keys)")
    hub.add_argument("--data-dir", type=Path, help="where the hub keeps its stores")
    hub.add_argument("--http-port", type=int, help="API port (0 = any free port)")
    hub.add_argument("--nats-port", type=int, help="port of the hub nats-server it starts")
    hub.add_argument("--nats-url", help="use this hub nats-server instead of starting one")
    hub.add_argument("--leaf-port", type=int, help="where ship leaf nodes connect (default 7422)")
    hub.add_argument("--clickhouse-url", help="ClickHouse server (default: embedded chdb)")
    hub.add_argument("--qdrant-url", help="Qdrant server (default: Qdrant Edge in process)")
    hub.add_argument("--workers", type=int, help="ingest workers in this process")
    hub.add_argument("--no-memory", action="store_true", help="do not embed incidents")
    hub.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    hub.add_argument("--policy-dir", type=Path, help="fleet policy directory")
    hub.add_argument("--config", type=Path, help="settings file (YAML)")
    hub.set_defaults(func=_hub)
    hub_sub = hub.add_subparsers(dest="hub_command")
    keys = hub_sub.add_parser("keys", help="API keys: create prints a key once; revoke")
    keys.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help="the hub's data")
    keys.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="settings file")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it once")
    create.add_argument(
        "--role", required=True, choices=["viewer", "operator", "approver", "admin"]
    )
    create.add_argument("--name", default="api", help="who or what the key is for")
    create.add_argument("--ships", help="comma-separated ship ids the key may see (default all)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by its id (sw_<id>_...)")
    revoke.add_argument("key_id")
    ships = hub_sub.add_parser("ships", help="ships allowed to connect: add prints a secret once")
    ships.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help="the hub's data")
    ships.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="settings file")
    ships_sub = ships.add_subparsers(dest="ships_command", required=True)
    ships_sub.add_parser("add", help="register a ship (or re-key it)").add_argument("ship_id")
    ships_sub.add_parser("remove", help="refuse a ship from now on").add_argument("ship_id")
    ships_sub.add_parser("list", help="registered ship ids")
    ships_sub.add_parser(
        "nats-auth", help="users and leafnodes config for an external NATS (holds a secret)"
    )
    schema = hub_sub.add_parser(
        "schema", help="print the fleet store's DDL for a ClickHouse cluster"
    )
    schema.add_argument("--cluster", required=True, help="cluster name (ClickHouse remote_servers)")
    schema.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="settings file")
    schema.add_argument(
        "--policy-dir", type=Path, default=argparse.SUPPRESS, help="fleet policy (retention)"
    )

    reembed = hub_sub.add_parser(
        "reembed", help="embed every stored incident again (after the text or model changed)"
    )
    reembed.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help="the hub's data")
    reembed.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="settings file")

    sim = sub.add_parser("simulate", help="generate one ship's telemetry with labelled faults")
    sim.add_argument("--ship-id", default="MV-DEMO")
    sim.add_argument(
        "--to",
        action="append",
        default=[],
        help="udp://H:P, tcp://H:P (syslog), http://H:P (JSON batches), file:PATH",
    )
    sim.add_argument("--duration", type=float, default=3600.0, help="simulated seconds")
    sim.add_argument(
        "--speed",
        type=float,
        default=None,
        help="simulated seconds per wall second (default: as fast as possible)",
    )
    sim.add_argument(
        "--scenario",
        action="append",
        default=[],
        help="NAME@OFFSET_S[:DURATION_S], e.g. rain_fade@600:1200 (repeatable)",
    )
    sim.add_argument("--labels", type=Path, help="write ground-truth labels (JSON lines) here")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--extra-devices", type=int, default=0)
    sim.set_defaults(func=_simulate)

    pol = sub.add_parser("policy", help="policy bundle tools")
    pol_sub = pol.add_subparsers(dest="policy_command", required=True)
    check = pol_sub.add_parser(
        "check",
        help="validate a policy directory; print the effective "
        "policy for a ship, or every error with file and key",
    )
    check.add_argument("dir", type=Path)
    check.add_argument("--ship", default=None)
    check.set_defaults(func=_policy_check)

    bench = sub.add_parser("bench", help="benchmarks that print comparable figures")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    fast = bench_sub.add_parser("fastpath", help="throughput, latency, memory of the fast path")
    fast.add_argument("--events", type=int, default=200_000)
    fast.add_argument("--devices", type=int, default=500)
    fast.add_argument("--rate", type=float, default=2000.0, help="events/s for the latency run")
    fast.add_argument("--latency-seconds", type=float, default=10.0)
    fast.set_defaults(func=_bench_fastpath)
    _add_hub_benches(bench_sub)
    nab = bench_sub.add_parser("nab", help="metric detectors on the Numenta Anomaly Benchmark")
    nab.add_argument("--data-dir", type=Path, help="NAB corpus (default: ../shared/data/nab)")
    nab.add_argument("--series", action="append", default=[], help="only names containing this")
    nab.add_argument("--policy-dir", type=Path, help="fleet policy directory (default: built-in)")
    nab.add_argument("--seeds", type=int, default=10, help="runs of the random detector")
    nab.add_argument("--ablations", action="store_true", help="also score each lever removed")
    nab.set_defaults(func=_bench_nab)
    scen = bench_sub.add_parser("scenarios", help="incident-level scores on simulated faults")
    scen.add_argument("--rounds", type=int, default=3, help="injections of each fault type")
    scen.add_argument("--normal-days", type=float, default=7.0, help="days of normal traffic")
    scen.add_argument("--seed", type=int, default=1)
    scen.set_defaults(func=_bench_scenarios)
    # bench.wire's and bench.insight's own add_arguments, repeated: importing them costs
    # seconds (the simulator), which every command would pay (tests/test_sync_bench.py
    # keeps the copies the same)
    wire = bench_sub.add_parser("wire", help="bytes per incident on the link, per codec")
    wire.add_argument("--seed", type=int, default=1, help="simulator seed (held out)")
    wire.add_argument("--rounds", type=int, default=2, help="injections of each fault type")
    wire.add_argument("--normal-days", type=float, default=1.0, help="days of normal traffic")
    wire.set_defaults(func=_bench_wire)
    insight = bench_sub.add_parser("insight", help="insight path beside the fast path; retrieval")
    insight.add_argument("--rate", type=float, default=2000.0, help="fast-path events/s")
    insight.add_argument("--seconds", type=float, default=150.0, help="length of each latency run")
    insight.add_argument("--rounds", type=int, default=1, help="fault rounds to explain")
    insight.add_argument("--no-cache", action="store_true", help="every insight from the model")
    insight.add_argument("--ships", type=int, default=10, help="ships in the labelled set")
    insight.add_argument("--eval-rounds", type=int, default=2, help="fault rounds per ship")
    insight.set_defaults(func=_bench_insight)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


def reference() -> str:
    """docs/cli.md: every command's --help, so the reference cannot drift (tests compare)."""
    parser = build_parser()
    out = [
        "# Command-line reference",
        "",
        "Generated from the parser: `python -c 'from seawatch.cli import reference; "
        'print(reference(), end="")\' > docs/cli.md`.',
        "",
    ]

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or path != "seawatch":
            out.extend([f"## `{path}`", "", "```", p.format_help().rstrip(), "```", ""])
        for action in subs:
            for name, child in action.choices.items():
                walk(child, f"{path} {name}")

    walk(parser, "seawatch")
    return "\n".join(out)
