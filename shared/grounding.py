"""Does a model's text say only what it was given? The primitives both validators use: the
ship's insight check and the hub's /ask judge.

A small model's typical errors are all visible in the text: it cites an id it was not
given, names a host or a figure from another item, borrows whole phrases from its worked
examples, or gets stuck repeating one character.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.models import EvidenceRef

MAX_EVIDENCE = 4  # evidence items an insight is written from

SHINGLE = 4  # words: a run this long shared with the examples, not the evidence, is a copy
_REF = re.compile(r"\[([^\[\]]{1,60})\]")
_IDENT = re.compile(r"[\w./:%-]+")
_RUN = re.compile(r"(.)\1{7,}")
_PATTERN = re.compile(r"/[^/\s][^/\n]*/")  # a log pattern quoted from a detector


def cited(text: str) -> list[str]:
    """The labels a text cites, in order, once each ("[I1, RB-01]" counts as two)."""
    refs = (r.strip() for group in _REF.findall(text) for r in group.split(","))
    return list(dict.fromkeys(r for r in refs if r))


def identifiers(text: str) -> set[str]:
    """Ship and device ids, metric names, dates, numbers and quoted log patterns: the words
    that hold a digit, a hyphen or an underscore (labels left out), and /patterns/, which
    a text may only take from its facts."""
    text = _REF.sub(" ", text)
    words = (w.strip(".,;:") for w in _IDENT.findall(_PATTERN.sub(" ", text)))
    ids = {w for w in words if any(c.isdigit() or c in "-_" for c in w)}
    return ids | set(_PATTERN.findall(text))


def shingles(text: str) -> set[tuple[str, ...]]:
    """Runs of SHINGLE words (labels left out), to tell copied phrases."""
    words = re.findall(r"\w+", _REF.sub(" ", text).lower())
    return {tuple(words[i : i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)}


def example_shingles(examples: list[tuple[str, str]]) -> frozenset[tuple[str, ...]]:
    return frozenset().union(*(shingles(f"{i}\n{o}") for i, o in examples))


def copied(text: str, evidence: str, examples: frozenset[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Runs of words the text shares with the worked examples that its evidence cannot
    account for (a run whose every word the evidence has is a fair restatement)."""
    known = set(re.findall(r"\w+", evidence.lower()))
    return sorted(
        run for run in shingles(text) & examples - shingles(evidence) if not known.issuperset(run)
    )


def degenerate(text: str) -> bool:
    """One character eight times or more in a row: a small model stuck in a loop."""
    return _RUN.search(text) is not None


def insight_evidence(evidence: Iterable[EvidenceRef]) -> list[EvidenceRef]:
    """The evidence an insight is written from, in the order of its labels [E1], [E2] ...:
    the strongest item of each detector (the earliest among equals), at most MAX_EVIDENCE.
    The ship labels what it gives the model this way, and the hub resolves an insight's
    labels the same way, so a console can link [E1] to its item."""
    seen: set[str] = set()
    picked = []
    for ref in sorted(evidence, key=lambda e: (-e.score, e.ts)):
        if ref.detector not in seen:
            seen.add(ref.detector)
            picked.append(ref)
    return picked[:MAX_EVIDENCE]
