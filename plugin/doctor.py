"""``mailunblock doctor``: check a configuration end to end, one PASS/FAIL line per check with the fix."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from mailunblock.connectors.errors import ConnectorError, PermissionDeniedError
from mailunblock.connectors.jira import INTO_DONE, JiraClient
from mailunblock.connectors.models import AppToken
from mailunblock.connectors.permissions import (
    CONSENT_FIX,
    EXCHANGE_PERMISSION,
    EXCHANGE_ROLES,
    GRAPH_PERMISSIONS,
    INBOX_RULES_PERMISSION,
    PASSWORD_RESET_ROLES,
    ROLE_TEMPLATES,
    Permission,
)
from mailunblock.plugin.config import Config, ConfigError
from mailunblock.plugin.services import TenantClients, build_jira, build_tenant


class Status(StrEnum):
    """Outcome of one check."""

    PASS = "PASS"  # noqa: S105 - a status, not a password
    FAIL = "FAIL"
    WARN = "WARN"
    SKIP = "SKIP"


@dataclass(frozen=True)
class CheckResult:
    """One line of the doctor's report."""

    status: Status
    name: str
    detail: str
    fix: str | None = None

    def render(self) -> str:
        """The report line (and its fix, indented)."""
        line = f"{self.status.value:4}  {self.name}: {self.detail}"
        return f"{line}\n      fix: {self.fix}" if self.fix else line


def _check(name: str, probe: Callable[[], str], fix: Callable[[ConnectorError], str]) -> CheckResult:
    try:
        return CheckResult(Status.PASS, name, probe())
    except ConnectorError as exc:
        return CheckResult(Status.FAIL, name, str(exc), fix(exc))


def check_jira(config: Config) -> Iterator[CheckResult]:
    """Jira reachable and authenticated, JQL valid, approver groups and transitions present."""
    try:
        jira = build_jira(config)
    except (ConfigError, ValueError) as exc:
        yield CheckResult(Status.FAIL, "jira: client", str(exc), "fix the [jira] section")
        return
    deployment = _check_deployment(config, jira)
    yield deployment  # first: a wrong deployment also makes the sign-in fail
    auth = _check(
        "jira: reachable and authenticated",
        lambda: f"signed in as {jira.myself().display_name} at {config.jira.url}",
        lambda e: "check jira.url, the bot's email and API token (or PAT), and jira.ca_bundle",
    )
    yield auth
    if auth.status is Status.FAIL:
        return
    jql = config.jira.search_jql
    def valid_jql() -> str:
        jira.check_jql(jql)
        return jql

    yield _check("jira: JQL valid", valid_jql, lambda e: "fix jira.jql (it must restrict the search, e.g. by label)")
    if not re.search(r"\bproject\b", jql, re.IGNORECASE):
        yield CheckResult(
            Status.WARN, "jira: JQL scoped to projects", "the JQL names no project: a label alone selects "
            "tickets from any project anyone can label",
            "set jira.projects (e.g. [\"HELP\"]) or add a project clause to jira.jql")
    for group in config.jira.approver_groups:
        try:
            exists = jira.group_exists(group)
        except ConnectorError as exc:
            yield CheckResult(Status.FAIL, f"jira: approver group {group!r}", str(exc),
                              "give the bot 'Browse users and groups' permission")
            continue
        yield (CheckResult(Status.PASS, f"jira: approver group {group!r}", "exists") if exists else
               CheckResult(Status.FAIL, f"jira: approver group {group!r}", "no such group",
                           "create the group or fix jira.approver_groups"))
    yield _check_membership(jira)
    yield from _check_transitions(config, jira)


def _check_deployment(config: Config, jira: JiraClient) -> CheckResult:
    name = "jira: deployment"
    try:
        reported = jira.server_deployment()
    except ConnectorError as exc:
        return CheckResult(Status.FAIL, name, f"cannot read serverInfo: {exc}", "check jira.url")
    if reported == config.jira.deployment.value:
        return CheckResult(Status.PASS, name, f"serverInfo agrees: {reported}")
    return CheckResult(Status.FAIL, name,
                       f"jira.deployment is {config.jira.deployment.value!r} but the site reports {reported!r}",
                       f"set deployment = {reported!r} in [jira]")


def _check_membership(jira: JiraClient) -> CheckResult:
    """Approver membership is read per user: check it can be read at all, on the bot itself."""
    name = "jira: approver membership readable"
    try:
        groups = jira.groups_of(jira.myself())
    except ConnectorError as exc:
        return CheckResult(Status.FAIL, name, f"cannot read a user's groups: {exc}",
                           "give the bot 'Browse users and groups' (global permission) and check jira.deployment")
    return CheckResult(Status.PASS, name, f"the bot's own groups read ({len(groups)})")


def _check_transitions(config: Config, jira: JiraClient) -> Iterator[CheckResult]:
    transitions = config.jira.transitions
    wanted = [n for n in (transitions.resolve or INTO_DONE, transitions.escalate) if n]
    try:
        sample = next(iter(jira.search(config.jira.search_jql)), None)
    except ConnectorError as exc:
        yield CheckResult(Status.FAIL, "jira: transitions", str(exc), "check the JQL and the bot's permissions")
        return
    if sample is None:
        yield CheckResult(Status.SKIP, "jira: transitions", "no matching ticket to read transitions from")
        return
    try:
        offered = jira.transitions(sample.key)
    except ConnectorError as exc:
        yield CheckResult(Status.FAIL, "jira: transitions", str(exc), "give the bot 'Transition issues'")
        return
    available = {t.name.lower() for t in offered}
    for name in wanted:
        if name == INTO_DONE:
            done = sorted(f"{t.name!r} -> {t.to_status}" for t in offered if t.to_category == "done")
            if done:
                yield CheckResult(Status.PASS, "jira: resolve transition", f"into a Done status on {sample.key}: "
                                  + ", ".join(done))
            else:
                yield CheckResult(Status.FAIL, "jira: resolve transition", f"none into a Done status on {sample.key}",
                                  "set jira.transitions.resolve to a transition name offered there")
            continue
        if name.lower() in available:
            yield CheckResult(Status.PASS, f"jira: transition {name!r}", f"offered on {sample.key}")
        else:
            yield CheckResult(Status.FAIL, f"jira: transition {name!r}", f"not offered on {sample.key}",
                              "fix jira.transitions (names offered: " + ", ".join(sorted(available)) + ")")


def _missing(tenant: TenantClients, roles: frozenset[str], wanted: Permission, prefix: str) -> CheckResult:
    name = f"{prefix}: permission {wanted.permission} ({wanted.purpose})"
    if roles & wanted.accepted:
        return CheckResult(Status.PASS, name, "granted: " + ", ".join(sorted(roles & wanted.accepted)))
    return CheckResult(
        Status.FAIL, name, f"MISSING application permission {wanted.permission}",
        CONSENT_FIX.format(app=tenant.config.client_id, api=wanted.api, permission=wanted.permission),
    )


def check_tenant(config: Config, tenant_name: str) -> Iterator[CheckResult]:
    """Token, app permissions, Exchange admin API and the service principal's Entra roles of one tenant."""
    prefix = f"tenant {tenant_name}"
    try:
        tenant = build_tenant(config, config.tenant(tenant_name))
    except (ConfigError, ValueError) as exc:
        yield CheckResult(Status.FAIL, f"{prefix}: credentials", str(exc), "fix this tenant's credential keys")
        return
    cfg = tenant.config
    try:
        graph_token = tenant.tokens.app_token(tenant.graph.resource)
    except ConnectorError as exc:
        yield CheckResult(Status.FAIL, f"{prefix}: token for Graph", str(exc),
                          "check tenant_id, client_id and the certificate/secret (and cloud, authority_host, "
                          "graph_resource)")
        return
    yield CheckResult(Status.PASS, f"{prefix}: token for Graph", f"acquired for app {cfg.client_id}")
    wanted = [*GRAPH_PERMISSIONS, *([INBOX_RULES_PERMISSION] if config.policy.check_inbox_rules else [])]
    for permission in wanted:
        yield _missing(tenant, graph_token.roles, permission, prefix)
    try:
        exchange_token = tenant.tokens.app_token(tenant.exchange.resource)
    except ConnectorError as exc:
        yield CheckResult(Status.FAIL, f"{prefix}: token for Exchange", str(exc),
                          "add the Office 365 Exchange Online API permission Exchange.ManageAsApp")
        return
    yield _missing(tenant, exchange_token.roles, EXCHANGE_PERMISSION, prefix)
    probe = f"mailunblock-doctor-probe@{cfg.domains[0]}"
    yield _check(
        f"{prefix}: Exchange admin API (Get-BlockedSenderAddress)",
        lambda: f"reachable; {len(tenant.exchange.blocked_entries([probe]))} entries for a probe address",
        lambda e: "assign the Exchange Administrator role to the app's service principal "
                  "(Entra admin center > Roles and administrators) and check exchange_url",
    )
    yield from _check_entra_roles(tenant, graph_token, prefix)


def _check_entra_roles(tenant: TenantClients, token: AppToken, prefix: str) -> Iterator[CheckResult]:
    name = f"{prefix}: Entra roles of the app"
    # The token's ``wids`` claim lists the app's directory roles; it needs no directory permission.
    from_token = ({ROLE_TEMPLATES.get(w, w) for w in token.role_template_ids}
                  if token.role_template_ids is not None else None)
    sp_id = token.service_principal_id
    held: set[str]
    if not sp_id and from_token is None:
        yield CheckResult(Status.WARN, name, "the token carries no service principal id; check roles by hand")
        return
    try:
        held = {ROLE_TEMPLATES.get(r.role_template_id, r.display_name)
                for r in tenant.graph.service_principal_roles(sp_id)} if sp_id else set()
    except PermissionDeniedError:
        if from_token is None:
            yield CheckResult(Status.WARN, name, "cannot read the app's role assignments",
                              "grant Directory.Read.All, or check by hand that the app holds User Administrator "
                              "and Exchange Administrator")
            return
        held = set()
    except ConnectorError as exc:
        yield CheckResult(Status.FAIL, name, str(exc), "check graph_url")
        return
    held |= from_token or set()
    fix = ("Entra admin center > Roles and administrators > {role} > Add assignments > "
           f"select the app {tenant.config.client_id}")
    if held & PASSWORD_RESET_ROLES:
        yield CheckResult(Status.PASS, f"{name} (password reset)", ", ".join(sorted(held & PASSWORD_RESET_ROLES)))
    else:
        yield CheckResult(Status.FAIL, f"{name} (password reset)", "MISSING role User Administrator",
                          fix.format(role="User Administrator"))
    if held & EXCHANGE_ROLES:
        yield CheckResult(Status.PASS, f"{name} (Exchange)", ", ".join(sorted(held & EXCHANGE_ROLES)))
    else:
        yield CheckResult(Status.FAIL, f"{name} (Exchange)", "MISSING role Exchange Administrator",
                          fix.format(role="Exchange Administrator"))


def run_doctor(config: Config) -> Iterator[CheckResult]:
    """Every check, Jira first, then each tenant (one retry per call: a diagnosis should be quick)."""
    quick = config.http.model_copy(update={"max_retries": min(config.http.max_retries, 1)})
    config = config.model_copy(update={"http": quick})
    yield from check_jira(config)
    for tenant in config.tenants:
        yield from check_tenant(config, tenant.name)
