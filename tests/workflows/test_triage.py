"""Refusal rules: automation never touches an account it should not."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from mailunblock.connectors.models import DirectoryRole, InboxRule
from mailunblock.workflows.policy import RemediationPolicy
from mailunblock.workflows.state import Stage, TicketState

GLOBAL_ADMIN = DirectoryRole("role-1", "Global Administrator", "62e90394-69f5-4237-9190-012177145e10")
HELPDESK = DirectoryRole("role-2", "Helpdesk Administrator", "729827e3-9c14-49f7-bb1b-9608f156bbb8")


def _assert_refused(world, reason, *phrases):
    state = world.cycle()
    assert state.stage is Stage.REFUSED and state.is_terminal
    assert state.refusal == reason
    assert world.tickets.markers() == ["ack", "refused"]
    note = world.tickets.notes()[0]
    for phrase in phrases:
        assert phrase in note
    assert "Nothing was changed on the account." in note
    assert world.directory.resets == [] and world.restricted.unblocks == []
    assert "mail-blocked" not in world.tickets.labels
    assert world.cycle().stage is Stage.REFUSED
    assert len(world.tickets.posted) == 2


def test_unknown_domain(world):
    world.tickets.reporter = replace(world.alice, email="alice@gmail.com")
    _assert_refused(world, "unknown_domain", "alice@gmail.com", "does not belong to any tenant")
    assert world.state().tenant is None


def test_no_account(world):
    world.tickets.reporter = replace(world.alice, email=None)
    _assert_refused(world, "no_account", "No affected account could be found")


def test_several_addresses_in_the_text_ask_an_approver_to_pick_one(world):
    world.tickets.reporter = replace(world.alice, email=None)
    world.tickets.description = "Both alice@contoso.com and bob@contoso.fr cannot send."
    state = world.cycle()
    assert state.stage is Stage.AWAITING_ACCOUNT
    assert state.candidates == ("alice@contoso.com", "bob@contoso.fr") and state.account_id is None
    assert world.tickets.markers() == ["ack", "choose-account"]
    note = world.tickets.notes()[-1]
    assert "* alice@contoso.com\n* bob@contoso.fr" in note and "{{/account <address>}}" in note
    assert world.directory.resets == [] and world.restricted.unblocks == []


def test_one_managed_address_in_the_text_is_used(world):
    world.tickets.reporter = replace(world.alice, email=None)
    world.tickets.description = "Please help a.martin@contoso.com, cc helpdesk@partner.example"
    state = world.cycle()
    assert state.stage is Stage.AWAITING_APPROVAL
    assert state.account_id == "u-alice"
    assert "NOT THE REPORTER" in world.tickets.notes()[0]


def test_several_directory_matches(world):
    world.directory.users["u-clone"] = world.user(id="u-clone", user_principal_name="clone@contoso.com")
    _assert_refused(world, "several_accounts", "alice@contoso.com, clone@contoso.com")


def test_account_that_does_not_exist(world):
    world.tickets.affected_account = "nobody@contoso.com"
    _assert_refused(world, "not_found", "nobody@contoso.com", "No account")


def test_guest(world):
    world.directory.users["u-alice"] = world.user(user_type="Guest")
    _assert_refused(world, "guest", "guest account")


def test_disabled(world):
    world.directory.users["u-alice"] = world.user(account_enabled=False)
    _assert_refused(world, "disabled", "is disabled")
    assert world.state().tenant == "contoso"  # known once the domain was routed: reports group by it


def test_synced_from_on_premises(world):
    world.directory.users["u-alice"] = world.user(on_premises_sync_enabled=True)
    _assert_refused(world, "synced", "must be reset on-premises")


def test_any_directory_role_by_default(world):
    world.directory.roles["u-alice"] = [HELPDESK]
    _assert_refused(world, "privileged", "alice@contoso.com (Helpdesk Administrator)",
                    "privileged directory role")


@pytest.mark.parametrize(
    ("excluded", "roles", "refused"),
    [
        (("Global Administrator",), [HELPDESK], False),
        (("Global Administrator",), [GLOBAL_ADMIN], True),
        ((GLOBAL_ADMIN.role_template_id,), [GLOBAL_ADMIN], True),
        ((), [GLOBAL_ADMIN], False),
    ],
)
def test_exclusion_list(make_world, excluded, roles, refused):
    world = make_world(policy=RemediationPolicy(excluded_roles=excluded))
    world.directory.roles["u-alice"] = roles
    state = world.cycle()
    assert (state.stage is Stage.REFUSED) is refused


def test_second_ticket_for_an_account_in_remediation_is_linked(world):
    other = TicketState(issue_key="HELP-99", stage=Stage.WAITING_FOR_SEND,
                                    tenant="contoso", account_id="u-alice")
    world.repository.save(other)

    _assert_refused(world, "duplicate", "already being remediated in HELP-99")

    assert world.tickets.links == [("HELP-101", "HELP-99")]


def test_finished_ticket_for_the_account_does_not_block(world):
    world.repository.save(TicketState(issue_key="HELP-99", stage=Stage.RESOLVED,
                                                  tenant="contoso", account_id="u-alice"))
    assert world.cycle().stage is Stage.AWAITING_APPROVAL


def test_custom_field_wins_and_plan_says_the_account_is_not_the_reporter(world):
    world.tickets.reporter = world.carol
    world.tickets.affected_account = "A.Martin@contoso.com"
    state = world.cycle()

    assert state.account_upn == "alice@contoso.com" and not state.reporter_is_account
    plan = world.tickets.notes()[0]
    assert "*(!) THE AFFECTED ACCOUNT IS NOT THE REPORTER.*" in plan
    assert "Carol Agent (carol@contoso.com)" in plan


def test_an_account_unblocked_recently_is_not_unblocked_again(world):
    from datetime import timedelta

    from mailunblock.workflows.state import Stage, TicketState

    earlier = TicketState.first_seen("HELP-90", world.clock.now() - timedelta(days=3))
    earlier.tenant, earlier.account_id = "contoso", "u-alice"
    earlier.unblocked_at = world.clock.now() - timedelta(days=2)
    earlier.enter(Stage.RESOLVED, world.clock.now() - timedelta(days=2))
    world.repository.save(earlier)

    state = world.cycle()

    assert state.stage is Stage.REFUSED and state.refusal == "blocked_again"
    note = world.tickets.notes()[-1]
    assert "unblocked by mailunblock in HELP-90 (linked) and is blocked again" in note
    assert "probably still compromised" in note
    assert world.tickets.links == [("HELP-101", "HELP-90")]
    assert world.directory.resets == [] and world.restricted.unblocks == []


def test_an_old_unblock_does_not_prevent_a_new_remediation(world):
    from datetime import timedelta

    from mailunblock.workflows.state import Stage, TicketState

    earlier = TicketState.first_seen("HELP-80", world.clock.now() - timedelta(days=40))
    earlier.tenant, earlier.account_id = "contoso", "u-alice"
    earlier.unblocked_at = world.clock.now() - timedelta(days=39)
    earlier.enter(Stage.RESOLVED, world.clock.now() - timedelta(days=39))
    world.repository.save(earlier)

    assert world.cycle().stage is Stage.AWAITING_APPROVAL


# ---------------------------------------------------------------- facts read along with the account


def test_roles_read_along_with_the_account_refuse_it_without_another_read(world):
    world.directory.batching = True
    world.directory.roles["u-alice"] = [GLOBAL_ADMIN]
    _assert_refused(world, "privileged", "alice@contoso.com (Global Administrator)")
    assert world.directory.role_reads == 0


def test_a_mailbox_answer_read_along_with_the_account_is_used(world):
    world.directory.batching = True
    world.directory.no_mailbox.add("u-alice")
    _assert_refused(world, "no_mailbox", "has no mailbox in Exchange Online")
    assert world.directory.rule_reads == 0


def test_facts_read_along_for_another_account_are_not_used(world):
    world.directory.batching = True
    other = world.user(id="u-other", user_principal_name="other@contoso.com", mail="other@contoso.com",
                       proxy_addresses=("SMTP:other@contoso.com",))
    world.directory.users["u-other"] = other
    world.directory.roles["u-alice"] = [GLOBAL_ADMIN]
    real = world.directory.account_facts

    def answered_for_someone_else(address, **kwargs):
        facts = real(address, **kwargs)
        return replace(facts, subject_id="u-other", roles=())  # roles of another object than the one found

    world.directory.account_facts = answered_for_someone_else  # type: ignore[method-assign]
    _assert_refused(world, "privileged", "Global Administrator")
    assert world.directory.role_reads == 1


def test_with_batching_the_remediation_reads_roles_and_rules_along_with_other_calls(world):
    world.directory.batching = True
    world.directory.users["u-alice"] = world.user(sign_in_sessions_valid_from=datetime(2026, 1, 5, tzinfo=UTC))
    world.directory.rules["u-alice"] = [InboxRule("r1", "RSS", True, forward_to=("drop@evil.example",))]
    assert world.cycle().stage is Stage.AWAITING_APPROVAL
    state = world.approve()
    assert state.stage is Stage.WAITING_FOR_SEND
    assert world.directory.revokes == ["u-alice"] and len(world.directory.resets) == 1
    assert state.suspicious_rules == ('"RSS" (forwardTo drop@evil.example)',)
    assert (world.directory.role_reads, world.directory.rule_reads, world.directory.user_reads) == (0, 0, 0)
