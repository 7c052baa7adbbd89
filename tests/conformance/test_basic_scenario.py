"""``scenarios/basic.json`` end to end on Jira Cloud and Data Center, with comment and JSM native approvals.

One run per (deployment, approval mode): triage, an agent's approval through the fakes' control API,
reset, revocation, list check, unblock, ETA, verification after the window (both clocks moved together),
resolution. The tests then read what a careful product must have done to each ticket from the fakes'
state and call log, and ``check_calls.py`` must report no problem.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conformance_fakes import (
    APPROVER,
    START,
    Fakes,
    Product,
    ProductClock,
    comments,
    iter_bot_comments,
    marker_of,
    missing_reason,
    write_config,
)
from mailunblock.workflows.markup import wiki_literal

TRIGGERED = [f"HELP-{n}" for n in range(1, 8)]  # HELP-8 is already Resolved
RUNS = [("cloud", "comment"), ("cloud", "native"), ("datacenter", "comment"), ("datacenter", "native")]


@dataclass
class Run:
    """The outcome of one scenario run."""

    deployment: str
    approvals: str
    fakes: Fakes
    product: Product
    check_rc: int
    check_summary: str
    calls: list[dict[str, Any]]
    state: dict[str, Any]

    def issue(self, key: str) -> dict[str, Any]:
        return dict(next(i for i in self.state["jira"]["issues"] if i["key"] == key))

    def bot(self, key: str) -> dict[str, dict[str, Any]]:
        """mailunblock's comments on a ticket by marker name (each name must occur once)."""
        found: dict[str, dict[str, Any]] = {}
        for comment in self.issue(key)["comments"]:
            name = marker_of(comment)
            if name:
                assert name not in found, f"{key}: two comments marked {name!r}"
                found[name] = comment
        return found

    def user(self, tenant: int, upn: str) -> dict[str, Any]:
        users = self.state["microsoft"]["tenants"][tenant]["users"]
        return dict(next(u for u in users if u["userPrincipalName"].lower() == upn))

    def blocked(self, tenant: int, address: str) -> dict[str, Any]:
        entries = self.state["microsoft"]["tenants"][tenant]["blocked_senders"]
        return dict(next(e for e in entries if e["SenderAddress"].lower() == address))

    def unblock_calls(self, address: str) -> list[dict[str, Any]]:
        def meta(call: dict[str, Any], key: str) -> str:
            return str((call.get("meta") or {}).get(key) or "").lower()

        return [c for c in self.calls if c["service"] == "exchange"
                and meta(c, "cmdlet") == "remove-blockedsenderaddress" and meta(c, "sender") == address]

    def graph_writes(self, upn: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["service"] == "graph" and c["method"] in ("PATCH", "POST")
                and str((c.get("meta") or {}).get("target_user", "")).lower() == upn]


def _approve(fakes: Fakes, key: str, mode: str) -> None:
    if mode == "native":
        fakes.control("approval", {"issue": key, "name": "Unblock the account", "approvers": [APPROVER],
                                   "status": "Waiting for approval"})
        fakes.control("approval/decide", {"issue": key, "as": APPROVER, "decision": "approve"})
    else:
        fakes.control("comment", {"issue": key, "as": APPROVER, "body": "/approve", "internal": True})


def _drive(fakes: Fakes, workdir: Path, mode: str) -> Run:
    clock = ProductClock(fakes)
    clock.set(START)
    config = write_config(fakes, workdir / "config", jsm_native_approval=mode == "native",
                          dc_auth="basic" if mode == "native" else "pat")
    product = Product(config, clock)
    try:
        product.cycle()  # triage: acknowledgement and plan (or refusal) on each ticket
        clock.advance(timedelta(minutes=5))  # the agent reads the plan, then approves
        for key in TRIGGERED:
            state = product.state(key)
            if state is not None and state.stage.value == "awaiting_approval":
                _approve(fakes, key, mode)
        for _ in range(12):  # six hours in 30-minute cycles: past the 3-4 h window, verified, resolved
            clock.advance(timedelta(minutes=30))
            product.cycle()
    finally:
        product.close()
    rc, summary = fakes.check_calls(tickets=len(TRIGGERED))
    (workdir / "check_calls.txt").write_text(summary, encoding="utf-8")
    return Run(fakes.deployment, mode, fakes, product, rc, summary, fakes.calls(), fakes.state())


@pytest.fixture(scope="module", params=RUNS, ids=[f"{d}-{m}" for d, m in RUNS])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """One full run of the scenario on private fakes."""
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    deployment, mode = request.param
    workdir = tmp_path_factory.mktemp(f"{deployment}-{mode}")
    (workdir / "fakes").mkdir()
    fakes = Fakes(workdir / "fakes", deployment)
    try:
        yield _drive(fakes, workdir, mode)
    finally:
        fakes.stop()


def _created(comment: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(comment["created"]).replace("Z", "+00:00"))


def test_check_calls_reports_no_problem(run: Run) -> None:
    print(f"check_calls.py [{run.deployment}, {run.approvals} approvals]:\n{run.check_summary}")
    assert run.check_rc == 0, run.check_summary
    assert "problems: []" in run.check_summary


@pytest.mark.parametrize(("key", "tenant", "upn"), [
    ("HELP-1", 0, "alice@contoso.com"), ("HELP-2", 0, "bob@contoso.com"), ("HELP-5", 1, "henry@fabrikam.com"),
])
def test_an_approved_blocked_account_is_remediated_once_and_resolved(run: Run, key: str, tenant: int, upn: str) -> None:
    bot = run.bot(key)
    assert {"ack", "plan", "eta", "resolved"} <= set(bot), sorted(bot)
    assert bot["ack"]["visibleToReporter"] and bot["eta"]["visibleToReporter"] and bot["resolved"]["visibleToReporter"]
    assert not bot["plan"]["visibleToReporter"], "the plan is an internal note"
    user = run.user(tenant, upn)
    assert user["passwordResets"] == 1 and user["sessionRevocations"] == 1
    assert len(run.unblock_calls(upn)) == 1
    entry = run.blocked(tenant, upn)
    assert entry["visible"] is False and entry.get("removedAt")
    # Verified after the promised window, never before: "resolved" comes at least 3 h after the ETA.
    assert _created(bot["resolved"]) - _created(bot["eta"]) >= timedelta(hours=3)
    issue = run.issue(key)
    assert issue["statusCategory"] == "done" and issue["status"] == "Resolved"
    assert "mail-unblocked" in issue["labels"] and "mail-blocked" not in issue["labels"]


def test_the_french_user_is_told_in_french_and_the_agent_note_is_kept(run: Run) -> None:
    bot = run.bot("HELP-2")
    assert "Bonjour" in bot["ack"]["text"] and "entre" in bot["eta"]["text"]
    notes = [c for c in run.issue("HELP-2")["comments"] if not marker_of(c)]
    assert any("call his mobile" in c["text"] for c in notes), "the agent's internal note is untouched"


@pytest.mark.parametrize(("key", "upn", "why"), [
    ("HELP-3", "carol@contoso.com", "Global Administrator"),
    ("HELP-4", "dave@contoso.com", "on-premises"),
])
def test_a_privileged_or_synced_account_is_refused_without_any_side_effect(run: Run, key: str, upn: str,
                                                                           why: str) -> None:
    bot = run.bot(key)
    assert "refused" in bot and not bot["refused"]["visibleToReporter"]
    assert why in bot["refused"]["text"]
    assert "plan" not in bot
    assert run.graph_writes(upn) == [] and run.unblock_calls(upn) == []
    assert run.blocked(0, upn)["visible"] is True


def test_the_shared_mailbox_named_in_the_description_is_the_affected_account(run: Run) -> None:
    # HELP-6: Frank asks for info@contoso.com (a disabled shared mailbox). The account named in the
    # description is the one the ticket is about: it is named to the agent, and nothing is done to
    # Frank's account nor (disabled, shared) to info@ without a human.
    bot = run.bot("HELP-6")
    notes = " ".join(wiki_literal(c["text"]) for c in bot.values() if not c["visibleToReporter"])
    assert "info@contoso.com" in notes
    for upn in ("frank@contoso.com", "info@contoso.com"):
        assert run.user(0, upn)["passwordResets"] == 0 and run.unblock_calls(upn) == []
    assert run.blocked(0, "info@contoso.com")["visible"] is True


def test_an_account_not_on_the_list_gets_an_answer_and_no_password_reset(run: Run) -> None:
    # HELP-7: Ivy is not on the Restricted users list: the answer says so, and her password is not reset.
    bot = run.bot("HELP-7")
    assert "not-listed" in bot and bot["not-listed"]["visibleToReporter"]
    assert run.user(1, "ivy@fabrikam.com")["passwordResets"] == 0
    assert run.graph_writes("ivy@fabrikam.com") == [] and run.unblock_calls("ivy@fabrikam.com") == []


def test_an_account_not_on_the_list_is_never_unblocked(run: Run) -> None:
    bot = run.bot("HELP-7")
    assert "not-listed" in bot and bot["not-listed"]["visibleToReporter"]
    assert "not" in bot["not-listed"]["text"] and run.unblock_calls("ivy@fabrikam.com") == []


@pytest.mark.parametrize("key", ["HELP-8", "HELP-9", "HELP-10", "OPS-1"])
def test_tickets_outside_the_selection_are_never_touched(run: Run, key: str) -> None:
    assert run.bot(key) == {}
    writes = [c for c in run.calls if c.get("ticket") == key and c["method"] in ("POST", "PUT", "DELETE")]
    assert writes == []


def test_no_other_password_reset_or_unblock_happened(run: Run) -> None:
    resets = sorted(u["userPrincipalName"] for t in run.state["microsoft"]["tenants"] for u in t["users"]
                    if u["passwordResets"])
    unblocked = sorted(c["meta"]["sender"].lower() for c in run.calls
                       if c["service"] == "exchange" and (c.get("meta") or {}).get("unblocked"))
    assert unblocked == ["alice@contoso.com", "bob@contoso.com", "henry@fabrikam.com"]
    assert set(resets) == {"alice@contoso.com", "bob@contoso.com", "henry@fabrikam.com"}  # not Ivy: not listed


def test_the_approvals_were_given_by_the_agent_and_read_as_the_service_defines_them(run: Run) -> None:
    approvals = [c for c in run.calls if (c.get("meta") or {}).get("approval")]
    if run.approvals == "native":
        assert {c["meta"]["approval"]["via"] for c in approvals} == {"control"}, "mailunblock never decides"
        reads = [c for c in run.calls if c["service"] == "jira" and "/servicedeskapi/request/" in c["path"]
                 and c["path"].endswith("/approval")]
        assert reads and all(c["status"] == 200 for c in reads)
        if run.deployment == "datacenter":
            assert all(c["headers"].get("x-experimentalapi") == "opt-in" for c in reads)
    else:
        assert approvals == []
    refused = [c for c in run.calls if (c.get("meta") or {}).get("approval_refused")
               or (c.get("meta") or {}).get("experimental_header_missing")]
    assert refused == []


def test_data_center_is_spoken_with_its_own_resources(run: Run) -> None:
    jira = [c for c in run.calls if c["service"] == "jira"]
    assert not [c for c in jira if c["status"] == 404 and "not_on_datacenter" in str(c.get("violations"))]
    if run.deployment == "datacenter":
        assert {(c.get("meta") or {}).get("auth") for c in jira} == {"basic" if run.approvals == "native" else "pat"}
        assert any(c["path"] == "/rest/api/2/search" for c in jira)
    else:
        assert all(c["path"] != "/rest/api/2/search" for c in jira)


def test_every_comment_is_posted_once(run: Run) -> None:
    for key in TRIGGERED:
        names = [marker_of(c) for c in comments(run.fakes, key) if marker_of(c)]
        assert len(names) == len(set(names)), f"{key}: {names}"
    assert list(iter_bot_comments(run.fakes, "HELP-8")) == []


def _search_fields(call: dict[str, Any]) -> list[str]:
    """The fields a Jira search asked for (Cloud: the JSON body; Data Center: the query string)."""
    if call["method"] == "POST":
        return list((call.get("body") or {}).get("fields") or [])
    raw = (call.get("query") or {}).get("fields") or ""
    raw = raw[0] if isinstance(raw, list) else raw
    return [f for f in str(raw).split(",") if f]


def _cycles(run: Run) -> list[list[dict[str, Any]]]:
    """The call log cut at each search of the selection (one per poll cycle)."""
    cycles: list[list[dict[str, Any]]] = []
    for call in run.calls:
        search = call["service"] == "jira" and call["path"].endswith(("/search/jql", "/search"))
        if search and not str((call.get("meta") or {}).get("jql", "")).startswith("id in"):
            cycles.append([])
        if cycles:
            cycles[-1].append(call)
    return cycles


def test_each_cycle_reads_each_tenant_s_restricted_users_list_once(run: Run) -> None:
    cycles = _cycles(run)
    assert len(cycles) == 13
    for calls in cycles:
        reads = [c["path"] for c in calls if c["service"] == "exchange"
                 and str((c.get("meta") or {}).get("cmdlet", "")).lower() == "get-blockedsenderaddress"]
        assert len(reads) == len(set(reads)), reads  # the path names the tenant


def test_a_steady_cycle_reads_in_full_only_the_tickets_that_changed(run: Run) -> None:
    full_reads = []
    for calls in _cycles(run):
        searches = [c for c in calls if c["service"] == "jira" and c["path"].endswith(("/search/jql", "/search"))]
        assert "comment" not in _search_fields(searches[0])  # the selection: light fields only
        full_reads.append([str((c.get("meta") or {}).get("jql")) for c in searches[1:]])
    assert all(jql.startswith("id in (") for reads in full_reads for jql in reads)
    # While the tickets wait for the 3-4 h window nothing changes on them: those cycles read nothing in full.
    assert sum(1 for reads in full_reads if not reads) >= 4, full_reads
