"""The contract every ticketing backend must pass (see the README, "Adding a ticketing backend").

A backend's test module subclasses ``TicketingContract`` and provides a ``harness`` fixture: the backend
under test (built the way the runtime builds it) and a way to act on the ticketing system as people do.
Jira runs it on Cloud and Data Center (``test_ticketing_contract.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import pytest
from mailunblock.connectors.errors import NotFoundError
from mailunblock.connectors.models import Approval, Comment, Person, Ticket
from mailunblock.workflows.approvers import is_approver
from mailunblock.workflows.policy import RemediationPolicy
from mailunblock.workflows.ports import TicketingBackend

TRIGGER = "mail-blocked"


class Harness(Protocol):
    """The backend under test, and the ticketing system's people acting on it."""

    backend: TicketingBackend
    policy: RemediationPolicy  # names the groups/roles that make ``approver`` an approver
    approver: str  # a person who may approve
    outsider: str  # a person who may not
    reporter: str  # who files the tickets

    def new_ticket(self, *, tagged: bool = True) -> str:
        """File a ticket as ``reporter`` (with the trigger label when ``tagged``); return its key."""
        ...

    def comment(self, key: str, author: str, body: str) -> str:
        """Comment on the ticket as ``author``; return the comment's id."""
        ...

    def hidden_from_reporter(self, key: str, comment_id: str) -> bool:
        """Whether the ticketing system itself keeps this comment from the reporter."""
        ...


def _comment(ticket: Ticket, comment_id: str) -> Comment:
    return next(c for c in ticket.comments if c.id == comment_id)


class TicketingContract:
    """What the workflow relies on, checked against a live backend."""

    def test_the_selection_holds_the_tagged_tickets_only(self, harness: Harness) -> None:
        tagged, untagged = harness.new_ticket(), harness.new_ticket(tagged=False)
        selected = {t.key: t for t in harness.backend.selected()}
        assert tagged in selected and untagged not in selected
        head = selected[tagged]
        assert TRIGGER in head.labels and not head.is_done and head.id and head.updated.utcoffset() is not None
        (ticket,) = harness.backend.read_whole([head])  # read whole on demand: what the poller works on
        assert isinstance(ticket, Ticket) and ticket.key == tagged and ticket.updated == head.updated
        assert isinstance(ticket.reporter, Person) and ticket.reporter.email
        assert ticket.id == head.id and ticket.created.utcoffset() is not None

    def test_a_ticket_is_read_again_with_its_comments_in_order(self, harness: Harness) -> None:
        key = harness.new_ticket()
        first = harness.comment(key, harness.reporter, "first")
        second = harness.comment(key, harness.approver, "second")
        ticket = harness.backend.get_issue(key)
        assert ticket.key == key
        ids = [c.id for c in ticket.comments]
        assert ids.index(first) < ids.index(second)
        comment = _comment(ticket, second)
        assert isinstance(comment.author, Person) and comment.body == "second"
        assert isinstance(comment.created, datetime) and comment.created.utcoffset() is not None
        with pytest.raises(NotFoundError):
            harness.backend.get_issue("NOPE-999999")

    def test_comments_carry_an_invisible_marker_and_internal_notes_stay_internal(self, harness: Harness) -> None:
        backend, key = harness.backend, harness.new_ticket()
        note = backend.post_comment(key, "an internal note", internal=True, marker=f"mailunblock:{key}:note")
        public = backend.post_comment(key, "a public answer", internal=False, marker=f"mailunblock:{key}:answer")
        assert harness.hidden_from_reporter(key, note) and not harness.hidden_from_reporter(key, public)
        ticket = backend.get_issue(key)
        assert _comment(ticket, note).body == "an internal note"  # the marker is not part of the text
        assert backend.find_comment(key, f"mailunblock:{key}:note") == note
        assert backend.find_comment(key, f"mailunblock:{key}:answer") == public
        assert backend.find_comment(key, f"mailunblock:{key}:never-posted") is None

    def test_the_bot_is_one_account_and_not_the_reporter(self, harness: Harness) -> None:
        backend, key = harness.backend, harness.new_ticket()
        bot = backend.myself()
        posted = backend.post_comment(key, "hello", internal=True, marker=f"mailunblock:{key}:hello")
        ticket = backend.get_issue(key)
        assert bot.same_account(_comment(ticket, posted).author)
        assert not bot.same_account(ticket.reporter)
        assert isinstance(bot.ref, str) and bot.ref

    def test_labels_transitions_and_links_are_safe_to_repeat(self, harness: Harness) -> None:
        backend, key, other = harness.backend, harness.new_ticket(), harness.new_ticket()
        for _ in range(2):
            backend.update_labels(key, add=["mail-unblocked"], remove=[TRIGGER])
        assert backend.get_issue(key).labels == ("mail-unblocked",)
        assert backend.transition(key, "no such transition") is False
        backend.link_issues(key, other)
        backend.link_issues(key, other)

    def test_membership_answers_what_the_workflow_decides_with(self, harness: Harness) -> None:
        key = harness.new_ticket()
        ids = [harness.comment(key, who, "hi") for who in (harness.approver, harness.outsider)]
        approver, outsider = (_comment(harness.backend.get_issue(key), i).author for i in ids)
        assert is_approver(harness.policy, harness.backend, approver)
        assert not is_approver(harness.policy, harness.backend, outsider)
        groups = harness.backend.groups_of(approver)
        assert groups == {g.lower() for g in groups}

    def test_profiles_and_native_approvals_are_readable(self, harness: Harness) -> None:
        key = harness.new_ticket()
        reporter = harness.backend.get_issue(key).reporter
        assert reporter is not None
        locale, zone = harness.backend.user_locale(reporter)
        assert locale is None or isinstance(locale, str)
        assert zone is None or isinstance(zone, str)
        try:
            approvals = harness.backend.approvals(key)
        except NotFoundError:  # a ticket that cannot carry native approvals
            return
        assert all(isinstance(a, Approval) for a in approvals)
