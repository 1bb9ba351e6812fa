"""Which incident changes notify whom, and when: the decision engine, pure.

Only three changes are news: an incident **opened**, its severity **escalated**, and it
**resolved** — the last only to a channel that was told of it. Every other version
(evidence, insight, acknowledgement) is not, and a suppressed incident (maintenance window,
operator) never notifies. What changed is read from the version's own timeline entries, so
a replayed or late version decides the same way, and an older version than one already
seen is skipped.

Then, per channel, in this order: during quiet hours a change below their severity floor is
held; `threshold` changes within `window_s` make a storm, whose rest is held; past
`rate_limit_per_hour` messages, changes are held. Held changes fold into one digest that
lists them and counts them by reason: nothing is dropped. The digest goes out when the
channel may send again — the storm over (or held for a whole window), a message slot free
in the hour, and, for a digest of below-floor changes only, the quiet hours over.

Time is an argument (`now`, epoch seconds), so every rule is tested without waiting. The
state is one small document per channel; the notifier stores it with the spool in one
transaction, so a restart keeps what was folded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from shared.ids import new_id
from shared.models import Incident
from shared.policy import NotifyPolicy, SmtpChannel, WebhookChannel
from shared.taxonomy import IncidentStatus, Severity

Side = Literal["ship", "hub"]
Event = Literal["opened", "escalated", "resolved"]
FoldReason = Literal["quiet_hours", "storm", "rate_limit"]
Channel = WebhookChannel | SmtpChannel

HOUR_S = 3600.0
MAX_LISTED = 100  # changes a digest lists; those beyond are counted, not listed
MAX_TOLD = 5000  # incidents a channel remembers it told of (resolves end them)
MAX_SEEN = 20_000  # incidents whose newest version is remembered, against replays
_REASON_TEXT = {"quiet_hours": "quiet hours", "storm": "storm", "rate_limit": "rate limit"}


class Change(BaseModel):
    """One notifiable change of one incident."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str  # "<incident id>:<version>:<event>", the same wherever it is decided
    event: Event
    incident_id: str
    ship_id: str
    version: int
    type: str
    severity: Severity
    device: str
    summary: str
    ts: float  # when the incident changed (its timeline entry)

    @property
    def line(self) -> str:
        return (
            f"{self.ship_id}: {self.severity.value} {self.type} on {self.device} {self.event}"
            f" - {self.summary}"
        )


class Notification(BaseModel):
    """One message to one channel: a single change, or a digest of folded ones. This is
    also the JSON a webhook receives (`id` is stable across retries: receivers dedupe on
    it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    id: str
    channel: str
    key: str  # dedup key within the channel
    kind: Literal["incident", "digest"]
    severity: Severity
    recipients: list[str]
    subject: str
    text: str
    changes: list[Change]
    folded: dict[FoldReason, int] = Field(default_factory=dict)  # digests: held, by reason
    created: float


class ChannelState(BaseModel):
    """What one channel's rules remember."""

    recent: list[float] = Field(default_factory=list)  # the last `threshold` change times
    sent: list[float] = Field(default_factory=list)  # message times within the last hour
    pending: list[Change] = Field(default_factory=list)  # folded, listed in the next digest
    folded: dict[FoldReason, int] = Field(default_factory=dict)  # exact, by reason
    held_since: float | None = None
    told: dict[str, float] = Field(default_factory=dict)  # incident id -> when, oldest first


@dataclass
class Outcome:
    notifications: list[Notification] = field(default_factory=list)
    folded: list[tuple[str, FoldReason]] = field(default_factory=list)  # (channel, reason)


def change_of(inc: Incident) -> Change | None:
    """The news in this version of an incident, if any."""
    if inc.status is IncidentStatus.SUPPRESSED:
        return None  # recorded and forwarded, but a maintenance window is not news
    entries = {t.event: t for t in inc.timeline if t.version == inc.version}
    event: Event
    if "resolved" in entries:
        event = "resolved"
    elif "opened" in entries:
        event = "opened"
    elif "escalated" in entries or "severity" in entries:
        event = "escalated"
    else:
        return None
    entry = entries.get(event) or entries["severity"]
    return Change(
        key=f"{inc.id}:{inc.version}:{event}",
        event=event,
        incident_id=inc.id,
        ship_id=inc.ship_id,
        version=inc.version,
        type=inc.type.value,
        severity=inc.severity,
        device=inc.device,
        summary=entry.detail[:300],
        ts=entry.ts.timestamp(),
    )


class Engine:
    """The rules of one side (ship or hub) over its channels."""

    def __init__(self, policy: NotifyPolicy, side: Side) -> None:
        self.side = side
        self.states: dict[str, ChannelState] = {}
        self._seen: dict[str, int] = {}  # incident id -> newest version decided
        self._dirty: set[str] = set()
        self.use_policy(policy)

    def use_policy(self, policy: NotifyPolicy) -> None:
        """Channels kept by name keep their state (what they folded, whom they told)."""
        self.policy = policy
        self.channels = [c for c in policy.channels if c.side == self.side]
        self._zone = ZoneInfo(policy.timezone)
        for c in self.channels:
            self.states.setdefault(c.name, ChannelState())

    # ---------------------------------------------------------------- decisions

    def decide(self, incidents: Iterable[Incident], now: float) -> Outcome:
        out = Outcome()
        for inc in incidents:
            if self._seen.get(inc.id, 0) >= inc.version:
                continue  # a replay, or older than what was decided already
            self._seen.pop(inc.id, None)  # the most recently changed last, the oldest evicted
            self._seen[inc.id] = inc.version
            if len(self._seen) > MAX_SEEN:
                del self._seen[next(iter(self._seen))]
            change = change_of(inc)
            if change is None:
                continue
            for ch in self.channels:
                st = self.states[ch.name]
                if not self._accepts(ch, st, change):
                    continue
                self._dirty.add(ch.name)
                reason = self._take(st, change, now)
                if reason is None:
                    out.notifications.append(self._single(ch, change, now))
                else:
                    out.folded.append((ch.name, reason))
        return out

    def flush(self, now: float) -> list[Notification]:
        """Digests whose time has come."""
        out = []
        for ch in self.channels:
            st = self.states[ch.name]
            if not st.pending or self._limited(st, now):
                continue
            top = max((c.severity for c in st.pending), key=lambda s: s.rank)
            if self._quiet(now, top):
                continue
            held = now - (st.held_since or now)
            if self._storming(st, now) and held < self.policy.storm.window_s:
                continue
            out.append(self._digest(ch, st, now))
            self._dirty.add(ch.name)
        return out

    def holding(self) -> bool:
        """Whether some digest waits (then `flush` is worth calling as time passes)."""
        return any(self.states[c.name].pending for c in self.channels)

    # ---------------------------------------------------------------- state

    def take_states(self) -> dict[str, str]:
        """The documents of the channels changed since the last call."""
        docs = {name: self.states[name].model_dump_json() for name in self._dirty}
        self._dirty = set()
        return docs

    def restore(self, docs: dict[str, str]) -> None:
        for name, doc in docs.items():
            self.states[name] = ChannelState.model_validate_json(doc)

    # ---------------------------------------------------------------- rules

    def _accepts(self, ch: Channel, st: ChannelState, c: Change) -> bool:
        if c.severity.rank < ch.min_severity.rank:
            return False
        if c.event == "resolved" and c.incident_id not in st.told:
            return False  # "resolved" about something never announced is noise
        if isinstance(ch, SmtpChannel) and not ch.recipients.get(c.severity):
            return False
        return not any(p.key == c.key for p in st.pending)

    def _take(self, st: ChannelState, c: Change, now: float) -> FoldReason | None:
        """Record the change; None when it goes out now, else why it is held."""
        st.recent = [*st.recent, now][-self.policy.storm.threshold :]
        if c.event == "resolved":
            st.told.pop(c.incident_id, None)
        else:
            st.told[c.incident_id] = now
            while len(st.told) > MAX_TOLD:
                del st.told[next(iter(st.told))]
        reason: FoldReason
        if self._quiet(now, c.severity):
            reason = "quiet_hours"
        elif self._storming(st, now):
            reason = "storm"
        elif self._limited(st, now):
            reason = "rate_limit"
        else:
            st.sent.append(now)
            return None
        if len(st.pending) < MAX_LISTED:
            st.pending.append(c)
        st.folded[reason] = st.folded.get(reason, 0) + 1
        if st.held_since is None:
            st.held_since = now
        return reason

    def _quiet(self, now: float, severity: Severity) -> bool:
        """Quiet hours are on and `severity` is below their floor."""
        q = self.policy.quiet_hours
        if q is None or severity.rank >= q.min_severity.rank:
            return False
        local = datetime.fromtimestamp(now, self._zone)
        minute = local.hour * 60 + local.minute
        start, end = _minutes(q.start), _minutes(q.end)
        if start <= end:
            return start <= minute < end
        return minute >= start or minute < end  # across midnight

    def _storming(self, st: ChannelState, now: float) -> bool:
        storm = self.policy.storm
        return len(st.recent) >= storm.threshold and st.recent[0] > now - storm.window_s

    def _limited(self, st: ChannelState, now: float) -> bool:
        st.sent = [t for t in st.sent if t > now - HOUR_S]
        limit = self.policy.rate_limit_per_hour
        return limit > 0 and len(st.sent) >= limit

    # ---------------------------------------------------------------- messages

    def _single(self, ch: Channel, c: Change, now: float) -> Notification:
        text = "\n".join(
            [
                c.line,
                "",
                f"incident {c.incident_id} version {c.version}",
                f"changed at {datetime.fromtimestamp(c.ts, self._zone).isoformat()}",
            ]
        )
        return Notification(
            id=new_id(),
            channel=ch.name,
            key=c.key,
            kind="incident",
            severity=c.severity,
            recipients=list(ch.recipients.get(c.severity, [])),
            subject=f"[Seawatch] {c.ship_id}: {c.severity.value} {c.type} on {c.device} {c.event}",
            text=text,
            changes=[c],
            created=now,
        )

    def _digest(self, ch: Channel, st: ChannelState, now: float) -> Notification:
        changes = sorted(st.pending, key=lambda c: (-c.severity.rank, c.ts))
        total = sum(st.folded.values())
        severities = sorted({c.severity for c in changes}, key=lambda s: -s.rank)
        recipients = list(dict.fromkeys(a for s in severities for a in ch.recipients.get(s, [])))
        ships = sorted({c.ship_id for c in changes})
        where = ", ".join(ships[:3]) + (
            f" and {len(ships) - 3} more ships" if len(ships) > 3 else ""
        )
        why = ", ".join(f"{_REASON_TEXT[r]} {n}" for r, n in sorted(st.folded.items()))
        lines = [f"{total} incident changes were held and folded into this digest ({why}).", ""]
        lines += [c.line for c in changes]
        if total > len(changes):
            lines.append(f"... and {total - len(changes)} more, not listed")
        note = Notification(
            id=(nid := new_id()),
            channel=ch.name,
            key=f"digest:{nid}",
            kind="digest",
            severity=severities[0],
            recipients=recipients,
            subject=f"[Seawatch] digest: {total} incident changes on {where}",
            text="\n".join(lines),
            changes=changes,
            folded=dict(st.folded),
            created=now,
        )
        st.pending, st.folded, st.held_since = [], {}, None
        st.sent.append(now)
        return note


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)
