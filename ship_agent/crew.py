"""The crew page: what the ship's IT officer needs on board, from the agent alone.

Server-rendered HTML with no script and no asset from anywhere else, so it works on any
browser on the ship's network with the shore link down: open incidents with their
insight, remediations waiting for a decision (and, when the crew may decide, the forms to
decide), what ran lately, and the state of the link and the outbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any

from shared.models import ActionRequest

_SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}
_STYLE = """
body{font:15px/1.4 system-ui,sans-serif;margin:0;color:#1b2631;background:#f4f6f7}
header{background:#1b4f72;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:1rem}
header b{font-size:1.1rem} main{padding:0 1rem 2rem;max-width:72rem}
h2{font-size:1.05rem;margin:1.4rem 0 .4rem} table{border-collapse:collapse;width:100%;
background:#fff} th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #d5dbdb;
vertical-align:top} .sev{font-weight:600;text-transform:uppercase;font-size:.8rem}
.critical{color:#a93226}.high{color:#ca6f1e}.medium{color:#b7950b}.low{color:#566573}
.link-down{background:#a93226;padding:0 .4rem}.note{color:#566573}.msg{background:#d4efdf;
padding:.4rem .6rem;margin-top:.8rem} form{display:flex;flex-wrap:wrap;gap:.3rem}
input{font:inherit;padding:.2rem .3rem} button{font:inherit;padding:.2rem .7rem}
"""


@dataclass
class CrewView:
    ship_id: str
    policy_version: str
    link_state: str
    unsent: dict[str, int]
    oldest_unsent_s: float | None
    incidents: list[dict[str, Any]]
    pending: list[ActionRequest]
    finished: list[ActionRequest]
    may_decide: bool  # the crew may decide now (link down and policy allows)
    why_not: str  # ... and if not, why
    message: str = ""


def render(v: CrewView) -> str:
    rows = sorted(v.incidents, key=lambda i: (_SEVERITY_ORDER.get(i["severity"], 9), i["id"]))
    link = escape(v.link_state)
    link_html = f'<span class="link-down">{link}</span>' if v.link_state == "down" else link
    oldest = f", oldest {v.oldest_unsent_s:.0f} s" if v.oldest_unsent_s else ""
    parts = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Seawatch crew page: {escape(v.ship_id)}</title><style>{_STYLE}</style>",
        "</head><body><header>",
        f"<b>{escape(v.ship_id)}</b><span>shore link: {link_html}</span>",
        f"<span>waiting to go ashore: {sum(v.unsent.values())}{oldest}</span>",
        f"<span>policy {escape(v.policy_version)}</span>",
        '<a href="/crew" style="color:#fff">refresh</a></header><main>',
    ]
    if v.message:
        parts.append(f'<p class="msg" role="status">{escape(v.message)}</p>')
    parts.append(_pending(v))
    parts.append(_incidents(rows))
    parts.append(_finished(v.finished))
    parts.append("</main></body></html>")
    return "".join(parts)


def _incidents(rows: list[dict[str, Any]]) -> str:
    out = [f"<h2>Open incidents ({len(rows)})</h2>"]
    if not rows:
        return out[0] + '<p class="note">None open.</p>'
    out.append(
        '<table aria-label="open incidents"><tr><th>severity</th><th>what</th><th>device</th>'
        "<th>since</th><th>insight</th></tr>"
    )
    for i in rows:
        sev = escape(i["severity"])
        insight = escape(i.get("narrative") or "not explained yet")
        refs = ", ".join(escape(r) for r in i.get("runbook_refs", []))
        out.append(
            f'<tr><td class="sev {sev}">{sev}</td><td>{escape(i["type"].replace("_", " "))}'
            f" ({escape(i['status'])})</td><td>{escape(i['device'])}</td>"
            f"<td>{escape(i['first_seen'][:19].replace('T', ' '))} UTC</td>"
            f"<td>{insight}{f' <i>({refs})</i>' if refs else ''}</td></tr>"
        )
    out.append("</table>")
    return "".join(out)


def _pending(v: CrewView) -> str:
    out = [f"<h2>Waiting for a decision ({len(v.pending)})</h2>"]
    if not v.pending:
        return out[0] + '<p class="note">Nothing waits for a decision.</p>'
    if not v.may_decide:
        out.append(f'<p class="note">{escape(v.why_not)}</p>')
    out.append(
        '<table aria-label="remediations waiting for a decision"><tr><th>action</th>'
        "<th>device</th><th>risk</th><th>approvals</th><th>decide</th></tr>"
    )
    for r in v.pending:
        rid = escape(r.id)
        given = ", ".join(escape(a) for a in r.approvers) or "none yet"
        form = (
            f'<form method="post" action="/crew/actions/{rid}">'
            f'<input name="actor" required aria-label="your name" placeholder="your name">'
            f'<input name="reason" aria-label="reason" placeholder="reason">'
            '<button name="decision" value="approved">Approve</button>'
            '<button name="decision" value="rejected">Reject</button></form>'
            if v.may_decide
            else "ashore"
        )
        out.append(
            f"<tr><td>{escape(r.action)} <span class='note'>({escape(r.runbook or '')})</span>"
            f"</td><td>{escape(r.target)}</td><td>{escape(r.risk)}</td>"
            f"<td>{len(r.approvers)} of {r.approvals_needed}: {given}</td><td>{form}</td></tr>"
        )
    out.append("</table>")
    return "".join(out)


def _finished(done: list[ActionRequest]) -> str:
    out = ["<h2>Remediations lately</h2>"]
    if not done:
        return out[0] + '<p class="note">None yet.</p>'
    out.append(
        '<table aria-label="remediations lately"><tr><th>action</th><th>device</th>'
        "<th>outcome</th><th>approved by</th><th>steps</th></tr>"
    )
    for r in done:
        out.append(
            f"<tr><td>{escape(r.action)}</td><td>{escape(r.target)}</td>"
            f"<td>{escape(r.status)}</td><td>{escape(', '.join(r.approvers))}</td>"
            f"<td>{escape(r.detail)}</td></tr>"
        )
    out.append("</table>")
    return "".join(out)
