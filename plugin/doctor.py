"""``mailunblock doctor``: check a configuration end to end, one PASS/FAIL line per check with the fix."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from mailunblock.connectors.errors import ConnectorError, PermissionDeniedError
from mailunblock.connectors.jira import JiraClient
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
    yield from _check_transitions(config, jira)


def _check_transitions(config: Config, jira: JiraClient) -> Iterator[CheckResult]:
    wanted = [n for n in (config.jira.transitions.resolve, config.jira.transitions.escalate) if n]
    if not wanted:
        return
    try:
        sample = next(iter(jira.search(config.jira.search_jql)), None)
    except ConnectorError as exc:
        yield CheckResult(Status.FAIL, "jira: transitions", str(exc), "check the JQL and the bot's permissions")
        return
    if sample is None:
        yield CheckResult(Status.SKIP, "jira: transitions", "no matching ticket to read transitions from")
        return
    try:
        available = {n.lower() for n in jira.transition_names(sample.key)}
    except ConnectorError as exc:
        yield CheckResult(Status.FAIL, "jira: transitions", str(exc), "give the bot 'Transition issues'")
        return
    for name in wanted:
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
        graph_token = tenant.tokens.app_token(cfg.graph_url)
    except ConnectorError as exc:
        yield CheckResult(Status.FAIL, f"{prefix}: token for Graph", str(exc),
                          "check tenant_id, client_id and the certificate/secret (and authority_host)")
        return
    yield CheckResult(Status.PASS, f"{prefix}: token for Graph", f"acquired for app {cfg.client_id}")
    wanted = [*GRAPH_PERMISSIONS, *([INBOX_RULES_PERMISSION] if config.policy.check_inbox_rules else [])]
    for permission in wanted:
        yield _missing(tenant, graph_token.roles, permission, prefix)
    try:
        exchange_token = tenant.tokens.app_token(cfg.exchange_url)
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
    yield from _check_entra_roles(tenant, graph_token.service_principal_id, prefix)


def _check_entra_roles(tenant: TenantClients, sp_id: str | None, prefix: str) -> Iterator[CheckResult]:
    name = f"{prefix}: Entra roles of the app"
    if not sp_id:
        yield CheckResult(Status.WARN, name, "the token carries no service principal id; check roles by hand")
        return
    try:
        held = {ROLE_TEMPLATES.get(r.role_template_id, r.display_name)
                for r in tenant.graph.service_principal_roles(sp_id)}
    except PermissionDeniedError:
        yield CheckResult(Status.WARN, name, "cannot read the app's role assignments",
                          "grant Directory.Read.All, or check by hand that the app holds User Administrator "
                          "and Exchange Administrator")
        return
    except ConnectorError as exc:
        yield CheckResult(Status.FAIL, name, str(exc), "check graph_url")
        return
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
