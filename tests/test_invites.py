"""Invites (API.md, "Invite"): the access matrix, every transition, expiry computed when read,
races (answers, answer against revoke, duplicate creates), role grants (upgrades, never a
downgrade), who already holds a role, notifications, cascades and bad input. Real PostgreSQL
and Redis.

The tree is conftest.TaskTree; ``invitee`` is its ``newcomer`` (no role anywhere), invited
to the leaf by ``maintainer`` (a maintainer of the leaf itself) in the ``invited`` fixture.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from .conftest import TaskTree
from .helpers import (
    add_role,
    assert_problem,
    assert_uses_index,
    create_event,
    create_task,
    racing_a_deletion,
    register,
    user_stream,
)

ACTORS = ("owner", "inherited", "maintainer", "collaborator", "outsider", "invitee", "anonymous")


def row(*statuses: int) -> dict[str, int]:
    return dict(zip(ACTORS, statuses, strict=True))


def user(tree: TaskTree, actor: str) -> dict[str, Any]:
    return tree.users["newcomer" if actor == "invitee" else actor]


def headers(tree: TaskTree, actor: str) -> dict[str, str]:
    return {} if actor == "anonymous" else dict(user(tree, actor)["headers"])


async def invite(
    client: Any, by: dict[str, Any], task_id: str, to: dict[str, Any], role: str = "collaborator",
    **extra: Any,
) -> dict[str, Any]:  # fmt: skip
    body = {"task_id": task_id, "user_id": to["id"], "role": role, **extra}
    response = await client.post("/invites", json=body, headers=by["headers"])
    assert response.status == 201, await response.text()
    return dict(await response.json())


async def answer(client: Any, by: dict[str, Any], invite_id: str, status: str) -> Any:
    return await client.patch(
        f"/invites/{invite_id}", json={"status": status}, headers=by["headers"]
    )


async def answered(client: Any, by: dict[str, Any], invite_id: str, status: str) -> dict[str, Any]:
    response = await answer(client, by, invite_id, status)
    assert response.status == 200, await response.text()
    return dict(await response.json())


async def listed(client: Any, kind: str, who: dict[str, Any], **query: str) -> list[dict[str, Any]]:
    """Every invite of GET /invites/{kind}/{who}, page after page."""
    items: list[dict[str, Any]] = []
    cursor = ""
    while True:
        response = await client.get(
            f"/invites/{kind}/{who['id']}", params={**query, "cursor": cursor},
            headers=who["headers"],
        )  # fmt: skip
        assert response.status == 200, await response.text()
        page = await response.json()
        items += page["items"]
        if page["next"] is None:
            return items
        cursor = page["next"]


async def received(client: Any, who: dict[str, Any], **query: str) -> list[dict[str, Any]]:
    return await listed(client, "received", who, **query)


async def sent(client: Any, who: dict[str, Any], **query: str) -> list[dict[str, Any]]:
    return await listed(client, "sent", who, **query)


async def notifications(client: Any, who: dict[str, Any]) -> list[dict[str, Any]]:
    response = await client.get(f"/notifications/{who['id']}", headers=who["headers"])
    assert response.status == 200
    return list((await response.json())["items"])


async def role_on(client: Any, who: dict[str, Any], task_id: str) -> str | None:
    """The role the user sees on the task (my_role), or None when it cannot see it."""
    response = await client.get(f"/tasks/{task_id}", headers=who["headers"])
    if response.status == 404:
        return None
    assert response.status == 200, await response.text()
    return str((await response.json())["my_role"])


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
async def invited(client: Any, task_tree: TaskTree) -> dict[str, Any]:
    """maintainer (of the leaf) invites newcomer to the leaf as a collaborator."""
    u = task_tree.users
    return await invite(client, u["maintainer"], task_tree.tasks["leaf"]["id"], u["newcomer"])


# (method, path, body) -> {actor: status}. {self} is the caller's own id; {invite} the
# fixture's invite (maintainer -> newcomer, on the leaf).
ROUTES: list[tuple[str, str, dict[str, Any] | None, dict[str, int]]] = [
    ("POST", "/invites", {"task_id": "{leaf}", "user_id": "{outsider}", "role": "collaborator"},
     row(201, 201, 201, 403, 404, 404, 401)),
    ("POST", "/invites", {"task_id": "{leaf}", "email": "{outsider_email}", "role": "maintainer"},
     row(201, 201, 201, 403, 404, 404, 401)),
    ("POST", "/invites", {"task_id": "{missing}", "user_id": "{outsider}", "role": "maintainer"},
     row(404, 404, 404, 404, 404, 404, 401)),
    ("GET", "/invites/received/{self}", None, row(200, 200, 200, 200, 200, 200, 401)),
    ("GET", "/invites/received/{invitee}", None, row(403, 403, 403, 403, 403, 200, 401)),
    ("GET", "/invites/received/{missing}", None, row(404, 404, 404, 404, 404, 404, 401)),
    ("GET", "/invites/received/not-a-uuid", None, row(404, 404, 404, 404, 404, 404, 401)),
    ("GET", "/invites/sent/{self}", None, row(200, 200, 200, 200, 200, 200, 401)),
    ("GET", "/invites/sent/{maintainer}", None, row(403, 403, 200, 403, 403, 403, 401)),
    ("GET", "/invites/sent/{missing}", None, row(404, 404, 404, 404, 404, 404, 401)),
    ("PATCH", "/invites/{invite}", {"status": "accepted"}, row(403, 403, 403, 404, 404, 200, 401)),
    ("PATCH", "/invites/{invite}", {"status": "rejected"}, row(403, 403, 403, 404, 404, 200, 401)),
    ("PATCH", "/invites/{invite}", {"status": "revoked"}, row(200, 200, 200, 404, 404, 403, 401)),
    ("PATCH", "/invites/{missing}", {"status": "accepted"},
     row(404, 404, 404, 404, 404, 404, 401)),
    ("PATCH", "/invites/not-a-uuid", {"status": "revoked"},
     row(404, 404, 404, 404, 404, 404, 401)),
]  # fmt: skip

CASES = [
    pytest.param(method, path, body, actor, status, id=f"{method} {path} {body or ''} as {actor}")
    for method, path, body, table in ROUTES
    for actor, status in table.items()
]


def fill(value: Any, tree: TaskTree, actor: str, invite_id: str) -> Any:
    if not isinstance(value, str):
        return value
    names = {name: task["id"] for name, task in tree.tasks.items()}
    names |= {name: u["id"] for name, u in tree.users.items()}
    return value.format(
        self=user(tree, "invitee" if actor == "anonymous" else actor)["id"],
        invitee=tree.users["newcomer"]["id"],
        outsider_email=tree.users["outsider"]["email"].upper(),
        invite=invite_id,
        missing=uuid.uuid4(),
        **names,
    )


@pytest.mark.parametrize(("method", "path", "body", "actor", "status"), CASES)
async def test_access(
    client: Any, task_tree: TaskTree, invited: dict[str, Any],
    method: str, path: str, body: Any, actor: str, status: int,
) -> None:  # fmt: skip
    json_body = (
        {k: fill(v, task_tree, actor, invited["id"]) for k, v in body.items()} if body else None
    )
    response = await client.request(
        method, fill(path, task_tree, actor, invited["id"]), json=json_body,
        headers=headers(task_tree, actor),
    )  # fmt: skip
    assert response.status == status, await response.text()
    if status >= 400:
        await assert_problem(response, status)
    # A refusal changes nothing: the invite is still pending for its invitee.
    if method == "PATCH" and status != 200:
        mine = await received(client, task_tree.users["newcomer"])
        assert [(i["id"], i["status"]) for i in mine] == [(invited["id"], "pending")]


async def test_an_invite_reads_back_as_it_was_made(client: Any, task_tree: TaskTree) -> None:
    u, leaf = task_tree.users, task_tree.tasks["leaf"]["id"]
    made = await invite(client, u["maintainer"], leaf, u["newcomer"])
    assert set(made) == {"id", "task_id", "inviter_id", "invitee_id", "role", "status",
                         "expires_at", "created_at", "responded_at"}  # fmt: skip
    assert (made["task_id"], made["inviter_id"], made["invitee_id"]) == (
        leaf, u["maintainer"]["id"], u["newcomer"]["id"],
    )  # fmt: skip
    assert (made["role"], made["status"], made["responded_at"]) == ("collaborator", "pending", None)
    assert made["expires_at"].endswith("Z") and made["created_at"].endswith("Z")
    assert moment(made["expires_at"]) - moment(made["created_at"]) == timedelta(days=7)
    assert await received(client, u["newcomer"]) == [made]
    assert await sent(client, u["maintainer"]) == [made]
    assert await received(client, u["maintainer"]) == []
    assert await sent(client, u["newcomer"]) == []


async def test_an_invite_by_email_finds_the_user_in_any_case_with_the_default_expiry(
    client: Any, task_tree: TaskTree
) -> None:
    u, leaf = task_tree.users, task_tree.tasks["leaf"]["id"]
    body = {"task_id": leaf, "email": u["newcomer"]["email"].upper(), "role": "maintainer",
            "expires_at": None}  # fmt: skip
    response = await client.post("/invites", json=body, headers=u["owner"]["headers"])
    assert response.status == 201, await response.text()
    made = await response.json()
    assert made["invitee_id"] == u["newcomer"]["id"]
    assert moment(made["expires_at"]) - moment(made["created_at"]) == timedelta(days=7)


async def test_an_unknown_email_is_422_and_creates_no_account(
    client: Any, task_tree: TaskTree
) -> None:
    owner, leaf = task_tree.users["owner"], task_tree.tasks["leaf"]["id"]
    email = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    body = {"task_id": leaf, "email": email, "role": "collaborator"}
    problem = await assert_problem(
        await client.post("/invites", json=body, headers=owner["headers"]), 422
    )
    assert set(problem["errors"]) == {"email"}
    assert await sent(client, owner) == []
    # The address is still free: no account was made for it.
    registered = await client.post("/users", json={"name": "Later", "email": email})
    assert registered.status == 201, await registered.text()
    unknown = {"task_id": leaf, "user_id": str(uuid.uuid4()), "role": "collaborator"}
    problem = await assert_problem(
        await client.post("/invites", json=unknown, headers=owner["headers"]), 422
    )
    assert set(problem["errors"]) == {"user_id"}


@pytest.mark.parametrize("by", ["email", "user_id"])
async def test_an_invite_racing_the_deletion_of_its_invitee_is_422_on_the_field_sent(
    client: Any, task_tree: TaskTree, by: str
) -> None:
    """Review finding: a user deleted between the invitee lookup and the INSERT made the
    foreign key fail, answered 422 on user_id even to a request that named the user by
    email. The request is answered on the field it used, as for a user who never existed."""
    owner, newcomer = task_tree.users["owner"], task_tree.users["newcomer"]
    leaf = task_tree.tasks["leaf"]["id"]
    body = {"task_id": leaf, by: newcomer["email" if by == "email" else "id"],
            "role": "collaborator"}  # fmt: skip
    response = await racing_a_deletion(
        client,
        ("DELETE FROM users WHERE id = $1", uuid.UUID(newcomer["id"])),
        lambda: client.post("/invites", json=body, headers=owner["headers"]),
        "POST /invites",
    )
    assert set((await assert_problem(response, 422))["errors"]) == {by}
    sent = await client.get(f"/invites/sent/{owner['id']}", headers=owner["headers"])
    assert (await sent.json())["items"] == []


@pytest.mark.parametrize(
    "offset",
    [timedelta(seconds=-1), timedelta(days=-2), timedelta(days=30, minutes=1), timedelta(days=365)],
)
async def test_an_expiry_in_the_past_or_beyond_30_days_is_422(
    client: Any, task_tree: TaskTree, offset: timedelta
) -> None:
    u, leaf = task_tree.users, task_tree.tasks["leaf"]["id"]
    expires = (datetime.now(UTC) + offset).isoformat()
    body = {"task_id": leaf, "user_id": u["newcomer"]["id"], "role": "collaborator",
            "expires_at": expires}  # fmt: skip
    problem = await assert_problem(
        await client.post("/invites", json=body, headers=u["owner"]["headers"]), 422
    )
    assert set(problem["errors"]) == {"expires_at"}
    assert await received(client, u["newcomer"]) == []


async def test_an_expiry_within_30_days_is_kept_and_without_offset_is_utc(
    client: Any, task_tree: TaskTree
) -> None:
    u, t = task_tree.users, task_tree.tasks
    later = (datetime.now(UTC) + timedelta(days=29, hours=23)).replace(microsecond=0)
    made = await invite(client, u["owner"], t["leaf"]["id"], u["newcomer"],
                        expires_at=later.isoformat())  # fmt: skip
    assert moment(made["expires_at"]) == later
    naive = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0, tzinfo=None)
    other = await invite(client, u["owner"], t["sibling"]["id"], u["newcomer"],
                         expires_at=naive.isoformat())  # fmt: skip
    assert other["expires_at"] == naive.isoformat() + "Z"


async def test_accepting_grants_the_role_at_once(
    client: Any, task_tree: TaskTree, invited: dict[str, Any]
) -> None:
    u, t = task_tree.users, task_tree.tasks
    newcomer = u["newcomer"]
    assert await role_on(client, newcomer, t["leaf"]["id"]) is None
    done = await answered(client, newcomer, invited["id"], "accepted")
    assert done["status"] == "accepted"
    assert moment(done["created_at"]) <= moment(done["responded_at"]) < moment(done["expires_at"])
    assert {k: v for k, v in done.items() if k not in ("status", "responded_at")} == {
        k: v for k, v in invited.items() if k not in ("status", "responded_at")
    }
    assert await role_on(client, newcomer, t["leaf"]["id"]) == "collaborator"
    assert await role_on(client, newcomer, t["mid"]["id"]) is None  # the leaf only
    assert await received(client, newcomer) == [done]
    assert await sent(client, u["maintainer"]) == [done]


async def test_rejecting_grants_nothing(
    client: Any, task_tree: TaskTree, invited: dict[str, Any]
) -> None:
    newcomer = task_tree.users["newcomer"]
    done = await answered(client, newcomer, invited["id"], "rejected")
    assert done["status"] == "rejected" and done["responded_at"] is not None
    assert await role_on(client, newcomer, task_tree.tasks["leaf"]["id"]) is None
    assert [i["status"] for i in await received(client, newcomer)] == ["rejected"]


async def test_revoking_leaves_nothing_to_accept(
    client: Any, task_tree: TaskTree, invited: dict[str, Any]
) -> None:
    u = task_tree.users
    done = await answered(client, u["maintainer"], invited["id"], "revoked")
    assert done["status"] == "revoked" and done["responded_at"] is not None
    problem = await assert_problem(
        await answer(client, u["newcomer"], invited["id"], "accepted"), 409
    )
    assert "revoked" in problem["detail"]
    assert await role_on(client, u["newcomer"], task_tree.tasks["leaf"]["id"]) is None
    assert [i["status"] for i in await received(client, u["newcomer"])] == ["revoked"]


@pytest.mark.parametrize("first", ["accepted", "rejected", "revoked"])
async def test_an_answered_invite_cannot_be_answered_again(
    client: Any, task_tree: TaskTree, invited: dict[str, Any], first: str
) -> None:
    u = task_tree.users
    by = {"accepted": u["newcomer"], "rejected": u["newcomer"], "revoked": u["owner"]}
    await answered(client, by[first], invited["id"], first)
    for second in ("accepted", "rejected", "revoked"):
        problem = await assert_problem(await answer(client, by[second], invited["id"], second), 409)
        assert first in problem["detail"]
    [now] = await received(client, u["newcomer"])
    assert now["status"] == first


async def test_an_expired_invite_reads_expired_cannot_be_answered_and_blocks_nothing(
    client: Any, task_tree: TaskTree
) -> None:
    u, leaf = task_tree.users, task_tree.tasks["leaf"]["id"]
    newcomer, maintainer = u["newcomer"], u["maintainer"]
    expires = datetime.now(UTC) + timedelta(seconds=2)
    old = await invite(client, maintainer, leaf, newcomer, expires_at=expires.isoformat())
    assert old["status"] == "pending"
    # While it is pending it blocks a second invite, whatever the role.
    again = {"task_id": leaf, "user_id": newcomer["id"], "role": "maintainer"}
    await assert_problem(
        await client.post("/invites", json=again, headers=maintainer["headers"]), 409
    )
    await asyncio.sleep((expires - datetime.now(UTC)).total_seconds() + 0.2)
    assert [i["status"] for i in await received(client, newcomer)] == ["expired"]
    assert [i["status"] for i in await sent(client, maintainer)] == ["expired"]
    assert [i["id"] for i in await received(client, newcomer, status="expired")] == [old["id"]]
    assert await received(client, newcomer, status="pending") == []
    for by, status in ((newcomer, "accepted"), (newcomer, "rejected"), (maintainer, "revoked")):
        problem = await assert_problem(await answer(client, by, old["id"], status), 409)
        assert "expired" in problem["detail"]
    assert await role_on(client, newcomer, leaf) is None
    # It blocks nothing: a new invite is made, and accepted.
    new = await invite(client, maintainer, leaf, newcomer, role="maintainer")
    assert [(i["id"], i["status"]) for i in await received(client, newcomer)] == [
        (new["id"], "pending"), (old["id"], "expired"),
    ]  # fmt: skip
    await answered(client, newcomer, new["id"], "accepted")
    assert await role_on(client, newcomer, leaf) == "maintainer"


async def test_a_pending_invite_blocks_another_for_the_same_user_and_task(
    client: Any, task_tree: TaskTree, invited: dict[str, Any]
) -> None:
    u, t = task_tree.users, task_tree.tasks
    for role in ("collaborator", "maintainer"):
        body = {"task_id": t["leaf"]["id"], "user_id": u["newcomer"]["id"], "role": role}
        problem = await assert_problem(
            await client.post("/invites", json=body, headers=u["owner"]["headers"]), 409
        )
        assert "pending" in problem["detail"]
    # Another task, or another user, is another invite.
    await invite(client, u["owner"], t["sibling"]["id"], u["newcomer"])
    await invite(client, u["owner"], t["leaf"]["id"], u["outsider"])
    assert len(await received(client, u["newcomer"])) == 2


async def test_racing_creates_of_one_invite_make_exactly_one(
    client: Any, task_tree: TaskTree
) -> None:
    u, leaf = task_tree.users, task_tree.tasks["leaf"]["id"]
    bodies = [
        {"task_id": leaf, "user_id": u["newcomer"]["id"], "role": role}
        for role in ("collaborator", "maintainer") * 4
    ]
    inviters = [u["owner"], u["inherited"], u["maintainer"], u["owner"]] * 2
    answers = await asyncio.gather(
        *(
            client.post("/invites", json=body, headers=by["headers"])
            for body, by in zip(bodies, inviters, strict=True)
        )
    )
    assert sorted(r.status for r in answers) == [201] + [409] * 7
    [made] = [await r.json() for r in answers if r.status == 201]
    assert await received(client, u["newcomer"]) == [made]


async def test_racing_accepts_grant_once(
    client: Any, task_tree: TaskTree, invited: dict[str, Any]
) -> None:
    u = task_tree.users
    answers = await asyncio.gather(
        *(answer(client, u["newcomer"], invited["id"], "accepted") for _ in range(6))
    )
    assert sorted(r.status for r in answers) == [200] + [409] * 5
    # The inviter hears of it once.
    told = [n for n in await notifications(client, u["maintainer"]) if n["type"] == "invite"]
    assert [n["data"]["action"] for n in told] == ["accepted"]
    assert await role_on(client, u["newcomer"], task_tree.tasks["leaf"]["id"]) == "collaborator"


async def test_accept_racing_revoke_has_exactly_one_winner(
    client: Any, task_tree: TaskTree
) -> None:
    u, leaf = task_tree.users, task_tree.tasks["leaf"]["id"]
    for _ in range(5):
        guest = await register(client, "Guest")
        made = await invite(client, u["maintainer"], leaf, guest)
        accept, revoke = await asyncio.gather(
            answer(client, guest, made["id"], "accepted"),
            answer(client, u["owner"], made["id"], "revoked"),
        )
        assert sorted((accept.status, revoke.status)) == [200, 409]
        winner = "accepted" if accept.status == 200 else "revoked"
        assert (await (accept if accept.status == 200 else revoke).json())["status"] == winner
        [now] = await received(client, guest)
        assert now["status"] == winner
        expected_role = "collaborator" if winner == "accepted" else None
        assert await role_on(client, guest, leaf) == expected_role


@pytest.mark.parametrize(
    ("invitee", "role", "status"),
    [
        ("maintainer", "maintainer", 409),  # a maintainer of the leaf itself
        ("maintainer", "collaborator", 409),  # a higher role is held
        ("inherited", "maintainer", 409),  # maintainer of mid, so of the leaf
        ("inherited", "collaborator", 409),
        ("collaborator", "collaborator", 409),  # collaborator of mid, so of the leaf
        ("collaborator", "maintainer", 201),  # an upgrade is an invite
        ("outsider", "collaborator", 201),
    ],
)
async def test_who_already_holds_the_role_cannot_be_invited_to_it(
    client: Any, task_tree: TaskTree, invitee: str, role: str, status: int
) -> None:
    u, leaf = task_tree.users, task_tree.tasks["leaf"]["id"]
    body = {"task_id": leaf, "user_id": u[invitee]["id"], "role": role}
    response = await client.post("/invites", json=body, headers=u["owner"]["headers"])
    assert response.status == status, await response.text()
    if status == 409:
        assert "already" in (await assert_problem(response, 409))["detail"]
    assert len(await received(client, u[invitee])) == (status == 201)


async def test_the_event_owner_is_a_maintainer_without_any_stored_role(
    client: Any, task_tree: TaskTree
) -> None:
    u, t = task_tree.users, task_tree.tasks
    owner = u["owner"]
    for name in ("root", "mid", "leaf"):  # the owner created them: drop those roles
        gone = await client.delete(
            f"/tasks/{t[name]['id']}/collaborators/{owner['id']}", headers=owner["headers"]
        )
        assert gone.status == 204
    for role in ("maintainer", "collaborator"):
        body = {"task_id": t["leaf"]["id"], "user_id": owner["id"], "role": role}
        await assert_problem(
            await client.post("/invites", json=body, headers=u["inherited"]["headers"]), 409
        )
    assert await received(client, owner) == []


async def test_accepting_upgrades_an_inherited_or_direct_collaborator(
    client: Any, task_tree: TaskTree
) -> None:
    u, t = task_tree.users, task_tree.tasks
    leaf, mid = t["leaf"]["id"], t["mid"]["id"]
    collaborator = u["collaborator"]  # collaborator of mid, so of the leaf
    made = await invite(client, u["owner"], leaf, collaborator, role="maintainer")
    await answered(client, collaborator, made["id"], "accepted")
    assert await role_on(client, collaborator, leaf) == "maintainer"
    assert await role_on(client, collaborator, mid) == "collaborator"
    # A direct collaborator's row is raised, not doubled.
    newcomer = u["newcomer"]
    await add_role(client, u["owner"], leaf, newcomer, "collaborator")
    made = await invite(client, u["owner"], leaf, newcomer, role="maintainer")
    await answered(client, newcomer, made["id"], "accepted")
    members = await (
        await client.get(f"/tasks/{leaf}/collaborators", headers=u["owner"]["headers"])
    ).json()
    mine = [(m["role"], m["task_id"]) for m in members["items"] if m["user_id"] == newcomer["id"]]
    assert mine == [("maintainer", leaf)]


async def test_accepting_never_lowers_a_role_granted_meanwhile(
    client: Any, task_tree: TaskTree, invited: dict[str, Any]
) -> None:
    u, leaf = task_tree.users, task_tree.tasks["leaf"]["id"]
    await add_role(client, u["owner"], leaf, u["newcomer"], "maintainer")
    done = await answered(client, u["newcomer"], invited["id"], "accepted")
    assert (done["role"], done["status"]) == ("collaborator", "accepted")
    assert await role_on(client, u["newcomer"], leaf) == "maintainer"


async def test_an_inviter_who_lost_the_role_may_still_revoke(
    client: Any, task_tree: TaskTree, invited: dict[str, Any]
) -> None:
    u, leaf = task_tree.users, task_tree.tasks["leaf"]["id"]
    maintainer = u["maintainer"]
    dropped = await client.delete(
        f"/tasks/{leaf}/collaborators/{maintainer['id']}", headers=maintainer["headers"]
    )
    assert dropped.status == 204
    await assert_problem(await answer(client, maintainer, invited["id"], "accepted"), 403)
    await answered(client, maintainer, invited["id"], "revoked")


def invite_notice(invite_id: str, task_id: str, role: str, action: str, actor: str) -> Any:
    return {"invite_id": invite_id, "task_id": task_id, "role": role, "action": action,
            "actor_id": actor}  # fmt: skip


async def test_notifications_go_to_the_other_side_and_never_to_the_actor(
    client: Any, task_tree: TaskTree
) -> None:
    u, t = task_tree.users, task_tree.tasks
    leaf = t["leaf"]["id"]
    newcomer, maintainer, owner = u["newcomer"], u["maintainer"], u["owner"]
    before = {name: len(await notifications(client, who)) for name, who in u.items()}
    to_invitee = await user_stream(client, newcomer)
    to_inviter = await user_stream(client, maintainer)

    made = await invite(client, maintainer, leaf, newcomer)
    [frame] = await to_invitee.take(1)
    created = invite_notice(made["id"], leaf, "collaborator", "created", maintainer["id"])
    assert frame.event == "invite" and json.loads(frame.data)["data"] == created
    assert (await notifications(client, newcomer))[0]["data"] == created

    await answered(client, newcomer, made["id"], "accepted")
    [frame] = await to_inviter.take(1)
    accepted = invite_notice(made["id"], leaf, "collaborator", "accepted", newcomer["id"])
    assert frame.event == "invite" and json.loads(frame.data)["data"] == accepted
    assert (await notifications(client, maintainer))[0]["data"] == accepted

    second = await invite(client, maintainer, leaf, newcomer, role="maintainer")
    await answered(client, newcomer, second["id"], "rejected")
    [frame] = await to_inviter.take(1)
    assert json.loads(frame.data)["data"]["action"] == "rejected"

    # Revoked by a maintainer who is not the inviter: the invitee is told, by whom.
    third = await invite(client, maintainer, leaf, newcomer, role="maintainer")
    await answered(client, owner, third["id"], "revoked")
    frames = await to_invitee.take(3)  # created (second), created (third), revoked
    assert [json.loads(f.data)["data"]["action"] for f in frames] == [
        "created",
        "created",
        "revoked",
    ]
    assert json.loads(frames[-1].data)["data"] == invite_notice(
        third["id"], leaf, "maintainer", "revoked", owner["id"]
    )
    after = {name: len(await notifications(client, who)) for name, who in u.items()}
    gained = {name: after[name] - before[name] for name in u}
    # newcomer: 3 created + 1 revoked; maintainer: accepted + rejected; nobody else anything.
    assert gained == {"owner": 0, "inherited": 0, "maintainer": 2, "collaborator": 0,
                      "outsider": 0, "newcomer": 4}  # fmt: skip


async def test_an_invitee_who_became_a_maintainer_revokes_without_telling_itself(
    client: Any, task_tree: TaskTree, invited: dict[str, Any]
) -> None:
    u, leaf = task_tree.users, task_tree.tasks["leaf"]["id"]
    await add_role(client, u["owner"], leaf, u["newcomer"], "maintainer")
    count = len(await notifications(client, u["newcomer"]))  # created, added
    await answered(client, u["newcomer"], invited["id"], "revoked")
    assert len(await notifications(client, u["newcomer"])) == count
    told = [n for n in await notifications(client, u["maintainer"]) if n["type"] == "invite"]
    assert told == []


async def test_deleting_a_task_or_its_event_removes_its_invites(
    client: Any, task_tree: TaskTree, invited: dict[str, Any]
) -> None:
    u, t = task_tree.users, task_tree.tasks
    on_sibling = await invite(client, u["owner"], t["sibling"]["id"], u["newcomer"])
    gone = await client.delete(f"/tasks/{t['mid']['id']}", headers=u["owner"]["headers"])
    assert gone.status == 204
    assert [i["id"] for i in await received(client, u["newcomer"])] == [on_sibling["id"]]
    assert await sent(client, u["maintainer"]) == []
    await assert_problem(await answer(client, u["newcomer"], invited["id"], "accepted"), 404)
    deleted = await client.delete(f"/events/{task_tree.event_id}", headers=u["owner"]["headers"])
    assert deleted.status == 204
    assert await received(client, u["newcomer"]) == []
    assert await sent(client, u["owner"]) == []


async def test_deleting_users_deletes_received_invites_and_keeps_sent_ones(
    client: Any, task_tree: TaskTree, invited: dict[str, Any]
) -> None:
    u, leaf = task_tree.users, task_tree.tasks["leaf"]["id"]
    outsider = u["outsider"]
    await invite(client, u["maintainer"], leaf, outsider)
    assert (
        await client.delete(f"/users/{outsider['id']}", headers=outsider["headers"])
    ).status == 204
    assert [i["id"] for i in await sent(client, u["maintainer"])] == [invited["id"]]
    # The inviter leaves: its invite stays, pending, answerable; nobody is told.
    maintainer = u["maintainer"]
    assert (
        await client.delete(f"/users/{maintainer['id']}", headers=maintainer["headers"])
    ).status == 204
    [kept] = await received(client, u["newcomer"])
    assert (kept["id"], kept["inviter_id"], kept["status"]) == (invited["id"], None, "pending")
    done = await answered(client, u["newcomer"], invited["id"], "accepted")
    assert done["inviter_id"] is None
    assert await role_on(client, u["newcomer"], leaf) == "collaborator"


async def test_lists_page_newest_first_and_filter_by_status(
    client: Any, task_tree: TaskTree
) -> None:
    u, t = task_tree.users, task_tree.tasks
    owner, newcomer = u["owner"], u["newcomer"]
    made = {name: await invite(client, owner, t[name]["id"], newcomer)
            for name in ("leaf", "sibling", "mid", "root")}  # fmt: skip
    newest_first = [made[n]["id"] for n in ("root", "mid", "sibling", "leaf")]
    for kind, who in (("received", newcomer), ("sent", owner)):
        first = await client.get(f"/invites/{kind}/{who['id']}?limit=3", headers=who["headers"])
        page = await first.json()
        assert [i["id"] for i in page["items"]] == newest_first[:3] and page["next"]
        rest = await client.get(
            f"/invites/{kind}/{who['id']}", params={"limit": "3", "cursor": page["next"]},
            headers=who["headers"],
        )  # fmt: skip
        page = await rest.json()
        assert [i["id"] for i in page["items"]] == newest_first[3:] and page["next"] is None
        assert [i["id"] for i in await listed(client, kind, who, limit="1")] == newest_first
    await answered(client, newcomer, made["leaf"]["id"], "accepted")
    await answered(client, newcomer, made["sibling"]["id"], "rejected")
    await answered(client, owner, made["mid"]["id"], "revoked")
    expected = {"accepted": ["leaf"], "rejected": ["sibling"], "revoked": ["mid"],
                "pending": ["root"], "expired": []}  # fmt: skip
    for status, names in expected.items():
        for kind, who in (("received", newcomer), ("sent", owner)):
            found = await listed(client, kind, who, status=status, limit="1")
            assert [i["id"] for i in found] == [made[n]["id"] for n in names], (kind, status)


BAD_CREATES = [
    ({"task_id": "nope"}, {"task_id"}),
    ({"task_id": 5}, {"task_id"}),
    ({"task_id": None}, {"task_id"}),
    ({"user_id": "not-a-uuid"}, {"user_id"}),
    ({"user_id": ["{user}"]}, {"user_id"}),
    ({"email": "{email}"}, {"user_id", "email"}),  # both
    ({"user_id": None}, {"user_id"}),
    ({"email": "not-an-email", "user_id": "<drop>"}, {"email"}),
    ({"email": "a" * 400 + "@example.com", "user_id": "<drop>"}, {"email"}),
    ({"email": 5, "user_id": "<drop>"}, {"email"}),
    ({"user_id": "<drop>"}, {"user_id", "email"}),  # neither
    ({"role": "owner"}, {"role"}),
    ({"role": "Maintainer"}, {"role"}),
    ({"role": "x" * 100_000}, {"role"}),
    ({"role": "collaborator\x00"}, {"role"}),
    ({"role": 1}, {"role"}),
    ({"role": None}, {"role"}),
    ({"role": "<drop>"}, {"role"}),
    ({"expires_at": "tomorrow"}, {"expires_at"}),
    ({"expires_at": 1_700_000_000}, {"expires_at"}),
    ({"expires_at": "0001-01-01T00:00:00+01:00"}, {"expires_at"}),
    ({"expires_at": "2030-01-01T00:00:00\x00"}, {"expires_at"}),
    ({"message": "join us"}, {"message"}),
]


@pytest.mark.parametrize(("change", "fields"), BAD_CREATES)
async def test_bad_invite_bodies_are_422_naming_the_field(
    client: Any, task_tree: TaskTree, change: dict[str, Any], fields: set[str]
) -> None:
    u = task_tree.users
    newcomer = u["newcomer"]
    body: dict[str, Any] = {"task_id": task_tree.tasks["leaf"]["id"], "user_id": newcomer["id"],
                            "role": "collaborator"}  # fmt: skip
    for key, value in change.items():
        if value == "<drop>":
            body.pop(key)
        elif isinstance(value, str):
            body[key] = value.format(user=newcomer["id"], email=newcomer["email"])
        elif isinstance(value, list):
            body[key] = [v.format(user=newcomer["id"]) for v in value]
        else:
            body[key] = value
    response = await client.post("/invites", json=body, headers=u["owner"]["headers"])
    problem = await assert_problem(response, 422)
    assert set(problem["errors"]) == fields
    assert await received(client, newcomer) == []


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"status"}),
        ({"status": "pending"}, {"status"}),
        ({"status": "expired"}, {"status"}),
        ({"status": "ACCEPTED"}, {"status"}),
        ({"status": "accepted "}, {"status"}),
        ({"status": 1}, {"status"}),
        ({"status": None}, {"status"}),
        ({"status": ["accepted"]}, {"status"}),
        ({"status": True}, {"status"}),
        ({"status": "a" * 100_000}, {"status"}),
        ({"status": "accepted", "role": "maintainer"}, {"role"}),
    ],
)
async def test_bad_answers_are_422_and_change_nothing(
    client: Any, task_tree: TaskTree, invited: dict[str, Any], body: Any, fields: set[str]
) -> None:
    newcomer = task_tree.users["newcomer"]
    response = await client.patch(
        f"/invites/{invited['id']}", json=body, headers=newcomer["headers"]
    )
    assert set((await assert_problem(response, 422))["errors"]) == fields
    assert [i["status"] for i in await received(client, newcomer)] == ["pending"]


@pytest.mark.parametrize("raw", [b'{"status": "accepted"', b"[]", b'"accepted"'])
async def test_an_answer_that_is_not_a_json_object_is_400(
    client: Any, task_tree: TaskTree, invited: dict[str, Any], raw: bytes
) -> None:
    response = await client.patch(
        f"/invites/{invited['id']}", data=raw,
        headers={**task_tree.users["newcomer"]["headers"], "Content-Type": "application/json"},
    )  # fmt: skip
    await assert_problem(response, 400)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "bogus"}, "status"),
        ({"status": ""}, "status"),
        ({"status": "PENDING"}, "status"),
        ({"status": "x" * 5000}, "status"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "junk"}, "cursor"),
        ({"cursor": "eyJjcmVhdGVkIjoieCIsImlkIjoieSJ9"}, "cursor"),  # {"created":"x","id":"y"}
        ({"cursor": "eyJiZWZvcmUiOjF9"}, "cursor"),  # {"before":1}
    ],
)
async def test_bad_list_queries_are_422_naming_the_parameter(
    client: Any, task_tree: TaskTree, query: dict[str, str], field: str
) -> None:
    newcomer = task_tree.users["newcomer"]
    for kind in ("received", "sent"):
        response = await client.get(
            f"/invites/{kind}/{newcomer['id']}", params=query, headers=newcomer["headers"]
        )
        assert set((await assert_problem(response, 422))["errors"]) == {field}


async def test_an_invite_to_a_task_elsewhere_needs_a_maintainer_there(client: Any) -> None:
    ada = await register(client, "Ada")
    bob = await register(client, "Bob")
    event = await create_event(client, ada)
    task = await create_task(client, ada, event["id"], 30)
    body = {"task_id": task["id"], "user_id": ada["id"], "role": "collaborator"}
    await assert_problem(await client.post("/invites", json=body, headers=bob["headers"]), 404)


async def test_the_invite_statements_use_their_indexes(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        users = [
            r["id"]
            for r in await conn.fetch(
                "INSERT INTO users (name, email) SELECT 'u' || i, 'u' || i || '@example.com' "
                "FROM generate_series(1, 5000) AS i RETURNING id"
            )
        ]
        event = await conn.fetchval(
            "INSERT INTO events (user_id, title, start_date, end_date) "
            "VALUES ($1, 'e', now(), now()) RETURNING id",
            users[0],
        )
        tasks = [
            r["id"]
            for r in await conn.fetch(
                "INSERT INTO tasks (event_id, title, duration_minutes) "
                "SELECT $1, 't' || i, 60 FROM generate_series(1, 100) AS i RETURNING id",
                event,
            )
        ]
        # 100,000 invites: every user receives and sends 20, over 100 tasks.
        await conn.execute(
            "INSERT INTO invites (task_id, inviter_id, invitee_id, role, expires_at, created_at) "
            "SELECT t.id, i.id, e.id, 'collaborator', now() + interval '1 day', "
            "       now() - (n || ' seconds')::interval "
            "FROM generate_series(0, 99999) AS n "
            "JOIN unnest($1::uuid[]) WITH ORDINALITY AS t (id, k) ON t.k = n % 100 + 1 "
            "JOIN unnest($2::uuid[]) WITH ORDINALITY AS i (id, k) ON i.k = n % 5000 + 1 "
            "JOIN unnest($2::uuid[]) WITH ORDINALITY AS e (id, k) ON e.k = (n * 7 + 1) % 5000 + 1",
            tasks,
            users,
        )
        await conn.execute("ANALYZE")
        someone, invite_id = users[42], await conn.fetchval("SELECT id FROM invites LIMIT 1")
        newest = {"before_created": datetime.max.replace(tzinfo=UTC),
                  "before_id": uuid.UUID(int=2**128 - 1), "max_rows": 51}  # fmt: skip
        for name, params, index in [
            ("invites.list_received_invites", {"user_id": someone, "status": None, **newest},
             "invites_invitee_id_created_at_idx"),
            ("invites.list_received_invites", {"user_id": someone, "status": "pending", **newest},
             "invites_invitee_id_created_at_idx"),
            ("invites.list_sent_invites", {"user_id": someone, "status": None, **newest},
             "invites_inviter_id_created_at_idx"),
            ("invites.has_live_pending_invite", {"task_id": tasks[3], "invitee_id": someone},
             "invites_task_id_invitee_id_idx"),
            ("invites.get_invite_access", {"invite_id": invite_id, "caller_id": someone},
             "invites_pkey"),
            ("invites.answer_invite", {"invite_id": invite_id, "status": "rejected"},
             "invites_pkey"),
            ("invites.lock_invite_task", {"invite_id": invite_id}, "invites_pkey"),
        ]:  # fmt: skip
            await assert_uses_index(conn, name, params, index, "invites")
        for params, index in (
            ({"user_id": someone, "email": None}, "users_pkey"),
            ({"user_id": None, "email": "U42@example.com"}, "users_email_key"),
        ):
            await assert_uses_index(conn, "invites.find_invitee", params, index, "users")
    finally:
        await conn.close()
