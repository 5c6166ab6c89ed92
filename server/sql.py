"""Loader for the named SQL statements in ``queries/*.sql``.

A file holds blocks like::

    -- name: get_value_by_id
    -- What it does, and which index serves it.
    SELECT id, value FROM feed_values WHERE id = :value_id;

Parameters are written ``:name`` and become asyncpg's ``$1, $2 ...`` in order of first
appearance; a name used twice is one parameter. The text sent to PostgreSQL starts with
``/* queries/<file>:<name> */`` so that ``pg_stat_activity`` and ``pg_stat_statements`` show
which statement ran. That, and calling asyncpg directly (its prepared-statement cache,
positional arguments, per-call timeouts), is why this small loader is used instead of aiosql,
which strips comments before sending.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

QUERIES_DIR = Path(__file__).resolve().parent.parent / "queries"

_NAME_LINE = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
# Single-quoted strings, quoted identifiers, comments and dollar-quoted bodies are copied as
# they are; only a ':name' outside them (and not the second colon of a '::type' cast) is a
# parameter.
_TOKENS = re.compile(
    r"""(?P<skip>'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|/\*.*?\*/|\$\$.*?\$\$)"""
    r"""|(?<![:\w]):(?P<param>[A-Za-z_]\w*)""",
    re.DOTALL,
)


class QueryFileError(ValueError):
    """A file in queries/ is not in the expected format."""


@dataclass(frozen=True)
class Query:
    name: str  # "<file stem>.<statement name>", e.g. "values.insert_values"
    path: str  # "queries/values.sql"
    doc: str
    sql: str  # the text sent to PostgreSQL, with $n parameters
    params: tuple[str, ...]

    def args(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        given = set(params)
        expected = set(self.params)
        if given != expected:
            missing = sorted(expected - given)
            extra = sorted(given - expected)
            raise TypeError(f"{self.name}: missing parameters {missing}, unexpected {extra}")
        return tuple(params[p] for p in self.params)


def _compile(name: str, path: str, body: str) -> Query:
    lines = body.strip().splitlines()
    doc_lines = []
    while lines and lines[0].lstrip().startswith("--"):
        doc_lines.append(lines.pop(0).lstrip()[2:].strip())
    text = "\n".join(lines).strip().rstrip(";").strip()
    if not text:
        raise QueryFileError(f"{path}: statement {name!r} has no SQL")
    if not doc_lines:
        raise QueryFileError(f"{path}: statement {name!r} needs a comment saying what it does")
    order: list[str] = []

    def replace(match: re.Match[str]) -> str:
        param = match.group("param")
        if param is None:
            return match.group(0)
        if param not in order:
            order.append(param)
        return f"${order.index(param) + 1}"

    converted = _TOKENS.sub(replace, text)
    return Query(
        name=name,
        path=path,
        doc=" ".join(doc_lines),
        sql=f"/* {path}:{name.split('.', 1)[1]} */\n{converted}",
        params=tuple(order),
    )


def parse_file(path: Path, label: str | None = None) -> list[Query]:
    text = path.read_text(encoding="utf-8")
    label = label or f"queries/{path.name}"
    matches = list(_NAME_LINE.finditer(text))
    if not matches:
        raise QueryFileError(f"{label}: no '-- name:' blocks")
    queries = []
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        name = f"{path.stem}.{match.group(1)}"
        queries.append(_compile(name, label, text[match.end() : end]))
    return queries


class Queries(Mapping[str, Query]):
    """Every named statement of a queries directory, by "<file>.<name>"."""

    def __init__(self, directory: Path = QUERIES_DIR) -> None:
        self.directory = directory
        self._queries: dict[str, Query] = {}
        for path in sorted(directory.glob("*.sql")):
            for query in parse_file(path):
                if query.name in self._queries:
                    raise QueryFileError(f"{query.path}: {query.name} is defined twice")
                self._queries[query.name] = query

    def __getitem__(self, name: str) -> Query:
        return self._queries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._queries)

    def __len__(self) -> int:
        return len(self._queries)
