"""The Jira connector against the sandbox's Jira Cloud emulator (vcrpy cassettes)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mailunblock.connectors.errors import (
    AuthenticationError,
    NotFoundError,
    PermanentError,
    ThrottledError,
    TransientError,
)
from mailunblock.connectors.jira import LIGHT_FIELDS, JiraClient, jira_session
from mailunblock.connectors.models import Person, Ticket
from mailunblock.sandbox.core import FaultRule
from mailunblock.workflows.approvers import is_approver
from mailunblock.workflows.policy import RemediationPolicy

JQL = 'labels = "mail-blocked" AND statusCategory != Done ORDER BY created ASC'
MARKER = "mailunblock:HELP-1:eta:v1"


AGENTS = RemediationPolicy(approver_groups=frozenset({"helpdesk-agents"}))
TEAM = RemediationPolicy(approver_roles=frozenset({"service desk team"}), approver_role_projects=("HELP",))


def approves(client: JiraClient, person: Person, policy: RemediationPolicy = AGENTS) -> bool:
    """The workflow's approver rule over the connector's membership port."""
    return is_approver(policy, client, person)


def jira(env: Any, **kwargs: Any) -> JiraClient:
    options: dict[str, Any] = {
        "affected_account_field": "customfield_10050",
        "page_size": 2,
        **kwargs,
    }
    policy = options.pop("policy", None) or env.policy()
    return JiraClient.connect(
        env.jira_url, policy=policy, email=env.jira_email, api_token=env.jira_token, **options
    )


@pytest.mark.vcr
def test_search_pages_through_every_matching_ticket(env: Any) -> None:
    issues = list(jira(env).search(JQL))
    assert [i.key for i in issues] == ["HELP-1", "HELP-2", "HELP-3", "HELP-4", "HELP-5"]
    first = issues[0]
    assert first.labels == ("mail-blocked",) and first.status_category == "new"
    assert "550 5.1.8" in first.description
    assert first.reporter is not None and first.reporter.account_id
    assert issues[2].affected_account == "lidia.holloway@contoso.com"


@pytest.mark.vcr
def test_comment_with_hidden_marker_is_found_again_and_internal(env: Any) -> None:
    client = jira(env)
    if env.live:  # an agent's comment without our property: its lookup answers 404
        env.sandbox.jira.add_comment("HELP-1", "alice", "Looking into it.")
    assert client.find_comment("HELP-1", MARKER) is None
    comment_id = client.post_comment("HELP-1", "Internal: password reset.", internal=True, marker=MARKER)
    assert client.find_comment("HELP-1", MARKER) == comment_id
    posted = [c for c in client.get_issue("HELP-1").comments if c.id == comment_id]
    assert posted and posted[0].internal
    assert MARKER not in posted[0].body


@pytest.mark.vcr
def test_labels_transitions_and_links(env: Any) -> None:
    client = jira(env)
    client.update_labels("HELP-2", add=["mail-unblocked"], remove=["mail-blocked"])
    assert client.get_issue("HELP-2").labels == ("mail-unblocked",)
    assert "Resolve" in [t.name for t in client.transitions("HELP-2")]
    assert client.transition("HELP-2", "no such transition") is False
    assert client.transition("HELP-2", "resolve") is True
    assert client.get_issue("HELP-2").is_done
    client.link_issues("HELP-3", "HELP-1")
    client.link_issues("HELP-3", "HELP-1")  # second call sees the link and posts nothing


@pytest.mark.vcr
def test_approvers_myself_groups_and_locale(env: Any) -> None:
    client = jira(env)
    me = client.myself()
    assert me.account_id
    assert approves(client, me, TEAM)  # a direct member of the role
    assert client.group_exists("helpdesk-agents")
    assert not client.group_exists("no-such-group")
    reporter = client.get_issue("HELP-1").reporter
    assert reporter is not None
    assert not approves(client, reporter, TEAM)
    assert client.user_locale(reporter) == ("en_US", "America/New_York")
    assert approves(jira(env), me)  # through the approver group


@pytest.mark.vcr
def test_bad_jql_unknown_issue_and_bad_credentials(env: Any) -> None:
    client = jira(env)
    with pytest.raises(PermanentError):
        client.check_jql("labels = = broken")
    client.check_jql(JQL)
    with pytest.raises(NotFoundError):
        client.get_issue("HELP-999")
    with pytest.raises(AuthenticationError) as caught:
        JiraClient.connect(env.jira_url, policy=env.policy(), email=env.jira_email,
                   api_token="wrong-token-123").myself()
    assert "wrong-token-123" not in str(caught.value)


@pytest.mark.vcr
def test_throttled_search_is_retried_but_a_comment_is_not(env: Any) -> None:
    client = jira(env)
    env.fault(FaultRule(service="jira", status=429, retry_after=9, method="POST",
                        path_contains="/search/jql"))
    assert [i.key for i in client.search(JQL)][:1] == ["HELP-1"]
    assert len(env.sleeps) == 1 and 9 <= env.sleeps[0] <= 10
    env.fault(FaultRule(service="jira", status=429, retry_after=9, method="POST",
                        path_contains="/comment"))
    with pytest.raises(ThrottledError) as caught:
        client.post_comment("HELP-1", "hello", internal=False, marker="m-throttled")
    assert caught.value.retry_after == 9
    assert len(env.sleeps) == 1
    assert client.find_comment("HELP-1", "m-throttled") is None  # nothing was posted twice


@pytest.mark.vcr
def test_server_errors_are_transient(env: Any) -> None:
    client = jira(env, policy=env.policy(max_retries=0))
    env.fault(FaultRule(service="jira", status=503, method="GET"))
    with pytest.raises(TransientError):
        client.get_issue("HELP-1")


@pytest.mark.vcr
def test_jsm_approvals_with_approvers_decisions_and_dates(env: Any) -> None:
    if env.live:  # what the cassette replays: three approvals on HELP-1, answered in the emulator
        jira_state = env.sandbox.jira
        first = jira_state.open_approval("HELP-1", "Approve the unblock", ["alice", "bob"])
        jira_state.answer_approval("HELP-1", first, "alice", "approve")
        jira_state.open_approval("HELP-1", "Second opinion", ["bob"])
        third = jira_state.open_approval("HELP-1", "Manager sign-off", ["bob", "mallory"])
        jira_state.answer_approval("HELP-1", third, "bob", "decline")
    client = jira(env)  # page_size 2: two pages
    approvals = client.approvals("HELP-1")
    assert [(a.name, a.final_decision) for a in approvals] == [
        ("Approve the unblock", "approved"), ("Second opinion", "pending"),
        ("Manager sign-off", "declined"),
    ]
    approved, pending, declined = approvals
    assert [u.display_name for u in approved.deciders()] == ["Alice Martin"]
    assert [(a.user.email, a.decision) for a in approved.approvers] == [
        ("alice@msp-helpdesk.example", "approved"), ("bob@msp-helpdesk.example", "pending"),
    ]
    assert approved.approvers[0].user.account_id
    assert approved.completed is not None and approved.completed >= approved.created
    assert approved.created.tzinfo is not None
    assert pending.completed is None and pending.deciders() == ()
    assert [u.display_name for u in declined.deciders()] == ["Bob Nguyen"]
    assert not any(a.can_answer for a in approvals)  # the bot is no approver
    assert client.approvals("HELP-2") == []
    with pytest.raises(NotFoundError):
        client.approvals("HELP-999")


@pytest.mark.vcr
def test_the_selection_is_light_and_tickets_are_read_whole_on_demand(env: Any) -> None:
    policy = env.policy()
    session = jira_session(policy, email=env.jira_email, api_token=env.jira_token)
    searches: list[dict[str, Any]] = []

    def keep_search(response: Any, *_args: Any, **_kwargs: Any) -> None:
        if response.request.path_url.endswith("/search/jql"):
            searches.append(json.loads(response.request.body))

    session.hooks["response"].append(keep_search)
    client = JiraClient(env.jira_url, session, policy=policy, selection=JQL, page_size=2,
                        affected_account_field="customfield_10050")

    heads = list(client.selected())
    assert [t.key for t in heads] == ["HELP-1", "HELP-2", "HELP-3", "HELP-4", "HELP-5"]
    assert [s["fields"] for s in searches] == [list(LIGHT_FIELDS)] * 3  # five tickets, pages of two
    assert not any(isinstance(t, Ticket) for t in heads) and all(t.id and t.labels for t in heads)
    searches.clear()

    whole = client.read_whole(heads)
    assert [s["jql"] for s in searches] == [  # by id, a page (2) at a time, with comments and changelog
        f"id in ({heads[0].id}, {heads[1].id})", f"id in ({heads[2].id}, {heads[3].id})", f"id in ({heads[4].id})"
    ]
    assert all("comment" in s["fields"] and s["expand"] == "changelog" for s in searches)
    by_key = {t.key: t for t in whole}
    assert {(t.key, t.updated, t.labels) for t in whole} == {(t.key, t.updated, t.labels) for t in heads}
    assert by_key["HELP-3"].affected_account == "lidia.holloway@contoso.com"
    searches.clear()

    client.post_comment("HELP-2", "checked the bounce", internal=True, marker="mailunblock:HELP-2:test")
    (changed,) = [t for t in client.selected() if t.key == "HELP-2"]
    assert changed.updated > heads[1].updated  # a comment moves ``updated``: the head tells it changed
    (again,) = client.read_whole([changed])
    assert again.comments[-1].body == "checked the bounce"
