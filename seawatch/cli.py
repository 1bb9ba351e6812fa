"""`seawatch` — one command line for every part; each subcommand is a thin shell over a library.

seawatch ship --ship-id MV-AURORA --data-dir data/aurora --http-port 8470 --syslog-port 5514
seawatch ship --simulate              # agent + simulator, incidents shown as they open/close
seawatch simulate --to udp://127.0.0.1:5514 --duration 3600 --speed 60
seawatch policy check policies/ --ship MV-AURORA
seawatch bench fastpath
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _policy_check(args: argparse.Namespace) -> int:
    from shared.policy import PolicyError, effective_yaml, load_policy

    try:
        policy = load_policy(args.dir, args.ship)
    except PolicyError as exc:
        print(f"policy check failed: {len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(effective_yaml(policy), end="")
    return 0


def _ship(args: argparse.Namespace) -> int:
    from ship_agent.run import run_ship

    return run_ship(args)


def _simulate(args: argparse.Namespace) -> int:
    from ship_agent.simulator.cli import run_simulate

    return run_simulate(args)


def _bench_fastpath(args: argparse.Namespace) -> int:
    from bench.fastpath import main as fastpath

    return fastpath(args)


def _add_ship_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ship-id", help="this vessel's id (default MV-DEMO or $SEAWATCH_SHIP_ID)")
    p.add_argument("--data-dir", type=Path, help="where the agent keeps its SQLite store")
    p.add_argument("--http-port", type=int, help="local API port (0 = any free port)")
    p.add_argument("--syslog-port", type=int, help="syslog UDP and TCP port (0 = any free port)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--policy-dir", type=Path, help="fleet policy directory (default: built-in)")
    p.add_argument("--nats-url", help="local nats-server for on-board producers")
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
