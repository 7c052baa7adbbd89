"""Triage: find the affected account and decide whether automation may touch it."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from mailunblock.connectors.errors import ConnectorError
from mailunblock.connectors.models import DirectoryUser, JiraIssue, JiraUser
from mailunblock.workflows import messages, notify
from mailunblock.workflows.context import StepContext
from mailunblock.workflows.state import Stage
from mailunblock.workflows.tenants import TenantRegistry, TenantServices

log = logging.getLogger(__name__)

_EMAIL = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")


@dataclass(frozen=True)
class Refusal:
    """Why automation will not handle this ticket (``reason`` is a code the templates explain)."""

    reason: str
    detail: str = ""
    related_key: str | None = None


@dataclass(frozen=True)
class Candidate:
    """The account triage settled on."""

    tenant: TenantServices
    user: DirectoryUser


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def candidate_address(issue: JiraIssue, tenants: TenantRegistry) -> str | Refusal:
    """The affected address: custom field, else reporter's email, else one managed address in the text."""
    if issue.affected_account and issue.affected_account.strip():
        return issue.affected_account.strip().lower()
    if issue.reporter and issue.reporter.email:
        return issue.reporter.email.lower()
    text = f"{issue.summary}\n{issue.description}"
    found = dict.fromkeys(m.group(0).lower() for m in _EMAIL.finditer(text))
    managed = [a for a in found if tenants.owns(a)]
    if len(managed) > 1:
        return Refusal("several_accounts", ", ".join(managed))
    if managed:
        return managed[0]
    if found:
        return Refusal("unknown_domain", ", ".join(found))
    return Refusal("no_account")


def find_account(ctx: StepContext) -> Candidate | Refusal:
    """Resolve the affected account and apply every refusal rule (reads only)."""
    address = candidate_address(ctx.issue, ctx.tenants)
    if isinstance(address, Refusal):
        return address
    tenant = ctx.tenants.for_domain(_domain(address))
    if tenant is None:
        return Refusal("unknown_domain", address)
    users = tenant.directory.find_users_by_address(address)
    if not users:
        return Refusal("not_found", address)
    if len(users) > 1:
        return Refusal("several_accounts", ", ".join(u.user_principal_name for u in users))
    user = users[0]
    if user.user_type.lower() == "guest":
        return Refusal("guest", user.user_principal_name)
    if not user.account_enabled:
        return Refusal("disabled", user.user_principal_name)
    if user.on_premises_sync_enabled:
        return Refusal("synced", user.user_principal_name)
    roles = [
        r.display_name
        for r in tenant.directory.directory_roles(user.id)
        if ctx.policy.excludes_role(r.display_name, r.role_template_id)
    ]
    if roles:
        return Refusal("privileged", f"{user.user_principal_name} ({', '.join(roles)})")
    other = ctx.repository.active_ticket_for_account(tenant.name, user.id, exclude_key=ctx.issue.key)
    if other:
        return Refusal("duplicate", user.user_principal_name, related_key=other)
    earlier = ctx.repository.last_unblock_of_account(tenant.name, user.id, exclude_key=ctx.issue.key)
    if earlier and ctx.now() - earlier[1] < ctx.policy.reblock_window:
        when = messages.day(earlier[1], ctx.policy.locale, ctx.policy.time_zone)
        return Refusal("blocked_again", f"{user.user_principal_name} ({when})", related_key=earlier[0])
    return Candidate(tenant, user)


def _reporter_profile(ctx: StepContext, reporter: JiraUser | None) -> tuple[str | None, str | None]:
    """The reporter's Jira locale and time zone; issue fields rarely carry the locale, so ask once."""
    if reporter is None:
        return None, None
    if reporter.locale:
        return reporter.locale, reporter.time_zone
    try:
        locale, zone = ctx.tickets.user_locale(reporter)
    except ConnectorError as error:
        log.info("%s: reporter's Jira profile not readable (%s); using other language hints",
                 ctx.state.issue_key, error)
        return None, reporter.time_zone
    return locale, zone or reporter.time_zone


def run(ctx: StepContext) -> None:
    """NEW: triage, acknowledge the reporter, then post the plan or the refusal."""
    state, issue, policy = ctx.state, ctx.issue, ctx.policy
    outcome = find_account(ctx)
    reporter = issue.reporter
    state.reporter_ref = reporter.ref if reporter else None
    state.reporter_name = reporter.display_name if reporter else ""
    state.reporter_email = reporter.email.lower() if reporter and reporter.email else None
    tenant = outcome.tenant if isinstance(outcome, Candidate) else None
    user = outcome.user if isinstance(outcome, Candidate) else None
    jira_locale, jira_zone = _reporter_profile(ctx, reporter)
    state.locale = messages.pick_locale(
        jira_locale,
        user.preferred_language if user else None,
        tenant.locale if tenant else None,
        default=policy.locale,
    )
    state.time_zone = messages.pick_time_zone(
        jira_zone,
        tenant.time_zone if tenant else None,
        default=policy.time_zone,
    )
    if isinstance(outcome, Refusal):
        state.refusal, state.refusal_detail = outcome.reason, outcome.detail
        state.related_key = outcome.related_key
        ctx.save()
        notify.acknowledge(ctx)
        links = [f"link:{outcome.related_key}"] if outcome.related_key else []
        ctx.finish(Stage.REFUSED, [*links, "note:refused", f"remove-label:{policy.trigger_label}"])
        return
    assert tenant is not None and user is not None  # a Candidate carries both
    state.tenant = tenant.name
    state.account_id = user.id
    state.account_upn = user.user_principal_name
    state.account_name = user.display_name
    state.account_addresses = user.smtp_addresses or (user.user_principal_name.lower(),)
    state.reporter_is_account = bool(state.reporter_email) and (
        state.reporter_email in state.account_addresses
        or state.reporter_email == user.user_principal_name.lower()
    )
    ctx.save()
    notify.acknowledge(ctx)
    state.plan_comment_id = notify.plan(ctx)
    ctx.enter(Stage.AWAITING_APPROVAL)
