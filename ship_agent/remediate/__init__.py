"""The remediation loop on board: propose, decide, run exactly once, report.

A new incident gets at most one proposal (`planner.plan`). An auto-approved one runs at
once; the others wait, as `pending` requests that go up in the urgent lane, for a decision
made ashore (an `approval_decision` command) or, with the link down and policy allowing
it, by the crew on board. Every change of a request is a new version written with its
outbox row (and the decision's downlink record) in one SQLite transaction. A request is
claimed (`approved` -> `running`) in its own commit before anything runs, so no decision,
repeated command or restart can run it twice: one the agent stopped in the middle of is
marked `interrupted` and left to a person.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from shared import log, wire
from shared.ids import new_id
from shared.models import ActionRequest, ActionResult, Command
from shared.policy import RemediatePolicy
from shared.taxonomy import IncidentStatus, Priority
from ship_agent.insight.knowledge import Knowledge
from ship_agent.remediate.executor import Executor, StepResult, open_executor
from ship_agent.remediate.planner import in_window, plan
from ship_agent.store import Batch, Store

_log = log.get("ship_agent.remediate")

SCHEMA = """
CREATE TABLE IF NOT EXISTS action_requests (
  id TEXT PRIMARY KEY, incident_id TEXT NOT NULL UNIQUE, action TEXT NOT NULL,
  target TEXT NOT NULL, status TEXT NOT NULL, version INTEGER NOT NULL, doc TEXT NOT NULL,
  updated REAL NOT NULL, ran REAL
);
CREATE INDEX IF NOT EXISTS action_requests_ran ON action_requests(action, target, ran);
"""
AUTO = "policy:auto"


class DecisionError(ValueError):
    """A decision that cannot be taken; the message says why (shown to whoever asked)."""


class Remediator:
    def __init__(
        self,
        store: Store,
        policy: RemediatePolicy,
        knowledge: Knowledge,
        role_of: Callable[[str], str],
    ) -> None:
        self.store, self.conn, self.ship_id = store, store.conn, store.ship_id
        self.conn.executescript(SCHEMA)
        self.configure(policy, knowledge, role_of)
        self._interrupt_running()

    def configure(
        self, policy: RemediatePolicy, knowledge: Knowledge, role_of: Callable[[str], str]
    ) -> None:
        self.policy, self.knowledge, self.role_of = policy, knowledge, role_of
        self.executor: Executor = open_executor(policy.executor)

    # ---------------------------------------------------------------- reading

    def get(self, request_id: str) -> ActionRequest | None:
        row = self.conn.execute("SELECT doc FROM action_requests WHERE id=?", (request_id,))
        found = row.fetchone()
        return ActionRequest.model_validate_json(found[0]) if found else None

    def requests(self, status: str | None = None, limit: int = 100) -> list[ActionRequest]:
        sql = "SELECT doc FROM action_requests"
        args: tuple[Any, ...] = ()
        if status is not None:
            sql, args = sql + " WHERE status=?", (status,)
        rows = self.conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
        return [ActionRequest.model_validate_json(r[0]) for r in rows]

    def _last_run(self, action: str, target: str) -> float | None:
        row = self.conn.execute(
            "SELECT max(ran) FROM action_requests WHERE action=? AND target=?", (action, target)
        ).fetchone()
        return float(row[0]) if row[0] is not None else None

    # ---------------------------------------------------------------- proposals

    def propose_for(self, batch: Batch) -> int:
        """A proposal for each incident this batch opened; returns how many were approved
        by policy at once (ready to run)."""
        ready = 0
        for state in batch.incidents:
            opened = any(
                t["version"] == state.version and t["event"] == "opened" for t in state.timeline
            )
            if not opened or state.status != IncidentStatus.OPEN:
                continue
            incident = state.to_model(self.ship_id)
            role = self.role_of(incident.device)
            words = " ".join(e.summary for e in incident.evidence)
            books = self.knowledge.runbooks_for(incident.type, role, words, limit=1)
            now = time.time()
            request, why = plan(
                incident, role, books[0].book if books else None, self.policy, self._last_run, now
            )
            if request is None:
                _log.debug("no remediation", incident_id=incident.id, reason=why)
                continue
            # An auto-approved action that runs now goes ashore once, with its outcome: the
            # link carries no "approved" version that would be stale in seconds.
            runs_now = request.approvals_needed == 0 and (
                request.risk != "high" or in_window(self.policy.maintenance_window, now)
            )
            if request.approvals_needed == 0:
                request = request.model_copy(update={"status": "approved", "approvers": [AUTO]})
                ready += 1
            proposed = f"proposed {request.action} ({request.approval})"
            self._save(request, audit=(AUTO, proposed), send=not runs_now)
        return ready

    # ---------------------------------------------------------------- decisions

    def decide_ashore(self, cmd: Command) -> ActionResult:
        """An `approval_decision` from shore; the hub has checked roles and the quorum, the
        ship checks them again. Its result commits with the decision: applied once."""
        request_id = str(cmd.payload.get("approval_id", ""))
        decision = str(cmd.payload.get("decision", ""))
        approvers = [str(a) for a in cmd.payload.get("approvers", [cmd.actor])]
        try:
            request = self._decide(request_id, decision, approvers, cmd.reason)
        except DecisionError as exc:
            result = self._result(cmd.id, "approval_decision", request_id, False, str(exc))
            self.store.record_applied([result])
            return result
        text = f"{request_id} {request.status} by {', '.join(approvers)}"
        result = self._result(cmd.id, "approval_decision", request_id, True, text)
        self._save(request, applied=[result], audit=(cmd.actor, f"shore decision: {text}"))
        return result

    def decide_on_board(
        self, request_id: str, actor: str, decision: str, reason: str
    ) -> ActionRequest:
        """The crew decides while the shore cannot; approvals add up to the quorum."""
        if not self.policy.crew_may_approve_offline:
            raise DecisionError("policy: decisions are made ashore")
        current = self.get(request_id)
        if current is None:
            raise DecisionError(f"no action request {request_id} on this ship")
        who = f"crew:{actor}"
        approvers = [*current.approvers, who] if decision == "approved" else [who]
        request = self._decide(request_id, decision, approvers, reason, partial=True)
        self._save(request, audit=(who, f"crew {decision} {request_id}: {reason}"))
        return request

    def _decide(
        self,
        request_id: str,
        decision: str,
        approvers: list[str],
        reason: str,
        partial: bool = False,
    ) -> ActionRequest:
        request = self.get(request_id)
        if request is None:
            raise DecisionError(f"no action request {request_id} on this ship")
        if request.status != "pending":
            raise DecisionError(f"{request_id} is already {request.status}: not decided again")
        if decision not in ("approved", "rejected"):
            raise DecisionError(f"decision must be approved or rejected, not {decision!r}")
        if request.requested_by in approvers:
            raise DecisionError(
                f"{request.requested_by} requested {request_id}: may not approve it"
            )
        if len(set(approvers)) != len(approvers):
            raise DecisionError(f"one person approved twice: {', '.join(approvers)}")
        status = decision
        if decision == "approved" and len(approvers) < request.approvals_needed:
            if not partial:
                raise DecisionError(
                    f"{request_id} needs {request.approvals_needed} approvers, got {len(approvers)}"
                )
            status = "pending"
        detail = f"{decision} by {', '.join(approvers)}" + (f": {reason}" if reason else "")
        return self._next(request, status=status, approvers=approvers, detail=detail)

    # ---------------------------------------------------------------- running

    def due(self, now: float | None = None) -> list[str]:
        """Approved requests that may run now: high-risk ones only in the maintenance window."""
        window = in_window(self.policy.maintenance_window, now)
        return [r.id for r in self.requests("approved") if r.risk != "high" or window]

    def claim(self, request_id: str) -> ActionRequest | None:
        """approved -> running, committed before anything runs; None if it was not approved
        (already claimed, decided otherwise, or unknown)."""
        request = self.get(request_id)
        if request is None or request.status != "approved":
            return None
        running = self._next(request, status="running", detail="running")
        if not self._save(running, expect="approved", ran=time.time(), send=False):
            return None
        return running

    def execute(self, request: ActionRequest) -> tuple[bool, str]:
        """Pre-check, run (with the policy's retries), post-check; roll back a failed run
        or post-check. Blocking: the agent calls it in a worker thread."""
        ex, steps = self.executor, []

        def step(name: Any) -> StepResult | None:
            out = ex.step(request.action, request.target, name)
            if out is not None:
                steps.append(out.line())
            return out

        ok = True
        if request.pre_check and (pre := step("pre_check")) is not None and not pre.ok:
            return False, f"[{ex.name}] " + "; ".join(steps)
        retries = (
            self.policy.actions[request.action].retries
            if request.action in self.policy.actions
            else 0
        )
        for _ in range(retries + 1):
            run = step("run")
            ok = run is not None and run.ok
            if ok:
                break
        if ok and request.post_check and (post := step("post_check")) is not None:
            ok = post.ok
        if not ok:
            step("rollback")
        return ok, f"[{ex.name}] " + "; ".join(steps)

    def finish(self, request: ActionRequest, ok: bool, detail: str) -> ActionRequest:
        """The outcome is the request's next version: what ran, each step, who approved."""
        done = self._next(request, status="succeeded" if ok else "failed", detail=detail)
        self._save(done, audit=(self.executor.name, f"{done.status}: {detail}"))
        return done

    def _interrupt_running(self) -> None:
        for request in self.requests("running"):
            stopped = self._next(
                request,
                status="interrupted",
                detail="the agent stopped while it ran; not run again on its own",
            )
            self._save(stopped, audit=("agent", f"interrupted {request.id}"))

    # ---------------------------------------------------------------- writing

    def _next(self, request: ActionRequest, **changes: Any) -> ActionRequest:
        return request.model_copy(
            update={
                "version": request.version + 1,
                "tracking_id": new_id(),
                "ts": datetime.now(UTC),
                **changes,
            }
        )

    def _result(
        self, command_id: str, action: str, target: str, ok: bool, detail: str
    ) -> ActionResult:
        return ActionResult(
            tracking_id=new_id(),
            ship_id=self.ship_id,
            ts=datetime.now(UTC),
            command_id=command_id,
            action=action,
            target=target,
            ok=ok,
            detail=detail,
        )

    def _save(
        self,
        request: ActionRequest,
        *,
        expect: str | None = None,
        ran: float | None = None,
        applied: Iterable[ActionResult] = (),
        audit: tuple[str, str] | None = None,
        send: bool = True,
    ) -> bool:
        """The new version, its outbox row, and what goes with it, in one transaction;
        False (nothing written) when `expect` no longer holds. `running` stays on board
        (`send` False): it lasts seconds, and an interruption is reported as its own version."""
        now = time.time()
        c = self.conn
        c.execute("BEGIN")
        try:
            if request.version == 1:
                c.execute(
                    "INSERT INTO action_requests VALUES (?,?,?,?,?,?,?,?,NULL)",
                    (request.id, request.incident_id, request.action, request.target,
                     request.status, 1, request.model_dump_json(), now),
                )  # fmt: skip
            else:
                changed = c.execute(
                    "UPDATE action_requests SET status=?, version=?, doc=?, updated=?,"
                    " ran=coalesce(?, ran) WHERE id=? AND status=coalesce(?, status)",
                    (request.status, request.version, request.model_dump_json(), now, ran,
                     request.id, expect),
                )  # fmt: skip
                if changed.rowcount != 1:
                    c.execute("ROLLBACK")
                    return False
            if send:
                c.execute(
                    "INSERT INTO outbox (incident_id, version, priority, kind, payload, created)"
                    " VALUES (?,?,?,'action_request',?,?)",
                    (request.id, request.version, int(Priority.URGENT),
                     wire.encode([request]), now),
                )  # fmt: skip
            self.store.write_applied(list(applied), now)
            if audit is not None:
                c.execute(
                    "INSERT INTO audit (ts, actor, action, incident_id, detail) VALUES (?,?,?,?,?)",
                    (now, audit[0], f"remediate:{request.action}", request.incident_id, audit[1]),
                )
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return True
