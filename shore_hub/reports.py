"""The fleet report: one day or one week of the fleet, for the people who run it.

A period ends at the end of a UTC date: a day is that date, a week the seven dates up to
it. The report says what happened in it (incidents by ship and type, the worst devices,
link availability per ship, remediations) and how it compares with the period before;
open approvals and each ship's state are as they are when the report is made. Every
figure comes from the fleet store, read within the caller's ship scope, so a report is
never wider than what its reader may see.

Three renderings of one document: JSON (`build`), a printable HTML page that needs no
script (`to_html`), and CSV in long form (`to_csv`): one row per figure, columns
`section, ship_id, item, metric, value`, so a spreadsheet can pivot it and a script can
look up any figure without knowing the layout of a page.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from html import escape
from typing import Any, Literal

from shared.taxonomy import Severity
from shared.timeutil import iso
from shore_hub.api.fleet import SILENT_HEARTBEATS, hub_view
from shore_hub.fleetstore import MAX_LIMIT, FleetStore

__all__ = [
    "CSV_COLUMNS",
    "LINK_STATES",
    "Period",
    "PeriodKind",
    "build",
    "link_rule",
    "to_csv",
    "to_html",
]

PeriodKind = Literal["day", "week"]
DAYS: dict[str, int] = {"day": 1, "week": 7}
# ClickHouse's DateTime64 spans 1900-2299; a report outside this range is a typo
FIRST_DATE, LAST_DATE = date(2000, 1, 1), date(2199, 12, 31)
CSV_COLUMNS = ("section", "ship_id", "item", "metric", "value")
LINK_STATES = ("up", "degraded", "down", "unknown")
# a spreadsheet runs a cell that starts with one of these as a formula
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Period:
    """A day or the week (seven days) that ends with `day`, in UTC."""

    kind: PeriodKind
    day: date

    def __post_init__(self) -> None:
        if not FIRST_DATE <= self.day <= LAST_DATE:
            raise ValueError(f"date must lie between {FIRST_DATE} and {LAST_DATE}")

    @property
    def since(self) -> float:
        first = self.day - timedelta(days=DAYS[self.kind] - 1)
        return datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp()

    @property
    def until(self) -> float:
        return self.since + DAYS[self.kind] * 86_400

    @property
    def filename(self) -> str:
        return f"seawatch-fleet-{self.kind}-{self.day.isoformat()}"


def link_rule(heartbeat_s: float) -> str:
    """The availability rule in words, printed with the figures it explains."""
    silent = SILENT_HEARTBEATS * heartbeat_s
    return (
        "Each heartbeat's link state (up, degraded, down, unknown) holds until the ship's "
        f"next heartbeat. Ships send one every {heartbeat_s:g} s and none while their link "
        f"is down, so a gap longer than {SILENT_HEARTBEATS} heartbeat intervals "
        f"({silent:g} s) counts as down (silent, shown apart too). The last heartbeat "
        "before the period gives the state at its start; time before a ship's first "
        "heartbeat, and after now, is not observed. Availability = (up + degraded) / "
        "observed."
    )


def build(
    store: FleetStore,
    period: Period,
    heartbeat_s: float,
    ships: Sequence[str] | None,
    now: float,
) -> dict[str, Any]:
    """The report as JSON-able data, read from `store` within `ships` (None: all)."""
    since, until = period.since, period.until
    observed_until = max(min(until, now), since)
    stats = store.stats(since, until, ships)
    flow = store.incident_flow(since, until, ships)
    return {
        "period": period.kind,
        "date": period.day.isoformat(),
        "since": iso(since),
        "until": iso(until),
        "previous_since": iso(2 * since - until),
        "generated_at": iso(now),
        "scope": None if ships is None else sorted(ships),
        "ships": _ships(store.fleet(ships), heartbeat_s),
        "incidents": {
            "total": stats["total"],
            "resolved": stats["resolved"],
            "mttr_s": stats["mttr_s"],
            "by_severity": stats["by_severity"],
            "by_type": stats["by_type"],
            "by_ship": stats["by_ship"],
            "by_ship_type": [
                {"ship_id": r["ship_id"], "type": r["type"], "count": r["opened"]}
                for r in flow
                if r["opened"]
            ],
        },
        "worst_devices": stats["top_devices"],
        "link": {
            "rule": link_rule(heartbeat_s),
            "heartbeat_s": heartbeat_s,
            "silent_after_s": SILENT_HEARTBEATS * heartbeat_s,
            "observed_until": iso(observed_until),
            "ships": _availability(
                store.link_availability(
                    since, observed_until, SILENT_HEARTBEATS * heartbeat_s, ships
                )
            ),
        },
        "open_approvals": [
            _approval(r) for r in store.action_requests(ships, status="pending", limit=MAX_LIMIT)
        ],
        "changes": {
            "incidents": _flow(flow),
            "versions": _versions(store.versions_seen(since, until, ships)),
            "remediations": store.remediations(since, until, ships),
        },
    }


_SHIP_NOW = ("ship_id", "link_state", "last_heartbeat", "open_total", "agent_version",
             "policy_version")  # fmt: skip
_APPROVAL = ("id", "ship_id", "incident_id", "action", "target", "risk", "approval",
             "approvals_needed", "approvers", "requested_by", "ts")  # fmt: skip


def _ships(fleet: list[dict[str, Any]], heartbeat_s: float) -> list[dict[str, Any]]:
    """Each ship as it is now, its link `down` once heartbeats stopped (as /fleet says)."""
    return [{k: s[k] for k in _SHIP_NOW} for s in (hub_view(f, heartbeat_s) for f in fleet)]


def _availability(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        entry = out.setdefault(
            r["ship_id"], {"ship_id": r["ship_id"], **{f"{s}_s": 0.0 for s in LINK_STATES}}
        )
        entry.setdefault("silent_s", 0.0)
        state = "down" if r["state"] == "silent" else r["state"]
        entry[f"{state}_s"] += float(r["seconds"])
        if r["state"] == "silent":
            entry["silent_s"] += float(r["seconds"])
    for entry in out.values():
        observed = sum(entry[f"{s}_s"] for s in LINK_STATES)
        entry["observed_s"] = observed
        entry["share"] = {s: round(entry[f"{s}_s"] / observed, 4) for s in LINK_STATES}
        entry["availability"] = round((entry["up_s"] + entry["degraded_s"]) / observed, 4)
    return [out[s] for s in sorted(out)]


def _approval(r: dict[str, Any]) -> dict[str, Any]:
    return {k: r[k] for k in _APPROVAL}


def _flow(rows: list[dict[str, Any]]) -> dict[str, Any]:
    counts = ("opened", "resolved", "opened_before", "resolved_before")
    by_ship: dict[str, dict[str, Any]] = {}
    for r in rows:
        entry = by_ship.setdefault(
            r["ship_id"], {"ship_id": r["ship_id"], **dict.fromkeys(counts, 0)}
        )
        for c in counts:
            entry[c] += r[c]
    totals = {c: sum(e[c] for e in by_ship.values()) for c in counts}
    return {**totals, "by_ship": [by_ship[s] for s in sorted(by_ship)]}


def _versions(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        entry = out.setdefault(r["ship_id"], {"ship_id": r["ship_id"], "agent": [], "policy": []})
        entry[r["kind"]].append({k: r[k] for k in ("version", "before", "first", "last")})
    for entry in out.values():
        entry["changed"] = any(len(entry[k]) > 1 for k in ("agent", "policy"))
    return [out[s] for s in sorted(out)]


# ------------------------------------------------------------------ CSV


def _csv_rows(report: dict[str, Any]) -> Iterator[tuple[Any, ...]]:
    """Every figure of the report as (section, ship_id, item, metric, value)."""
    for key in ("period", "date", "since", "until", "generated_at"):
        yield ("report", "", "", key, report[key])
    yield ("report", "", "", "scope", " ".join(report["scope"] or ["all"]))
    yield ("report", "", "", "link_rule", report["link"]["rule"])
    inc = report["incidents"]
    for key in ("total", "resolved", "mttr_s"):
        yield ("incidents", "", "", key, inc[key])
    for r in inc["by_ship_type"]:
        yield ("incidents", r["ship_id"], r["type"], "count", r["count"])
    for d in report["worst_devices"]:
        yield ("worst_devices", d["ship_id"], d["device"], "incidents", d["count"])
    for s in report["link"]["ships"]:
        for key in (*(f"{st}_s" for st in LINK_STATES), "silent_s", "observed_s"):
            yield ("link", s["ship_id"], "", key, s[key])
        yield ("link", s["ship_id"], "", "availability", s["availability"])
    for s in report["ships"]:
        for key in ("link_state", "open_total", "agent_version", "policy_version"):
            yield ("ships_now", s["ship_id"], "", key, s[key])
    for a in report["open_approvals"]:
        for key in ("action", "target", "risk", "approvals_needed", "requested_by", "ts"):
            yield ("open_approvals", a["ship_id"], a["id"], key, a[key])
        yield ("open_approvals", a["ship_id"], a["id"], "approvers", " ".join(a["approvers"]))
    flow = report["changes"]["incidents"]
    for key in ("opened", "resolved", "opened_before", "resolved_before"):
        yield ("changes", "", "incidents", key, flow[key])
    for s in flow["by_ship"]:
        for key in ("opened", "resolved", "opened_before", "resolved_before"):
            yield ("changes", s["ship_id"], "incidents", key, s[key])
    for v in report["changes"]["versions"]:
        for kind in ("agent", "policy"):
            for seen in v[kind]:
                when = "before" if seen["before"] else "new"
                yield ("versions", v["ship_id"], kind, when, seen["version"])
    for r in report["changes"]["remediations"]:
        yield ("remediations", r["ship_id"], r["action"], r["status"], r["count"])


def _cell(value: Any) -> Any:
    """Numbers as they are; text that a spreadsheet would run as a formula is quoted."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def to_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows([_cell(v) for v in row] for row in _csv_rows(report))
    return out.getvalue()


# ------------------------------------------------------------------ HTML

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; color: #111; margin: 1.5rem; }
h1 { font-size: 1.4rem; margin: 0 0 0.25rem; } h2 { font-size: 1.1rem; margin: 1.5rem 0 0.4rem; }
table { border-collapse: collapse; margin: 0.25rem 0 0.75rem; min-width: 50%; }
caption { text-align: left; font-weight: 600; padding: 0.25rem 0; }
th, td { border: 1px solid #c8ced6; padding: 0.2rem 0.5rem; text-align: left; }
thead th { background: #eef1f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.muted { color: #555; } .rule { max-width: 60rem; }
@media print {
  body { margin: 0; font-size: 10pt; } h2 { break-after: avoid; }
  table { break-inside: auto; } tr { break-inside: avoid; } thead { display: table-header-group; }
  @page { size: A4; margin: 14mm; }
}
"""


def _e(value: Any) -> str:
    return escape("—" if value is None else str(value))


def _minute(when: str) -> str:
    """ "2026-11-20T00:00:00.000Z" as "2026-11-20 00:00Z"."""
    return when[:16].replace("T", " ") + "Z"


def _pct(share: float | None) -> str:
    return "—" if share is None else f"{share * 100:.1f} %"


def _hours(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds / 3600:.2f} h"


def _cell_html(i: int, value: Any, first_num: int) -> str:
    if i == 0:
        return f'<th scope="row">{_e(value)}</th>'
    return f'<td class="num">{_e(value)}</td>' if i >= first_num else f"<td>{_e(value)}</td>"


def _table(caption: str, head: Sequence[str], rows: list[list[Any]], numeric: int = 0) -> str:
    """`numeric`: how many of the last columns are figures (aligned right); the first
    column heads its row."""
    first_num = len(head) - numeric
    body = "".join(
        "<tr>" + "".join(_cell_html(i, v, first_num) for i, v in enumerate(row)) + "</tr>"
        for row in rows
    )
    heads = "".join(f'<th scope="col">{_e(h)}</th>' for h in head)
    none = f'<tr><td colspan="{len(head)}" class="muted">none</td></tr>'
    return (
        f"<table><caption>{_e(caption)}</caption><thead><tr>{heads}</tr></thead>"
        f"<tbody>{body or none}</tbody></table>"
    )


def to_html(report: dict[str, Any]) -> str:
    """A standalone page: inline CSS (with print rules), every value escaped, no script
    (its Content-Security-Policy forbids any, wherever the page is shown)."""
    inc, link, changes = report["incidents"], report["link"], report["changes"]
    types = sorted(inc["by_type"])
    cross: dict[str, dict[str, int]] = {}
    for r in inc["by_ship_type"]:
        cross.setdefault(r["ship_id"], {})[r["type"]] = r["count"]
    title = f"Seawatch fleet report: {report['period']} ending {report['date']}"
    flow = changes["incidents"]
    versions = [
        [
            v["ship_id"],
            kind,
            " → ".join(x["version"] for x in v[kind]),
            "yes" if len(v[kind]) > 1 else "no",
        ]
        for v in changes["versions"]
        for kind in ("agent", "policy")
    ]
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">",
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="muted">{_e(_minute(report["since"]))} to {_e(_minute(report["until"]))}'
        f" · ships: {_e(' '.join(report['scope'] or ['all']))}"
        f" · made {_e(_minute(report['generated_at']))}</p>",
        "<h2>Incidents</h2>",
        _table(
            "Summary",
            ["Figure", "Value"],
            [
                ["Incidents opened", inc["total"]],
                ["Of them resolved", inc["resolved"]],
                ["Mean time to resolve", _hours(inc["mttr_s"])],
                *[
                    [f"Severity {sev.value}", inc["by_severity"][sev]]
                    for sev in reversed(Severity)
                    if sev in inc["by_severity"]
                ],
            ],
            numeric=1,
        ),
        _table(
            "Incidents by ship and type",
            ["Ship", *types, "Total"],
            [
                [ship, *(row.get(t, 0) for t in types), sum(row.values())]
                for ship, row in sorted(cross.items())
            ],
            numeric=len(types) + 1,
        ),
        _table(
            "Worst devices",
            ["Ship", "Device", "Incidents"],
            [[d["ship_id"], d["device"], d["count"]] for d in report["worst_devices"]],
            numeric=1,
        ),
        "<h2>Links</h2>",
        _table(
            f"Link availability per ship (observed until {report['link']['observed_until']})",
            [
                "Ship",
                "Availability",
                "Up",
                "Degraded",
                "Down",
                "of which silent",
                "Unknown",
                "Observed",
            ],
            [
                [
                    s["ship_id"],
                    _pct(s["availability"]),
                    *(_pct(s["share"][k]) for k in ("up", "degraded", "down")),
                    _hours(s["silent_s"]),
                    _pct(s["share"]["unknown"]),
                    _hours(s["observed_s"]),
                ]
                for s in link["ships"]
            ],
            numeric=7,
        ),
        f'<p class="rule">{_e(link["rule"])}</p>',
        _table(
            "Ships now",
            ["Ship", "Link", "Last heartbeat", "Open incidents", "Agent", "Policy"],
            [
                [
                    s["ship_id"],
                    s["link_state"],
                    s["last_heartbeat"],
                    s["open_total"],
                    s["agent_version"],
                    s["policy_version"],
                ]
                for s in report["ships"]
            ],
        ),
        "<h2>Approvals</h2>",
        _table(
            "Open approvals (now)",
            [
                "Ship",
                "Request",
                "Action",
                "Target",
                "Risk",
                "Approvals",
                "Requested by",
                "Requested",
            ],
            [
                [
                    a["ship_id"],
                    a["id"],
                    a["action"],
                    a["target"],
                    a["risk"],
                    f"{len(a['approvers'])} of {a['approvals_needed']}",
                    a["requested_by"],
                    a["ts"],
                ]
                for a in report["open_approvals"]
            ],
        ),
        "<h2>What changed</h2>",
        _table(
            f"Incidents opened and resolved, against the period before (from "
            f"{report['previous_since']})",
            ["Ship", "Opened", "Opened before", "Resolved", "Resolved before"],
            [
                [s["ship_id"], s["opened"], s["opened_before"], s["resolved"], s["resolved_before"]]
                for s in flow["by_ship"]
            ]
            + [
                [
                    "Fleet",
                    flow["opened"],
                    flow["opened_before"],
                    flow["resolved"],
                    flow["resolved_before"],
                ]
            ],
            numeric=4,
        ),
        _table(
            "Versions reported (the earlier one first)",
            ["Ship", "Software", "Versions", "Changed"],
            versions,
        ),
        _table(
            "Remediations requested in the period, by current status",
            ["Ship", "Action", "Status", "Requests"],
            [[r["ship_id"], r["action"], r["status"], r["count"]] for r in changes["remediations"]],
            numeric=1,
        ),
        "</body></html>",
    ]
    return "\n".join(parts)
