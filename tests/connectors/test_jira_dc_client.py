"""The Jira connector on Data Center: PAT auth, startAt/total search, users by name (vcrpy cassettes)."""

from __future__ import annotations

from typing import Any

import pytest
from mailunblock.connectors.errors import AuthenticationError, NotFoundError
from mailunblock.connectors.jira import JiraClient
from mailunblock.connectors.models import Person
from mailunblock.workflows.approvers import is_approver
from mailunblock.workflows.policy import RemediationPolicy

JQL = 'labels = "mail-blocked" AND statusCategory != Done ORDER BY created ASC'
MARKER = "mailunblock:HELP-1:plan"


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
    return JiraClient.connect(env.jira_url, policy=env.policy(), deployment="datacenter",
                      personal_access_token=env.jira_token, **options)


@pytest.mark.vcr
def test_search_pages_with_start_at_and_total_and_keeps_the_changelog(dc_env: Any) -> None:
    if dc_env.live:
        dc_env.sandbox.jira.transition("HELP-1", "Start progress", "alice")
    issues = list(jira(dc_env).search(JQL))  # three pages of two
    assert [i.key for i in issues] == ["HELP-1", "HELP-2", "HELP-3", "HELP-4", "HELP-5"]
    first = issues[0]
    assert first.reporter is not None
    assert (first.reporter.name, first.reporter.account_id) == ("adele.vance", None)
    assert first.reporter.key and first.reporter.key.startswith("JIRAUSER")
    assert first.reporter.ref == first.reporter.key
    assert first.reporter.email == "adele.vance@contoso.com"
    [change] = first.status_changes
    assert (change.author.name, change.from_status, change.to_status) == (
        "alice", "Waiting for support", "In Progress")
    assert issues[2].affected_account == "lidia.holloway@contoso.com"


@pytest.mark.vcr
def test_comments_carry_the_marker_and_are_found_again(dc_env: Any) -> None:
    client = jira(dc_env)
    assert client.find_comment("HELP-1", MARKER) is None
    comment_id = client.post_comment("HELP-1", "Plan: reset, revoke, unblock.", internal=True,
                                     marker=MARKER)
    assert client.find_comment("HELP-1", MARKER) == comment_id
    [posted] = [c for c in client.get_issue("HELP-1").comments if c.id == comment_id]
    assert posted.body == "Plan: reset, revoke, unblock."
    assert (posted.author.name, posted.author.account_id) == ("mailunblock", None)
    if dc_env.live:  # the JSM internal-note property reached Jira
        [stored] = [c for c in dc_env.sandbox.jira.comments("HELP-1") if c.id == comment_id]
        assert stored.internal


@pytest.mark.vcr
def test_labels_transitions_and_links(dc_env: Any) -> None:
    client = jira(dc_env)
    client.update_labels("HELP-2", add=["mail-unblocked"], remove=["mail-blocked"])
    assert client.get_issue("HELP-2").labels == ("mail-unblocked",)
    assert "Resolve" in [t.name for t in client.transitions("HELP-2")]
    assert client.transition("HELP-2", "no such transition") is False
    assert client.transition("HELP-2", "resolve") is True
    resolved = client.get_issue("HELP-2")
    assert resolved.is_done and resolved.status_changes[-1].author.name == "mailunblock"
    client.link_issues("HELP-3", "HELP-1")
    client.link_issues("HELP-3", "HELP-1")  # second call sees the link and posts nothing


@pytest.mark.vcr
def test_approvers_by_username_group_and_role(dc_env: Any) -> None:
    by_group = jira(dc_env)
    me = by_group.myself()
    assert (me.name, me.account_id) == ("mailunblock", None)
    assert "helpdesk-agents" in by_group.groups_of(me)
    assert approves(by_group, me)
    reporter = by_group.get_issue("HELP-2").reporter
    assert reporter is not None and reporter.name == "chloe.dupont"
    assert by_group.groups_of(reporter) == set()
    assert not approves(by_group, reporter)
    assert by_group.user_locale(reporter) == ("fr_FR", "Europe/Paris")
    by_role = jira(dc_env)
    assert approves(by_role, me, TEAM)  # a direct member of the role, matched by name
    assert not approves(by_role, reporter, TEAM)
    by_role.check_jql(JQL)


@pytest.mark.vcr
def test_jsm_approvals_name_approvers_by_username(dc_env: Any) -> None:
    if dc_env.live:
        approval = dc_env.sandbox.jira.open_approval("HELP-1", "Approve the unblock", ["alice"])
        dc_env.sandbox.jira.answer_approval("HELP-1", approval, "alice", "approve")
    [approval] = jira(dc_env).approvals("HELP-1")
    assert approval.final_decision == "approved"
    [decider] = approval.deciders()
    assert (decider.name, decider.account_id, decider.display_name) == ("alice", None, "Alice Martin")
    assert decider.key and decider.key.startswith("JIRAUSER")


@pytest.mark.vcr
def test_unknown_issue_and_wrong_token(dc_env: Any) -> None:
    with pytest.raises(NotFoundError):
        jira(dc_env).get_issue("HELP-999")
    with pytest.raises(AuthenticationError) as caught:
        JiraClient.connect(dc_env.jira_url, policy=dc_env.policy(), deployment="datacenter",
                   personal_access_token="wrong-pat-123").myself()
    assert "wrong-pat-123" not in str(caught.value)
