"""`seawatch bench wire`: what one incident costs on the satellite link, per codec.

The ship sends each incident version in its own NATS message, so what counts is the size
of a single-incident frame. The incidents are held out: simulated with another seed and
ship than the dictionary was trained on (sync.dictionary.TRAIN_SEED), run through the
real pipeline and redacted as the link requires. Per codec, per incident:
- frame bytes: plain JSON (orjson of model_dump(mode="json"), the baseline), format 1
  (zstd without a dictionary) and format 2 with each shipped dictionary (the newest is
  what ships send), and the same for the remediation requests the ship proposed;
- link bytes: the frame in a JetStream publish as it crosses the leaf connection (HPUB
  line with the reply inbox, a Nats-Msg-Id header for de-duplication, the frame, CRLF);
  the PubAck that comes back down is listed apart;
- encode and decode time on one core (wire.encode / wire.decode, including JSON and
  validation), and the time the redaction takes per incident before encoding, for
  strings seen the first time and with its cache warm.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from shared import wire
from shared.models import ActionRequest, Incident
from shared.policy import load_policy
from sync.dictionary import TRAIN_SEED, sample_messages
from sync.privacy import Redactor
from sync.topology import FLEET_UP, up_subject

_INBOX = "_INBOX." + "x" * 22 + "." + "x" * 22  # nats-py's request inbox: two NUIDs
TARGET_FRAME = 0.25  # of plain JSON
TARGET_LINK = 0.30


def link_bytes(frame: bytes, ship_id: str, msg_id: str) -> int:
    """Bytes of one JetStream publish of `frame` on the wire (NATS protocol included)."""
    header = f"NATS/1.0\r\nNats-Msg-Id: {msg_id}\r\n\r\n".encode()
    size = len(header) + len(frame)
    line = f"HPUB {up_subject(ship_id, 'incident')} {_INBOX} {len(header)} {size}\r\n"
    return len(line) + size + 2


def ack_bytes(seq: int = 1_234_567) -> int:
    """Bytes of the PubAck that comes back down for each publish."""
    body = orjson.dumps({"stream": FLEET_UP, "seq": seq})
    return len(f"MSG {_INBOX} 1 {len(body)}\r\n".encode()) + len(body) + 2


def _per_item_us(fn: Callable[[Any], object], items: Sequence[Any], repeat: int = 5) -> float:
    """Best of `repeat` passes over the items, in microseconds per item."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - started)
    return best / len(items) * 1e6


def _json(m: Incident) -> bytes:
    return orjson.dumps(m.model_dump(mode="json"))


def run(
    seed: int = 1, rounds: int = 2, normal_days: float = 1.0, ship_id: str = "MV-EVAL"
) -> list[dict[str, Any]]:
    """One row per codec (and one for redaction): bytes and microseconds per incident."""
    if seed == TRAIN_SEED:
        raise ValueError(f"seed {seed} is the dictionary's training seed: measure on another")
    messages = sample_messages(seed, rounds, normal_days, ship_id)
    incidents = [m for m in messages if isinstance(m, Incident)]
    if not incidents:
        raise ValueError("the simulation produced no incidents: raise rounds")
    requests = [m for m in messages if isinstance(m, ActionRequest)]
    rows = _codec_rows("", incidents, ship_id)
    if requests:  # what a dictionary that knows remediations saves on them
        rows += _codec_rows("remediation: ", requests, ship_id, plain_rows=False)
    # a new redactor's first pass finds every string new; later passes answer the
    # timeline and evidence an incident repeats in each version from its cache
    redactor = Redactor.from_policy(load_policy(ship_id=ship_id).privacy)
    cold = _per_item_us(lambda m: redactor.redact([m]), incidents, repeat=1)
    warm = _per_item_us(lambda m: redactor.redact([m]), incidents)
    for name, us in (("redaction, first pass", cold), ("redaction, cache warm", warm)):
        rows.append(
            {
                "codec": name,
                "frame_bytes": None,
                "frame_p95_bytes": None,
                "frame_of_json": None,
                "link_bytes": None,
                "link_of_json": None,
                "encode_us": us,
                "decode_us": None,
                "incidents": len(incidents),
            }
        )
    return rows


def _encode_one(message: Any, dictionary: int) -> bytes:
    return wire.encode([message], dictionary=dictionary)


def _codec_rows(
    label: str, items: Sequence[Any], ship_id: str, plain_rows: bool = True
) -> list[dict[str, Any]]:
    """Bytes and microseconds per item for plain JSON, format 1 and every shipped
    dictionary, side by side; the newest dictionary last."""
    baseline = statistics.mean(len(_json(m)) for m in items)
    codecs: list[tuple[str, Callable[[Any], bytes], Callable[[bytes], object]]] = []
    if plain_rows:
        codecs += [
            ("plain JSON", _json, type(items[0]).model_validate_json),
            ("format 1: zstd", lambda m: wire.encode([m], dictionary=None), wire.decode),
        ]
    for version in sorted(wire.DICTIONARIES):
        codecs.append(
            (
                f"{label}format 2: zstd + dictionary v{version}",
                functools.partial(_encode_one, dictionary=version),
                wire.decode,
            )
        )
    rows: list[dict[str, Any]] = []
    for name, encode, decode in codecs:
        frames = [encode(m) for m in items]
        sizes = [len(f) for f in frames]
        keys = [f"{m.id}:{m.version}" for m in items]
        link = [link_bytes(f, ship_id, k) for f, k in zip(frames, keys, strict=True)]
        rows.append(
            {
                "codec": name,
                "frame_bytes": statistics.mean(sizes),
                "frame_p95_bytes": statistics.quantiles(sizes, n=20)[-1],
                "frame_of_json": statistics.mean(sizes) / baseline,
                "link_bytes": statistics.mean(link),
                "link_of_json": statistics.mean(link) / baseline,
                "encode_us": _per_item_us(encode, items),
                "decode_us": _per_item_us(decode, frames),
                "incidents": len(items),
            }
        )
    return rows


def _cell(value: float | None, spec: str, scale: float = 1.0) -> str:
    if value is None:
        return "-".rjust(int(spec.split(".")[0]))
    return format(value * scale, spec)


def report(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        f"  {'per item':46s} {'frame B':>8s} {'p95 B':>7s} {'% JSON':>7s} {'link B':>7s}"
        f" {'% JSON':>7s} {'encode us':>10s} {'decode us':>10s}"
    ]
    for r in rows:
        out.append(
            f"  {r['codec']:46s} {_cell(r['frame_bytes'], '8.0f')}"
            f" {_cell(r['frame_p95_bytes'], '7.0f')} {_cell(r['frame_of_json'], '7.1f', 100)}"
            f" {_cell(r['link_bytes'], '7.0f')} {_cell(r['link_of_json'], '7.1f', 100)}"
            f" {_cell(r['encode_us'], '10.1f')} {_cell(r['decode_us'], '10.1f')}"
        )
    best = next(r for r in rows if r["codec"].endswith(f"v{wire.DICTIONARY_VERSION}"))
    frame_ok = best["frame_of_json"] <= TARGET_FRAME
    link_ok = best["link_of_json"] <= TARGET_LINK
    out += [
        f"  targets for format 2: frame <= {TARGET_FRAME:.0%} of JSON: "
        f"{'met' if frame_ok else 'MISSED'}; link <= {TARGET_LINK:.0%}: "
        f"{'met' if link_ok else 'MISSED'}",
        f"  PubAck coming back down per publish: {ack_bytes()} B",
    ]
    return out


def main(args: argparse.Namespace) -> int:
    print(
        f"seawatch bench wire: {datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, held-out seed {args.seed}"
        f" (dictionary trained on seed {TRAIN_SEED}), {args.rounds} fault rounds + "
        f"{args.normal_days:g} normal days"
    )
    rows = run(args.seed, args.rounds, args.normal_days)
    print(f"  {rows[0]['incidents']} incident versions, one per frame")
    for line in report(rows):
        print(line)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=1, help="simulator seed (held out)")
    parser.add_argument("--rounds", type=int, default=2, help="injections of each fault type")
    parser.add_argument("--normal-days", type=float, default=1.0, help="days of normal traffic")


if __name__ == "__main__":
    cli = argparse.ArgumentParser(prog="python -m bench.wire", description=__doc__)
    add_arguments(cli)
    raise SystemExit(main(cli.parse_args()))
