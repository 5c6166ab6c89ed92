"""queries/: the loader, and `run.py check-sql`, which prepares every statement."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from server.sql import QUERIES_DIR, Queries, QueryFileError, parse_file

from .helpers import run_cli


def write(tmp_path: Path, text: str, name: str = "things.sql") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_named_parameters_become_positional_in_order_of_first_use(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "-- name: find_things :many\n"
        "-- Finds things; served by things_pkey.\n"
        "SELECT id::text, ':not_a_param' AS s, \"odd:name\" FROM things\n"
        "WHERE owner = :owner AND id > :after -- :neither\n"
        "  AND (owner = :owner OR :after = 0)\n"
        "ORDER BY id;\n",
    )
    [query] = parse_file(path)
    assert query.name == "things.find_things"
    assert query.params == ("owner", "after")
    assert "owner = $1 AND id > $2" in query.sql
    assert "(owner = $1 OR $2 = 0)" in query.sql
    assert "id::text" in query.sql and "':not_a_param'" in query.sql
    assert query.sql.startswith("/* queries/things.sql:find_things */\n")
    assert query.doc == "Finds things; served by things_pkey."
    assert query.kind == "many"
    assert query.args({"after": 5, "owner": "me"}) == ("me", 5)
    with pytest.raises(TypeError, match="missing parameters"):
        query.args({"owner": "me"})


def test_a_statement_without_a_comment_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "-- name: bare :value\nSELECT 1;\n")
    with pytest.raises(QueryFileError, match="needs a comment"):
        parse_file(path)


def test_every_shipped_statement_is_named_and_documented() -> None:
    queries = Queries()
    assert "feed.insert_values" in queries
    for query in queries.values():
        assert query.doc, query.name
        assert "$" not in query.doc


async def check_sql(database_url: str, queries_dir: Path | None = None) -> tuple[int, str]:
    """`run.py check-sql` on the test's database (the shipped queries unless told otherwise)."""
    args = ["check-sql"] + (["--queries-dir", str(queries_dir)] if queries_dir else [])
    env = {"DATABASE_URL": database_url, "REDIS_URL": "redis://127.0.0.1:1/0"}
    return await run_cli(*args, env=env)


async def check_sql_with(
    database_url: str, tmp_path: Path, name: str, text: str
) -> tuple[int, str]:
    """check-sql on the shipped queries plus one more file."""
    directory = tmp_path / "queries"
    shutil.copytree(QUERIES_DIR, directory)
    write(directory, text, name=name)
    return await check_sql(database_url, directory)


async def test_check_sql_passes_on_the_shipped_queries(database_url: str) -> None:
    code, output = await check_sql(database_url)
    assert code == 0, output
    for name in Queries():
        assert f"ok {name}(" in output
    assert "0 failed" in output


async def test_check_sql_fails_on_a_broken_query(database_url: str, tmp_path: Path) -> None:
    code, output = await check_sql_with(
        database_url, tmp_path, "broken.sql",
        "-- name: list_ghosts :many\n-- Reads a column that does not exist.\n"
        "SELECT id, no_such_column FROM feed_values WHERE id > :after_id;\n",
    )  # fmt: skip
    assert code == 1, output
    assert "FAIL broken.list_ghosts" in output
    assert "no_such_column" in output
    assert "1 failed" in output


async def test_check_sql_fails_when_a_comment_names_a_missing_index(
    database_url: str, tmp_path: Path
) -> None:
    code, output = await check_sql_with(
        database_url, tmp_path, "stale.sql",
        "-- name: newest_values :many\n-- Newest first; served by feed_values_created_at_idx.\n"
        "SELECT id FROM feed_values ORDER BY created_at DESC LIMIT :max_rows;\n",
    )  # fmt: skip
    assert code == 1, output
    assert "FAIL stale.newest_values" in output
    assert "feed_values_created_at_idx" in output


def test_a_statement_must_say_what_it_returns(tmp_path: Path) -> None:
    path = write(tmp_path, "-- name: vague\n-- Returns something.\nSELECT 1;\n")
    with pytest.raises(QueryFileError, match="must say what it returns"):
        parse_file(path)


@pytest.mark.parametrize(
    ("kind", "sql", "complaint"),
    [
        ("exec", "UPDATE feed_counter SET last_id = last_id RETURNING last_id", "returns rows"),
        ("value", "SELECT id, value FROM feed_values", "returns 2 columns, not 1"),
        ("one", "DELETE FROM feed_values WHERE id = :value_id", "returns no columns"),
    ],
)
async def test_check_sql_fails_when_a_statement_returns_other_than_its_kind(
    database_url: str, tmp_path: Path, kind: str, sql: str, complaint: str
) -> None:
    code, output = await check_sql_with(
        database_url, tmp_path, "kinds.sql", f"-- name: mislabelled :{kind}\n-- Wrong.\n{sql};\n"
    )
    assert code == 1, output
    assert "FAIL kinds.mislabelled" in output and complaint in output


async def test_a_runner_refuses_a_statement_called_as_another_kind(database_url: str) -> None:
    import asyncpg

    from server.db import Runner

    conn = await asyncpg.connect(database_url)
    try:
        runner = Runner(conn, Queries())
        with pytest.raises(TypeError, match=":one, not :many"):
            await runner.many("feed.get_feed_bounds")
        assert (await runner.run("feed.get_feed_bounds"))["newest_id"] == 0
    finally:
        await conn.close()
