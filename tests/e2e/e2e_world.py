"""End-to-end helpers: the real poller, engine and connectors against the sandbox EMULATORS.

A ``World`` is what a deployment looks like: a sandbox (Jira + Microsoft 365 emulators), the mailunblock
configuration the sandbox writes, and a runtime built from it whose clock is the sandbox clock. The
sandbox clock is frozen (speed 0): time moves only when a test advances it, so comment texts and time
windows are exact.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mailunblock.plugin.config import load_config
from mailunblock.plugin.poller import CycleReport, Poller
from mailunblock.plugin.services import Runtime, build_runtime
from mailunblock.sandbox.server import Sandbox
from mailunblock.workflows.markup import wiki_literal
from mailunblock.workflows.state import TicketState

EPHEMERAL = dict.fromkeys(("jira", "identity", "graph", "exchange", "control"), 0)
# 09:07 in New York (EDT since March 8), 14:07 in Paris (CET): the 3-4 h window stays on the same day.
START = datetime(2026, 3, 10, 13, 7, tzinfo=UTC)
STEP = timedelta(minutes=30)
TRIGGER = "mail-blocked"
BOT = "mailunblock"
MARKER_PROPERTY = "mailunblock"
AFFECTED_FIELD = "customfield_10050"

Effects = Counter[tuple[str, str, str]]


class World:
    """A sandbox plus a mailunblock runtime built from the configuration the sandbox generated."""

    def __init__(
        self,
        sandbox: Sandbox,
        workdir: Path,
        *,
        extra_domains: Mapping[str, Sequence[str]] | None = None,
        **config: Mapping[str, Any],
    ) -> None:
        assert sandbox.jira is not None, "the sandbox has no Jira emulator"
        self.sandbox = sandbox
        self.jira: Any = sandbox.jira
        overrides: dict[str, Any] = {
            "jira": {"affected_account_field": AFFECTED_FIELD},
            "store": {"data_dir": str(workdir / "data")},
            # One worker unless a test asks for more: a worker's retry wait moves the shared sandbox clock,
            # which would move it under every other worker too.
            "poller": {"workers": 1},
        }
        for section, values in config.items():
            overrides[section] = {**overrides.get(section, {}), **values}
        if extra_domains:
            tenants = sandbox.config_data()["tenants"]
            for tenant in tenants:
                tenant["domains"] = [*tenant["domains"], *extra_domains.get(tenant["name"], ())]
            overrides["tenants"] = tenants
        self.config_path = sandbox.write_config(workdir / "mailunblock.toml", **overrides)
        self.bot_account = self.jira.user(BOT).account_id
        self._untag_seeded_tickets()
        self._add_mailbox_users_as_customers()
        self.runtime = self._build()
        self.poller = self._poller()

    def _untag_seeded_tickets(self) -> None:
        # The demo tickets would otherwise be remediated alongside each test's own tickets.
        for issue in list(self.jira.issues.values()):
            if TRIGGER in issue.labels:
                self.jira.set_labels(issue.key, [label for label in issue.labels if label != TRIGGER])

    def _add_mailbox_users_as_customers(self) -> None:
        # Every mailbox user may raise a ticket; the demo data only knows some of them.
        for tenant in self.sandbox.microsoft:
            spec = tenant.spec
            for user in spec.users:
                if not user.mail:
                    continue
                try:
                    self.jira.user(user.mail)
                except KeyError:
                    locale = {"fr": "fr_FR"}.get(spec.locale or "", "en_US")
                    self.jira.add_user(user.mail.partition("@")[0], user.display_name, user.mail,
                                       account_type="customer", locale=locale, time_zone=spec.time_zone)

    def _build(self) -> Runtime:
        # The HTTP layer's retry waits move sandbox time instead of sleeping: throttle gates then open
        # at the sandbox deadline the call log is checked against.
        return build_runtime(load_config(self.config_path), self.sandbox.clock, sleep=self.sleep)

    def sleep(self, seconds: float) -> None:
        """What the product's HTTP layer does to wait: move sandbox time ahead."""
        self.sandbox.clock.advance(timedelta(seconds=seconds))

    def _poller(self) -> Poller:
        return self.runtime.poller

    def restart(self) -> Runtime:
        """Drop every object of the running process and build new ones on the same database (a restart)."""
        self.runtime.store.engine.dispose()
        self.runtime = self._build()
        self.poller = self._poller()
        return self.runtime

    # ------------------------------------------------------------------ time and cycles

    def now(self) -> datetime:
        """Sandbox time."""
        return self.sandbox.clock.now()

    def advance(self, delta: timedelta) -> datetime:
        """Move sandbox time ahead."""
        return self.sandbox.clock.advance(delta)

    def cycle(self) -> CycleReport:
        """One poller cycle; fails the test when the cycle reports an error."""
        report = self.poller.run_cycle()
        assert report.ok, f"cycle failed: {report.error or report.failed}"
        return report

    def run_until(self, done: Callable[[], bool], *, step: timedelta = STEP, limit: timedelta) -> None:
        """Advance by ``step`` and run a cycle until ``done()``; fail after ``limit`` of sandbox time."""
        end = self.now() + limit
        while not done():
            assert self.now() < end, "the condition was not reached in time"
            self.advance(step)
            self.cycle()

    def finish(self, key: str, *, step: timedelta = STEP, limit: timedelta = timedelta(hours=30)) -> TicketState:
        """Run cycles ``step`` apart until the ticket's remediation is over; return its final state."""
        self.run_until(lambda: self.state(key).is_terminal, step=step, limit=limit)
        return self.state(key)

    # ------------------------------------------------------------------ tickets

    def new_ticket(
        self,
        reporter: str,
        *,
        summary: str = "I can't send email anymore",
        description: str = "Every message bounces with 550 5.1.8 Access denied, bad outbound sender.",
        affected: str | None = None,
        labels: Iterable[str] = (TRIGGER,),
    ) -> str:
        """Create a ticket in the HELP service desk; return its key."""
        key: str = self.jira.create_issue(summary, reporter, description=description, labels=list(labels),
                                          affected_account=affected)
        return key

    def comment(self, key: str, author: str, body: str, *, internal: bool = False) -> str:
        """Comment as a person (handle or email)."""
        comment_id: str = self.jira.add_comment(key, author, body, internal=internal)
        return comment_id

    def approve(self, key: str, agent: str = "alice") -> str:
        """An agent approves with an internal note, as agents do in JSM."""
        return self.comment(key, agent, "/approve", internal=True)

    def state(self, key: str) -> TicketState:
        """The stored remediation state of a ticket."""
        state = self.runtime.store.load(key)
        assert state is not None, f"{key} has no state"
        return state

    def comments(self, key: str) -> list[Any]:
        """Every comment of the ticket (sandbox copies: body, author, internal, visibility, properties)."""
        found: list[Any] = self.jira.comments(key)
        return found

    def bot_comments(self, key: str, *, raw: bool = False) -> list[Any]:
        """The comments mailunblock posted, bodies as Jira shows them (``raw``: as stored, wiki escapes kept)."""
        return [c if raw else dataclasses.replace(c, body=wiki_literal(c.body))
                for c in self.comments(key) if c.author == self.bot_account]

    def markers(self, key: str) -> list[str]:
        """Marker names of mailunblock's comments, in order ("ack", "plan", ...)."""
        return [marker_name(key, c) for c in self.bot_comments(key)]

    def bot_comment(self, key: str, name: str) -> Any:
        """The one comment carrying marker ``name``."""
        found = [c for c in self.bot_comments(key) if marker_name(key, c) == name]
        assert len(found) == 1, f"{key}: {len(found)} comments with marker {name!r}: {self.markers(key)}"
        return found[0]

    def labels(self, key: str) -> list[str]:
        """The ticket's labels now."""
        labels: list[str] = self.jira.issue(key).labels
        return labels

    def status_category(self, key: str) -> str:
        """The category (new, indeterminate, done) of the ticket's status."""
        issue = self.jira.issue(key)
        category: str = self.jira.statuses[issue.status].category
        return category

    # ------------------------------------------------------------------ Microsoft side effects

    def effects(self) -> Effects:
        """Counts of every password reset, session revocation and unblock the emulators performed."""
        counts: Effects = Counter()
        with self.sandbox.microsoft.lock:
            for tenant in self.sandbox.microsoft:
                name = tenant.spec.name
                for user in tenant.users.values():
                    upn = user.spec.user_principal_name.lower()
                    counts["reset", name, upn] += user.password_resets
                    counts["revoke", name, upn] += user.session_revocations
                for address, times in tenant.unblocks.items():
                    counts["unblock", name, address.lower()] += len(times)
        return +counts

    def remediated(self, tenant: str, upn: str, address: str | None = None) -> Effects:
        """The effects of one full remediation: one reset, one revocation, one unblock."""
        return Counter({("reset", tenant, upn): 1, ("revoke", tenant, upn): 1,
                        ("unblock", tenant, address or upn): 1})


def marker_name(key: str, comment: Any) -> str:
    """The name in a comment's mailunblock marker property ("" when it has none)."""
    value = comment.properties.get(MARKER_PROPERTY)
    marker = value.get("marker", "") if isinstance(value, dict) else ""
    prefix = f"{MARKER_PROPERTY}:{key}:"
    return str(marker).removeprefix(prefix) if str(marker).startswith(prefix) else str(marker)


def is_internal(comment: Any) -> bool:
    """True when the comment is an internal note or restricted to a group or role."""
    return bool(comment.internal or comment.visibility)
