"""The access policy as pure decisions (server/policy.py)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from server.errors import Forbidden
from server.policy import (
    FORBIDDEN_MESSAGES,
    Action,
    CommentFacts,
    Decision,
    EventFacts,
    InviteFacts,
    StoryFacts,
    comment_decision,
    enforce,
    event_decision,
    forbidden_message,
    invite_decision,
    story_decision,
    user_decision,
)

OWNER, MEMBER, STRANGER = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
INVITER, INVITEE = uuid.uuid4(), uuid.uuid4()


@pytest.mark.parametrize(
    ("caller", "action", "expected"),
    [
        (OWNER, Action.READ, Decision.ALLOW),
        (OWNER, Action.UPDATE, Decision.ALLOW),
        (OWNER, Action.DELETE, Decision.ALLOW),
        (OWNER, Action.LIST_TASKS, Decision.ALLOW),
        (MEMBER, Action.READ, Decision.ALLOW),
        (MEMBER, Action.LIST_TASKS, Decision.ALLOW),
        (MEMBER, Action.UPDATE, Decision.FORBIDDEN),
        (MEMBER, Action.DELETE, Decision.FORBIDDEN),
        (STRANGER, Action.READ, Decision.HIDDEN),
        (STRANGER, Action.UPDATE, Decision.HIDDEN),
        (STRANGER, Action.DELETE, Decision.HIDDEN),
    ],
)
def test_event_decisions(caller: uuid.UUID, action: Action, expected: Decision) -> None:
    facts = EventFacts(owner_id=OWNER, caller_is_member=caller == MEMBER)
    assert event_decision(caller, facts, action) is expected


@pytest.mark.parametrize(
    ("caller", "action", "expected"),
    [
        (OWNER, Action.READ, Decision.ALLOW),
        (STRANGER, Action.READ, Decision.ALLOW),
        (OWNER, Action.UPDATE, Decision.ALLOW),
        (STRANGER, Action.UPDATE, Decision.FORBIDDEN),
        (STRANGER, Action.DELETE, Decision.FORBIDDEN),
        (STRANGER, Action.LIST_EVENTS, Decision.FORBIDDEN),
        (OWNER, Action.LIST_EVENTS, Decision.ALLOW),
    ],
)
def test_user_decisions(caller: uuid.UUID, action: Action, expected: Decision) -> None:
    assert user_decision(caller, OWNER, action) is expected


ANSWER, REVOKE = Action.ANSWER_INVITE, Action.REVOKE_INVITE
ALLOW, FORBIDDEN, HIDDEN = Decision.ALLOW, Decision.FORBIDDEN, Decision.HIDDEN


@pytest.mark.parametrize(
    ("caller", "caller_role", "inviter", "answer", "revoke"),
    [
        (INVITEE, None, INVITER, ALLOW, FORBIDDEN),
        (INVITEE, "collaborator", INVITER, ALLOW, FORBIDDEN),
        (INVITEE, "maintainer", INVITER, ALLOW, ALLOW),  # made a maintainer since
        (INVITER, "maintainer", INVITER, FORBIDDEN, ALLOW),
        (INVITER, None, INVITER, FORBIDDEN, ALLOW),  # lost its role since: still the inviter
        (MEMBER, "maintainer", INVITER, FORBIDDEN, ALLOW),  # any maintainer, inherited or owner
        (MEMBER, "collaborator", INVITER, HIDDEN, HIDDEN),
        (STRANGER, None, INVITER, HIDDEN, HIDDEN),
        (MEMBER, "maintainer", None, FORBIDDEN, ALLOW),  # the inviter deleted its account
        (STRANGER, None, None, HIDDEN, HIDDEN),
    ],
)
def test_invite_decisions(
    caller: uuid.UUID,
    caller_role: str | None,
    inviter: uuid.UUID | None,
    answer: Decision,
    revoke: Decision,
) -> None:
    facts = InviteFacts(invitee_id=INVITEE, inviter_id=inviter, caller_role=caller_role)
    assert invite_decision(caller, facts, ANSWER) is answer
    assert invite_decision(caller, facts, REVOKE) is revoke


@pytest.mark.parametrize(
    ("what", "action", "decide"),
    [
        ("user", action, lambda a: user_decision(STRANGER, OWNER, a))
        for action in (
            Action.UPDATE,
            Action.DELETE,
            Action.LIST_EVENTS,
            Action.READ_NOTIFICATIONS,
            Action.OPEN_STREAM,
        )
    ]
    + [
        ("event", action, lambda a: event_decision(MEMBER, EventFacts(OWNER, True), a))
        for action in (Action.UPDATE, Action.DELETE)
    ]
    + [
        ("user", action, lambda a: user_decision(STRANGER, OWNER, a))
        for action in (Action.LIST_RECEIVED_INVITES, Action.LIST_SENT_INVITES)
    ]
    + [
        (
            "invite",
            Action.ANSWER_INVITE,
            lambda a: invite_decision(INVITER, InviteFacts(INVITEE, INVITER, "maintainer"), a),
        ),
        (
            "invite",
            Action.REVOKE_INVITE,
            lambda a: invite_decision(INVITEE, InviteFacts(INVITEE, INVITER, None), a),
        ),
    ],
)
def test_every_refusal_has_words_that_fit_its_action(
    what: str, action: Action, decide: Any
) -> None:
    assert decide(action) is Decision.FORBIDDEN
    assert (what, action) in FORBIDDEN_MESSAGES
    with pytest.raises(Forbidden) as refused:
        enforce(Decision.FORBIDDEN, what, action)
    assert refused.value.status == 403
    assert refused.value.detail == forbidden_message(what, action)
    assert "but not do that" not in refused.value.detail
    assert len(set(FORBIDDEN_MESSAGES.values())) == len(FORBIDDEN_MESSAGES)


async def test_refusals_say_what_was_refused(client: Any) -> None:
    from .helpers import register

    ada = await register(client)
    bob = await register(client)
    expected = {
        ("GET", f"/notifications/{bob['id']}"): "you may only read your own notifications",
        ("GET", f"/sse/{bob['id']}"): "you may only open your own notification stream",
        ("GET", f"/users/{bob['id']}/events"): "you may only list your own events",
        ("PUT", f"/users/{bob['id']}"): "you may only change your own account",
        ("DELETE", f"/users/{bob['id']}"): "you may only delete your own account",
        ("GET", f"/invites/received/{bob['id']}"): "you may only list the invites you received",
        ("GET", f"/invites/sent/{bob['id']}"): "you may only list the invites you sent",
    }
    for (method, path), detail in expected.items():
        response = await client.request(method, path, json={}, headers=ada["headers"])
        assert response.status == 403, (method, path)
        assert (await response.json())["detail"] == detail, (method, path)


@pytest.mark.parametrize(
    ("role", "is_author", "action", "expected"),
    [
        (None, False, Action.READ, Decision.HIDDEN),
        (None, True, Action.DELETE, Decision.HIDDEN),  # a former member, still the author
        ("collaborator", False, Action.READ, Decision.ALLOW),
        ("collaborator", False, Action.UPDATE, Decision.ALLOW),
        ("collaborator", False, Action.DELETE, Decision.FORBIDDEN),
        ("collaborator", True, Action.DELETE, Decision.ALLOW),
        ("maintainer", False, Action.DELETE, Decision.ALLOW),
    ],
)
def test_story_decisions(
    role: str | None, is_author: bool, action: Action, expected: Decision
) -> None:
    assert story_decision(StoryFacts(role, is_author), action) is expected
    if expected is Decision.FORBIDDEN:
        with pytest.raises(Forbidden, match="author or a maintainer"):
            enforce(expected, "story", action)


@pytest.mark.parametrize(
    ("role", "is_author", "action", "expected"),
    [
        (None, True, Action.READ, Decision.HIDDEN),  # a former member, still the author
        (None, True, Action.UPDATE, Decision.HIDDEN),
        ("collaborator", False, Action.READ, Decision.ALLOW),
        ("collaborator", False, Action.UPDATE, Decision.FORBIDDEN),
        ("collaborator", True, Action.UPDATE, Decision.ALLOW),
        ("maintainer", False, Action.UPDATE, Decision.FORBIDDEN),  # the author's words only
        ("collaborator", False, Action.DELETE, Decision.FORBIDDEN),
        ("collaborator", True, Action.DELETE, Decision.ALLOW),
        ("maintainer", False, Action.DELETE, Decision.ALLOW),
    ],
)
def test_comment_decisions(
    role: str | None, is_author: bool, action: Action, expected: Decision
) -> None:
    assert comment_decision(CommentFacts(role, is_author), action) is expected
    if expected is Decision.FORBIDDEN:
        with pytest.raises(Forbidden, match="author"):
            enforce(expected, "comment", action)
