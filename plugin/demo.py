"""``mailunblock demo``: the whole story on the sandbox EMULATORS in under two minutes.

Starts the sandbox, seeds realistic tickets, plays the approving agent (and a few people who must not
be able to approve), runs the real poller and engine on the sandbox clock — jumping it ahead in 30-minute
steps instead of waiting hours — and ends with a per-ticket summary.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

from mailunblock.plugin.config import load_config
from mailunblock.plugin.report import build_report, render_html
from mailunblock.plugin.services import Runtime, build_runtime, sla_policy
from mailunblock.sandbox.server import Sandbox
from mailunblock.workflows.markup import wiki_literal

STEP = timedelta(minutes=30)
HORIZON = timedelta(hours=30)
# The story starts at this time of day (UTC): its clock times, and the days its reporters' ETA windows fall
# on (a window past midnight in Paris names its date), are then the same whenever the demo runs.
STORY_START = time(10, 55, tzinfo=UTC)
BOT = "mailunblock"


def story_start(now: datetime) -> datetime:
    """The sandbox time the story starts at: the next ``STORY_START`` (today's, or tomorrow's once past)."""
    start = datetime.combine(now.date(), STORY_START)
    return start if start >= now else start + timedelta(days=1)


@dataclass(frozen=True)
class AgentAction:
    """A comment someone posts on a ticket at a given cycle of the demo."""

    cycle: int
    key: str
    author: str
    body: str
    why: str


class Demo:
    """One run of the demo: sandbox, runtime, poller, and the printed story."""

    def __init__(self, workdir: Path, echo: Callable[[str], None], report: Path | None = None) -> None:
        self._workdir = workdir
        self._echo = echo
        self._report = report or workdir / "sla-report.html"
        self._shown: dict[str, int] = {}

    def run(self) -> int:
        """Play the story; return the process exit code (0 when every ticket ended as expected)."""
        with Sandbox("default", self._workdir / "sandbox", ports=dict.fromkeys(
            ("jira", "identity", "graph", "exchange", "control"), 0),
                     start_time=story_start(datetime.now(UTC))) as sandbox:
            config_path = sandbox.write_config(
                self._workdir / "mailunblock.toml",
                jira={"affected_account_field": "customfield_10050"},
                store={"data_dir": str(self._workdir / "data")},
            )
            runtime = build_runtime(load_config(config_path), sandbox.clock)
            self._intro(sandbox, config_path)
            extra = self._seed(sandbox)
            return self._play(sandbox, runtime, extra)

    def _intro(self, sandbox: Sandbox, config_path: Path) -> None:
        self._echo("=" * 78)
        self._echo("mailunblock demo — on the bundled sandbox: EMULATORS of Jira and Microsoft 365 on")
        self._echo("127.0.0.1. No real tenant, ticket or mailbox is touched.")
        self._echo(f"  Jira      {sandbox.jira_url}    Graph {sandbox.graph_url}    Exchange {sandbox.exchange_url}")
        self._echo(f"  config    {config_path}")
        self._echo("=" * 78)

    def _seed(self, sandbox: Sandbox) -> list[AgentAction]:
        jira: Any = sandbox.jira
        megan = jira.create_issue(
            "Mail to customers bounces", "megan.bowen@contoso.com", labels=["mail-blocked"],
            description="Since this morning my messages to customers bounce (5.1.90?).",
        )
        self._echo(f"\nTickets labelled mail-blocked in the HELP service desk (sandbox time "
                   f"{sandbox.clock.now():%H:%M} UTC):")
        for issue in sorted(jira.issues.values(), key=lambda i: int(i.id)):
            if "mail-blocked" in issue.labels:
                reporter = jira.user(issue.reporter).email
                self._echo(f"  {issue.key:8} {issue.summary!r:42} reported by {reporter}")
        return [
            AgentAction(2, "HELP-1", "adele.vance@contoso.com", "/approve",
                        "the reporter tries to approve her own remediation"),
            AgentAction(2, "HELP-3", "mallory", "/approve", "someone outside the approver group tries"),
            AgentAction(3, "HELP-1", "alice", "/approve", "agent Alice approves"),
            AgentAction(3, "HELP-2", "bob", "/approve", "agent Bob approves Chloé's ticket"),
            AgentAction(3, "HELP-3", "alice", "/approve",
                        "agent Alice approves (affected account is not the reporter)"),
            AgentAction(3, megan, "bob", "/approve",
                        "agent Bob closes Megan's ticket: not on the list, so no reset and no unblock"),
        ]

    def _play(self, sandbox: Sandbox, runtime: Runtime, actions: list[AgentAction]) -> int:
        poller = runtime.poller
        jira: Any = sandbox.jira
        start = sandbox.clock.now()
        cycle = quiet = 0
        while sandbox.clock.now() - start < HORIZON:
            cycle += 1
            for action in (a for a in actions if a.cycle == cycle):
                jira.add_comment(action.key, action.author, action.body)
                self._echo(f"\n  >> {action.key}: {jira.user(action.author).display_name} comments "
                           f"{action.body!r} — {action.why}")
            if cycle == 4:
                dup = jira.create_issue("Still cannot send!!", "adele.vance@contoso.com",
                                        labels=["mail-blocked"], description="Same problem as before.")
                self._echo(f"\n  >> {dup}: Adele files a second ticket while the first is in progress")
            report = poller.run_cycle()
            news = self._new_comments(jira)
            stamp = f"{sandbox.clock.now():%a %H:%M} UTC"
            if news:
                if quiet:
                    self._echo(f"\n  ... {quiet} quiet cycle(s): the list is re-checked every 30 min while "
                               "the users wait for the sending window")
                    quiet = 0
                self._echo(f"\n[cycle {cycle}, sandbox time {stamp}] {report.seen} ticket(s) selected")
                for line in news:
                    self._echo(line)
            else:
                quiet += 1
            if cycle > 4 and all(s.is_terminal for s in runtime.store.all_states()):
                break
            sandbox.clock.advance(STEP)
        return self._summary(sandbox, runtime)

    def _new_comments(self, jira: Any) -> list[str]:
        lines = []
        for issue in sorted(jira.issues.values(), key=lambda i: int(i.id)):
            comments = issue.comments
            for comment in comments[self._shown.get(issue.key, 0):]:
                author = jira.user(comment.author)
                if author.display_name.startswith(BOT):
                    private = comment.internal or comment.visibility is not None
                    audience = "internal note" if private else "public, emailed to reporter"
                    body = wiki_literal(comment.body)
                    lines.append(f"  {issue.key:8} {audience:28} {_gist(body)}")
                    lines += [f"  {'':8} {'':28} {done}" for done in _done_lines(body)]
            self._shown[issue.key] = len(comments)
        return lines

    def _try_it(self, sandbox: Sandbox) -> None:
        jira: Any = sandbox.jira
        approvers = [u for u in jira.users.values()
                     if u.groups & set(sandbox.scenario.approver_groups) and u.name != BOT]
        self._echo("\nTry it yourself: `mailunblock sandbox` in one terminal (it prints its config and control")
        self._echo("URL); in another, `mailunblock run --config config/sandbox.toml --once` after each step.")
        self._echo("  approvers  " + ", ".join(f"{u.name} ({u.display_name})" for u in approvers)
                   + "; mallory (Mallory Stone) is not one")
        self._echo("  approve    curl -s -XPOST localhost:8440/jira/comment -H 'content-type: application/json' \\")
        self._echo("               -d '{\"key\": \"HELP-1\", \"author\": \"alice\", \"body\": \"/approve\"}'")
        self._echo("  time       curl -s -XPOST localhost:8440/clock/advance -H 'content-type: application/json' "
                   "-d '{\"hours\": 4}'")
        self._echo("             (the sending window is 3-4 h after the unblock; `mailunblock sandbox --speed 60`")
        self._echo("             runs the sandbox clock 60 times faster instead)")
        self._echo("  accounts   the sandbox's Microsoft 365 users, each a case the remediation must handle:")
        for tenant in sandbox.scenario.tenants:
            listed = {b.sender_address.lower() for b in tenant.blocked}
            for user in tenant.users:
                self._echo(f"    {user.mail or user.user_principal_name:30} {_case(user, listed)}")

    def _summary(self, sandbox: Sandbox, runtime: Runtime) -> int:
        jira: Any = sandbox.jira
        self._echo("\n" + "=" * 78 + "\nSummary (sandbox time)\n")
        self._echo(f"  {'ticket':8} {'account':30} {'outcome':18} {'resets':>6} {'unblocks':>8}  first seen → done")
        # In ticket order: the workers finish tickets in any order.
        for state in sorted(runtime.store.all_states(), key=lambda s: int(s.issue_key.rpartition("-")[2])):
            account = state.account_upn or "-"
            resets = unblocks = 0
            if state.tenant and state.account_upn:
                resets = sandbox.microsoft.reset_count(state.tenant, state.account_upn)
                unblocks = sum(sandbox.microsoft.unblock_count(state.tenant, a) for a in state.account_addresses)
            elapsed = state.history[-1].at - state.history[0].at
            hours, rest = divmod(int(elapsed.total_seconds()) // 60, 60)
            self._echo(f"  {state.issue_key:8} {account:30} {state.stage!s:18} {resets:>6} {unblocks:>8}"
                       f"  {hours:d}h{rest:02d}")
        now = sandbox.clock.now()
        sla = build_report(runtime.store.all_states(), sla_policy(runtime.config), now, now - HORIZON, now)
        self._report.write_text(render_html(sla), encoding="utf-8")
        self._echo(f"\nSLA report (charts, breaches, per approver): {self._report}")
        self._echo("\nEvery password was vaulted, never written to Jira; in real use an agent runs")
        self._echo("`mailunblock reveal HELP-1 --config FILE` once and gives it to the user by phone.")
        self._try_it(sandbox)
        passwords = [p for s in runtime.store.all_states() if (p := runtime.vault.recall(s.issue_key))]
        bodies = [c.body for issue in jira.issues.values() for c in issue.comments]
        # As stored and as Jira shows it: escaping would hide a leaked password's symbols from a plain search.
        leaked = any(p in body or p in wiki_literal(body) for p in passwords for body in bodies)
        self._echo(f"\nChecked: none of the {len(passwords)} new passwords appears in any of the "
                   f"{len(bodies)} Jira comments." if not leaked else "\nLEAK: a password appears in a comment!")
        return 1 if leaked else 0


_GREETINGS = ("hello", "bonjour")
_KEY_PHRASES = ("between", "entre", "no longer blocked", "n\u2019est plus bloqué")


def _case(user: Any, listed: set[str]) -> str:
    """What a sandbox user shows about the remediation (blocked, privileged, guest, synced, ...)."""
    addresses = {a.partition(":")[2].lower() for a in user.proxy_addresses} | {(user.mail or "").lower()}
    notes = ["on the Restricted users list" if addresses & listed else "NOT on the list"]
    if user.user_type == "Guest":
        notes.append("guest")
    if not user.account_enabled:
        notes.append("disabled")
    if user.on_premises_sync_enabled:
        notes.append("synced from on-premises AD")
    notes += list(user.directory_roles)
    if user.inbox_rules:
        notes.append("has inbox rules")
    if len(user.proxy_addresses) > 1:
        notes.append("has aliases")
    return ", ".join(notes)


def _done_lines(body: str) -> list[str]:
    """The state lines of a closing note: password reset, sessions revoked, unblocked (first sentence each)."""
    return [_sentence(line.strip()[2:]) for line in body.splitlines() if line.strip().startswith("* (")]


def _sentence(line: str) -> str:
    line = line.replace("*", "").replace("{{", "").replace("}}", "").strip()
    head, sep, _ = line.partition(". ")
    return head + "." if sep else line


def _gist(body: str) -> str:
    """The part of a comment that tells the story: the ETA window, else heading + first sentence."""
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    key = next((line for line in lines if any(p in line.lower() for p in _KEY_PHRASES)), None)
    if key:
        text = _sentence(key)
    else:
        heading = next((line[3:].strip() for line in lines if line.startswith("h3.")), None)
        rest = [line for line in lines if not line.startswith("h3.") and not line.lower().startswith(_GREETINGS)]
        first = _sentence(rest[0]) if rest else ""
        text = f"{heading}: {first}" if heading and first else heading or first
    return text if len(text) <= 150 else text[:147] + "..."


def run_demo(echo: Callable[[str], None], workdir: Path | None = None) -> int:
    """Run the demo in ``workdir`` (a fresh temporary folder by default)."""
    if workdir is not None:
        return Demo(workdir, echo).run()
    with tempfile.TemporaryDirectory(prefix="mailunblock-demo-") as tmp:
        # The folder goes away with the demo; the report stays where the reader can open it.
        return Demo(Path(tmp), echo, Path(tempfile.gettempdir()) / "mailunblock-demo-sla-report.html").run()
