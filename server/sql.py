"""Loader for the named SQL statements in ``queries/*.sql``.

A file holds blocks like::

    -- name: get_value_by_id :one
    -- What it does, and which index serves it.
    SELECT id, value FROM feed_values WHERE id = :value_id;

The name's suffix says what the statement returns, as sqlc's do, and the repository layer
(``db.Runner``) runs it accordingly: ``:one`` one row or None, ``:many`` a list of rows,
``:value`` the first column of the first row, ``:exec`` the number of rows it changed.
``check_queries`` (``python run.py check-sql``) prepares each against the schema and checks
that what it returns fits its kind.

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

KINDS = ("one", "many", "value", "exec")
_NAME_LINE = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)(?:\s+:([a-z]+))?\s*$", re.MULTILINE)
# Single-quoted strings, quoted identifiers, comments and dollar-quoted bodies are copied as
# they are; only a ':name' outside them (and not the second colon of a '::type' cast) is a
# parameter.
_TOKENS = re.compile(
    r"""(?P<skip>'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|/\*.*?\*/|\$\$.*?\$\$)"""
    r"""|(?<![:\w]):(?P<param>[A-Za-z_]\w*)""",
    re.DOTALL,
)


# An index named in a statement's comment: "..._pkey", "..._key" or "..._idx".
_INDEX_NAME = re.compile(r"\b[a-z][a-z0-9_]*_(?:pkey|key|idx)\b")


class QueryFileError(ValueError):
    """A file in queries/ is not in the expected format."""


@dataclass(frozen=True)
class Query:
    name: str  # "<file stem>.<statement name>", e.g. "feed.insert_values"
    path: str  # "queries/feed.sql"
    doc: str
    sql: str  # the text sent to PostgreSQL, with $n parameters
    params: tuple[str, ...]
    kind: str  # one of KINDS

    def args(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        given = set(params)
        expected = set(self.params)
        if given != expected:
            missing = sorted(expected - given)
            extra = sorted(given - expected)
            raise TypeError(f"{self.name}: missing parameters {missing}, unexpected {extra}")
        return tuple(params[p] for p in self.params)


def _compile(name: str, kind: str | None, path: str, body: str) -> Query:
    lines = body.strip().splitlines()
    doc_lines = []
    while lines and lines[0].lstrip().startswith("--"):
        doc_lines.append(lines.pop(0).lstrip()[2:].strip())
    text = "\n".join(lines).strip().rstrip(";").strip()
    if not text:
        raise QueryFileError(f"{path}: statement {name!r} has no SQL")
    if not doc_lines:
        raise QueryFileError(f"{path}: statement {name!r} needs a comment saying what it does")
    if kind not in KINDS:
        raise QueryFileError(
            f"{path}: statement {name!r} must say what it returns after its name: "
            + ", ".join(f":{k}" for k in KINDS)
        )
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
        kind=kind,
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
        queries.append(_compile(name, match.group(2), label, text[match.end() : end]))
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


async def check_queries(conn: Any, queries: Mapping[str, Query], indexes: set[str]) -> list[str]:
    """Prepare every statement on ``conn`` (an asyncpg connection to the migrated schema);
    one line per statement, "ok ..." or "FAIL ...": it must prepare, return what its kind
    says, and name in its comment only indexes that exist."""
    import asyncpg  # the loader itself needs no driver

    lines = []
    for i, name in enumerate(sorted(queries), 1):
        query = queries[name]
        where = f"[{i}/{len(queries)}] FAIL {name} ({query.path}, :{query.kind})"
        try:
            statement = await conn.prepare(query.sql)
        except asyncpg.PostgresError as exc:
            lines.append(f"{where}: {type(exc).__name__}: {exc}")
            continue
        columns = statement.get_attributes()
        wrong = {
            "one": "returns no columns" if not columns else None,
            "many": "returns no columns" if not columns else None,
            "value": f"returns {len(columns)} columns, not 1" if len(columns) != 1 else None,
            "exec": "returns rows (use :one or :many)" if columns else None,
        }[query.kind]
        if wrong:
            lines.append(f"{where}: {wrong}")
            continue
        named = set(_INDEX_NAME.findall(query.doc))
        if named - indexes:
            unknown = ", ".join(sorted(named - indexes))
            lines.append(f"{where}: its comment names indexes that do not exist: {unknown}")
            continue
        params = ", ".join(
            f":{p} {t.name}" for p, t in zip(query.params, statement.get_parameters(), strict=False)
        )
        returned = ", ".join(f"{a.name} {a.type.name}" for a in columns)
        lines.append(
            f"[{i}/{len(queries)}] ok {name}({params}) :{query.kind}"
            + (f" -> {returned}" if returned else "")
        )
    return lines
