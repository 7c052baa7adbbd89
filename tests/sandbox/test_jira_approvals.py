"""JSM native approvals in the Jira emulator: control methods and the servicedeskapi endpoints."""

from __future__ import annotations

from datetime import timedelta

import pytest
from jira_fixtures import BOT_TOKEN, START, JiraHarness, basic, jira_fixture, make_harness  # noqa: F401
from mailunblock.sandbox.jira import JiraApiError, demo_scenario

ALICE_TOKEN = "alice-api-token-456"
APPROVALS = "/rest/servicedeskapi/request/HELP-1/approval"


def as_alice(jira: JiraHarness) -> JiraHarness:
    jira.state.set_api_token("alice", ALICE_TOKEN)
    return jira.as_user(basic("alice@msp-helpdesk.example", ALICE_TOKEN))


def test_an_opened_approval_is_listed_pending_with_its_approvers(jira: JiraHarness) -> None:
    approval_id = jira.state.open_approval("HELP-1", "Approve the unblock", ["alice", "bob"])
    page = jira.get(APPROVALS).get_json()
    assert (page["size"], page["start"], page["limit"], page["isLastPage"]) == (1, 0, 50, True)
    assert set(page["_links"]) == {"base", "context", "self"}
    [approval] = page["values"]
    assert approval["id"] == approval_id
    assert (approval["name"], approval["finalDecision"]) == ("Approve the unblock", "pending")
    assert approval["canAnswerApproval"] is False  # the bot is not an approver
    assert [a["approver"]["displayName"] for a in approval["approvers"]] == ["Alice Martin", "Bob Nguyen"]
    assert {a["approverDecision"] for a in approval["approvers"]} == {"pending"}
    assert approval["approvers"][0]["approver"]["accountId"]
    assert approval["createdDate"]["epochMillis"] == int(START.timestamp() * 1000)
    assert "completedDate" not in approval
    assert as_alice(jira).get(APPROVALS).get_json()["values"][0]["canAnswerApproval"] is True


def test_answering_as_an_approver_settles_the_final_decision(jira: JiraHarness) -> None:
    approval_id = jira.state.open_approval("HELP-1", "Approve", ["alice", "bob"])
    jira.ctx.clock.advance(timedelta(minutes=5))
    answered = jira.state.answer_approval("HELP-1", approval_id, "alice", "approve")
    assert answered.final_decision == "approved"
    assert answered.completed == START + timedelta(minutes=5)
    [approval] = jira.get(APPROVALS).get_json()["values"]
    assert approval["finalDecision"] == "approved"
    assert [a["approverDecision"] for a in approval["approvers"]] == ["approved", "pending"]
    assert approval["completedDate"]["epochMillis"] == int((START + timedelta(minutes=5)).timestamp() * 1000)
    with pytest.raises(JiraApiError) as late:  # nothing left to answer
        jira.state.answer_approval("HELP-1", approval_id, "bob", "decline")
    assert late.value.status == 403


def test_two_required_approvals_and_one_decline(jira: JiraHarness) -> None:
    both = jira.state.open_approval("HELP-1", "Two of two", ["alice", "bob"], required=2)
    assert jira.state.answer_approval("HELP-1", both, "alice", "approve").final_decision == "pending"
    assert jira.state.answer_approval("HELP-1", both, "bob", "approve").final_decision == "approved"
    declined = jira.state.open_approval("HELP-1", "Declined", ["alice", "bob"], required=2)
    assert jira.state.answer_approval("HELP-1", declined, "bob", "decline").final_decision == "declined"
    with pytest.raises(JiraApiError):
        jira.state.answer_approval("HELP-1", declined, "alice", "maybe")


def test_post_answers_as_the_caller(jira: JiraHarness) -> None:
    approval_id = jira.state.open_approval("HELP-1", "Approve", ["alice"])
    path = f"{APPROVALS}/{approval_id}"
    refused = jira.post(path, json={"decision": "approve"})  # the bot is no approver
    assert refused.status_code == 403
    assert "errorMessage" in refused.get_json()
    alice = as_alice(jira)
    assert alice.post(path, json={"decision": "yes"}).status_code == 400
    answered = alice.post(path, json={"decision": "decline"})
    assert answered.status_code == 200
    body = answered.get_json()
    assert (body["finalDecision"], body["canAnswerApproval"]) == ("declined", False)
    assert body["approvers"][0]["approverDecision"] == "declined"
    assert jira.get(path).get_json()["finalDecision"] == "declined"
    assert jira.get(f"{APPROVALS}/999").status_code == 404


def test_approvals_page_with_start_and_limit(jira: JiraHarness) -> None:
    ids = [jira.state.open_approval("HELP-1", f"Approval {n}", ["alice"]) for n in range(3)]
    first = jira.get(APPROVALS, query_string={"limit": 2}).get_json()
    assert [v["id"] for v in first["values"]] == ids[:2] and first["isLastPage"] is False
    second = jira.get(APPROVALS, query_string={"start": 2, "limit": 2}).get_json()
    assert [v["id"] for v in second["values"]] == ids[2:] and second["isLastPage"] is True


def test_approvals_only_on_service_desk_requests() -> None:
    section = demo_scenario()
    section["projects"].append({"key": "OPS", "service_desk": False})
    harness = make_harness(section)
    key = harness.state.create_issue("not a request", "mailunblock", project="OPS")
    with pytest.raises(ValueError, match="not a service desk request"):
        harness.state.open_approval(key, "Approve", ["alice"])
    assert harness.get(f"/rest/servicedeskapi/request/{key}/approval").status_code == 404


def test_datacenter_approvers_are_named_by_username() -> None:
    section = demo_scenario()
    section["deployment"] = "datacenter"
    harness = make_harness(section, {"Authorization": f"Bearer {BOT_TOKEN}"})
    harness.state.open_approval("HELP-1", "Approve", ["alice"])
    [approval] = harness.get(APPROVALS).get_json()["values"]
    approver = approval["approvers"][0]["approver"]
    assert approver["name"] == "alice" and approver["key"].startswith("JIRAUSER")
    assert "accountId" not in approver
