"""The words an incident is embedded as: what broke and how it showed, without the readings.

The ship's evidence lines are written for people ("vsat.snr_db = 9.16, expected about
14.952 (-18.2 deviations): unlikely run"). Their numbers, baselines and template ids make
two occurrences of the same fault read differently and cost most of the tokens, and the
model is paid per token. Each line is reduced to its gist ("vsat snr db unusually low"),
so the same fault on another ship or another day reads the same, in about a third of the
tokens (`seawatch bench memory` measures both, and the recall they give).
"""

from __future__ import annotations

import re

from shared.models import Incident

MAX_EVIDENCE = 4  # distinct gists: later evidence repeats the first in other words
MAX_LOG_WORDS = 7  # a log template's opening says what happened; the rest is its fields

# One rule per evidence form the ship's detectors write (ship_agent/detect/), first match
# wins; anything else keeps its words and loses its numbers.
_FORMS = [
    (re.compile(r"(\S+) >=? .*"), r"\1 high"),  # threshold held
    (re.compile(r"(\S+) <=? .*"), r"\1 low"),
    (re.compile(r"(\S+) = \S+, expected about \S+ \(\+.*"), r"\1 unusually high"),
    (re.compile(r"(\S+) = \S+, expected about \S+ \(-.*"), r"\1 unusually low"),
    (re.compile(r"(\S+) shifted up:.*"), r"\1 rose"),
    (re.compile(r"(\S+) shifted down:.*"), r"\1 fell"),
    (re.compile(r"\d+ lines matching /(.*)/ in .*"), r"log lines: \1"),
    (re.compile(r"\d+ error-level lines in .*"), "error-level log lines"),
    (re.compile(r"(?:new|rare) log template #\d+ \(\d+ seen\): (.*)"), r"log: \1"),
    (re.compile(r"unusual combination of .*"), "unusual combination of KPIs"),
]
# Template wildcards and free-standing readings with their unit (47C, 3116106kB, 60s), but
# not the numbers inside a name (sw-03, Gi1/0/2, 5GHz).
_READINGS = re.compile(
    r"<\*>|<NUM>|<IP>|(?<![\w./-])[-+]?\d+(?:[.:,/]\d+)*(?:e[-+]?\d+)?[A-Za-z%]{0,2}(?!\w)"
)
_EMPTY = re.compile(r"\(\s*\)|\[\s*\]")
_SPACE_BEFORE = re.compile(r"\s+(?=[,.:;)\]])")
# vsat.rain_fade_margin_db: the tokenizer knows the words, not the joined name.
_JOINER = re.compile(r"(?<=[A-Za-z0-9])[._](?=[A-Za-z0-9])")


def evidence_gist(summary: str) -> str:
    """One evidence line as the kind of signal it is, without its readings."""
    text = summary.strip()
    for form, gist in _FORMS:
        matched = form.fullmatch(text)
        if matched:
            text = matched.expand(gist)
            break
    text = _EMPTY.sub(" ", _READINGS.sub(" ", text))
    text = _JOINER.sub(" ", _SPACE_BEFORE.sub("", " ".join(text.split())))
    if text.startswith("log:"):
        text = " ".join(text.split()[: MAX_LOG_WORDS + 1])
    return text.strip(" .,:;=")


def incident_text(incident: Incident, role: str | None = None) -> str:
    """Type, device (with its role when known) and the first distinct evidence gists.

    The narrative is left out: it is written from this same evidence (by the ship's model
    or its rules), and leaving it out lets a later version that only adds it keep its
    vector.
    """
    where = incident.device if not role else f"{role.replace('_', ' ')} {incident.device}"
    parts = [
        incident.type.value.replace("_", " "),
        f"{where} ({incident.service})" if incident.service else where,
    ]
    gists = dict.fromkeys(g for e in incident.evidence if (g := evidence_gist(e.summary)))
    parts.extend(list(gists)[:MAX_EVIDENCE])
    return ". ".join(parts)
