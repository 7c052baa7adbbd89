"""The trust rules against the independent fakes: scope, moved tickets, the bot, rejections, edits, look-alikes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from conformance_fakes import (
    BOT_API_TOKEN,
    BOT_EMAIL,
    BOT_PASSWORD,
    BOT_USERNAME,
    START,
    Fakes,
    Product,
    ProductClock,
    marker_of,
    write_config,
)
from mailunblock.workflows.state import Stage

APPROVER = "sam.agent@contoso.com"
BOT = BOT_EMAIL


@pytest.fixture(params=["cloud", "datacenter"])
def world(request: pytest.FixtureRequest, fakes_available: None, tmp_path: Path) -> Iterator[tuple[Fakes, Product]]:
    """Fakes with every seeded ticket untagged but HELP-1 (Alice, blocked), and a product on their clock."""
    (tmp_path / "fakes").mkdir()
    fakes = Fakes(tmp_path / "fakes", request.param)
    for n in range(2, 9):
        fakes.control("labels", {"issue": f"HELP-{n}", "remove": ["mail-blocked"]})
    clock = ProductClock(fakes)
    clock.set(START)
    product = Product(write_config(fakes, tmp_path / "config"), clock)
    yield fakes, product
    product.close()
    fakes.stop()


def writes(fakes: Fakes) -> list[tuple[str, str]]:
    """(service, target) of every Microsoft write: password resets, revocations, unblocks."""
    found = []
    for call in fakes.calls():
        meta = call.get("meta") or {}
        if call["service"] == "graph" and call["path"].endswith("/$batch"):
            # The fake serves no JSON batching: a refused batch ran none of its requests.
            if call.get("status") == 200:
                found.append(("graph", "$batch"))
        elif call["service"] == "graph" and call["method"] in ("PATCH", "POST"):
            found.append(("graph", str(meta.get("target_user", "")).lower()))
        elif call["service"] == "exchange" and str(meta.get("cmdlet", "")).lower() == "remove-blockedsenderaddress":
            found.append(("exchange", str(meta.get("sender", "")).lower()))
    return found


def bot_markers(fakes: Fakes, key: str) -> list[str]:
    return [m for c in fakes.issue(key).get("comments") or [] if (m := marker_of(c))]


def comment(fakes: Fakes, key: str, who: str, body: str) -> None:
    fakes.control("comment", {"issue": key, "as": who, "body": body, "internal": True})


def edit_description(fakes: Fakes, key: str, text: str) -> None:
    """Edit a ticket through Jira's REST API, as an agent would in the UI."""
    auth = (BOT_EMAIL, BOT_API_TOKEN) if fakes.deployment == "cloud" else (BOT_USERNAME, BOT_PASSWORD)
    response = requests.put(f"{fakes.urls['jira']}/rest/api/2/issue/{key}", json={"fields": {"description": text}},
                            auth=auth, verify=str(fakes.ca), timeout=30)
    assert response.status_code == 204, response.text


def later(product: Product) -> None:
    product.clock.advance(timedelta(minutes=5))


def test_a_labelled_ticket_outside_the_configured_projects_is_not_selected(world: Any) -> None:
    fakes, product = world
    fakes.control("labels", {"issue": "OPS-1", "add": ["mail-blocked"]})
    product.cycle()
    assert bot_markers(fakes, "OPS-1") == [] and product.state("OPS-1") is None
    assert product.state("HELP-1") is not None


def test_a_moved_ticket_is_followed_by_its_issue_id(world: Any) -> None:
    fakes, product = world
    product.cycle()
    assert product.state("HELP-1").stage is Stage.AWAITING_APPROVAL  # type: ignore[union-attr]
    moved = fakes.control("move", {"issue": "HELP-1", "project": "OPS"})["issue"]
    later(product)
    comment(fakes, moved, APPROVER, "/approve")
    later(product)
    product.cycle()
    state = product.state(moved)
    assert state is not None and product.state("HELP-1") is None
    assert state.stage is Stage.WAITING_FOR_SEND
    assert bot_markers(fakes, moved).count("ack") == 1 and bot_markers(fakes, moved).count("plan") == 1
    assert writes(fakes).count(("exchange", "alice@contoso.com")) == 1


def test_the_bot_never_approves_and_a_rejection_wins(world: Any) -> None:
    fakes, product = world
    product.cycle()
    later(product)
    comment(fakes, "HELP-1", BOT, "/approve")
    product.cycle()
    assert product.state("HELP-1").ignored and writes(fakes) == []  # type: ignore[union-attr]
    later(product)
    comment(fakes, "HELP-1", APPROVER, "/approve")
    comment(fakes, "HELP-1", "pat.agent@contoso.com", "/reject the user is on holiday, check first")
    later(product)
    product.cycle()
    state = product.state("HELP-1")
    assert state is not None and state.stage is Stage.REJECTED
    assert sorted(state.ignored.values()) == ["bot", "overruled"]
    assert writes(fakes) == []


def test_an_edit_naming_someone_else_lapses_the_approval(world: Any) -> None:
    fakes, product = world
    product.cycle()
    later(product)
    comment(fakes, "HELP-1", APPROVER, "/approve")
    edit_description(fakes, "HELP-1", "Sorry, it is bob@contoso.com whose mail bounces.")
    later(product)
    product.cycle()
    state = product.state("HELP-1")
    assert state is not None and state.stage is Stage.AWAITING_APPROVAL
    assert state.account_upn == "bob@contoso.com" and "plan-1" in bot_markers(fakes, "HELP-1")
    assert writes(fakes) == [], "nothing may be done to either account"
