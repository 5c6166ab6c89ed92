"""Lines, diffs and the three-way merge of stale story edits (server/stories/lines.py and
merge.py; API.md, "Merging a stale edit"): examples, then properties checked by hypothesis."""

from __future__ import annotations

import difflib
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from server.stories.lines import (
    apply,
    apply_in_place,
    changes,
    from_delta,
    split_lines,
    text_changes,
    to_delta,
    unified_diff,
)
from server.stories.merge import Conflict, merge

BASE = "a\nb\nc\nd\ne\nf\n"


def test_lines_end_after_each_lf_only() -> None:
    assert split_lines("") == []
    assert split_lines("a\r\nb\rc\nlast") == ["a\r\n", "b\rc\n", "last"]
    assert split_lines("\n\n") == ["\n", "\n"]
    assert split_lines("x\u2028y\n") == ["x\u2028y\n"]  # no other character breaks a line


def test_changes_to_lines_far_apart_merge() -> None:
    assert merge(BASE, "A\nb\nc\nd\ne\nf\n", "a\nb\nc\nd\nE\nf\n").text == "A\nb\nc\nd\nE\nf\n"


def test_lines_two_apart_merge_and_adjacent_lines_conflict() -> None:
    assert merge(BASE, "A\nb\nc\nd\ne\nf\n", "a\nb\nC\nd\ne\nf\n").text == "A\nb\nC\nd\ne\nf\n"
    touching = merge(BASE, "A\nb\nc\nd\ne\nf\n", "a\nB\nc\nd\ne\nf\n")
    assert touching.text is None
    assert touching.conflicts == (Conflict(base="a\nb\n", ours="A\nb\n", theirs="a\nB\n"),)


def test_identical_changes_are_applied_once() -> None:
    both = "a\nb\nX\nd\ne\nf\nnew\n"
    assert merge(BASE, both, both).text == both
    # The same change beside a change of one side only.
    assert merge(BASE, "a\nb\nX\nd\ne\nf\n", "a\nb\nX\nd\ne\nF\n").text == "a\nb\nX\nd\ne\nF\n"


def test_insertions_at_the_same_place_conflict_unless_identical() -> None:
    result = merge(BASE, "a\nb\nours\nc\nd\ne\nf\n", "a\nb\ntheirs\nc\nd\ne\nf\n")
    assert result.conflicts == (Conflict(base="", ours="ours\n", theirs="theirs\n"),)
    same = "a\nb\nboth\nc\nd\ne\nf\n"
    assert merge(BASE, same, same).text == same


def test_an_insertion_at_either_end_of_the_other_sides_region_conflicts() -> None:
    changed = "a\nb\nC\nd\ne\nf\n"  # theirs replaces line c (region 2..3)
    before = merge(BASE, "a\nb\nnew\nc\nd\ne\nf\n", changed)
    after = merge(BASE, "a\nb\nc\nnew\nd\ne\nf\n", changed)
    assert before.conflicts == (Conflict(base="c\n", ours="new\nc\n", theirs="C\n"),)
    assert after.conflicts == (Conflict(base="c\n", ours="c\nnew\n", theirs="C\n"),)


def test_a_conflict_spans_the_union_of_what_meets_with_base_lines_inside() -> None:
    ours = "a\nB\nc\nD\ne\nf\n"  # b and d
    theirs = "a\nb\nC\nd\ne\nf\n"  # c, touching both
    result = merge(BASE, ours, theirs)
    assert result.conflicts == (Conflict(base="b\nc\nd\n", ours="B\nc\nD\n", theirs="b\nC\nd\n"),)


def test_conflicts_are_listed_in_base_order() -> None:
    ours = "A\nb\nc\nd\nE\nf\n"
    theirs = "a2\nb\nc\nd\ne2\nf\n"
    result = merge(BASE, ours, theirs)
    assert [c.base for c in result.conflicts] == ["a\n", "e\n"]


def test_line_breaks_and_a_missing_final_newline_are_kept_exactly() -> None:
    base = "one\r\ntwo\r\nthree\r\nfour\r\nfive"
    ours = "ONE\r\ntwo\r\nthree\r\nfour\r\nfive"
    theirs = "one\r\ntwo\r\nthree\r\nfour\r\nfive\n"  # the last line gains its LF
    assert merge(base, ours, theirs).text == "ONE\r\ntwo\r\nthree\r\nfour\r\nfive\n"
    # A line that only changes its break (CRLF to LF) is a change like any other.
    crlf = merge(base, "one\ntwo\r\nthree\r\nfour\r\nfive", ours)
    assert crlf.conflicts == (Conflict(base="one\r\n", ours="one\n", theirs="ONE\r\n"),)
    # Trailing whitespace counts.
    assert merge("x\ny\nz\n", "x \ny\nz\n", "x\ny\nz\n").text == "x \ny\nz\n"


def test_unified_diff_is_difflibs_and_marks_a_missing_final_newline() -> None:
    old, new = split_lines("a\nb\nc\n"), split_lines("a\nB\nc\n")
    expected = "".join(difflib.unified_diff(old, new, "revision 1", "revision 2"))
    assert unified_diff(old, new, "revision 1", "revision 2") == expected
    tail = unified_diff(["a\n", "b"], ["a\n", "c"], "x", "y")
    assert tail == (
        "--- x\n+++ y\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n"
        "+c\n\\ No newline at end of file\n"
    )
    assert unified_diff(old, old, "x", "y") == ""


# Property tests. Texts are lists of lines drawn from a small alphabet, so that lines repeat
# (the hard case for a diff), with CRLF, trailing blanks and non-ASCII characters; a text
# may lack its final LF.
line_text = st.text(alphabet="ab \r\té😀", max_size=4)
lines = st.lists(line_text.map(lambda t: t + "\n"), max_size=12)


@st.composite
def texts(draw: st.DrawFn) -> str:
    body = "".join(draw(lines))
    return body + draw(st.sampled_from(["", "tail", "tail\r"]))


@given(texts())
def test_splitting_keeps_every_character(text: str) -> None:
    assert "".join(split_lines(text)) == text


@given(texts())
def test_splitting_ends_a_line_after_each_lf_and_nowhere_else(text: str) -> None:
    parts = text.split("\n")
    expected = [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    assert split_lines(text) == expected


@settings(max_examples=500)
@given(texts(), texts(), texts())
def test_changes_found_on_the_texts_are_the_changes_of_their_lines(
    common: str, old: str, new: str
) -> None:
    # Shared lines before and after (the one-line edit of a long story), or none.
    head, tail = common, common if common.endswith("\n") else ""
    for a, b in [(old, new), (head + old, head + new), (head + old + "\n" + tail,
                 head + new + "\n" + tail)]:  # fmt: skip
        assert text_changes(a, b) == changes(split_lines(a), split_lines(b)), (a, b)


def test_a_one_line_edit_of_a_long_text_is_found_by_its_characters() -> None:
    lines = [f"line {n} é\n" for n in range(5000)]
    edited = list(lines)
    edited[2500] = "changed\r\n"
    assert text_changes("".join(lines), "".join(edited)) == [(2500, 2501, ["changed\r\n"])]
    assert text_changes("".join(lines), "".join(lines[:-1])) == [(4999, 5000, [])]
    assert text_changes("", "a") == [(0, 0, ["a"])]
    assert text_changes("a\nb", "a\nb\n") == [(1, 2, ["b\n"])]
    assert text_changes("x\nx\n", "x\nx\nx\n") == [(2, 2, ["x\n"])]


@given(texts(), texts())
def test_changes_and_stored_deltas_rebuild_the_new_text(old: str, new: str) -> None:
    a, b = split_lines(old), split_lines(new)
    assert apply(a, changes(a, b)) == b
    assert "".join(apply(a, from_delta(to_delta(changes(a, b))))) == new
    in_place = list(a)
    apply_in_place(in_place, from_delta(to_delta(changes(a, b))))
    assert in_place == b


def patch(old: str, diff: str) -> str:
    """Applies a unified diff as unified_diff writes it (a reader's check, not ours)."""
    source, out, position = split_lines(old), [], 0
    rows = diff.split("\n")[2:] if diff else []
    i = 0
    while i < len(rows) and rows[i]:
        hunk = re.match(r"@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@", rows[i])
        assert hunk, rows[i]
        start, length = int(hunk.group(1)), int(hunk.group(2) or 1)
        start = start - 1 if length else start
        out.extend(source[position:start])
        position = start
        i += 1
        while i < len(rows) and rows[i] and not rows[i].startswith("@@"):
            kind, text = rows[i][0], rows[i][1:]
            eol = "\n"
            if i + 1 < len(rows) and rows[i + 1] == "\\ No newline at end of file":
                eol = ""
            if kind in " +":
                out.append(text + eol)
            if kind in " -":
                assert source[position] == text + eol
                position += 1
            i += 2 if eol == "" else 1
    out.extend(source[position:])
    return "".join(out)


@given(texts(), texts())
def test_a_unified_diff_applied_to_the_old_text_gives_the_new(old: str, new: str) -> None:
    assert patch(old, unified_diff(split_lines(old), split_lines(new), "a", "b")) == new


@given(texts(), texts())
def test_a_change_merged_against_an_untouched_base_is_that_change(base: str, mine: str) -> None:
    assert merge(base, mine, base).text == mine
    assert merge(base, base, mine).text == mine


@given(texts(), texts())
def test_identical_changes_merge_once(base: str, both: str) -> None:
    assert merge(base, both, both).text == both


@given(texts(), texts(), texts())
def test_merging_is_symmetric(base: str, ours: str, theirs: str) -> None:
    one, other = merge(base, ours, theirs), merge(base, theirs, ours)
    assert one.text == other.text
    assert [(c.base, c.ours, c.theirs) for c in one.conflicts] == [
        (c.base, c.theirs, c.ours) for c in other.conflicts
    ]


@st.composite
def separated_edits(draw: st.DrawFn) -> tuple[str, str, str, str]:
    """A base of distinct lines, and edits (replace, delete or insert) at regions that leave
    at least one untouched line between each other, each given to ours or theirs: the
    expected merge is every edit applied."""
    size = draw(st.integers(min_value=0, max_value=20))
    base = [f"line {i}\n" for i in range(size)]
    regions = []
    position = 0
    while position <= size:
        start = draw(st.integers(min_value=position, max_value=size))
        end = draw(st.integers(min_value=start, max_value=min(size, start + 3)))
        regions.append((start, end))
        position = end + 2 if end > start else end + 1
        if draw(st.booleans()):
            break
    ours, theirs, both = [], [], []
    for n, (start, end) in enumerate(regions):
        new = draw(st.lists(st.sampled_from(["x", "y", "é"]), max_size=2))
        replacement = [f"new {n} {text}\n" for text in new]
        if start == end and not replacement:
            replacement = [f"new {n}\n"]
        edit = (start, end, replacement)
        (ours if draw(st.booleans()) else theirs).append(edit)
        both.append(edit)
    return (
        "".join(base),
        "".join(apply(base, ours)),
        "".join(apply(base, theirs)),
        "".join(apply(base, both)),
    )


@settings(max_examples=300)
@given(separated_edits())
def test_changes_that_do_not_touch_commute(case: tuple[str, str, str, str]) -> None:
    base, ours, theirs, expected = case
    assert merge(base, ours, theirs).text == expected
    assert merge(base, theirs, ours).text == expected


def test_a_huge_differing_region_is_one_replacement_not_a_quadratic_match() -> None:
    # 20,000 lines of 110 values, each just under SequenceMatcher's 1% "popular" cut: matching
    # them took 6.6 s on the event loop (60,000 lines froze a server for 23 s, review finding).
    values = [f"value {i}\n" for i in range(110)]
    old = ["first\n", *(values[(i * 7) % 110] for i in range(20_000)), "last\n"]
    new = ["FIRST\n", *(values[(i * 13) % 110] for i in range(20_000)), "LAST\n"]
    changed = changes(old, new)
    assert changed == [(0, len(old), new)]
    assert apply(old, changed) == new
    # The common first and last lines are still set aside: a one-line edit stays one line.
    edited = [*old[:10_000], "edited\n", *old[10_001:]]
    assert changes(old, edited) == [(10_000, 10_001, ["edited\n"])]
