"""Three-way merge of a stale edit, line by line (API.md, "Merging a stale edit").

base is the text both sides started from, ours the submitted one, theirs the current one.
Each side's changes against base are difflib's opcodes (lines.changes): regions of base it
replaced, deleted, or inserted at. A region changed by one side only takes that side's lines;
changes of both sides that overlap or touch (closed intervals of base positions that meet: an
insertion at either end of the other's region, or two insertions at the same place) are one
cluster, which takes the common text when both sides made it the same, and is a conflict
otherwise. Lines are compared exactly (lines.split_lines keeps CR and a missing final LF).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .lines import Change, apply, changes, split_lines, text_changes

OURS, THEIRS = 0, 1


@dataclass(frozen=True, slots=True)
class Conflict:
    """The three versions of one conflicting region (unchanged base lines inside included)."""

    base: str
    ours: str
    theirs: str


@dataclass(frozen=True, slots=True)
class Merged:
    """The merged text, or None with the conflicts (in base order) when there are any."""

    text: str | None
    conflicts: tuple[Conflict, ...] = ()


def _within(base: Sequence[str], start: int, end: int, side: list[Change]) -> list[str]:
    """base[start:end] with one side's changes (all inside that region) applied."""
    return apply(base[start:end], [(s - start, e - start, lines) for s, e, lines in side])


def merge_lines(
    base: Sequence[str], ours: Sequence[str], theirs: Sequence[str]
) -> tuple[list[str] | None, list[Conflict]]:
    """The merged lines (None when there are conflicts), and the conflicts."""
    return _merge_changes(base, changes(base, ours), changes(base, theirs))


def _merge_changes(
    base: Sequence[str], ours: list[Change], theirs: list[Change]
) -> tuple[list[str] | None, list[Conflict]]:
    """merge_lines once each side's changes against base are known."""
    tagged = [(start, end, lines, OURS) for start, end, lines in ours]
    tagged += [(start, end, lines, THEIRS) for start, end, lines in theirs]
    tagged.sort(key=lambda change: (change[0], change[1]))
    out: list[str] = []
    conflicts: list[Conflict] = []
    position = i = 0
    while i < len(tagged):
        low, high = tagged[i][0], tagged[i][1]
        cluster = [tagged[i]]
        i += 1
        # Sorted by start, so a change meets the cluster when it starts at or before its end.
        while i < len(tagged) and tagged[i][0] <= high:
            cluster.append(tagged[i])
            high = max(high, tagged[i][1])
            i += 1
        out.extend(base[position:low])
        position = high
        ours_side = [(s, e, lines) for s, e, lines, side in cluster if side == OURS]
        theirs_side = [(s, e, lines) for s, e, lines, side in cluster if side == THEIRS]
        ours_text = _within(base, low, high, ours_side)
        if not theirs_side:
            out.extend(ours_text)
            continue
        theirs_text = _within(base, low, high, theirs_side)
        if not ours_side or ours_text == theirs_text:
            out.extend(theirs_text)
            continue
        conflicts.append(
            Conflict("".join(base[low:high]), "".join(ours_text), "".join(theirs_text))
        )
    out.extend(base[position:])
    return (None if conflicts else out), conflicts


def merge(base: str, ours: str, theirs: str) -> Merged:
    """Three-way merge of whole texts (see the module's docstring). Each side's changes are
    found on the texts (lines.text_changes: only the lines between the first and the last
    difference are split); base is split once, for the lines the sides left alone."""
    lines, conflicts = _merge_changes(
        split_lines(base), text_changes(base, ours), text_changes(base, theirs)
    )
    if lines is None:
        return Merged(None, tuple(conflicts))
    return Merged("".join(lines))
