"""Fault injection for the kill harness: probability, cmdlet and token-endpoint rules, lost responses,
the in-flight registry, the password-in-effect check and the auto-approving agent."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import requests
from mailunblock.sandbox.core import FaultRule, Faults
from mailunblock.sandbox.server import Sandbox

CONTOSO_ID = "9188040d-6c67-4c5b-b112-36a304b66dad"
PASSWORD = "Harness-Passw0rd!"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_probability_rule_fails_about_that_share_and_counts_what_it_served() -> None:
    faults = Faults(seed=7)
    faults.add(FaultRule("graph", status=503, count=10_000, probability=0.25))
    served = sum(faults.take("graph", "GET", "/v1.0/users/x") is not None for _ in range(2000))
    assert 400 < served < 600
    assert faults.injected == {("graph", "503"): served}


def test_probability_rolls_repeat_with_the_seed() -> None:
    def rolls(seed: int) -> list[bool]:
        faults = Faults(seed=seed)
        faults.add(FaultRule("jira", status=429, count=100, probability=0.5, label="throttled"))
        return [faults.take("jira", "GET", "/x") is not None for _ in range(50)]

    assert rolls(3) == rolls(3)
    assert rolls(3) != rolls(4)


def test_cmdlet_rule_matches_only_that_cmdlet() -> None:
    faults = Faults()
    faults.add(FaultRule("exchange", status=500, count=5, cmdlet="Remove-BlockedSenderAddress"))
    path = f"/adminapi/beta/{CONTOSO_ID}/InvokeCommand"
    assert faults.take("exchange", "POST", path, "Get-BlockedSenderAddress") is None
    assert faults.take("exchange", "POST", path, "Remove-BlockedSenderAddress") is not None


def test_token_endpoint_fault_through_the_control_api(
    make_sandbox: Callable[..., Sandbox], session_for: Callable[[Sandbox], requests.Session]
) -> None:
    box = make_sandbox()
    queued = requests.post(f"{box.control_url}/faults", json={
        "service": "identity", "path_contains": "/oauth2/v2.0/token", "status": 503, "count": 1,
        "label": "token-5xx"}, timeout=10)
    assert queued.status_code == 201
    state = box.microsoft.tenants["contoso"]
    token_request = {"grant_type": "client_credentials", "client_id": state.spec.app.client_id,
                     "client_secret": state.credentials.client_secret,
                     "scope": "https://graph.microsoft.com/.default"}
    url = f"{box.authority_host}/{state.spec.tenant_id}/oauth2/v2.0/token"
    http = session_for(box)
    assert http.post(url, data=token_request, timeout=10).status_code == 503
    assert http.post(url, data=token_request, timeout=10).status_code == 200
    injected = requests.get(f"{box.control_url}/faults/injected", timeout=10).json()
    assert injected == [{"service": "identity", "kind": "token-5xx", "count": 1}]


def test_control_api_refuses_a_probability_above_one(sandbox: Sandbox) -> None:
    response = requests.post(f"{sandbox.control_url}/faults",
                             json={"service": "graph", "probability": 1.5}, timeout=10)
    assert response.status_code == 400


def test_a_lost_response_still_applies_the_reset_and_the_password_check_sees_it(
    make_sandbox: Callable[..., Sandbox], session_for: Callable[[Sandbox], requests.Session],
    token_for: Callable[[Sandbox, str, str], str],
) -> None:
    box = make_sandbox()
    user = "diego.siciliani@contoso.com"
    token = token_for(box, "contoso", "graph")
    box.faults.add(FaultRule("graph", status=None, method="PATCH", delay_seconds=1.0, label="timeout"))
    with pytest.raises(requests.Timeout):
        session_for(box).patch(
            f"{box.graph_url}/v1.0/users/{user}", headers=_auth(token), timeout=0.3,
            json={"passwordProfile": {"password": PASSWORD, "forceChangePasswordNextSignIn": True}})
    deadline = time.monotonic() + 5
    while box.microsoft.reset_count("contoso", user) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert box.microsoft.reset_count("contoso", user) == 1
    check = f"{box.control_url}/microsoft/contoso/users/{user}/password-check"
    assert requests.post(check, json={"password": PASSWORD}, timeout=10).json() == {"in_effect": True}
    assert requests.post(check, json={"password": PASSWORD + "x"}, timeout=10).json() == {"in_effect": False}
    assert all(PASSWORD not in repr(record) for record in box.calls)
    for password in (PASSWORD, PASSWORD + "2"):  # the same password re-sent, then another one
        assert session_for(box).patch(
            f"{box.graph_url}/v1.0/users/{user}", headers=_auth(token), timeout=10,
            json={"passwordProfile": {"password": password, "forceChangePasswordNextSignIn": True}}
        ).status_code == 204
    assert box.microsoft.reset_count("contoso", user) == 3
    assert box.microsoft.distinct_passwords("contoso", user) == 2
    assert box.microsoft.password_in_effect("contoso", user, PASSWORD + "2")


def test_a_pending_request_is_listed_in_flight_with_its_client_port(
    make_sandbox: Callable[..., Sandbox], session_for: Callable[[Sandbox], requests.Session],
    token_for: Callable[[Sandbox, str, str], str],
) -> None:
    box = make_sandbox()
    token = token_for(box, "contoso", "exchange")
    box.faults.add(FaultRule("exchange", status=None, cmdlet="Get-BlockedSenderAddress", delay_seconds=0.8))
    body = {"CmdletInput": {"CmdletName": "Get-BlockedSenderAddress", "Parameters": {}}}
    caller = threading.Thread(target=lambda: session_for(box).post(
        f"{box.exchange_url}/adminapi/beta/{CONTOSO_ID}/InvokeCommand", json=body, headers=_auth(token),
        timeout=10))
    caller.start()
    deadline = time.monotonic() + 5
    pending: list[dict[str, object]] = []
    while not pending and time.monotonic() < deadline:
        pending = [r for r in requests.get(f"{box.control_url}/inflight", timeout=10).json()
                   if r["service"] == "exchange"]
        time.sleep(0.02)
    caller.join()
    assert pending and pending[0]["cmdlet"] == "Get-BlockedSenderAddress"
    assert isinstance(pending[0]["remote_port"], int)
    assert not [r for r in box.context.inflight.snapshot() if r.service == "exchange"]


def test_the_auto_approving_agent_answers_each_plan_note_once(make_sandbox: Callable[..., Sandbox]) -> None:
    box = make_sandbox()
    jira = box.jira
    assert jira is not None
    answered = requests.post(f"{box.control_url}/jira/auto-approve", json={"agent": "alice"}, timeout=10)
    assert answered.status_code == 200
    key = jira.create_issue("cannot send", "megan.bowen@contoso.com")
    jira.add_comment(key, "mailunblock", "Plan", internal=True,
                     properties={"mailunblock": {"marker": f"mailunblock:{key}:plan"}})
    jira.add_comment(key, "mailunblock", "Hello", properties={"mailunblock": {"marker": f"mailunblock:{key}:ack"}})
    jira.add_comment(key, "mailunblock", "Plan again", internal=True,
                     properties={"mailunblock": {"marker": f"mailunblock:{key}:plan-2"}})
    alice = jira.user("alice").account_id
    approvals = [c for c in jira.comments(key) if c.author == alice]
    assert [c.body for c in approvals] == ["/approve", "/approve"]
    assert all(c.internal for c in approvals)
    assert requests.delete(f"{box.control_url}/jira/auto-approve", timeout=10).status_code == 204
    jira.add_comment(key, "mailunblock", "Plan 3", internal=True,
                     properties={"mailunblock": {"marker": f"mailunblock:{key}:plan-3"}})
    assert len([c for c in jira.comments(key) if c.author == alice]) == 2
