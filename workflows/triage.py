"""Triage: find the affected account, read its facts (read-only) and decide what the plan may propose."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace

from mailunblock.connectors.errors import ConnectorError, NotFoundError, PermanentError, PermissionDeniedError
from mailunblock.connectors.models import DirectoryUser, Person, Ticket
from mailunblock.workflows import addresses, closing, messages, notify
from mailunblock.workflows.addresses import Address, BadAddress
from mailunblock.workflows.context import StepContext
from mailunblock.workflows.moves import Advance, Finish, Move
from mailunblock.workflows.state import Stage
from mailunblock.workflows.tenants import TenantRegistry, TenantServices
from mailunblock.workflows.vocabulary import LapseReason, RefusalReason

log = logging.getLogger(__name__)

# What the plan proposes, in order, for an account on the Restricted users list.
FULL_STEPS = ("reset", "revoke", "inbox_rules", "unblock")


@dataclass(frozen=True)
class Refusal:
    """Why automation will not handle this ticket (``reason`` is a code the templates explain)."""

    reason: RefusalReason
    detail: str = ""
    related_key: str | None = None
    tenant: str | None = None  # the tenant of the refused account, once known (SLA reports group by it)


@dataclass(frozen=True)
class Ambiguous:
    """The ticket names several accounts: an approver must pick one before any plan."""

    candidates: tuple[str, ...]


@dataclass(frozen=True)
class Candidate:
    """The account triage settled on, with the facts the plan is built from."""

    tenant: TenantServices
    user: DirectoryUser
    address: str  # the address the ticket named (carried by the account, compared exactly)
    candidates: tuple[str, ...]
    listed: tuple[str, ...]
    has_mailbox: bool | None
    roles: tuple[str, ...]

    def fingerprint(self, reporter: Person | None) -> str:
        """What an approval is bound to: account, tenant, steps and facts (any change lapses it)."""
        user = self.user
        return json.dumps(
            {
                "tenant": self.tenant.name,
                "account": user.id,
                "address": self.address,
                "addresses": sorted(_smtp(user)),
                "candidates": list(self.candidates),
                "reporter": reporter.ref if reporter else None,
                "enabled": user.account_enabled,
                "guest": user.user_type.lower() == "guest",
                "synced": user.on_premises_sync_enabled,
                "roles": sorted(self.roles),
                "listed": sorted(self.listed),
                "steps": list(self.steps),
            },
            sort_keys=True,
        )

    @property
    def steps(self) -> tuple[str, ...]:
        """What the plan proposes (nothing but an answer when the account is not listed)."""
        return FULL_STEPS if self.listed else ()


Finding = Candidate | Ambiguous | Refusal


def _smtp(user: DirectoryUser) -> tuple[str, ...]:
    return user.smtp_addresses or (user.user_principal_name.lower(),)


def _quoted(bad: BadAddress) -> str:
    return bad.raw.strip()


def _unsafe(bad: BadAddress) -> bool:
    """A token that could pass for another address once folded (non-ASCII): never ignored."""
    return not bad.raw.strip().isascii()


def ticket_candidates(issue: Ticket, tenants: TenantRegistry) -> tuple[str, ...] | Refusal:
    """The distinct addresses the ticket names, in order: field, then text, then reporter.

    Only addresses in managed domains count from the text (a bounce quotes outside addresses too); the
    reporter counts only when nothing is named. A look-alike anywhere is refused, never mapped.
    """
    named: list[str] = []
    if issue.affected_account and issue.affected_account.strip():
        field = addresses.canonical(issue.affected_account)
        if isinstance(field, BadAddress):
            return Refusal(RefusalReason.LOOKALIKE, _quoted(field))
        named.append(field.value)
    unmanaged: list[str] = []
    for token in addresses.in_text(f"{issue.summary}\n{issue.description}"):
        if isinstance(token, BadAddress):
            if _unsafe(token):
                return Refusal(RefusalReason.LOOKALIKE, _quoted(token))
            continue
        if _system_sender(token):
            continue  # a pasted bounce quotes the tenant's postmaster: nobody's account to remediate
        if tenants.owns(token.value):
            named.append(token.value)
        else:
            unmanaged.append(token.value)
    distinct = tuple(dict.fromkeys(named))
    reporter = _reporter_address(issue.reporter)
    if isinstance(reporter, BadAddress):
        return Refusal(RefusalReason.LOOKALIKE, _quoted(reporter))
    if len(distinct) > 1:
        extra = (reporter.value,) if reporter and tenants.owns(reporter.value) else ()
        return tuple(dict.fromkeys((*distinct, *extra)))
    if distinct:
        return distinct
    if reporter is not None:
        return (reporter.value,)
    if unmanaged:
        return Refusal(RefusalReason.UNKNOWN_DOMAIN, ", ".join(dict.fromkeys(unmanaged)))
    return Refusal(RefusalReason.NO_ACCOUNT)


def _system_sender(address: Address) -> bool:
    """Exchange's own senders of bounces (postmaster@, MicrosoftExchange…@, mailer-daemon@)."""
    local = address.value.partition("@")[0]
    return local in ("postmaster", "mailer-daemon") or local.startswith("microsoftexchange")


def _reporter_address(reporter: Person | None) -> Address | BadAddress | None:
    if reporter is None or not reporter.email:
        return None
    return addresses.canonical(reporter.email)


def find_account(ctx: StepContext, *, recheck: bool = False) -> Finding:
    """Resolve the affected account and apply every refusal rule (reads only, never writes).

    ``recheck`` (before the first side effect of an approval): the directory facts are read again, the
    mailbox and the Restricted users list are taken from triage (the list is read again before the unblock).
    """
    found = ticket_candidates(ctx.issue, ctx.tenants)
    if isinstance(found, Refusal):
        return found
    state = ctx.state
    if len(found) > 1:
        if state.chosen_address is None or state.chosen_address not in found:
            return Ambiguous(found)
        address = state.chosen_address
    else:
        address = found[0]
    tenant = ctx.tenants.for_domain(address.rpartition("@")[2])
    if tenant is None:
        return Refusal(RefusalReason.UNKNOWN_DOMAIN, address)
    outcome = _in_tenant(ctx, tenant, address, found, recheck=recheck)
    return replace(outcome, tenant=tenant.name) if isinstance(outcome, Refusal) else outcome


def _in_tenant(
    ctx: StepContext, tenant: TenantServices, address: str, found: tuple[str, ...], *, recheck: bool
) -> Candidate | Refusal:
    """The account ``address`` in ``tenant``, and the refusal rules that depend on its directory facts."""
    state = ctx.state
    # Before the first action the plan names the account: its roles are asked for by id, its mailbox not at all.
    facts = tenant.directory.account_facts(address, account_id=state.account_id if recheck else None,
                                           mailbox=not recheck)
    users = [u for u in facts.users if _carries(u, address)]
    if not users:
        return Refusal(RefusalReason.NOT_FOUND, address)
    if len(users) > 1:
        return Refusal(RefusalReason.SEVERAL_ACCOUNTS, ", ".join(u.user_principal_name for u in users))
    user = users[0]
    refusal = _refusal(user)
    if refusal is not None:
        return refusal
    held = facts.roles_of(user)
    roles = tuple(
        r.display_name
        for r in (tenant.directory.directory_roles(user.id) if held is None else held)
        if ctx.policy.excludes_role(r.display_name, r.role_template_id)
    )
    if roles:
        return Refusal(RefusalReason.PRIVILEGED, f"{user.user_principal_name} ({', '.join(roles)})")
    other = ctx.repository.hold_account(tenant.name, user.id, state.issue_key)
    if other:
        return Refusal(RefusalReason.DUPLICATE, user.user_principal_name, related_key=other)
    earlier = ctx.repository.last_unblock_of_account(tenant.name, user.id, exclude_key=state.issue_key)
    if earlier and ctx.now() - earlier[1] < ctx.policy.reblock_window:
        when = messages.day(earlier[1], ctx.policy.locale, ctx.policy.time_zone)
        return Refusal(RefusalReason.BLOCKED_AGAIN, f"{user.user_principal_name} ({when})", related_key=earlier[0])
    if recheck:
        ctx.account_read = user  # the reset's and the revocation's before-values come from this read
        return Candidate(tenant, user, address, found, state.listed_at_triage, state.has_mailbox, roles)
    read = facts.mailbox_of(user)
    has_mailbox = _has_mailbox(tenant, user) if read is None else read
    if has_mailbox is False:
        return Refusal(RefusalReason.NO_MAILBOX, user.user_principal_name)
    entries = ctx.listed_entries(tenant, _smtp(user))
    listed = tuple(dict.fromkeys(e.sender_address.lower() for e in entries))
    return Candidate(tenant, user, address, found, listed, has_mailbox, roles)


def _carries(user: DirectoryUser, address: str) -> bool:
    """The directory account carries exactly this address (UPN, mail or an SMTP proxy address)."""
    own = [user.user_principal_name, user.mail or "", *(p[5:] for p in user.proxy_addresses
                                                        if p.lower().startswith("smtp:"))]
    return any(
        isinstance(c := addresses.canonical(value), Address) and c.value == address for value in own if value
    )


def _refusal(user: DirectoryUser) -> Refusal | None:
    if user.user_type.lower() == "guest":
        return Refusal(RefusalReason.GUEST, user.user_principal_name)
    if not user.account_enabled:
        return Refusal(RefusalReason.DISABLED, user.user_principal_name)
    if user.on_premises_sync_enabled:
        return Refusal(RefusalReason.SYNCED, user.user_principal_name)
    return None


def _has_mailbox(tenant: TenantServices, user: DirectoryUser) -> bool | None:
    """Whether Exchange hosts a mailbox for the account; None when it cannot be read (no permission)."""
    try:
        tenant.directory.inbox_rules(user.id)
    except NotFoundError:  # the user exists (just read): Graph says the mailbox does not
        return False
    except (PermissionDeniedError, PermanentError) as error:
        log.info("mailbox of %s not readable (%s)", user.user_principal_name, error)
        return None
    return True


def _reporter_profile(ctx: StepContext, reporter: Person | None) -> tuple[str | None, str | None]:
    """The reporter's Jira locale and time zone; issue fields rarely carry the locale, so ask once."""
    if reporter is None:
        return None, None
    if reporter.locale:
        return reporter.locale, reporter.time_zone
    try:
        # Several tickets of one reporter (a wave) share one read per cycle.
        locale, zone = ctx.cycle.get(("profile", reporter.ref), lambda: ctx.tickets.user_locale(reporter))
    except ConnectorError as error:
        log.info("%s: reporter's Jira profile not readable (%s); using other language hints",
                 ctx.state.issue_key, error)
        return None, reporter.time_zone
    return locale, zone or reporter.time_zone


def _remember_reporter(ctx: StepContext, outcome: Finding) -> None:
    state, issue, policy = ctx.state, ctx.issue, ctx.policy
    reporter = issue.reporter
    state.issue_id = issue.id or state.issue_id
    state.reporter_ref = reporter.ref if reporter else None
    state.reporter_name = reporter.display_name if reporter else ""
    email = _reporter_address(reporter)
    state.reporter_email = email.value if isinstance(email, Address) else None
    tenant = outcome.tenant if isinstance(outcome, Candidate) else None
    user = outcome.user if isinstance(outcome, Candidate) else None
    if "ack" in state.posted:
        return  # language and zone were settled with the acknowledgement
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


def _take(ctx: StepContext, candidate: Candidate) -> None:
    """Record the account and its facts on the state (what the plan shows and binds)."""
    state, user = ctx.state, candidate.user
    state.tenant = candidate.tenant.name
    state.account_id = user.id
    state.account_upn = user.user_principal_name
    state.account_name = user.display_name
    state.account_addresses = _smtp(user)
    state.candidates = candidate.candidates
    state.has_mailbox = candidate.has_mailbox
    state.listed_at_triage = candidate.listed
    state.plan_fingerprint = candidate.fingerprint(ctx.issue.reporter)
    state.reporter_is_account = bool(state.reporter_email) and (
        state.reporter_email in state.account_addresses
        or state.reporter_email == user.user_principal_name.lower()
    )


def run(ctx: StepContext) -> Move:
    """NEW: triage, acknowledge the reporter, then post the plan, the question or the refusal."""
    state, policy = ctx.state, ctx.policy
    outcome = find_account(ctx)
    _remember_reporter(ctx, outcome)
    if isinstance(outcome, Refusal):
        state.refusal, state.refusal_detail = outcome.reason, outcome.detail
        state.related_key, state.tenant = outcome.related_key, outcome.tenant
        ctx.also_post(notify.ACK)
        ctx.save()
        notify.acknowledge(ctx)
        return Finish(Stage.REFUSED, closing.refused(policy, outcome.related_key))
    if isinstance(outcome, Ambiguous):
        state.candidates = outcome.candidates
        state.chosen_address = state.chosen_by = None
        ctx.also_post(notify.ACK, notify.choose_account_name(ctx))  # the decision and both intents: one save
        ctx.save()
        notify.acknowledge(ctx)
        state.plan_comment_id = notify.choose_account(ctx)
        state.plan_posted_at = ctx.now()
        return Advance(Stage.AWAITING_ACCOUNT)
    _take(ctx, outcome)
    ctx.also_post(notify.ACK, *(() if outcome.listed else (notify.not_listed_name(ctx),)), notify.plan_name(ctx))
    ctx.save()  # the decision and the intents of its comments
    notify.acknowledge(ctx)
    if not outcome.listed:
        notify.not_listed(ctx)
    state.plan_comment_id = notify.plan(ctx)
    state.plan_posted_at = ctx.now()
    return Advance(Stage.AWAITING_APPROVAL)


def plan_still_holds(ctx: StepContext) -> LapseReason | None:
    """Re-read the ticket's candidates and the account's facts; None when the approved plan still holds.

    Otherwise the reason it lapsed (a code the templates explain).
    """
    state = ctx.state
    outcome = find_account(ctx, recheck=True)
    if not isinstance(outcome, Candidate):
        return LapseReason.ACCOUNT_CHANGED
    if outcome.tenant.name != state.tenant or outcome.user.id != state.account_id:
        return LapseReason.ACCOUNT_CHANGED
    if outcome.fingerprint(ctx.issue.reporter) != state.plan_fingerprint:
        return LapseReason.FACTS_CHANGED
    return None


def lapse(ctx: StepContext, reason: LapseReason) -> Advance:
    """The approval no longer matches the ticket: forget the plan and triage again (nothing was done)."""
    state = ctx.state
    log.warning("%s: approval lapsed (%s); a new plan needs a new approval", state.issue_key, reason)
    state.lapsed_because = reason
    state.plan_generation += 1
    state.plan_fingerprint = state.plan_comment_id = state.plan_posted_at = None
    state.tenant = state.account_id = state.account_upn = None
    state.account_name, state.account_addresses = "", ()
    state.listed_at_triage, state.has_mailbox = (), None
    state.approval_kind = state.approved_by = state.approved_at = None
    state.explicit_reset = False
    return Advance(Stage.NEW)


def named_elsewhere(ctx: StepContext) -> bool:
    """Whether the ticket now names another account (or reporter) than the plan that was approved."""
    state = ctx.state
    if state.plan_fingerprint is None:
        return False  # a plan from before plans were bound: nothing to compare with
    found = ticket_candidates(ctx.issue, ctx.tenants)
    reporter = ctx.issue.reporter
    return found != state.candidates or (reporter.ref if reporter else None) != state.reporter_ref
