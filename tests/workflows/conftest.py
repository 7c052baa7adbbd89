"""Fakes of the workflow ports, built from the domain models, plus a fake clock and crash injection."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mailunblock.connectors.errors import (
    ConnectorError,
    NotFoundError,
    UnblockLimitReachedError,
)
from mailunblock.connectors.jira import JiraUser
from mailunblock.connectors.models import (
    AccountFacts,
    Approval,
    Approver,
    BlockedSender,
    Comment,
    DirectoryRole,
    DirectoryUser,
    InboxRule,
    StatusChange,
    Ticket,
)
from mailunblock.workflows.engine import RemediationEngine
from mailunblock.workflows.markup import wiki_literal
from mailunblock.workflows.policy import RemediationPolicy
from mailunblock.workflows.state import TicketState
from mailunblock.workflows.tenants import TenantRegistry, TenantServices

START = datetime(2026, 3, 2, 13, 10, tzinfo=UTC)  # 14:10 in Paris, 08:10 in New York
KEY = "HELP-101"

ALICE = JiraUser("Alice Martin", account_id="acc-alice", email="alice@contoso.com",
                 locale="fr_FR", time_zone="Europe/Paris")
BOB = JiraUser("Bob Agent", account_id="acc-bob", email="bob@contoso.com", locale="en_US")
CAROL = JiraUser("Carol Agent", account_id="acc-carol", email="carol@contoso.com")
EVE = JiraUser("Eve Outsider", account_id="acc-eve", email="eve@contoso.com")
BOT = JiraUser("mailunblock", account_id="acc-bot")


class SimulatedCrash(Exception):
    """The process dies at this step boundary."""


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: datetime = START) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    def advance(self, **kwargs: float) -> None:
        self.current += timedelta(**kwargs)


class Boundaries:
    """Counts side-effect boundaries and raises SimulatedCrash at the chosen one."""

    def __init__(self) -> None:
        self.count = 0
        self.crash_at: int | None = None
        self.crashed_at: str | None = None

    def mark(self, label: str) -> None:
        self.count += 1
        if self.count == self.crash_at:
            self.crashed_at = label
            raise SimulatedCrash(label)

    def around(self, label: str, action: Callable[[], object]) -> object:
        self.mark(f"before {label}")
        result = action()
        self.mark(f"after {label}")
        return result


@dataclass
class Posted:
    comment: Comment
    marker: str


class FakeTickets:
    """One Jira project holding one ticket under test (plus others for linking)."""

    def __init__(self, clock: FakeClock, boundaries: Boundaries) -> None:
        self.clock = clock
        self.boundaries = boundaries
        self.ids = itertools.count(10000)
        self.summary = "Cannot send email"
        self.description = "My messages bounce with 550 5.1.8 Access denied, bad outbound sender."
        self.status = "Open"
        self.status_category = "new"
        self.labels: list[str] = ["mail-blocked"]
        self.reporter: JiraUser | None = ALICE
        self.affected_account: str | None = None
        self.comments: list[Comment] = []
        self.posted: list[Posted] = []
        self.status_changes: list[StatusChange] = []
        self.approvers = {BOB.ref, CAROL.ref}
        self.transitions = {"Resolve": ("Resolved", "done"), "Escalate": ("Escalated", "indeterminate")}
        self.applied: list[str] = []
        self.links: list[tuple[str, str]] = []
        self.label_updates = 0
        self.fail: dict[str, list[ConnectorError]] = {}
        self.native: list[Approval] = []  # JSM approvals on the request
        self.service_desk = True
        self.approval_reads = 0
        self.group_reads = 0  # groups_of calls (approver membership)
        self.profile_reads = 0  # user_locale calls
        self.profiles: dict[str, tuple[str | None, str | None]] = {}  # user ref -> Jira locale, zone
        self.properties: dict[str, Any] = {}  # issue property key -> value

    def _maybe_fail(self, method: str) -> None:
        if self.fail.get(method):
            raise self.fail[method].pop(0)

    def issue(self) -> Ticket:
        return Ticket(
            key=KEY, id="20001", summary=self.summary, description=self.description,
            status=self.status, status_category=self.status_category, labels=tuple(self.labels),
            reporter=self.reporter, created=START - timedelta(minutes=5), updated=self.clock.now(),
            comments=tuple(self.comments), affected_account=self.affected_account,
            status_changes=tuple(self.status_changes),
        )

    def add_comment(self, author: JiraUser, body: str) -> Comment:
        comment = Comment(str(next(self.ids)), author, body, self.clock.now())
        self.comments.append(comment)
        return comment

    def move(self, author: JiraUser, to_status: str) -> None:
        self.status_changes.append(StatusChange(author, self.status, to_status, self.clock.now()))
        self.status = to_status

    def get_issue(self, issue_key: str) -> Ticket:
        return self.issue()

    def post_comment(self, issue_key: str, body: str, *, internal: bool, marker: str) -> str:
        self._maybe_fail("post_comment")

        def post() -> str:
            comment = Comment(str(next(self.ids)), BOT, body, self.clock.now(), internal)
            self.comments.append(comment)
            self.posted.append(Posted(comment, marker))
            return comment.id

        return str(self.boundaries.around("post_comment", post))

    def find_comment(self, issue_key: str, marker: str) -> str | None:
        return next((p.comment.id for p in self.posted if p.marker == marker), None)

    def update_labels(self, issue_key: str, *, add: Sequence[str] = (),
                      remove: Sequence[str] = ()) -> None:
        self._maybe_fail("update_labels")

        def update() -> None:
            self.label_updates += 1
            self.labels = [lb for lb in self.labels if lb not in remove]
            self.labels += [lb for lb in add if lb not in self.labels]

        self.boundaries.around("update_labels", update)

    def transition(self, issue_key: str, transition_name: str) -> bool:
        target = self.transitions.get(transition_name)
        if target is None or self.status == target[0]:
            return False

        def apply() -> None:
            self.applied.append(transition_name)
            self.status, self.status_category = target

        self.boundaries.around("transition", apply)
        return True

    def set_property(self, issue_key: str, key: str, value: Mapping[str, Any]) -> None:
        self._maybe_fail("set_property")
        self.properties[key] = dict(value)

    def link_issues(self, issue_key: str, other_key: str) -> None:
        self.boundaries.around("link_issues", lambda: self.links.append((issue_key, other_key)))

    def myself(self) -> JiraUser:
        return BOT

    def groups_of(self, user: JiraUser) -> set[str]:
        self.group_reads += 1
        self._maybe_fail("groups_of")
        return {"helpdesk"} if user.ref in self.approvers else set()

    def in_any_role(self, user: JiraUser, project: str, roles: object, groups: object) -> bool:
        return False

    def user_locale(self, user: JiraUser) -> tuple[str | None, str | None]:
        self.profile_reads += 1
        self._maybe_fail("user_locale")
        return self.profiles.get(user.ref, (None, None))

    def approvals(self, issue_key: str) -> list[Approval]:
        self.approval_reads += 1
        if not self.service_desk:
            raise NotFoundError("Request does not exist", service="jira")
        return list(self.native)

    def decide_approval(self, name: str, decision: str, *deciders: JiraUser,
                        others: Sequence[JiraUser] = ()) -> Approval:
        """A JSM approval answered now: ``deciders`` gave ``decision`` ("approved"/"declined")."""
        approvers = tuple(Approver(u, decision) for u in deciders) + tuple(
            Approver(u, "pending") for u in others)
        approval = Approval(str(len(self.native) + 1), name, decision, approvers,
                                created=START - timedelta(minutes=4), completed=self.clock.now())
        self.native.append(approval)
        return approval

    # --- what the tests look at
    def notes(self) -> list[str]:
        """Internal notes as Jira shows them (wiki escapes resolved: test_markup_corpus checks those)."""
        return [wiki_literal(p.comment.body) for p in self.posted if p.comment.internal]

    def public(self) -> list[str]:
        """Public comments as Jira shows them."""
        return [wiki_literal(p.comment.body) for p in self.posted if not p.comment.internal]

    def markers(self) -> list[str]:
        return [p.marker.rsplit(":", 1)[1] for p in self.posted]


def alice_user(**changes: object) -> DirectoryUser:
    user = DirectoryUser(
        id="u-alice", user_principal_name="alice@contoso.com", mail="alice@contoso.com",
        proxy_addresses=("SMTP:alice@contoso.com", "smtp:a.martin@contoso.com"),
        account_enabled=True, user_type="Member", on_premises_sync_enabled=False,
        last_password_change=datetime(2025, 11, 3, 9, 0, tzinfo=UTC), display_name="Alice Martin",
        preferred_language="fr-FR",
    )
    return replace(user, **changes)  # type: ignore[arg-type]


class FakeDirectory:
    """Graph for one tenant."""

    def __init__(self, clock: FakeClock, boundaries: Boundaries) -> None:
        self.clock = clock
        self.boundaries = boundaries
        self.users: dict[str, DirectoryUser] = {"u-alice": alice_user()}
        self.roles: dict[str, list[DirectoryRole]] = {}
        self.rules: dict[str, list[InboxRule]] = {}
        self.resets: list[tuple[str, str]] = []
        self.revokes: list[str] = []
        self.fail: dict[str, list[ConnectorError]] = {}
        self.fail_after: dict[str, list[ConnectorError]] = {}
        self.no_mailbox: set[str] = set()  # user ids Exchange hosts no mailbox for
        self.user_reads = 0  # get_user calls
        self.role_reads = 0  # directory_roles calls
        self.rule_reads = 0  # inbox_rules calls
        self.batching = False  # answer roles, mailbox and rules along with other reads, as Graph's $batch

    def _maybe_fail(self, method: str) -> None:
        if self.fail.get(method):
            raise self.fail[method].pop(0)

    def get_user(self, user_id_or_upn: str) -> DirectoryUser:
        self.user_reads += 1
        self._maybe_fail("get_user")
        for user in self.users.values():
            if user_id_or_upn.lower() in (user.id, user.user_principal_name.lower()):
                return user
        raise NotFoundError("user not found", service="graph", code="Request_ResourceNotFound")

    def find_users_by_address(self, address: str) -> list[DirectoryUser]:
        self._maybe_fail("find_users_by_address")
        address = address.lower()
        return [u for u in self.users.values()
                if address in (*u.smtp_addresses, u.user_principal_name.lower())]

    def account_facts(
        self, address: str, *, account_id: str | None = None, mailbox: bool = True
    ) -> AccountFacts:
        """Like Graph's batch when ``batching``: the roles and mailbox of the one account found come along."""
        users = tuple(self.find_users_by_address(address))
        if not self.batching or len(users) != 1:
            return AccountFacts(users)
        (user,) = users
        has_mailbox = user.id not in self.no_mailbox if mailbox else None
        return AccountFacts(users, subject_id=user.id, roles=tuple(self.roles.get(user.id, [])),
                            mailbox=has_mailbox)

    def directory_roles(self, user_id: str) -> list[DirectoryRole]:
        self.role_reads += 1
        return list(self.roles.get(user_id, []))

    def reset_password(self, user_id: str, password: str) -> None:
        self._maybe_fail("reset_password")

        def reset() -> None:
            self.resets.append((user_id, password))
            user = self.users[user_id]
            self.users[user_id] = replace(user, last_password_change=self.clock.now().replace(microsecond=0))

        self.boundaries.around("reset_password", reset)
        if self.fail_after.get("reset_password"):
            raise self.fail_after["reset_password"].pop(0)

    def revoke_sessions(self, user_id: str) -> None:
        self._maybe_fail("revoke_sessions")

        def revoke() -> None:
            self.revokes.append(user_id)
            user = self.users[user_id]
            # Graph keeps whole seconds; a revocation moves the sessions' valid-from time to now.
            self.users[user_id] = replace(user, sign_in_sessions_valid_from=self.clock.now().replace(microsecond=0))

        self.boundaries.around("revoke_sessions", revoke)

    def revoke_sessions_then_inbox_rules(self, user_id: str) -> list[InboxRule] | None:
        self.revoke_sessions(user_id)
        if not self.batching or user_id in self.no_mailbox:
            return None  # not read along: the mailbox step asks inbox_rules
        return list(self.rules.get(user_id, []))

    def inbox_rules(self, user_id: str) -> list[InboxRule]:
        self.rule_reads += 1
        self._maybe_fail("inbox_rules")
        if user_id in self.no_mailbox:
            raise NotFoundError("The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
                                service="graph", code="MailboxNotEnabledForRESTAPI")
        return list(self.rules.get(user_id, []))


class FakeRestricted:
    """The Restricted users list of one tenant."""

    def __init__(self, clock: FakeClock, boundaries: Boundaries) -> None:
        self.clock = clock
        self.boundaries = boundaries
        self.entries: dict[str, BlockedSender] = {}
        self.unblocks: list[str] = []
        self.limit_reached = False
        self.sticky = False  # unblock accepted but the entry stays
        self.fail: dict[str, list[ConnectorError]] = {}
        self.warnings: list[tuple[str, ...]] = []  # @adminapi.warnings of the next unblock answers
        self.reads = 0  # reads of the list, whole or by address

    def block(self, address: str, at: datetime | None = None) -> None:
        at = at or self.clock.now() - timedelta(hours=1)
        self.entries[address] = BlockedSender(
            address, "ExceedingLimitType=External;InternalRecipientCountToday=0;"
            "ExternalRecipientCountToday=512", at, at)

    def blocked_entries(self, addresses: Sequence[str]) -> list[BlockedSender]:
        if self.fail.get("blocked_entries"):
            raise self.fail["blocked_entries"].pop(0)
        self.reads += 1
        wanted = {a.lower() for a in addresses}
        return [e for a, e in self.entries.items() if a.lower() in wanted]

    def list_blocked(self) -> list[BlockedSender]:
        self.reads += 1
        if self.fail.get("blocked_entries"):
            raise self.fail["blocked_entries"].pop(0)
        return list(self.entries.values())

    def unblock(self, address: str, reason: str) -> tuple[str, ...]:
        if self.limit_reached:
            raise UnblockLimitReachedError("the sender has exceeded the unblock limit",
                                           service="exchange")

        def remove() -> None:
            self.unblocks.append(address)
            if not self.sticky:
                self.entries.pop(address, None)

        self.boundaries.around("unblock", remove)
        return self.warnings.pop(0) if self.warnings else ()


class FakeRepository:
    """Keeps what was saved, as JSON-safe dicts (like the real store)."""

    def __init__(self, boundaries: Boundaries) -> None:
        self.boundaries = boundaries
        self.saved: dict[str, dict[str, object]] = {}
        self.saves = 0

    def save(self, state: TicketState) -> None:
        def store() -> None:
            self.saves += 1
            self.saved[state.issue_key] = state.to_dict()

        self.boundaries.around("save", store)

    def load(self, issue_key: str) -> TicketState | None:
        data = self.saved.get(issue_key)
        return TicketState.from_dict(data) if data else None

    def hold_account(self, tenant: str, account_id: str, issue_key: str) -> str | None:
        for key in self.saved:
            state = self.load(key)
            if (state and key != issue_key and state.tenant == tenant
                    and state.account_id == account_id and not state.is_terminal):
                return key
        return None

    def last_unblock_of_account(self, tenant: str, account_id: str,
                                exclude_key: str) -> tuple[str, datetime] | None:
        found = [(key, state.unblocked_at) for key in self.saved
                 if (state := self.load(key)) and key != exclude_key and state.tenant == tenant
                 and state.account_id == account_id and state.unblocked_at is not None]
        return max(found, key=lambda pair: pair[1], default=None)


class FakeVault:
    """Keeps passwords in memory (the real one encrypts)."""

    def __init__(self, boundaries: Boundaries) -> None:
        self.boundaries = boundaries
        self.passwords: dict[str, str] = {}
        self.stored: list[str] = []

    def store(self, issue_key: str, password: str, expires_at: datetime) -> None:
        def keep() -> None:
            self.passwords[issue_key] = password
            self.stored.append(password)

        self.boundaries.around("vault.store", keep)

    def retrieval_hint(self, issue_key: str) -> str:
        return f"run `mailunblock reveal {issue_key}` on the mailunblock host (works once)"

    def recall(self, issue_key: str) -> str | None:
        return self.passwords.get(issue_key)


@dataclass
class World:
    """Everything one test needs: the fakes, the policy, and a way to run poller cycles."""

    clock: FakeClock = field(default_factory=FakeClock)
    boundaries: Boundaries = field(default_factory=Boundaries)
    policy: RemediationPolicy = field(default_factory=RemediationPolicy)
    tenant_locale: str | None = None
    tenant_time_zone: str | None = None
    key: str = KEY
    alice: JiraUser = ALICE
    bob: JiraUser = BOB
    carol: JiraUser = CAROL
    eve: JiraUser = EVE

    def __post_init__(self) -> None:
        if not (self.policy.approver_groups or self.policy.approver_roles):
            # The fakes' approvers (Bob, Carol) are the members of the group "helpdesk".
            self.policy = replace(self.policy, approver_groups=frozenset({"helpdesk"}))
        self.tickets = FakeTickets(self.clock, self.boundaries)
        self.directory = FakeDirectory(self.clock, self.boundaries)
        self.restricted = FakeRestricted(self.clock, self.boundaries)
        self.repository = FakeRepository(self.boundaries)
        self.vault = FakeVault(self.boundaries)
        self.restricted.block("alice@contoso.com")

    def engine(self) -> RemediationEngine:
        tenant = TenantServices("contoso", ("contoso.com", "contoso.fr"), self.directory,
                                self.restricted, self.tenant_locale, self.tenant_time_zone)
        return RemediationEngine(self.policy, self.tickets, TenantRegistry([tenant]),
                                 self.repository, self.vault, self.clock, self.tickets)

    def state(self) -> TicketState:
        state = self.repository.load(KEY)
        assert state is not None
        return state

    def cycle(self) -> TicketState:
        """One poller cycle: a fresh engine over the re-read ticket and the stored state."""
        return self.engine().process(self.tickets.issue(), self.repository.load(KEY))

    def approve(self, author: JiraUser = BOB) -> TicketState:
        self.tickets.add_comment(author, "/approve")
        return self.cycle()

    @staticmethod
    def user(**changes: object) -> DirectoryUser:
        return alice_user(**changes)

    def passwords(self) -> list[str]:
        return [p for _, p in self.directory.resets] + self.vault.stored


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def make_world() -> Callable[..., World]:
    return World


@pytest.fixture
def simulated_crash() -> type[SimulatedCrash]:
    return SimulatedCrash
