"""Template quality: how well the agent's masking and drain3 settings group log lines.

Grouping accuracy (Zhu et al., "Tools and Benchmarks for Automated Log Parsing", 2019): a
line is parsed correctly when the lines sharing its template are exactly the lines sharing
its ground-truth event type (`ship_agent.simulator.templates`). The template stage is the
agent's own, fed the messages as the agent parses them, in stream order.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from shared.policy import TemplatePolicy
from ship_agent.parse import parse_syslog
from ship_agent.records import LogEvent, RawInput
from ship_agent.simulator import SimEvent
from ship_agent.simulator.templates import event_type
from ship_agent.templates import TemplateStage


@dataclass(frozen=True, slots=True)
class Grouping:
    lines: int
    event_types: int
    templates: int
    accuracy: float
    wrong: dict[str, int]  # event type -> lines grouped wrongly


def grouping_accuracy(events: Iterable[SimEvent], policy: TemplatePolicy) -> Grouping:
    stage = TemplateStage(policy)
    truth: list[str] = []
    parsed: list[LogEvent] = []
    for ev in events:
        if ev.kind != "log":
            continue
        le = parse_syslog(RawInput(ev.line, "udp", ev.ts), "")
        parsed.append(le)
        truth.append(event_type(le.message))
        if len(parsed) % 2000 == 0:
            stage.apply(parsed[-2000:])
    stage.apply(parsed[len(parsed) - len(parsed) % 2000 :])
    by_type = Counter(truth)
    members: dict[int, Counter[str]] = defaultdict(Counter)
    for le, t in zip(parsed, truth, strict=True):
        members[le.template_id][t] += 1
    correct = 0
    wrong: Counter[str] = Counter()
    for group in members.values():
        (t, n), *others = group.most_common()
        if not others and n == by_type[t]:
            correct += n
        else:
            for name, k in group.items():
                wrong[name] += k
    return Grouping(len(truth), len(by_type), len(members), correct / len(truth), dict(wrong))
