"""Selections against someone else's Jira (../shared/conformance): light, and whole reads only on demand.

The fake caps the comments a Cloud search embeds (20, with the right ``total``), as Jira Cloud does: a ticket
with more is paged through its comment resource when it is read in full — never by the selection.
"""

from __future__ import annotations

from typing import Any

from conformance_fakes import BOT_API_TOKEN, BOT_EMAIL, BOT_PAT, Fakes
from mailunblock.connectors.http import HttpPolicy
from mailunblock.connectors.jira import JiraClient
from mailunblock.connectors.models import Ticket

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


def test_on_cloud_the_selection_is_light_and_a_long_ticket_is_read_whole_on_demand(cloud_fakes: Fakes) -> None:
    _light_selection_whole_on_demand(cloud_fakes)


def test_on_data_center_the_selection_is_light_and_a_long_ticket_is_read_whole_on_demand(dc_fakes: Fakes) -> None:
    _light_selection_whole_on_demand(dc_fakes)


def _light_selection_whole_on_demand(fakes: Fakes) -> None:
    deployment = fakes.deployment
    for n in range(25):
        fakes.control("comment", {"issue": "HELP-1", "as": "reporter", "body": f"still bouncing ({n})"})
    client = _client(fakes)
    start = len(fakes.calls())

    heads = {t.key: t for t in client.selected()}  # light: nothing read in full, no comment paged
    assert heads and not any(isinstance(t, Ticket) for t in heads.values())
    calls = _jira_calls(fakes, start)
    assert _full_searches(calls) == [] and not [c for c in calls if c["path"].endswith("/comment")]

    start = len(fakes.calls())
    (whole,) = client.read_whole([heads["HELP-1"]])
    assert len(whole.comments) >= 25 and whole.updated == heads["HELP-1"].updated  # past the search's cap
    calls = _jira_calls(fakes, start)
    assert _full_searches(calls) == [f"id in ({heads['HELP-1'].id})"]
    paged = [c for c in calls if c["method"] == "GET" and c["path"].endswith("/issue/HELP-1/comment")]
    # Paged through the comment resource only because the search's embedded list was capped (Cloud: 20).
    if deployment == "cloud":
        assert len(paged) == 1
    else:
        assert len(paged) <= 1

    fakes.control("comment", {"issue": "HELP-2", "as": "reporter", "body": "any news?"})
    now = {t.key: t for t in client.selected()}
    assert now["HELP-2"].updated > heads["HELP-2"].updated  # the head tells the ticket changed
    assert now["HELP-1"].updated == heads["HELP-1"].updated  # ... and that this one did not
    (changed,) = client.read_whole([now["HELP-2"]])
    assert changed.comments[-1].body == "any news?"
