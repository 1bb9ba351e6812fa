"""The ingest worker's order of work, with JetStream and the store replaced by fakes that
record what happened when (the slow receipts and the crash they inject cannot be had
on demand from a real server): a batch is acknowledged only after it is stored and its
receipts are sent, receipts that linger do not hold back the next batch, and a worker
that crashes before acknowledging leaves its batches unacknowledged."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from shared.ids import new_id
from shared.models import Incident
from shore_hub.ingest import Decoded, IngestWorker
from sync.topology import up_subject
from tests.test_hub import frame, incident


def _frame(ship: str) -> bytes:
    return frame(incident(ship, 0, inc_id=new_id()))


class Msg:
    def __init__(self, log: list[str], name: str, subject: str, data: bytes) -> None:
        self.log, self.name, self.subject, self.data = log, name, subject, data

    async def ack(self) -> None:
        self.log.append(f"ack {self.name}")

    async def nak(self, delay: float = 0.0) -> None:
        self.log.append(f"nak {self.name}")


class Js:
    """Hands out the batches given, one per fetch, then times out like an empty stream."""

    def __init__(self, batches: list[list[Msg]]) -> None:
        self.batches = batches

    async def pull_subscribe(self, *args: Any, **kwargs: Any) -> Js:
        return self

    async def fetch(self, n: int, timeout: float) -> list[Msg]:
        if not self.batches:
            await asyncio.sleep(0.01)
            raise TimeoutError
        return self.batches.pop(0)


class Store:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def insert_incidents(self, incidents: list[Incident], received_at: float) -> None:
        self.log.append(f"stored {len(incidents)}")

    def insert_dead_letters(self, rows: list[dict[str, Any]]) -> None:
        self.log.append(f"dead {rows[0]['reason']}")


def _batches(log: list[str], sizes: list[int]) -> list[list[Msg]]:
    subject = up_subject("MV-A", "incident")
    out, n = [], 0
    for size in sizes:
        out.append([Msg(log, f"m{n + k}", subject, _frame("MV-A")) for k in range(size)])
        n += size
    return out


async def _until(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def test_injected_slow_receipts_do_not_hold_back_the_next_batch() -> None:
    async def scenario() -> list[str]:
        log: list[str] = []
        first_receipts = asyncio.Event()

        async def receipts(d: Decoded) -> None:
            log.append(f"receipts {len(d.incidents)}")
            if len(d.incidents) == 1:  # the first batch's receipts linger
                await first_receipts.wait()

        hooks: list[int] = []
        worker = IngestWorker(
            Js(_batches(log, [1, 2])), Store(log), lambda d: hooks.append(d.count), "w", receipts
        )
        task = asyncio.create_task(worker.run())
        await _until(lambda: "receipts 2" in log)
        # the second batch was stored while the first one's receipts waited; nothing acked
        assert sorted(log) == ["receipts 1", "receipts 2", "stored 1", "stored 2"]
        first_receipts.set()
        await _until(lambda: worker.stored == 3)
        worker.stop()
        await task
        assert hooks == [1, 2]  # the stored hooks keep the stream's order
        return log

    log = asyncio.run(scenario())
    assert log[4:] == ["ack m0", "ack m1", "ack m2"]


def test_an_injected_crash_before_the_ack_ends_the_worker_and_acks_nothing_after_it() -> None:
    async def scenario() -> tuple[list[str], IngestWorker]:
        log: list[str] = []

        async def crash(d: Decoded) -> None:
            raise asyncio.CancelledError  # the worker dies between storing and acking

        worker = IngestWorker(Js(_batches(log, [1, 1])), Store(log), lambda d: None, "w", crash)
        task = asyncio.create_task(worker.run())
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5.0)
        assert task.cancelled()
        return log, worker

    log, worker = asyncio.run(scenario())
    assert not [entry for entry in log if entry.startswith("ack")]
    assert worker.stored == 0 and log[0] == "stored 1"


@pytest.mark.parametrize("sizes", [[3], [1, 1, 1, 1]])
def test_stop_with_injected_slow_receipts_acks_every_stored_batch_first(sizes: list[int]) -> None:
    async def scenario() -> list[str]:
        log: list[str] = []

        async def receipts(d: Decoded) -> None:
            await asyncio.sleep(0.2)  # still lingering when the worker is told to stop

        worker = IngestWorker(Js(_batches(log, sizes)), Store(log), lambda d: None, "w", receipts)
        task = asyncio.create_task(worker.run())
        await _until(lambda: sum(e.startswith("stored") for e in log) == len(sizes))
        worker.stop()
        await task
        return log

    log = asyncio.run(scenario())
    assert sorted(e for e in log if e.startswith("ack")) == sorted(
        f"ack m{k}" for k in range(sum(sizes))
    )
