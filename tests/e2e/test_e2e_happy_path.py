"""The whole remediation of one blocked account, in English and in French, through the real poller."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from e2e_world import STEP, World, is_internal, marker_name
from mailunblock.workflows.state import Stage

PUBLIC = ("ack", "eta", "resolved")


@dataclass(frozen=True)
class Case:
    """One reporter, remediating their own account, and how their comments must read."""

    reporter: str
    tenant: str
    display_name: str
    locale: str
    time_zone: str
    greeting: str
    window: str  # the ETA sentence, with {start} and {end}
    resolved: str


CASES = [
    pytest.param(
        Case("adele.vance@contoso.com", "contoso", "Adele Vance", "en", "America/New_York",
             "Hello Adele Vance,",
             "it should work again between {start} and {end} (Eastern Time). We will check",
             "you can send email again"),
        id="en-contoso",
    ),
    pytest.param(
        Case("chloe.dupont@fabrikam.fr", "fabrikam", "Chloé Dupont", "fr", "Europe/Paris",
             "Bonjour Chloé Dupont,",
             "il devrait fonctionner à nouveau entre {start} et {end} (heure de Paris). Nous le vérifierons",
             "vous pouvez de nouveau envoyer des e-mails"),
        id="fr-fabrikam",
    ),
]


def clock_text(moment: datetime, locale: str, time_zone: str) -> str:
    """A time of day as an English ("3:07 PM") or French ("15:07") reader expects it."""
    local = moment.astimezone(ZoneInfo(time_zone))
    if locale == "fr":
        return f"{local:%H:%M}"
    return f"{local.hour % 12 or 12}:{local:%M} {'AM' if local.hour < 12 else 'PM'}"


def readable(body: str) -> str:
    """CLDR puts a narrow no-break space before AM/PM; compare it as the space a reader sees."""
    return body.replace("\u202f", " ")


def unblock_time(world: World, address: str) -> datetime:
    """When the Exchange emulator served the one Remove-BlockedSenderAddress call for ``address``."""
    calls = [
        c for c in world.sandbox.calls.records("exchange")
        if c.cmdlet == "Remove-BlockedSenderAddress"
        and c.body["CmdletInput"]["Parameters"]["SenderAddress"].lower() == address
    ]
    assert len(calls) == 1, calls
    assert calls[0].status == 200
    return calls[0].at


@pytest.mark.parametrize("case", CASES)
def test_a_blocked_account_is_remediated_end_to_end(world: World, case: Case) -> None:
    before = world.effects()
    key = world.new_ticket(case.reporter)

    world.cycle()
    assert world.markers(key) == ["ack", "plan"]
    ack, plan = world.bot_comment(key, "ack"), world.bot_comment(key, "plan")
    assert ack.body.startswith(case.greeting)
    assert case.reporter in plan.body and "NOT THE REPORTER" not in plan.body
    assert world.state(key).stage is Stage.AWAITING_APPROVAL
    assert world.effects() == before, "nothing may happen before an agent approves"

    world.advance(timedelta(minutes=5))
    world.approve(key, "bob")
    world.cycle()
    assert world.effects() - before == world.remediated(case.tenant, case.reporter)
    state = world.state(key)
    assert state.stage is Stage.WAITING_FOR_SEND
    assert state.approved_by == "Bob Nguyen"

    unblocked = unblock_time(world, case.reporter)
    assert state.unblocked_at == unblocked
    start = clock_text(unblocked + timedelta(hours=3), case.locale, case.time_zone)
    end = clock_text(unblocked + timedelta(hours=4), case.locale, case.time_zone)
    eta = world.bot_comment(key, "eta")
    assert case.window.format(start=start, end=end) in readable(eta.body)
    assert eta.body.startswith(case.greeting)

    # Sending is not confirmed before the announced window ends, even though the list is already clear.
    world.run_until(lambda: world.now() >= unblocked + timedelta(hours=4) - STEP, limit=timedelta(hours=4))
    assert world.state(key).stage is Stage.WAITING_FOR_SEND
    assert not world.sandbox.microsoft.is_listed(case.tenant, case.reporter)
    assert "resolved" not in world.markers(key)

    world.advance(STEP)
    world.cycle()
    final = world.state(key)
    assert final.stage is Stage.RESOLVED
    assert final.history[-1].at == unblocked + timedelta(hours=4)
    assert world.bot_comment(key, "resolved").body.startswith(case.greeting)
    assert case.resolved in world.bot_comment(key, "resolved").body
    assert world.labels(key) == ["mail-unblocked"]
    issue = world.jira.issue(key)
    assert issue.status == "Resolved" and world.status_category(key) == "done"

    sequence = [marker_name(key, c) or f"{c.author == world.bot_account}:{c.body}" for c in world.comments(key)]
    assert sequence == ["ack", "plan", "False:/approve", "summary", "eta", "resolved"]
    for comment in world.bot_comments(key):
        assert is_internal(comment) == (marker_name(key, comment) not in PUBLIC), marker_name(key, comment)
    public_ids = [world.bot_comment(key, name).id for name in PUBLIC]
    assert [n.comment_id for n in world.jira.notifications(key)] == public_ids
    assert all(n.to == case.reporter for n in world.jira.notifications(key))

    assert world.effects() - before == world.remediated(case.tenant, case.reporter)
    microsoft = world.sandbox.microsoft
    assert microsoft.reset_count(case.tenant, case.reporter) == 1
    assert microsoft.revocation_count(case.tenant, case.reporter) == 1
    assert microsoft.unblock_count(case.tenant, case.reporter) == 1
    world.advance(timedelta(hours=2))
    world.cycle()
    assert len(world.comments(key)) == len(sequence), "a resolved ticket is left alone"


def test_the_remediation_note_lists_each_outcome_on_its_own_line(world: World) -> None:
    key = world.new_ticket("lidia.holloway@contoso.com")
    world.cycle()
    world.approve(key)
    world.cycle()
    summary = world.bot_comment(key, "summary").body
    lines = summary.splitlines()
    assert "* (/) Sign-in sessions revoked." in lines, summary
    assert "* (/) No inbox rule forwards, redirects or deletes mail." in lines, summary
    assert "* (/) Removed from the Restricted users list: lidia.holloway@contoso.com." in lines, summary
    world.finish(key)
    assert world.state(key).stage is Stage.RESOLVED


FRENCH_DAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
FRENCH_MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
                 "octobre", "novembre", "décembre")


def test_a_window_on_the_next_local_day_names_that_day(world: World) -> None:
    now = world.now()
    evening = now.replace(hour=22, minute=40, second=0, microsecond=0)  # 23:40 in Paris
    world.advance(evening - now if evening > now else evening + timedelta(days=1) - now)
    key = world.new_ticket("marc.leroy@fabrikam.fr")
    world.cycle()
    world.approve(key)
    world.cycle()
    unblocked = unblock_time(world, "marc.leroy@fabrikam.fr")
    start = (unblocked + timedelta(hours=3)).astimezone(ZoneInfo("Europe/Paris"))
    end = start + timedelta(hours=1)
    assert start.date() > unblocked.astimezone(ZoneInfo("Europe/Paris")).date()
    day = f"{FRENCH_DAYS[start.weekday()]} {start.day} {FRENCH_MONTHS[start.month - 1]} {start.year}"
    eta = world.bot_comment(key, "eta").body
    assert f"entre {start:%H:%M} et {end:%H:%M} (heure de Paris) le {day}." in eta, eta
    assert world.finish(key).stage is Stage.RESOLVED
