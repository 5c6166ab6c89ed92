"""Stories as lines: splitting, line changes (difflib's opcodes), applying them, and the
unified diff of API.md ("revisions", "diff").

A line ends after each LF ("\\n"), so a CRLF stays inside its line and a text without a final
line break keeps its last line without one: ``"".join(split_lines(t)) == t`` for every text.
Lines compare exactly, byte for byte. A *change* ``(start, end, lines)`` replaces the old
lines ``start:end`` by ``lines`` (an insertion when ``start == end``, a deletion when
``lines`` is empty); the changes of one diff are in order and never touch each other.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from difflib import SequenceMatcher
from typing import Any

Change = tuple[int, int, list[str]]
Opcode = tuple[str, int, int, int, int]

# SequenceMatcher is quadratic on lines that each repeat just under its 1% "popular" cut: two
# 20,000-line texts of 110 distinct lines took 6.6 s, 80,000 took 41 s, all on the event loop.
# Past this many differing lines on a side (worst case measured: 4,000 in ~70 ms), the lines
# between the common first and last ones are one replacement: a correct, coarser change
# (a diff shows them all, a merge sees one edit spanning them). A one-line edit of any story
# still compares one line.
MATCH_LINES_MAX = 4_000


def split_lines(text: str) -> list[str]:
    """The lines of ``text``, each with its LF (a last line without one stays so). A
    StringIO with newline="\n" ends lines at LF only and translates nothing; it splits in C,
    three times faster than splitting at LF and adding the LF back to each part. A text of one
    line (a stored delta's usual replacement) is that line, without a StringIO."""
    if text.find("\n", 0, len(text) - 1) < 0:
        return [text] if text else []
    return io.StringIO(text, newline="\n").readlines()


def _common_prefix(a: str, b: str) -> int:
    """How many first characters ``a`` and ``b`` share: a binary search comparing slices
    (memcmp in C; the slices copied add up to about the shorter text)."""
    low, high = 0, min(len(a), len(b))
    while low < high:  # a[:low] == b[:low]; they differ somewhere before high, or high ends one
        middle = (low + high + 1) // 2
        if a[low:middle] == b[low:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _common_suffix(a: str, b: str, limit: int) -> int:
    """How many last characters ``a`` and ``b`` share, at most ``limit``."""
    low, high = 0, limit
    end_a, end_b = len(a), len(b)
    while low < high:
        middle = (low + high + 1) // 2
        if a[end_a - middle : end_a - low] == b[end_b - middle : end_b - low]:
            low = middle
        else:
            high = middle - 1
    return low


def changes(old: Sequence[str], new: Sequence[str]) -> list[Change]:
    """The changes that turn ``old`` into ``new``: difflib's SequenceMatcher opcodes other
    than "equal". The common first and last lines are set aside first (an edit of one line
    of a long story compares one line, not the story); the lines between are matched, up to
    MATCH_LINES_MAX of them on a side."""
    start, old_end, new_end = 0, len(old), len(new)
    while start < old_end and start < new_end and old[start] == new[start]:
        start += 1
    while old_end > start and new_end > start and old[old_end - 1] == new[new_end - 1]:
        old_end -= 1
        new_end -= 1
    if start == old_end and start == new_end:
        return []
    if (
        start == old_end
        or start == new_end
        or max(old_end - start, new_end - start) > MATCH_LINES_MAX
    ):
        return [(start, old_end, list(new[start:new_end]))]
    matcher = SequenceMatcher(None, old[start:old_end], new[start:new_end])
    return [
        (start + i1, start + i2, list(new[start + j1 : start + j2]))
        for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        if tag != "equal"
    ]


def text_changes(old: str, new: str) -> list[Change]:
    """``changes(split_lines(old), split_lines(new))``, without splitting either text: the
    common first and last lines are found on the characters (memcmp), and only the lines
    between are split and compared. A one-line edit of a 100 KiB story splits one line."""
    if old == new:
        return []
    # The first differing character; the line it is in starts after the LF before it.
    start = old.rfind("\n", 0, _common_prefix(old, new)) + 1
    # The common last characters after that line start in both texts; the lines that lie
    # wholly inside them start after an LF inside them (so at a line start in both texts).
    same = _common_suffix(old, new, min(len(old), len(new)) - start)
    line_end = old.find("\n", len(old) - same) + 1 if same else 0
    old_end = line_end if line_end else len(old)
    new_end = len(new) - (len(old) - old_end)
    first = old.count("\n", 0, start)
    found = changes(split_lines(old[start:old_end]), split_lines(new[start:new_end]))
    return [(first + i, first + j, lines) for i, j, lines in found]


def apply(old: Sequence[str], changed: Sequence[Change]) -> list[str]:
    """``old`` with ``changed`` applied (changes in order, against ``old``'s positions)."""
    out: list[str] = []
    position = 0
    for start, end, lines in changed:
        out.extend(old[position:start])
        out.extend(lines)
        position = end
    out.extend(old[position:])
    return out


def apply_in_place(lines: list[str], changed: Sequence[Change]) -> None:
    """``lines`` becomes ``apply(lines, changed)``, in place: the changes from the last to the
    first, each a slice assignment (positions before a change do not move), so a one-line
    change costs one line, not a copy of every line."""
    for start, end, replacement in reversed(changed):
        lines[start:end] = replacement


def to_delta(changed: Sequence[Change]) -> list[list[Any]]:
    """Changes as stored (story_revisions.delta): ``[start, end, "replacement text"]``."""
    return [[start, end, "".join(lines)] for start, end, lines in changed]


def from_delta(delta: Sequence[Sequence[Any]]) -> list[Change]:
    """Stored changes back as changes. A replacement text splits into exactly the lines it was
    joined from: each ends with LF but the last line of a story, which has nothing after it."""
    return [(int(start), int(end), split_lines(text)) for start, end, text in delta]


def opcodes(old_length: int, new_length: int, changed: Sequence[Change]) -> list[Opcode]:
    """All of difflib's opcodes ("equal" included) from the changes alone."""
    codes: list[Opcode] = []
    i = j = 0
    for start, end, lines in changed:
        if start > i:
            codes.append(("equal", i, start, j, j + start - i))
            j += start - i
        tag = "insert" if start == end else "delete" if not lines else "replace"
        codes.append((tag, start, end, j, j + len(lines)))
        i, j = end, j + len(lines)
    if i < old_length or not codes:
        codes.append(("equal", i, old_length, j, new_length))
    return codes


def _grouped(codes: list[Opcode], context: int) -> Iterator[list[Opcode]]:
    """difflib.SequenceMatcher.get_grouped_opcodes, on opcodes already known."""
    codes = list(codes)
    if codes[0][0] == "equal":
        tag, i1, i2, j1, j2 = codes[0]
        codes[0] = tag, max(i1, i2 - context), i2, max(j1, j2 - context), j2
    if codes[-1][0] == "equal":
        tag, i1, i2, j1, j2 = codes[-1]
        codes[-1] = tag, i1, min(i2, i1 + context), j1, min(j2, j1 + context)
    span = context + context
    group: list[Opcode] = []
    for tag, i1, i2, j1, j2 in codes:
        if tag == "equal" and i2 - i1 > span:
            group.append((tag, i1, min(i2, i1 + context), j1, min(j2, j1 + context)))
            yield group
            group = []
            i1, j1 = max(i1, i2 - context), max(j1, j2 - context)
        group.append((tag, i1, i2, j1, j2))
    if group and not (len(group) == 1 and group[0][0] == "equal"):
        yield group


def _range(start: int, stop: int) -> str:
    """A hunk range as difflib's unified_diff writes it."""
    beginning, length = start + 1, stop - start
    if length == 1:
        return str(beginning)
    if not length:
        beginning -= 1
    return f"{beginning},{length}"


def unified_diff(
    old: Sequence[str],
    new: Sequence[str],
    fromfile: str,
    tofile: str,
    changed: Sequence[Change] | None = None,
    context: int = 3,
) -> str:
    """difflib.unified_diff(old, new, fromfile, tofile, n=context) as one string, but for a
    line without a final LF, which is followed by the line "\\ No newline at end of file" (as
    diff and git write it) so that the diff can be applied back exactly. ``changed``, when
    known (a stored delta), spares comparing the texts again. "" when nothing changed."""
    if changed is None:
        changed = changes(old, new)
    if not changed:
        return ""
    out = [f"--- {fromfile}\n", f"+++ {tofile}\n"]

    def lines(prefix: str, seq: Sequence[str]) -> None:
        for line in seq:
            out.append(prefix + line)
            if not line.endswith("\n"):
                out.append("\n\\ No newline at end of file\n")

    for group in _grouped(opcodes(len(old), len(new), changed), context):
        first, last = group[0], group[-1]
        out.append(f"@@ -{_range(first[1], last[2])} +{_range(first[3], last[4])} @@\n")
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                lines(" ", old[i1:i2])
                continue
            if tag in ("replace", "delete"):
                lines("-", old[i1:i2])
            if tag in ("replace", "insert"):
                lines("+", new[j1:j2])
    return "".join(out)
