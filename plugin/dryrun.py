"""``mailunblock run --once --dry-run``: one real cycle where every write is printed instead of done.

Reads go to the real services (so triage, approvals and the list check are real); writes — comments,
labels, transitions, links, password resets, session revocations, unblocks — are described on the console.
State lives in a throw-away in-memory store seeded from the real one, so the real store is not touched.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from mailunblock.connectors.models import (
    AccountFacts,
    Approval,
    BlockedSender,
    DirectoryRole,
    DirectoryUser,
    InboxRule,
    Person,
    Ticket,
)
from mailunblock.plugin.services import Runtime, remediation_policy
from mailunblock.plugin.store import StateStore
from mailunblock.workflows.engine import RemediationEngine
from mailunblock.workflows.markup import wiki_literal
from mailunblock.workflows.ports import Directory, RestrictedSenders, Tickets
from mailunblock.workflows.tenants import TenantRegistry, TenantServices

Echo = Callable[[str], None]


def _comment_lines(body: str) -> list[str]:
    """The comment as Jira shows its text (escapes resolved), heading first, without blank lines at the ends."""
    lines = wiki_literal(body).strip().splitlines()
    return [lines[0].removeprefix("h3. "), *lines[1:]] if lines else [""]


class DryRunTickets:
    """Jira reads pass through; writes are printed."""

    def __init__(self, inner: Tickets, echo: Echo) -> None:
        self._inner, self._echo = inner, echo

    def get_issue(self, issue_key: str) -> Ticket:
        """Real read."""
        return self._inner.get_issue(issue_key)

    def find_comment(self, issue_key: str, marker: str) -> str | None:
        """Real read."""
        return self._inner.find_comment(issue_key, marker)

    def myself(self) -> Person:
        """The bot's account (a read)."""
        return self._inner.myself()

    def user_locale(self, user: Person) -> tuple[str | None, str | None]:
        """Real read."""
        return self._inner.user_locale(user)

    def approvals(self, issue_key: str) -> list[Approval]:
        """Real read."""
        return self._inner.approvals(issue_key)

    def post_comment(self, issue_key: str, body: str, *, internal: bool, marker: str) -> str:
        """Print the whole comment, as text, instead of posting it."""
        kind = "internal note" if internal else "PUBLIC comment (emailed to the reporter)"
        first, *rest = _comment_lines(body)
        self._echo(f"  {issue_key}: would post {kind}: {first}")
        for line in rest:
            self._echo(f"      {line}".rstrip())
        return f"dry-run:{marker}"

    def update_labels(self, issue_key: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()) -> None:
        """Print the label change."""
        changes = [f"{verb} {', '.join(labels)}" for verb, labels in (("add", add), ("remove", remove)) if labels]
        self._echo(f"  {issue_key}: would change labels: {'; '.join(changes) or 'nothing'}")

    def transition(self, issue_key: str, transition_name: str) -> bool:
        """Print the transition."""
        self._echo(f'  {issue_key}: would apply the transition "{transition_name}"')
        return True

    def link_issues(self, issue_key: str, other_key: str) -> None:
        """Print the link."""
        self._echo(f"  {issue_key}: would link to {other_key}")

    def set_property(self, issue_key: str, key: str, value: Mapping[str, Any]) -> None:
        """Print the ticket property."""
        self._echo(f"  {issue_key}: would set property {key} = {json.dumps(dict(value), sort_keys=True)}")


class DryRunDirectory:
    """Graph reads pass through; the reset and the revocation are printed (never the password)."""

    def __init__(self, inner: Directory, tenant: str, echo: Echo) -> None:
        self._inner, self._tenant, self._echo = inner, tenant, echo

    def get_user(self, user_id_or_upn: str) -> DirectoryUser:
        """Real read."""
        return self._inner.get_user(user_id_or_upn)

    def find_users_by_address(self, address: str) -> list[DirectoryUser]:
        """Real read."""
        return self._inner.find_users_by_address(address)

    def account_facts(
        self, address: str, *, account_id: str | None = None, mailbox: bool = True
    ) -> AccountFacts:
        """Real read."""
        return self._inner.account_facts(address, account_id=account_id, mailbox=mailbox)

    def directory_roles(self, user_id: str) -> list[DirectoryRole]:
        """Real read."""
        return self._inner.directory_roles(user_id)

    def inbox_rules(self, user_id: str) -> list[InboxRule]:
        """Real read."""
        return self._inner.inbox_rules(user_id)

    def reset_password(self, user_id: str, password: str) -> None:
        """Print that a reset would happen."""
        self._echo(f"  tenant {self._tenant}: would reset the password of user {user_id}")

    def revoke_sessions(self, user_id: str) -> None:
        """Print that sessions would be revoked."""
        self._echo(f"  tenant {self._tenant}: would revoke the sign-in sessions of user {user_id}")

    def revoke_sessions_then_inbox_rules(self, user_id: str) -> list[InboxRule] | None:
        """Print that sessions would be revoked; the rules are left to a real read."""
        self.revoke_sessions(user_id)
        return None


class DryRunRestricted:
    """The list is really read; the unblock is printed."""

    def __init__(self, inner: RestrictedSenders, tenant: str, echo: Echo) -> None:
        self._inner, self._tenant, self._echo = inner, tenant, echo

    def blocked_entries(self, addresses: Sequence[str]) -> list[BlockedSender]:
        """Real read."""
        return self._inner.blocked_entries(addresses)

    def list_blocked(self) -> list[BlockedSender]:
        """Real read."""
        return self._inner.list_blocked()

    def unblock(self, address: str, reason: str) -> tuple[str, ...]:
        """Print the unblock (no warnings: nothing was sent)."""
        self._echo(f"  tenant {self._tenant}: would remove {address} from the Restricted users list")
        return ()


class DryRunVault:
    """Keeps nothing: a dry run never resets a password."""

    def store(self, issue_key: str, password: str, expires_at: datetime) -> None:
        """Forget it."""

    def retrieval_hint(self, issue_key: str) -> str:
        """A placeholder hint."""
        return f"(dry run: `mailunblock reveal {issue_key}` after a real run)"

    def recall(self, issue_key: str) -> str | None:
        """Nothing is stored."""
        return None


def dry_run_engine(runtime: Runtime, echo: Echo) -> tuple[RemediationEngine, StateStore]:
    """An engine over printing ports and an in-memory copy of the real store (``Runtime.dry_run``)."""
    scratch = StateStore.from_url("sqlite://")
    for state in runtime.store.all_states():
        scratch.save(state)
    registry = TenantRegistry(
        TenantServices(
            name=name,
            domains=clients.config.domains,
            directory=DryRunDirectory(clients.graph, name, echo),
            restricted=DryRunRestricted(clients.exchange, name, echo),
            locale=clients.config.locale,
            time_zone=clients.config.time_zone,
        )
        for name, clients in runtime.tenants.items()
    )
    tickets = DryRunTickets(runtime.tickets, echo)
    engine = RemediationEngine(remediation_policy(runtime.config), tickets, registry, scratch, DryRunVault(),
                               runtime.engine.clock, runtime.tickets)
    return engine, scratch

