"""Steady selections against someone else's Jira (../shared/conformance): what changed is read, not what waits.

The fake caps the comments a Cloud search embeds (20, with the right ``total``), as Jira Cloud does: a ticket
with more is paged through its comment resource once, when it is read in full — not in every cycle.
"""

from __future__ import annotations

from typing import Any

from conformance_fakes import BOT_API_TOKEN, BOT_EMAIL, BOT_PAT, Fakes
from mailunblock.connectors.http import HttpPolicy
from mailunblock.connectors.jira import JiraClient

SELECTION = 'labels = "mail-blocked" AND statusCategory != Done ORDER BY key'


def _client(fakes: Fakes) -> JiraClient:
    policy = HttpPolicy(ca_bundle=str(fakes.ca), timeout=10)
    if fakes.deployment == "datacenter":
        return JiraClient.connect(fakes.urls["jira"], policy=policy, deployment="datacenter",
                                  personal_access_token=BOT_PAT, selection=SELECTION)
    return JiraClient.connect(fakes.urls["jira"], policy=policy, email=BOT_EMAIL, api_token=BOT_API_TOKEN,
                              selection=SELECTION)


def _jira_calls(fakes: Fakes, since: int) -> list[dict[str, Any]]:
    return [c for c in fakes.calls()[since:] if c.get("service") == "jira"]


def _full_searches(calls: list[dict[str, Any]]) -> list[str]:
    return [str((c.get("meta") or {}).get("jql")) for c in calls
            if c["path"].endswith(("/search/jql", "/search"))
            and str((c.get("meta") or {}).get("jql", "")).startswith("id in")]


def test_on_cloud_a_long_ticket_is_read_whole_once_and_then_only_when_it_changes(cloud_fakes: Fakes) -> None:
    _read_whole_once_then_only_changes(cloud_fakes)


def test_on_data_center_a_long_ticket_is_read_whole_once_and_then_only_when_it_changes(dc_fakes: Fakes) -> None:
    _read_whole_once_then_only_changes(dc_fakes)


def _read_whole_once_then_only_changes(fakes: Fakes) -> None:
    deployment = fakes.deployment
    for n in range(25):
        fakes.control("comment", {"issue": "HELP-1", "as": "reporter", "body": f"still bouncing ({n})"})
    client = _client(fakes)
    start = len(fakes.calls())

    first = {t.key: t for t in client.selected()}
    assert len(first["HELP-1"].comments) >= 25  # every comment, past the search's cap
    calls = _jira_calls(fakes, start)
    assert len(_full_searches(calls)) >= 1
    paged = [c for c in calls if c["method"] == "GET" and c["path"].endswith("/issue/HELP-1/comment")]
    # Paged through the comment resource only because the search's embedded list was capped (Cloud: 20).
    if deployment == "cloud":
        assert len(paged) == 1
    else:
        assert len(paged) <= 1

    start = len(fakes.calls())
    assert {t.key: t for t in client.selected()} == first
    calls = _jira_calls(fakes, start)
    assert _full_searches(calls) == [] and not [c for c in calls if c["path"].endswith("/comment")]

    fakes.control("comment", {"issue": "HELP-2", "as": "reporter", "body": "any news?"})
    start = len(fakes.calls())
    now = {t.key: t for t in client.selected()}
    assert _full_searches(_jira_calls(fakes, start)) == [f"id in ({first['HELP-2'].id})"]
    assert now["HELP-2"].comments[-1].body == "any news?" and now["HELP-1"] is first["HELP-1"]
