"""Build every long-lived object once, from the configuration: connectors, store, vault, engine, poller.

The only place where configuration meets connectors; the CLI, the dry run, the doctor, the demo, the
tests and the benchmarks all get their objects from ``build_runtime``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import partial

from mailunblock.connectors.exchange import ExchangeClient
from mailunblock.connectors.graph import GraphClient
from mailunblock.connectors.http import Clock as HttpClock
from mailunblock.connectors.http import HttpObserver, HttpPolicy, InFlightLimits, UtcClock, build_session
from mailunblock.connectors.identity import TokenProvider
from mailunblock.connectors.jira import INTO_DONE, JiraClient
from mailunblock.plugin import backends
from mailunblock.plugin.config import Config, ConfigError, TenantConfig
from mailunblock.plugin.metrics import Metrics
from mailunblock.plugin.poller import Concurrency, Job, Poller
from mailunblock.plugin.sla import SlaPolicy, SlaTarget, sla_property
from mailunblock.plugin.store import StateStore, StoreNotFoundError, store_error
from mailunblock.plugin.vault import PasswordVault, load_key, load_or_create_key
from mailunblock.workflows.engine import RemediationEngine
from mailunblock.workflows.policy import RemediationPolicy
from mailunblock.workflows.ports import Clock, TicketingBackend
from mailunblock.workflows.tenants import TenantRegistry, TenantServices
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError


@dataclass(frozen=True)
class TenantClients:
    """The connectors of one tenant."""

    config: TenantConfig
    tokens: TokenProvider
    graph: GraphClient
    exchange: ExchangeClient


Sleep = Callable[[float], None]


def http_policy(
    config: Config, ca_bundle: str | None, clock: HttpClock | None = None, sleep: Sleep = time.sleep,
    observer: HttpObserver | None = None,
) -> HttpPolicy:
    """The HTTP policy (throttle gates, in-flight limits) of one site or tenant, with its CA bundle."""
    return HttpPolicy(
        in_flight=InFlightLimits(config.http.in_flight.model_dump()),
        timeout=config.http.timeout_seconds,
        max_retries=config.http.max_retries,
        max_retry_wait=config.http.max_retry_wait_seconds,
        ca_bundle=ca_bundle,
        sleep=sleep,
        clock=clock or UtcClock(),
        observer=observer,
    )


def build_jira(config: Config, clock: HttpClock | None = None, sleep: Sleep = time.sleep, *,
               observer: HttpObserver | None = None) -> JiraClient:
    """The Jira connector (secrets resolved now, never stored on the config)."""
    jira = config.jira
    ca = str(config.path(jira.ca_bundle)) if jira.ca_bundle else None
    return JiraClient.connect(
        jira.url,
        policy=http_policy(config, ca, clock, sleep, observer),
        deployment=jira.deployment.value,
        email=jira.email,
        api_token=config.secret(jira.api_token) if jira.api_token else None,
        username=jira.username,
        password=config.secret(jira.password) if jira.password else None,
        personal_access_token=(
            config.secret(jira.personal_access_token) if jira.personal_access_token else None
        ),
        internal_notes=jira.internal_notes.value,
        internal_visibility=jira.internal_visibility,
        affected_account_field=jira.affected_account_field,
        selection=jira.search_jql,
        page_size=jira.page_size,
    )


def build_tenant(
    config: Config, tenant: TenantConfig, clock: HttpClock | None = None, sleep: Sleep = time.sleep,
    observer: HttpObserver | None = None,
) -> TenantClients:
    """The identity, Graph and Exchange connectors of one tenant, each with its own throttle gate."""
    ca = str(config.path(tenant.ca_bundle)) if tenant.ca_bundle else None
    policy = http_policy(config, ca, clock, sleep, observer)
    tokens = TokenProvider(
        tenant_id=tenant.tenant_id,
        client_id=tenant.client_id,
        session=build_session(policy, "identity"),
        policy=policy,
        authority_host=tenant.authority_host,
        client_secret=config.secret(tenant.client_secret) if tenant.client_secret else None,
        certificate_path=str(config.path(tenant.certificate_path)) if tenant.certificate_path else None,
        certificate_passphrase=(
            config.secret(tenant.certificate_passphrase) if tenant.certificate_passphrase else None
        ),
    )
    return TenantClients(
        config=tenant,
        tokens=tokens,
        graph=GraphClient(tenant.graph_url, tokens, build_session(policy, "graph"), policy,
                          resource=tenant.graph_resource),
        exchange=ExchangeClient(
            tenant.exchange_url, tenant.tenant_id, tokens, build_session(policy, "exchange"), policy,
            resource=tenant.exchange_resource,
        ),
    )


def sla_policy(config: Config) -> SlaPolicy:
    """Map the ``[sla]`` section (and each tenant's time zone) onto the SLA computation's policy."""
    sla = config.sla
    return SlaPolicy(
        targets=tuple(
            SlaTarget(t.name, t.start, t.end, timedelta(minutes=t.minutes), t.business_hours) for t in sla.targets
        ),
        time_zone=sla.time_zone or config.policy.time_zone,
        tenant_zones={t.name: t.time_zone for t in config.tenants if t.time_zone},
        working_days=frozenset(sla.working_days),
        day_start=sla.day_start,
        day_end=sla.day_end,
        holidays=frozenset(sla.holidays),
    )


def remediation_policy(config: Config) -> RemediationPolicy:
    """Map the configuration onto the workflow's policy."""
    policy, jira = config.policy, config.jira
    return RemediationPolicy(
        eta_min=timedelta(hours=policy.eta_min_hours),
        eta_max=timedelta(hours=policy.eta_max_hours),
        escalate_after=timedelta(hours=policy.escalate_after_hours),
        verify_every=timedelta(minutes=policy.verify_every_minutes),
        reblock_window=timedelta(days=policy.reblock_window_days),
        stuck_after=timedelta(hours=policy.stuck_after_hours),
        # Longer than any request of a killed process can take to arrive (two HTTP timeouts, at least 2 min).
        reset_grace=max(timedelta(minutes=2), timedelta(seconds=2 * config.http.timeout_seconds)),
        excluded_roles=policy.excluded_roles,
        auto_approve=policy.auto_approve,
        check_inbox_rules=policy.check_inbox_rules,
        password_length=policy.password_length,
        password_ttl=timedelta(hours=policy.password_ttl_hours),
        locale=policy.locale,
        time_zone=policy.time_zone,
        trigger_label=jira.labels.trigger,
        resolved_label=jira.labels.resolved,
        escalated_label=jira.labels.escalated,
        refused_label=jira.labels.refused,
        refuse_transition=jira.transitions.refuse,
        approval_timeout=timedelta(hours=policy.approval_timeout_hours),
        waiting_recheck=timedelta(minutes=policy.waiting_recheck_minutes),
        resolve_transition=jira.transitions.resolve or INTO_DONE,
        escalate_transition=jira.transitions.escalate,
        approve_status=jira.transitions.approved_status,
        jsm_native_approval=jira.jsm_native_approval,
        sla_summary=partial(sla_property, policy=sla_policy(config)),
        approver_groups=frozenset(g.lower() for g in jira.approver_groups),
        approver_roles=frozenset(r.lower() for r in jira.approver_roles),
        approver_role_projects=jira.approver_role_projects,
    )


def open_store(config: Config, *, existing: bool = False) -> StateStore:
    """The state store; ConfigError (one line, no password) when it cannot be opened.

    ``existing``: open only a store that is already there, creating nothing (``status``, ``reveal``).
    """
    url = config.database_url
    try:
        where = make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        raise ConfigError(
            "state store: store.url is not a valid SQLAlchemy URL "
            "(e.g. 'postgresql+psycopg://user@host/db' or 'sqlite:////var/lib/mailunblock/state.db')"
        ) from None
    try:
        if existing:
            return StateStore.open_existing(url)
        return StateStore.from_url(url, lease_seconds=config.store.lease_seconds,
                                   connections=config.poller.workers + 4)
    except StoreNotFoundError as exc:
        raise ConfigError(f"state store: {exc}") from None
    except (SQLAlchemyError, ImportError, OSError) as exc:
        reason = store_error(exc)
        fix = " (install the database driver)" if isinstance(exc, ImportError) else ""
        raise ConfigError(f"state store {where} cannot be opened: {reason}{fix}") from None


def open_vault(config: Config, store: StateStore, clock: Clock, *, create_key: bool = True) -> PasswordVault:
    """The password vault, keyed by ``store.vault_key`` or the key file in the data folder.

    One-time links are not advertised until the web server runs (``PasswordVault.advertise_links``).
    """
    if config.store.vault_key:
        key = config.secret(config.store.vault_key).encode("ascii")
    elif create_key:
        key = load_or_create_key(config.data_dir / "vault.key")
    else:
        key = load_key(config.data_dir / "vault.key")
    return PasswordVault(store.engine, key, clock)


log = logging.getLogger(__name__)
VAULT_EXPIRY_SECONDS = 300.0  # how often expired passwords are wiped (they are unreadable once expired anyway)


@dataclass(frozen=True)
class Runtime:
    """Everything a running mailunblock holds, built once at start-up."""

    config: Config
    tickets: TicketingBackend
    tenants: dict[str, TenantClients]
    store: StateStore
    vault: PasswordVault
    engine: RemediationEngine
    poller: Poller
    housekeeping: bool = True  # False for a dry run: it changes nothing, the vault included

    def expire_passwords(self) -> int:
        """Wipe every expired password from the vault; return how many (a scheduled job of ``run``)."""
        wiped = self.vault.purge_expired()
        if wiped:
            log.info("%d expired password(s) wiped from the vault", wiped)
        return wiped

    def jobs(self) -> list[Job]:
        """The housekeeping the scheduler runs beside the polling cycle."""
        return [Job("vault-expiry", self.expire_passwords, VAULT_EXPIRY_SECONDS)] if self.housekeeping else []

    def dry_run(self, echo: Callable[[str], None]) -> Runtime:
        """The same runtime over printing ports and a scratch copy of the store (``run --dry-run``)."""
        from mailunblock.plugin.dryrun import dry_run_engine

        engine, store = dry_run_engine(self, echo)
        return replace(self, engine=engine, store=store,
                       poller=_poller(self.config, self.tickets, engine, store, workers=1), housekeeping=False)


def _poller(config: Config, tickets: TicketingBackend, engine: RemediationEngine, store: StateStore, *,
            workers: int | None = None) -> Poller:
    concurrency = Concurrency(
        workers=workers or config.poller.workers,
        per_tenant=config.poller.tickets_per_tenant,
        lease_renewal_seconds=config.store.lease_seconds / 3,
    )
    return Poller(tickets.selected, tickets.read_whole, tickets.get_issue, engine, store, concurrency)


def build_runtime(config: Config, clock: Clock, sleep: Sleep = time.sleep, metrics: Metrics | None = None) -> Runtime:
    """Wire connectors, store, vault and engine from the configuration (``sleep``: the HTTP retry waits).

    With ``metrics``, every HTTP request and every poll cycle is counted there.
    """
    factory = backends.load(config.ticketing)
    tickets = factory(config, clock, sleep, observer=metrics.http_observer("")) if metrics else factory(
        config, clock, sleep)
    tenants = {t.name: build_tenant(config, t, clock, sleep, metrics.http_observer(t.name) if metrics else None)
               for t in config.tenants}
    store = open_store(config)
    vault = open_vault(config, store, clock)
    registry = TenantRegistry(
        TenantServices(
            name=name,
            domains=clients.config.domains,
            directory=clients.graph,
            restricted=clients.exchange,
            locale=clients.config.locale,
            time_zone=clients.config.time_zone,
        )
        for name, clients in tenants.items()
    )
    engine = RemediationEngine(remediation_policy(config), tickets, registry, store, vault, clock, tickets)
    poller = _poller(config, tickets, engine, store)
    if metrics:
        poller.observer = metrics.cycle_done
    return Runtime(config, tickets, tenants, store, vault, engine, poller)
