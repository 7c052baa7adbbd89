"""The whole remediation, in order, in French and in English."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from mailunblock.connectors.models import InboxRule
from mailunblock.workflows.policy import RemediationPolicy
from mailunblock.workflows.state import Stage, TicketState


def test_happy_path_in_order_french(world):
    world.directory.rules["u-alice"] = [
        InboxRule("r1", "RSS", True, forward_to=("drop@evil.example",)),
        InboxRule("r2", "Newsletters", True, move_to_folder="News"),
    ]

    state = world.cycle()

    assert state.stage is Stage.AWAITING_APPROVAL
    assert world.tickets.markers() == ["ack", "plan"]
    ack, plan = world.tickets.posted
    assert not ack.comment.internal and ack.comment.body.startswith("Bonjour Alice Martin,")
    assert plan.comment.internal
    assert r"alice\@contoso.com, a.martin\@contoso.com" in plan.comment.body  # escaped: no e-mail link
    assert "N'EST PAS CELUI DU DEMANDEUR" not in plan.comment.body
    assert world.directory.resets == [] and world.restricted.unblocks == []

    world.clock.advance(minutes=7)
    state = world.approve()

    assert state.stage is Stage.WAITING_FOR_SEND
    assert state.approval_kind == "comment" and state.approved_by == "Bob Agent"
    assert len(world.directory.resets) == 1
    assert world.directory.revokes == ["u-alice"]
    assert world.restricted.unblocks == ["alice@contoso.com"]
    assert world.tickets.markers() == ["ack", "plan", "summary", "eta"]
    summary = world.tickets.notes()[-1]
    assert "mailunblock reveal HELP-101" in summary
    assert "par téléphone ou en personne" not in summary  # internal notes use the agents' language
    assert "by phone or in person" in summary
    assert '"RSS" (forwardTo drop@evil.example)' in summary
    assert "Newsletters" not in summary
    eta = world.tickets.public()[-1]
    # unblocked at 13:17 UTC = 14:17 in Paris; window 3-4 h later.
    assert "fonctionner à nouveau entre 17:17 et 18:17 (heure de Paris)." in eta
    assert "jamais envoyé par e-mail" in eta
    assert "choisir un nouveau" in eta

    assert world.engine().due(state) is False
    world.clock.advance(hours=3)
    assert world.engine().due(world.state()) is True
    state = world.cycle()
    assert state.stage is Stage.WAITING_FOR_SEND  # off the list, but the window is not over
    assert state.next_check_at == world.clock.now() + timedelta(minutes=30)  # every verify_every

    world.clock.advance(hours=1)
    state = world.cycle()

    assert state.stage is Stage.RESOLVED and state.is_terminal
    assert world.tickets.markers() == ["ack", "plan", "summary", "eta", "resolved"]
    assert "vous pouvez de nouveau envoyer" in world.tickets.public()[-1]
    assert world.tickets.labels == ["mail-unblocked"]
    assert world.tickets.applied == ["Resolve"]
    assert [e.stage for e in state.history] == [
        Stage.NEW, Stage.AWAITING_APPROVAL, Stage.APPROVED, Stage.PASSWORD_RESET,
        Stage.SESSIONS_REVOKED, Stage.MAILBOX_CHECKED, Stage.LIST_CHECKED,
        Stage.WAITING_FOR_SEND, Stage.RESOLVED,
    ]
    assert len(world.directory.resets) == 1 and len(world.restricted.unblocks) == 1
    assert world.cycle().stage is Stage.RESOLVED
    assert len(world.tickets.posted) == 5


def test_eta_in_english_with_the_jira_time_zone(world):
    world.tickets.reporter = world.bob.__class__(
        "Alice Martin", account_id="acc-alice", email="alice@contoso.com",
        locale="en_US", time_zone="America/New_York")
    world.cycle()
    world.approve()

    eta = world.tickets.public()[-1]
    # 13:10 UTC is 08:10 in New York (EST in early March).
    assert "between 11:10\u202fAM and 12:10\u202fPM (Eastern Time)" in eta
    assert "never be sent by email" in eta
    assert "choose a new password" in eta


def test_locale_and_zone_fall_back_to_graph_then_tenant(make_world):
    world = make_world(tenant_time_zone="Europe/Paris")
    world.tickets.reporter = world.bob.__class__("Alice", account_id="acc-alice",
                                                 email="alice@contoso.com")
    world.cycle()
    state = world.approve()

    assert (state.locale, state.time_zone) == ("fr", "Europe/Paris")  # Graph preferredLanguage fr-FR
    assert "entre 17:10 et 18:10 (heure de Paris)" in world.tickets.public()[-1]


def test_window_on_another_day_names_the_day(world):
    world.clock.advance(hours=9)  # 22:10 UTC: the window starts after midnight in Paris
    world.cycle()
    world.approve()

    assert "entre 02:10 et 03:10 (heure de Paris) le mardi 3 mars 2026" in world.tickets.public()[-1]


def test_state_round_trips_through_json(world):
    import json

    world.cycle()
    world.approve()
    state = world.state()

    again = TicketState.from_dict(json.loads(json.dumps(state.to_dict())))

    assert again == state
    assert again.history[-1].at - again.history[0].at == timedelta(0)


def test_public_comments_address_a_reporter_who_is_not_the_user(world):
    world.tickets.reporter = world.carol
    world.tickets.affected_account = "alice@contoso.com"
    world.cycle()
    world.approve()

    eta = world.tickets.public()[-1]
    assert eta.startswith("Bonjour Carol Agent,\n\nLe compte alice@contoso.com a été sécurisé")
    assert "le communiquera à l\u2019utilisateur du compte par téléphone ou en personne" in eta
    assert "Votre compte" not in eta


def test_final_message_to_a_reporter_who_is_not_the_user_names_the_account(world):
    world.tickets.reporter = world.carol
    world.tickets.affected_account = "alice@contoso.com"
    world.cycle()
    world.approve()
    world.clock.advance(hours=4)
    assert world.cycle().stage is Stage.RESOLVED
    final = world.tickets.public()[-1]
    assert "le compte alice@contoso.com n\u2019est plus bloqué, il peut de nouveau envoyer" in final
    assert "votre compte" not in final


def test_the_reporters_jira_profile_language_comes_first(make_world):
    world = make_world(tenant_locale="en", tenant_time_zone="America/New_York")
    world.directory.users["u-alice"] = world.user(preferred_language="en-US")
    # Issue fields carry no locale (Jira Cloud): the profile is read once, at triage.
    world.tickets.reporter = replace(world.alice, locale=None, time_zone=None)
    world.tickets.profiles[world.alice.ref] = ("fr_FR", "Europe/Paris")
    state = world.cycle()
    assert (state.locale, state.time_zone) == ("fr", "Europe/Paris")
    assert world.tickets.public()[0].startswith("Bonjour")


def test_an_unreadable_jira_profile_falls_back_to_the_other_hints(make_world):
    from mailunblock.connectors.errors import PermissionDeniedError

    world = make_world(tenant_locale="en", tenant_time_zone="America/New_York")
    world.directory.users["u-alice"] = world.user(preferred_language="en-US")
    world.tickets.reporter = replace(world.alice, locale=None, time_zone=None)
    world.tickets.fail["user_locale"] = [PermissionDeniedError("Browse users needed", service="jira")]
    state = world.cycle()
    assert state.locale == "en" and state.stage.value == "awaiting_approval"


def test_the_pre_reset_check_read_gives_both_before_values(world):
    valid_from = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    world.directory.users["u-alice"] = world.user(sign_in_sessions_valid_from=valid_from)
    world.cycle()
    state = world.approve()
    assert state.stage is Stage.WAITING_FOR_SEND
    assert (state.password_changed_before, state.sessions_valid_before) == (
        world.user().last_password_change, valid_from)
    assert world.directory.user_reads == 0  # no read of its own before the reset or the revocation


def test_an_auto_approved_reset_reads_the_account_once_for_both_before_values(make_world):
    world = make_world(policy=RemediationPolicy(auto_approve=True))
    world.directory.users["u-alice"] = world.user(sign_in_sessions_valid_from=datetime(2026, 1, 5, tzinfo=UTC))
    assert world.cycle().stage is Stage.WAITING_FOR_SEND
    assert world.directory.user_reads == 1
