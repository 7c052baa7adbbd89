"""The whole remediation on Jira Data Center: PAT auth, /rest/api/2/search with startAt/total, users by name."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from e2e_world import World, is_internal, marker_name
from mailunblock.workflows.state import Stage

REPORTER = "adele.vance@contoso.com"
PUBLIC = ("ack", "eta", "resolved")


def test_a_blocked_account_is_remediated_on_data_center(make_world: Callable[..., World]) -> None:
    world = make_world(jira_deployment="datacenter", jira={"page_size": 2})
    assert world.runtime.config.jira.deployment.value == "datacenter"
    before = world.effects()
    key = world.new_ticket(REPORTER)
    for other in ("megan.bowen@contoso.com", "ben.walters@contoso.com"):  # the search spans two pages
        world.new_ticket(other)

    world.cycle()
    assert world.markers(key) == ["ack", "plan"]
    state = world.state(key)
    assert state.stage is Stage.AWAITING_APPROVAL
    reporter = world.jira.user("adele.vance")
    assert state.reporter_ref == reporter.key  # Data Center names users by key, not accountId
    assert (state.locale, state.time_zone) == ("en", "America/New_York")
    assert world.effects() == before

    world.advance(timedelta(minutes=5))
    world.comment(key, "mallory", "/approve", internal=True)  # no agent: ignored, by username lookup
    world.cycle()
    assert world.state(key).ignored and "is not an approver" in world.bot_comments(key)[-1].body
    world.advance(timedelta(minutes=5))
    world.approve(key, "alice")
    world.cycle()
    state = world.state(key)
    assert state.stage is Stage.WAITING_FOR_SEND and state.approved_by == "Alice Martin"
    assert world.effects() - before == world.remediated("contoso", REPORTER)
    assert "it should work again between" in world.bot_comment(key, "eta").body

    final = world.finish(key)
    assert final.stage is Stage.RESOLVED
    assert world.labels(key) == ["mail-unblocked"]
    assert world.status_category(key) == "done"
    assert world.jira.issue(key).changelog[-1].author == world.bot_account
    assert world.effects() - before == world.remediated("contoso", REPORTER)
    for comment in world.bot_comments(key):
        name = marker_name(key, comment)
        assert is_internal(comment) == (name not in PUBLIC), name
    assert [n.comment_id for n in world.jira.notifications(key)] == [
        world.bot_comment(key, name).id for name in PUBLIC]

    calls = world.sandbox.calls.records("jira")
    searches = [c for c in calls if c.path == "/rest/api/2/search"]
    assert searches and all(c.method == "GET" for c in searches)
    assert {c.query.get("startAt") for c in searches} >= {"0", "2"}
    assert not [c for c in calls if c.path.endswith("/search/jql") or "accountId" in c.query]
    assert all(c.status < 400 for c in calls), [(c.method, c.path, c.status) for c in calls if c.status >= 400]
