"""The model's half of an insight: a few-shot prompt over the analysis's facts, and the check
that what came back cites only ids it was given.

The default model is a 270M base model: it continues text rather than following
instructions, so the prompt is two worked examples in the exact shape wanted. The prompt
prefix (instruction and examples) never changes, which lets llama.cpp reuse its evaluated
tokens from one request to the next.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.grounding import cited, degenerate, identifiers
from shared.llm import FewShot

INSTRUCTION = (
    "Ship IT incident notes: one short line each for the ship's IT officer, saying what"
    " happened and the likely cause in the words of the facts, citing their [ids]."
)

# Short on purpose: output tokens are most of the latency on one core. The first action is
# the runbook's, appended by the rules (Analysis.first_action), not left to the model.
EXAMPLES = [
    (
        "Incident: resource pressure, medium, on pos-srv-01 (host)\n"
        "[E1] host.disk_pct > 90 for 90 s (now 94)\n"
        "[E2] 3 lines matching /No space left on device/ in 300 s\n"
        "[RB-07] cause: Disk full on a server",
        "pos-srv-01 is at 94 % disk [E1] and has no space left on device [E2];"
        " likely disk full on a server [RB-07].",
    ),
    (
        "Incident: link degradation, high, on vsat-modem-01 (vsat_modem)\n"
        "[E1] vsat.snr_db < 12 for 80 s (now 10.6)\n"
        "[E2] vsat.ber > 1e-05 for 80 s (now 0.0001)\n"
        "[RB-01] cause: VSAT rain fade",
        "vsat-modem-01 has SNR down to 10.6 dB [E1] and bit errors up [E2];"
        " likely VSAT rain fade [RB-01].",
    ),
    (
        "Incident: security alert, high, on crew-srv-01 (host)\n"
        "[E1] 20 lines matching /Failed password|Invalid user/ in 60 s\n"
        "[RB-09] cause: SSH brute force against a host",
        "crew-srv-01 logged 20 failed SSH logins in 60 s [E1]; likely SSH brute force [RB-09].",
    ),
]

MAX_CHARS = 600


def task(facts: str) -> FewShot:
    return FewShot(INSTRUCTION, EXAMPLES, facts, stop=["\n", "Input:"])


@dataclass(frozen=True)
class Verdict:
    ok: bool
    text: str
    citations: list[str]
    reason: str = ""


def check(text: str, citable: frozenset[str], facts: str | None = None) -> Verdict:
    """Accept a narrative only if it cites at least one given id and nothing else, and,
    given the facts it was written from, names no host, metric, number or log pattern that
    is not in them (shared.grounding). Phrases borrowed from the worked examples are let
    through here, unlike at the hub: the examples show the wording wanted, and a check for
    borrowed phrases measured here rejected mostly right sentences ("... logged 5 failed
    SSH logins") and none of the wrong ones."""
    text = text.strip().split("\n\n", 1)[0].strip()
    refs = cited(text)
    if not text:
        return Verdict(False, text, [], "empty")
    if len(text) > MAX_CHARS:
        return Verdict(False, text, refs, f"longer than {MAX_CHARS} characters")
    if degenerate(text):
        return Verdict(False, text, refs, "degenerate output")
    if not refs:
        return Verdict(False, text, [], "cites nothing")
    unknown = [c for c in refs if c not in citable]
    if unknown:
        return Verdict(False, text, refs, f"cites ids it was not given: {', '.join(unknown)}")
    if facts is not None:
        stray = sorted(identifiers(text) - identifiers(facts))
        if stray:
            return Verdict(False, text, refs, f"not in the facts: {', '.join(stray)}")
    return Verdict(True, text, refs)
