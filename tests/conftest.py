"""Fixtures: real PostgreSQL and Redis, from the environment or embedded from pip wheels.

TEST_DATABASE_URL / TEST_REDIS_URL point at running servers (CI on this machine: PostgreSQL 15
and Redis 7 on 127.0.0.1); unset, the tests start the same embedded servers `python run.py`
uses. The schema is migrated once into a template database, and every test gets a fresh
database copied from it (CREATE DATABASE ... TEMPLATE, ~15 ms) and its own Redis channel prefix,
so tests never see each other's rows or messages.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.embedded import RedisProcess, postgres_url, start_postgres, stop_postgres
from server.migrations import migrate
from server.openapi import SPEC_KEY
from server.settings import Settings
from server.sql import Queries

from .helpers import ResponseContract, add_role, create_event, create_task, register, with_database


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    tmp = Path(tempfile.mkdtemp(prefix="collab-test-pg-"))
    tmp.chmod(0o755)
    server = start_postgres(tmp)
    try:
        yield postgres_url(server)
    finally:
        stop_postgres(server)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        yield url
        return
    server = RedisProcess().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def template_database(postgres_admin_url: str) -> Iterator[str]:
    name = f"collab_test_template_{os.getpid()}"

    async def create() -> None:
        admin = await asyncpg.connect(postgres_admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        conn = await asyncpg.connect(with_database(postgres_admin_url, name))
        try:
            await migrate(conn, Queries(), progress=lambda _: None)
        finally:
            await conn.close()

    async def drop() -> None:
        admin = await asyncpg.connect(postgres_admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    asyncio.run(create())
    yield name
    asyncio.run(drop())


@asynccontextmanager
async def fresh_database(admin_url: str, template: str | None = None) -> AsyncIterator[str]:
    """A new database (a copy of ``template``, or empty) for one test, dropped after it."""
    name = f"collab_test_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(admin_url)
    try:
        if template:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        else:
            await admin.execute(f'CREATE DATABASE "{name}"')
        yield with_database(admin_url, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def database_url(postgres_admin_url: str, template_database: str) -> AsyncIterator[str]:
    """A fresh, migrated database for this test alone."""
    async with fresh_database(postgres_admin_url, template_database) as url:
        yield url


@pytest.fixture
async def empty_database_url(postgres_admin_url: str) -> AsyncIterator[str]:
    """A fresh database with no schema at all, for migration tests."""
    async with fresh_database(postgres_admin_url) as url:
        yield url


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=f"test-{uuid.uuid4().hex[:12]}:",
        migrate_on_start=False,
        sse_heartbeat_seconds=1.0,
        feed_retention_days=0,
        db_pool_min=1,
        db_pool_max=5,
    )


MakeClient = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def make_client(settings: Settings, aiohttp_client: Any) -> Iterator[MakeClient]:
    """An app on the test's database and Redis prefix, with some settings changed. Every JSON
    answer it gives is checked, after the test, against what /openapi.json documents."""
    apps: list[Any] = []

    async def make(**overrides: Any) -> TestClient[Any, Any]:
        app = create_app(settings.with_(**overrides))
        contract = ResponseContract()
        contract.attach(app)
        apps.append((app, contract))
        return await aiohttp_client(app)

    yield make
    problems = [
        problem
        for app, contract in apps
        if SPEC_KEY in app
        for problem in contract.violations(app[SPEC_KEY])
    ]
    assert not problems, "answers that break /openapi.json:\n" + "\n".join(sorted(set(problems)))


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient[Any, Any]:
    return await make_client()


@dataclass
class TaskTree:
    """An event with a task tree, and one user for each way of reaching its ``leaf``::

    root (600 min)                 owner: the event's owner (maintainer of everything)
    |- mid (300)                   inherited: maintainer of mid, so of leaf
    |  `- leaf (60)                maintainer: maintainer of leaf itself
    `- sibling (100)               collaborator: collaborator of mid, so of leaf
                                   outsider: no role; newcomer: no role (to be added)
    """

    event_id: str
    tasks: dict[str, dict[str, Any]]
    users: dict[str, dict[str, Any]]

    def headers(self, actor: str) -> dict[str, str]:
        return {} if actor == "anonymous" else dict(self.users[actor]["headers"])


@pytest.fixture
async def task_tree(client: TestClient[Any, Any]) -> TaskTree:
    users = {
        name: await register(client, name.capitalize())
        for name in ("owner", "inherited", "maintainer", "collaborator", "outsider", "newcomer")
    }
    owner = users["owner"]
    event = await create_event(client, owner)
    root = await create_task(client, owner, event["id"], 600, title="Root")
    mid = await create_task(client, owner, event["id"], 300, root["id"], title="Mid")
    leaf = await create_task(client, owner, event["id"], 60, mid["id"], title="Leaf")
    sibling = await create_task(client, owner, event["id"], 100, root["id"], title="Sibling")
    await add_role(client, owner, mid["id"], users["inherited"], "maintainer")
    await add_role(client, owner, leaf["id"], users["maintainer"], "maintainer")
    await add_role(client, owner, mid["id"], users["collaborator"], "collaborator")
    tasks = {"root": root, "mid": mid, "leaf": leaf, "sibling": sibling}
    return TaskTree(event["id"], tasks, users)
