"""Schemathesis against /openapi.json: every route, as a user who owns an event with tasks,
stories, comments, invites and notifications, so that path ids often name real rows.

The service runs as a real process (`run.py`) on this test's own database; schemathesis
generates requests from the document (its examples, boundary and negative cases, then random
ones) and checks every answer: no 5xx, only documented statuses and content types, bodies
that match their schemas, bad input refused with a 4xx, tokens enforced.

Bounded and deterministic (a fixed seed, `FUZZ_EXAMPLES` random cases per route, default
25), so `.ci/run` runs it. A longer run (docs/reliability.md, "Fuzzing"):

    FUZZ_EXAMPLES=200 FUZZ_SEED=7 .venv/bin/python -m pytest -p no:cacheprovider tests/test_fuzz.py
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis.core.parameters import ParameterLocation

from server.app import create_app
from server.embedded import free_port
from server.openapi import build_spec
from server.settings import Settings

from .helpers import with_database

ROOT = Path(__file__).resolve().parent.parent
PATH, BODY = ParameterLocation.PATH, ParameterLocation.BODY
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
SEED = int(os.environ.get("FUZZ_SEED", "1"))
# Ids of rows the fuzzing user can reach, by path parameter name (filled by `world`).
REAL_IDS: dict[str, list[Any]] = {}

# Which of schemathesis' checks hold this API to its document, and why the others do not:
# - positive_data_acceptance: a body the schemas accept may still be rightly 422: rules
#   across fields (end_date before start_date; exactly one of user_id and user_ids) and
#   references to rows (a parent comment of another story, an unknown user: API.md makes
#   these 422), which a JSON Schema cannot state.
# - use_after_free, ensure_resource_availability: follow OpenAPI links between operations
#   (the stateful phase), which this document does not declare.
# - object_level_authorization: needs a second identity configured in schemathesis; who may
#   see what is tested route by route in tests/test_access.py and each domain's tests.
# - max_response_time: speed belongs in bench/.
CHECKS = {
    "not_a_server_error": {},
    "status_code_conformance": {},
    "content_type_conformance": {},
    "response_schema_conformance": {},
    "response_headers_conformance": {},
    # 413 refuses a body over the size limit as surely as 422 refuses its content.
    "negative_data_rejection": {
        "expected-statuses": ["400", "401", "403", "404", "405", "409", "413", "415", "422"]
    },
    "missing_required_header": {},
    "unsupported_method": {},
    "allow_header_conformance": {},
    "ignored_auth": {},
    "positive_data_acceptance": {"enabled": False},
    "use_after_free": {"enabled": False},
    "ensure_resource_availability": {"enabled": False},
    "object_level_authorization": {"enabled": False},
}


class Service:
    """`python run.py` on a free port, its output in a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "run.py"), "--port", str(self.port)],
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        for _ in range(300):
            if self.proc.poll() is not None:
                break
            try:
                if requests.get(self.base + "/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"the service did not start:\n{self.output()[-3000:]}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class World:
    """The rows the fuzzing user can reach, by path parameter name, and how to make more."""

    base: str
    session: requests.Session
    owner: dict[str, Any] = field(default_factory=dict)
    other: dict[str, Any] = field(default_factory=dict)
    event_id: str = ""
    own_tasks: list[str] = field(default_factory=list)
    ids: dict[str, list[Any]] = field(default_factory=dict)

    def call(self, method: str, path: str, user: dict[str, Any], body: Any = None) -> Any:
        response = self.session.request(
            method, self.base + path, json=body, headers=user.get("headers"), timeout=30
        )
        assert response.status_code < 300, (method, path, response.status_code, response.text)
        return response.json() if response.content else None

    def user(self, name: str, password: str | None = None) -> dict[str, Any]:
        body = {"name": name, "email": f"{uuid.uuid4().hex[:12]}@example.com"}
        if password:
            body["password"] = password
        user = dict(self.call("POST", "/users", {}, body))
        user["headers"] = {"Authorization": f"Bearer {user['token']}"}
        return user

    def task(self, parent_id: str | None = None) -> str:
        body = {"event_id": self.event_id, "parent_id": parent_id, "title": "Task",
                "duration_minutes": 30}  # fmt: skip
        return str(self.call("POST", "/tasks", self.owner, body)["id"])

    def story(self, task_id: str) -> str:
        body = {"task_id": task_id, "title": "Story", "content": "one\ntwo\n"}
        return str(self.call("POST", "/stories", self.owner, body)["id"])

    def comment(self, story_id: str, parent_id: str | None = None) -> str:
        body = {"story_id": story_id, "body": "a comment", "parent_id": parent_id}
        return str(self.call("POST", "/comments", self.owner, body)["id"])

    def disposable(self, case: schemathesis.Case, caller: str) -> dict[str, str]:
        """The headers of ``caller`` for this case, after swapping a real id on a DELETE for
        a row made for it alone, so that deleting it takes nothing away from the cases after
        it."""
        me = {"owner": self.owner, "other": self.other}[caller]
        params = case.path_parameters or {}
        if case.method.upper() != "DELETE":
            return dict(me["headers"])
        path = case.path
        if path == "/auth/token":
            return dict(self.user("Revoker")["headers"])
        if path == "/users/{user_id}" and params.get("user_id") == me["id"]:
            victim = self.user("Leaver")
            params["user_id"] = victim["id"]
            return dict(victim["headers"])
        real = {name: value in self.ids.get(name, []) for name, value in params.items()}
        if path == "/events/{event_id}" and real["event_id"]:
            body = {"title": "Doomed", "start_date": "2024-01-15T10:00:00Z",
                    "end_date": "2024-01-15T18:00:00Z"}  # fmt: skip
            params["event_id"] = self.call("POST", "/events", me, body)["id"]
        elif path == "/tasks/{task_id}" and real["task_id"]:
            params["task_id"] = self.task()
        elif path == "/stories/{story_id}" and real["story_id"]:
            params["story_id"] = self.story(self.own_tasks[0])
        elif path == "/comments/{comment_id}" and real["comment_id"]:
            params["comment_id"] = self.comment(self.ids["story_id"][0])
        elif path == "/tasks/{task_id}/collaborators/{user_id}" and real["user_id"]:
            if params["task_id"] in self.own_tasks:
                member = self.user("Member")
                body = {"user_id": member["id"], "role": "collaborator"}
                self.call("POST", f"/tasks/{params['task_id']}/collaborators", me, body)
                params["user_id"] = member["id"]
        return dict(me["headers"])


def build_world(base: str) -> World:
    """An event of the fuzzing user ("owner") with a task tree, stories with revisions, a
    comment thread, invites both ways and notifications; another user to meet."""
    world = World(base, requests.Session())
    owner = world.owner = world.user("Owner", "a long password")
    other = world.other = world.user("Other", "another long password")
    event = world.call("POST", "/events", owner, {
        "title": "Offsite", "description": "two days",
        "start_date": "2024-01-15T10:00:00Z", "end_date": "2024-01-16T18:00:00Z",
    })  # fmt: skip
    world.event_id = event["id"]
    root = world.task()
    child = world.task(root)
    leaf = world.task(child)
    world.call("POST", f"/tasks/{child}/collaborators", owner,
               {"user_id": other["id"], "role": "collaborator"})  # fmt: skip
    stories = [world.story(root), world.story(leaf)]
    for revision, text in enumerate(["one\ntwo\nthree\n", "one\n2\nthree\n"], start=1):
        world.call("PATCH", f"/stories/{stories[0]}/content", owner,
                   {"content": text, "base_revision": revision})  # fmt: skip
    first = world.comment(stories[0])
    reply = world.comment(stories[0], first)
    mention = world.comment(stories[0], reply)
    # Other's own event and task: an invite to the owner (received) and one from it (sent).
    theirs = world.call("POST", "/events", other, {
        "title": "Theirs", "start_date": "2024-02-01T09:00:00Z", "end_date": "2024-02-01T17:00:00Z",
    })  # fmt: skip
    their_task = world.call("POST", "/tasks", other, {
        "event_id": theirs["id"], "parent_id": None, "title": "Theirs", "duration_minutes": 60,
    })["id"]  # fmt: skip
    received = world.call(
        "POST",
        "/invites",
        other,
        {"task_id": their_task, "user_id": owner["id"], "role": "maintainer"},
    )
    third = world.user("Third")
    sent = world.call(
        "POST",
        "/invites",
        owner,
        {"task_id": leaf, "email": third["email"], "role": "collaborator"},
    )
    world.call("POST", "/sse/send-message", other, {"user_id": owner["id"], "message": "hello"})
    for i in range(3):
        world.call("POST", "/add-value/", {}, {"value": f"{20 + i}.5"})
    page = world.call("GET", f"/notifications/{owner['id']}", owner)
    world.own_tasks = [root, child, leaf]
    world.ids = {
        "user_id": [owner["id"], other["id"]],
        "event_id": [event["id"], theirs["id"]],
        "task_id": [root, child, leaf, their_task],
        "story_id": stories,
        "revision": [1, 2, 3],
        "comment_id": [first, reply, mention],
        "invite_id": [received["id"], sent["id"]],
        "notification_id": [n["id"] for n in page["items"]],
    }
    return world


def answers_by_status(base: str) -> dict[int, int]:
    """How many requests the service answered, by status (its /metrics), probes included."""
    counts: dict[int, int] = {}
    for line in requests.get(base + "/metrics", timeout=10).text.splitlines():
        match = re.match(r'^http_requests_total\{.*status="(\d+)".*\} (\S+)$', line)
        if match:
            status = int(match.group(1))
            counts[status] = counts.get(status, 0) + int(float(match.group(2)))
    return dict(sorted(counts.items()))


@pytest.fixture(scope="module")
def world(
    postgres_admin_url: str, redis_url: str, template_database: str, tmp_path_factory: Any
) -> Iterator[World]:
    name = f"collab_fuzz_{uuid.uuid4().hex[:12]}"

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(postgres_admin_url)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"'))
    env = {
        "DATABASE_URL": with_database(postgres_admin_url, name),
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": f"fuzz-{uuid.uuid4().hex[:12]}:",
        "MIGRATE_ON_START": "false",
        "SSE_HEARTBEAT_SECONDS": "0.2",
        "LOG_LEVEL": "WARNING",
    }
    service = Service(env, tmp_path_factory.mktemp("fuzz") / "service.log")
    try:
        served = requests.get(service.base + "/openapi.json", timeout=10).json()
        assert served == openapi_document(), "the service serves another document"
        built = build_world(service.base)
        REAL_IDS.update(built.ids)
        yield built
        answered = answers_by_status(service.base)
        print(f"\nfuzz: {sum(answered.values())} requests answered, by status: {answered}")
        errors = {status: n for status, n in answered.items() if status >= 500}
        unhandled = [line for line in service.output().splitlines() if "unhandled error" in line]
        assert not errors and not unhandled, f"{errors}:\n" + "\n".join(unhandled[:20])
    finally:
        service.stop()
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def openapi_document() -> dict[str, Any]:
    """What GET /openapi.json serves, built from the routes as the service builds it at start
    (pytest collects one test per operation before any service runs; `world` checks that the
    running service serves exactly this)."""
    return build_spec(create_app(Settings()), "collab-service", "0.1.0")


# Paths that two routes share on purpose, where a method the document lists under one is
# served by the other: /events answers POST (create) and GET (the feed's /events/ without its
# slash: API.md has every route answer with and without it), /events/ the reverse;
# /sse/send-message is also GET /sse/{user_id}; GET /notifications/{user_id} and PATCH
# /notifications/{notification_id} are one path to the router. There a 405's Allow names the
# methods of both routes, and only the methods neither serves are "undeclared"; the document
# lists each route once, as API.md names it. Everywhere else every method is tried.
UNDECLARED = ["put", "patch", "delete", "options", "trace", "query"]
SHARED_PATHS = [
    (r"^/(events/?|sse/send-message)$", UNDECLARED),
    (
        r"^/notifications/\{(user_id|notification_id)\}$",
        ["post", "put", "delete", "options", "trace", "query"],
    ),
]
# A stream is read until two events came or STREAM_TIMEOUT passed; its inputs are a user id
# and a last event id, so fewer random cases cover them.
STREAMS = r"^/(events/|sse/\{user_id\})$"
STREAM_TIMEOUT = 0.5

CONFIG = schemathesis.Config.from_dict({
    "seed": SEED,
    "checks": CHECKS,
    "operations": [
        *({"include-path-regex": path,
           "checks": {"allow_header_conformance": {"enabled": False}},
           "phases": {"coverage": {"unexpected-methods": methods}}}
          for path, methods in SHARED_PATHS),
        {"include-path-regex": STREAMS,
         "generation": {"max-examples": max(3, EXAMPLES // 5)}},
    ],
    # Negative cases stay within what the document can state: the service ignores query
    # parameters it does not know (cache busters, tracking tags), as API.md leaves it to;
    # it is bodies whose unknown fields are 422.
    # The token is this test's to send (a real user's), so no Authorization header is made up.
    "generation": {"max-examples": EXAMPLES, "deterministic": True,
                   "allow-extra-parameters": False, "with-security-parameters": False},
    "request-timeout": 10,
    "max-stream-events": 2,
})  # fmt: skip
schema = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG)


def body_ids(path: str, key: str) -> list[Any]:
    """The real ids a body member of this operation may name (parent_id: a task's or a
    comment's parent, by the path)."""
    if key == "parent_id":
        return REAL_IDS.get("comment_id" if path.startswith("/comments") else "task_id", [])
    return REAL_IDS.get("user_id" if key == "user_ids" else key, [])


def real_pools(case: schemathesis.Case) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """Where this case may name real rows: each path id and each id in the body (event_id,
    task_id, story_id, parent_id, user_id, user_ids) that is meant to be well-formed, with the
    world's ids of its kind. Ids meant to be malformed (negative cases) are left alone."""
    meta = case.meta
    path: dict[str, list[Any]] = {}
    if case.path_parameters and meta is not None and not meta.is_negative_at(PATH):
        path = {name: REAL_IDS[name] for name in case.path_parameters if REAL_IDS.get(name)}
    body: dict[str, list[Any]] = {}
    if isinstance(case.body, dict) and meta is not None and not meta.is_negative_at(BODY):
        for key, value in case.body.items():
            pool = body_ids(case.path, key)
            if pool and (isinstance(value, str) or (key == "user_ids" and value)):
                body[key] = pool
    return path, body


def with_ids(case: schemathesis.Case, path: dict[str, Any], body: dict[str, Any]) -> Any:
    moved = case.derive(keep_auth=True)
    if path:
        moved.path_parameters = {**case.path_parameters, **path}
    if body:
        moved.body = {**case.body, **body}
    return moved


@schema.hook
def flatmap_case(context: Any, case: schemathesis.Case) -> Any:
    """Three of four random cases name real rows wherever they can (`real_pools`)."""
    path, body = real_pools(case)
    if not path and not body:
        return st.just(case)
    real = st.tuples(
        st.fixed_dictionaries({name: st.sampled_from(pool) for name, pool in path.items()}),
        st.fixed_dictionaries({
            key: st.lists(st.sampled_from(pool), min_size=1, max_size=3) if key == "user_ids"
            else st.sampled_from(pool)
            for key, pool in body.items()
        }),
    )  # fmt: skip
    return st.one_of(st.just(case), *[real.map(lambda ids: with_ids(case, *ids))] * 3)


COVERED = itertools.count()


def cover_real_rows(case: schemathesis.Case) -> schemathesis.Case:
    """The coverage phase's cases (boundary values of every field, built without the hook
    above) name real rows wherever they can, each the next of its kind in turn: its edge
    cases then reach the rows behind the routes, not only their 404s."""
    if case.meta is None or case.meta.phase.name.value != "coverage":
        return case
    path, body = real_pools(case)
    turn = next(COVERED)
    pick = {name: pool[turn % len(pool)] for name, pool in {**path, **body}.items()}
    if "user_ids" in body:
        pick["user_ids"] = [pick["user_ids"]]
    return with_ids(case, {k: pick[k] for k in path}, {k: pick[k] for k in body})


@schema.parametrize()
# One test per operation, each named for it: pytest 9.2 builds a test's id from its original
# name and its parameters only, so without one every operation's test had the same id.
@pytest.mark.parametrize("caller", ["owner"])
def test_every_route_answers_as_documented(
    case: schemathesis.Case, world: World, caller: str
) -> None:
    case = cover_real_rows(case)
    headers = world.disposable(case, caller)
    timeout = STREAM_TIMEOUT if re.match(STREAMS, case.path) and case.method == "GET" else 10
    case.call_and_validate(
        base_url=world.base, headers=headers, session=world.session, timeout=timeout
    )
