"""Plain-SQL migrations: ``migrations/NNNN_name.sql``, applied in order, one transaction each.

Applied files are recorded with a SHA-256 checksum in ``schema_migrations``. A PostgreSQL
advisory lock makes several processes that start at once take turns, so each file is
applied exactly once. A landed file whose text changed stops everything with a clear
message: migrations are never edited once they land; write a new one.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from .db import Runner
from .sql import Queries

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# An arbitrary constant: the advisory-lock key this service uses for migrating.
LOCK_KEY = 0x636F6C6C6162  # "collab"
SCHEMA_FILE = "schema.sql"
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """The migrations directory or the database's record of it is inconsistent."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()

    @property
    def filename(self) -> str:
        return self.path.name


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        if path.name == SCHEMA_FILE:
            continue  # the whole schema for reading (run.py schema), not a migration
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_lowercase_name.sql")
        migrations.append(
            Migration(int(match.group(1)), match.group(2), path, path.read_text(encoding="utf-8"))
        )
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return migrations


async def migrate(
    conn: asyncpg.Connection,
    queries: Queries,
    directory: Path = MIGRATIONS_DIR,
    progress: Callable[[str], None] | None = None,
) -> list[Migration]:
    """Apply every pending migration; return the ones this call applied."""
    say = progress or log.info
    migrations = load_migrations(directory)
    db = Runner(conn, queries)
    await db.value("migrations.lock_migrations", lock_key=LOCK_KEY)
    try:
        await db.execute("migrations.create_migrations_table")
        applied = {r["version"]: r for r in await db.many("migrations.list_applied_migrations")}
        known = {m.version: m for m in migrations}
        for version, row in applied.items():
            migration = known.get(version)
            if migration is None:
                raise MigrationError(
                    f"the database has migration {version:04d}_{row['name']} applied, "
                    f"but {directory} has no such file (is this an older checkout?)"
                )
            if migration.checksum != row["checksum"]:
                raise MigrationError(
                    f"{migration.filename} changed after it was applied "
                    f"(checksum {row['checksum'][:12]}… in the database, "
                    f"{migration.checksum[:12]}… on disk); landed migrations are never edited: "
                    "restore the file and add a new migration"
                )
        pending = [m for m in migrations if m.version not in applied]
        if not pending:
            say(f"migrate: database is up to date ({len(applied)} applied)")
        for i, migration in enumerate(pending, 1):
            started = time.perf_counter()
            say(f"migrate: [{i}/{len(pending)}] applying {migration.filename}")
            async with conn.transaction():
                await conn.execute(migration.sql)
                await db.execute(
                    "migrations.record_migration",
                    version=migration.version,
                    name=migration.name,
                    checksum=migration.checksum,
                )
            elapsed = (time.perf_counter() - started) * 1000
            say(f"migrate: [{i}/{len(pending)}] applied {migration.filename} in {elapsed:.0f} ms")
        return pending
    finally:
        await db.value("migrations.unlock_migrations", lock_key=LOCK_KEY)
