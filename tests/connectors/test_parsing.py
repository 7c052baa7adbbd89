"""Wire-format parsing at the connector edge: Exchange error bodies, Jira fields, Graph errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from mailunblock.connectors import exchange, graph, jira
from mailunblock.connectors.errors import (
    NotBlockedError,
    NotFoundError,
    PermanentError,
    PermissionDeniedError,
    ThrottledError,
    TransientError,
    UnblockLimitReachedError,
)
from mailunblock.connectors.http import HttpPolicy


def response(status: int, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    result = requests.Response()
    result.status_code = status
    result._content = json.dumps(body).encode()
    result.headers.update(headers or {})
    return result


def test_exchange_error_text_prefers_details_then_inner_exception_then_message() -> None:
    details = {"error": {"message": "outer", "details": [{"Message": "first"}, {"message": "second"}]}}
    assert exchange.error_text(details) == "first; second"
    inner = {"error": {"message": "outer", "innererror": {"internalexception": {"message": "inner"}}}}
    assert exchange.error_text(inner) == "inner"
    camel = {"Error": {"Message": "outer", "innerError": {"InternalException": {"Message": "inner"}}}}
    assert exchange.error_text(camel) == "inner"
    assert exchange.error_text({"error": {"message": "only"}}) == "only"
    assert exchange.error_text("not json") == ""


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (
            "The sender alice@contoso.com has exceeded the number of times it can be unblocked "
            "today. Contact Microsoft Support.",
            UnblockLimitReachedError,
        ),
        ("Unblock limit reached for this user.", UnblockLimitReachedError),
        ("The address bob@contoso.com is not blocked.", NotBlockedError),
        ("Sender address carol@contoso.com couldn't be found in the restricted list.", NotBlockedError),
        (
            "Ex4F2A1B|Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException|The "
            "operation couldn't be performed because 'x@contoso.com' isn't on the list of restricted "
            "senders (Get-BlockedSenderAddress).",
            NotBlockedError,
        ),
        (
            "Ex9A1B2C|Some.Exception|The sender 'x@contoso.com' has reached the limit of unblocks "
            "allowed for this account. Contact Microsoft Support.",
            UnblockLimitReachedError,
        ),
        ("Cannot convert value 'bad' to type SmtpAddress.", PermanentError),
        ("Something else went wrong.", PermanentError),
    ],
)
def test_unblock_errors_are_typed(text: str, kind: type[Exception]) -> None:
    body = {"error": {"code": "BadRequest", "message": "outer", "details": [{"message": text}]}}
    error = exchange._exchange_error(response(400, body), body, exchange.REMOVE_BLOCKED)
    assert type(error) is kind
    assert text.rsplit("|", 1)[-1] in str(error)
    assert "|" not in str(error)


def test_exchange_throttling_keeps_retry_after() -> None:
    body = {"error": {"code": "TooManyRequests", "message": "Too many requests"}}
    error = exchange._exchange_error(
        response(429, body, {"Retry-After": "42"}), body, exchange.GET_BLOCKED
    )
    assert isinstance(error, ThrottledError)
    assert error.retry_after == 42


@pytest.mark.parametrize(
    ("status", "code", "message", "kind"),
    [
        (403, "Authorization_RequestDenied", "Insufficient privileges", PermissionDeniedError),
        (400, "Authorization_RequestDenied", "Insufficient privileges", PermissionDeniedError),
        (404, "Request_ResourceNotFound", "Resource 'x' does not exist", NotFoundError),
        (
            400,
            "Request_BadRequest",
            "The specified password does not comply with password complexity requirements.",
            PermanentError,
        ),
        (503, "serviceNotAvailable", "try later", TransientError),
    ],
)
def test_graph_errors_are_classified_on_the_error_code(
    status: int, code: str, message: str, kind: type[Exception]
) -> None:
    error = graph._graph_error(response(status, {"error": {"code": code, "message": message}}))
    assert type(error) is kind
    assert error.code == code


def test_graph_password_complexity_message_is_actionable() -> None:
    body = {"error": {"code": "Request_BadRequest", "message": "does not comply with password complexity"}}
    assert "password policy" in str(graph._graph_error(response(400, body)))


def test_jira_errors_join_error_messages_and_read_rate_limit_reset() -> None:
    body = {"errorMessages": ["Issue does not exist"], "errors": {}}
    error = jira._jira_error(response(404, body))
    assert isinstance(error, NotFoundError)
    assert "Issue does not exist" in str(error)
    soon = datetime.now(UTC).replace(microsecond=0).isoformat()
    throttled = jira._jira_error(response(429, {}, {"X-RateLimit-Reset": soon}))
    assert isinstance(throttled, ThrottledError)
    assert 0 <= throttled.retry_after <= 1


def test_jira_issue_parsing_keeps_internal_flags_and_status_changes() -> None:
    client = jira.JiraClient.connect(
        "https://jira.invalid", policy=HttpPolicy(), email="a@b.c", api_token="t",
        affected_account_field="customfield_10100",
    )
    agent = {"accountId": "acc-1", "displayName": "Agent"}
    raw = {
        "key": "SD-1",
        "id": "10001",
        "fields": {
            "summary": "Cannot send mail",
            "description": {"type": "doc", "content": [
                {"type": "paragraph", "content": [{"type": "text", "text": "NDR 5.1.8"}]}]},
            "status": {"name": "Open", "statusCategory": {"key": "new"}},
            "labels": ["mail-blocked"],
            "reporter": {"accountId": "acc-2", "displayName": "Alice", "timeZone": "Europe/London"},
            "created": "2026-01-01T10:00:00.000+0000",
            "updated": "2026-01-01T11:00:00.000+0100",
            "comment": {"comments": [
                {"id": "1", "author": agent, "body": "public", "created": "2026-01-01T10:05:00.000+0000",
                 "jsdPublic": True},
                {"id": "2", "author": agent, "body": "note", "created": "2026-01-01T10:06:00.000+0000",
                 "jsdPublic": False},
                {"id": "3", "author": agent, "body": "group", "created": "2026-01-01T10:07:00.000+0000",
                 "visibility": {"type": "group", "value": "agents"}},
            ]},
            "customfield_10100": {"value": "alice.martin@contoso.com"},
        },
        "changelog": {"histories": [
            {"author": agent, "created": "2026-01-01T10:30:00.000+0000",
             "items": [{"field": "status", "fromString": "Open", "toString": "Approved"},
                       {"field": "labels", "fromString": "", "toString": "x"}]},
        ]},
    }
    issue = client._issue(raw)
    assert issue.description == "NDR 5.1.8"
    assert issue.updated == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert [c.internal for c in issue.comments] == [False, True, True]
    assert issue.affected_account == "alice.martin@contoso.com"
    assert issue.reporter is not None and issue.reporter.time_zone == "Europe/London"
    assert [(s.from_status, s.to_status, s.author.account_id) for s in issue.status_changes] == [
        ("Open", "Approved", "acc-1")
    ]
    assert not issue.is_done


def test_jsm_approval_from_the_documented_example_without_epoch_millis() -> None:
    raw = {  # the shape of Atlassian's "Get approvals" example, dates given only as iso8601
        "id": "1", "name": "Please approve this request", "finalDecision": "approved",
        "canAnswerApproval": True,
        "approvers": [{"approver": {"accountId": "qm:a713c8ea", "displayName": "Fred F. User",
                                    "emailAddress": "fred@example.com"},
                       "approverDecision": "approved"}],
        "createdDate": {"iso8601": "2016-09-28T14:01:00+0700"},
        "completedDate": {"iso8601": "2016-09-28T15:01:00+0700"},
    }
    approval = jira._approval(raw)
    assert approval.created == datetime(2016, 9, 28, 7, 1, tzinfo=UTC)
    assert approval.completed == datetime(2016, 9, 28, 8, 1, tzinfo=UTC)
    assert [u.account_id for u in approval.deciders()] == ["qm:a713c8ea"]
    assert approval.can_answer
    pending = jira._approval({"id": 2, "approvers": []})
    assert (pending.id, pending.final_decision, pending.completed) == ("2", "pending", None)


def test_internal_comments_are_recognised_on_cloud_and_data_center() -> None:
    from mailunblock.connectors.jira import _comment

    base = {"id": "1", "author": {"displayName": "Bot"}, "body": "x", "created": "2026-11-27T10:00:00.000+0000"}
    assert _comment({**base, "jsdPublic": False}).internal
    assert _comment({**base, "visibility": {"type": "group", "value": "agents"}}).internal
    dc_note = {**base, "properties": [{"key": "sd.public.comment", "value": {"internal": True}}]}
    assert _comment(dc_note).internal
    assert not _comment({**base, "jsdPublic": True}).internal
    assert not _comment({**base, "properties": [{"key": "sd.public.comment", "value": {"internal": False}}]}).internal


def test_nameless_directory_roles_are_a_missing_permission_not_no_role() -> None:
    # Graph's "limited information" for member objects the app may not read: type and id only.
    limited = {"@odata.type": "#microsoft.graph.directoryRole", "id": "r1",
               "displayName": None, "roleTemplateId": None}
    with pytest.raises(PermissionDeniedError, match=r"RoleManagement\.Read\.Directory"):
        graph._roles(iter([limited]))
    named = {**limited, "displayName": "Global Administrator",
             "roleTemplateId": "62e90394-69f5-4237-9190-012177145e10"}
    assert [r.display_name for r in graph._roles(iter([named]))] == ["Global Administrator"]
