"""Migrations: in order, once each, recorded with checksums, safe under concurrent starts."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncpg
import pytest

from server.db import Runner
from server.migrations import MIGRATIONS_DIR, MigrationError, load_migrations, migrate
from server.schema import dump_schema
from server.sql import Queries

from .helpers import run_cli

ROOT = Path(__file__).resolve().parent.parent


async def applied_versions(url: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        return [r["version"] for r in rows]
    finally:
        await conn.close()


async def test_migrate_is_idempotent(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        first = await migrate(conn, Queries())
        second = await migrate(conn, Queries())
    finally:
        await conn.close()
    assert [m.version for m in first] == [m.version for m in load_migrations()]
    assert second == []
    assert await applied_versions(empty_database_url) == [m.version for m in first]


async def test_two_processes_migrating_at_once_apply_each_file_once(
    empty_database_url: str,
) -> None:
    env = {"DATABASE_URL": empty_database_url, "REDIS_URL": "redis://127.0.0.1:1/0"}
    results = await asyncio.gather(run_cli("migrate", env=env), run_cli("migrate", env=env))
    for code, output in results:
        assert code == 0, output
    outputs = [output for _, output in results]
    appliers = [o for o in outputs if "applied 0001_create_feed.sql" in o]
    assert len(appliers) == 1, outputs  # one applied it, the other found it done
    assert any("up to date" in o for o in outputs), outputs
    assert await applied_versions(empty_database_url) == [m.version for m in load_migrations()]


async def test_changed_landed_migration_stops_with_a_clear_message(
    empty_database_url: str, tmp_path: Path
) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate(conn, Queries(), directory)
        landed = directory / "0001_create_feed.sql"
        landed.write_text(landed.read_text() + "\n-- an edit after landing\n")
        changed = r"0001_create_feed\.sql changed after it was applied"
        with pytest.raises(MigrationError, match=changed):
            await migrate(conn, Queries(), directory)
    finally:
        await conn.close()


async def test_service_refuses_to_start_on_a_changed_migration(
    empty_database_url: str, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate(conn, Queries())
        await conn.execute("UPDATE schema_migrations SET checksum = 'tampered' WHERE version = 1")
    finally:
        await conn.close()
    code, output = await run_cli(
        "migrate", env={"DATABASE_URL": empty_database_url, "REDIS_URL": "redis://127.0.0.1:1/0"}
    )
    assert code == 3
    assert "changed after it was applied" in output
    assert "Traceback" not in output


async def test_a_failing_migration_leaves_nothing_behind(
    empty_database_url: str, tmp_path: Path
) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    (directory / "9999_broken.sql").write_text(
        "CREATE TABLE half_done (id int);\nSELECT no_such_function();\n"
    )
    conn = await asyncpg.connect(empty_database_url)
    try:
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await migrate(conn, Queries(), directory)
        exists = await conn.fetchval("SELECT to_regclass('half_done') IS NOT NULL")
        assert exists is False  # the whole file rolled back
        versions = await conn.fetch("SELECT version FROM schema_migrations")
        assert 9999 not in [r["version"] for r in versions]
    finally:
        await conn.close()


def test_badly_named_migration_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "1_Create.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNNN_lowercase_name"):
        load_migrations(tmp_path)


async def test_replaying_every_migration_gives_exactly_the_committed_schema(
    empty_database_url: str,
) -> None:
    # migrations/schema.sql is the whole schema for DBAs to read; a migration that changes the
    # schema without regenerating it (python run.py schema > migrations/schema.sql) fails here.
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate(conn, Queries(), progress=lambda _: None)
        dumped = await dump_schema(Runner(conn, Queries()))
    finally:
        await conn.close()
    committed = (MIGRATIONS_DIR / "schema.sql").read_text(encoding="utf-8")
    assert dumped == committed


async def test_schema_sql_is_not_taken_for_a_migration() -> None:
    names = [m.path.name for m in load_migrations()]
    assert "schema.sql" not in names and names == sorted(names)
