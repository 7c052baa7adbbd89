"""Configuration: one TOML file, validated at start-up.

Every key is typed, defaulted where a safe default exists, and documented in ``config/example.toml``.
Secrets are given only by reference — ``env:VARIABLE`` or ``file:/path`` — never inline, so a config
file can be committed, shared in a ticket or pasted in a chat without leaking anything.
"""

from __future__ import annotations

import os
import tomllib
from datetime import date, time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mailunblock.plugin.sla import Milestone, Weekday
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_DATA_DIR = "~/.local/share/mailunblock"
ALL_DIRECTORY_ROLES = "*"


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid; the message names key and fix."""


class SecretRef(str):
    """A reference to a secret: ``env:NAME`` or ``file:PATH``. ``str()`` shows the reference only."""

    base_dir: Path = Path()

    def resolve(self) -> str:
        """Read the secret now. Raises ConfigError naming the reference, never the value."""
        kind, _, target = self.partition(":")
        if kind == "env":
            value = os.environ.get(target)
            if not value:
                raise ConfigError(f"secret {self}: environment variable {target} is not set")
            return value
        path = (self.base_dir / Path(target).expanduser())
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"secret {self}: cannot read {path} ({exc.strerror})") from None


def _secret_ref(value: str) -> str:
    kind, sep, target = value.partition(":")
    if not sep or kind not in ("env", "file") or not target:
        raise ValueError(
            "secrets are given by reference, not inline: write 'env:VARIABLE_NAME' or "
            "'file:/path/to/secret' (the value itself never goes in this file)"
        )
    return value


Secret = Annotated[str, AfterValidator(_secret_ref)]


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}; use an IANA name like 'Europe/Paris'") from None
    return value


TimeZoneName = Annotated[str, AfterValidator(_zone)]
Locale = Literal["en", "fr"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Deployment(StrEnum):
    """Which Jira flavour we talk to."""

    CLOUD = "cloud"
    DATACENTER = "datacenter"


class Cloud(StrEnum):
    """Which Microsoft cloud a tenant lives in (Microsoft's national cloud deployments)."""

    GLOBAL = "global"
    USGOV = "usgov"  # Microsoft 365 GCC High
    DOD = "dod"  # Microsoft 365 DoD
    CHINA = "china"  # Microsoft 365 operated by 21Vianet


# Authority, Graph and Exchange Online endpoints of each cloud. The URLs are also the resource
# identifiers tokens are requested for ("<resource>/.default"). Sources: "Microsoft Graph national cloud
# deployments" (learn.microsoft.com/graph/deployments) and the -ExchangeEnvironmentName endpoints of
# Connect-ExchangeOnline (learn.microsoft.com/powershell/module/exchange/connect-exchangeonline).
CLOUD_ENDPOINTS: dict[Cloud, dict[str, str]] = {
    Cloud.GLOBAL: {
        "authority_host": "https://login.microsoftonline.com",
        "graph_url": "https://graph.microsoft.com",
        "exchange_url": "https://outlook.office365.com",
    },
    Cloud.USGOV: {
        "authority_host": "https://login.microsoftonline.us",
        "graph_url": "https://graph.microsoft.us",
        "exchange_url": "https://outlook.office365.us",
    },
    Cloud.DOD: {
        "authority_host": "https://login.microsoftonline.us",
        "graph_url": "https://dod-graph.microsoft.us",
        "exchange_url": "https://webmail.apps.mil",
    },
    Cloud.CHINA: {
        "authority_host": "https://login.chinacloudapi.cn",
        "graph_url": "https://microsoftgraph.chinacloudapi.cn",
        "exchange_url": "https://partner.outlook.cn",
    },
}
_GLOBAL = CLOUD_ENDPOINTS[Cloud.GLOBAL]


class InternalNoteMode(StrEnum):
    """How a comment is kept from the reporter."""

    JSM = "jsm"  # Jira Service Management: comment property sd.public.comment = {"internal": true}
    GROUP = "group"  # comment visibility restricted to a group
    ROLE = "role"  # comment visibility restricted to a project role


class JiraLabels(_Section):
    """Labels mailunblock reads and writes (Jira labels cannot contain spaces)."""

    trigger: str = "mail-blocked"
    resolved: str = "mail-unblocked"
    escalated: str = "mailunblock-escalated"
    refused: str = "mailunblock-refused"  # tickets automation would not handle: agents filter on it

    @field_validator("trigger", "resolved", "escalated", "refused")
    @classmethod
    def _no_spaces(cls, value: str) -> str:
        if not value or any(ch.isspace() for ch in value):
            raise ValueError(f"Jira labels cannot contain spaces: use {value.strip().replace(' ', '-')!r}")
        return value


class JiraTransitions(_Section):
    """Transition names (looked up by name at run time; ids differ per workflow)."""

    # None: the transition into a Done status (Resolved, Done, Closed), e.g. JSM's "Resolve this issue".
    resolve: str | None = None
    escalate: str | None = None
    refuse: str | None = None  # moves a refused ticket to a status agents watch
    # A STATUS name: an approver moving the ticket into this status (by any transition) counts as approval.
    approved_status: str | None = None


class JiraConfig(_Section):
    """Where the tickets live and how to talk to them."""

    url: str
    deployment: Deployment = Deployment.CLOUD
    email: str | None = None
    api_token: Secret | None = None
    personal_access_token: Secret | None = None
    # Data Center only: HTTP Basic sign-in (username + password) instead of a personal access token.
    username: str | None = None
    password: Secret | None = None
    ca_bundle: Path | None = None
    # Service projects mailunblock works in: the default JQL is scoped to them (a label alone selects
    # tickets from any project anyone can label).
    projects: tuple[str, ...] = ()
    jql: str | None = None
    page_size: int = Field(default=50, ge=1, le=100)
    approver_groups: tuple[str, ...] = ()
    approver_roles: tuple[str, ...] = ()
    # Project roles are per project: the projects whose role membership makes an approver.
    approver_role_projects: tuple[str, ...] = ()
    internal_notes: InternalNoteMode = InternalNoteMode.JSM
    internal_visibility: str | None = None
    jsm_native_approval: StrictBool = False
    affected_account_field: str | None = None
    labels: JiraLabels = JiraLabels()
    transitions: JiraTransitions = JiraTransitions()

    @field_validator("url")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (for example https://example.atlassian.net)")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _auth_and_visibility(self) -> JiraConfig:
        if self.deployment is Deployment.CLOUD and not (self.email and self.api_token):
            raise ValueError(
                "Jira Cloud needs 'email' and 'api_token' (an API token from "
                "id.atlassian.com > Security > API tokens, given as 'env:VAR' or 'file:PATH')"
            )
        if self.deployment is Deployment.DATACENTER:
            basic = bool(self.username or self.password)
            if basic and not (self.username and self.password):
                raise ValueError("Basic sign-in needs both 'username' and 'password' ('env:VAR' or 'file:PATH')")
            if basic == bool(self.personal_access_token):
                raise ValueError(
                    "Jira Data Center needs 'personal_access_token', or 'username' and 'password', "
                    "('env:VAR' or 'file:PATH'), not both"
                )
        elif self.username or self.password or self.personal_access_token:
            raise ValueError(
                "'username', 'password' and 'personal_access_token' are for deployment = 'datacenter'; "
                "Jira Cloud signs in with 'email' and 'api_token'"
            )
        if self.internal_notes is not InternalNoteMode.JSM and not self.internal_visibility:
            raise ValueError(
                f"internal_notes = {self.internal_notes.value!r} needs 'internal_visibility': the "
                f"{self.internal_notes.value} name that may read internal notes"
            )
        if self.approver_roles and not self.approver_role_projects:
            raise ValueError(
                "approver_roles needs 'approver_role_projects': the project keys (e.g. [\"HELP\"]) whose "
                "role members may approve"
            )
        if not (self.approver_groups or self.approver_roles):
            raise ValueError(
                "set 'approver_groups' or 'approver_roles': only their members may approve actions"
            )
        return self

    @property
    def search_jql(self) -> str:
        """The JQL selecting tickets that still need work (scoped to ``projects`` when set)."""
        if self.jql:
            return self.jql
        scope = f"project in ({', '.join(_jql_quote(p) for p in self.projects)}) AND " if self.projects else ""
        return f'{scope}labels = "{self.labels.trigger}" AND statusCategory != Done ORDER BY created ASC, key ASC'


def _jql_quote(value: str) -> str:
    """A JQL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class TenantConfig(_Section):
    """One Microsoft 365 tenant and the app registration mailunblock uses in it."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    tenant_id: str
    domains: tuple[str, ...] = Field(min_length=1)
    client_id: str
    certificate_path: Path | None = None
    certificate_passphrase: Secret | None = None
    client_secret: Secret | None = None
    cloud: Cloud = Cloud.GLOBAL
    # Endpoints and resources default from ``cloud``; set a URL for a proxy, a gateway or an emulator.
    # Tokens are always asked for the resource ("<graph_resource>/.default"), never for the URL.
    authority_host: str = _GLOBAL["authority_host"]
    graph_url: str = _GLOBAL["graph_url"]
    exchange_url: str = _GLOBAL["exchange_url"]
    graph_resource: str = _GLOBAL["graph_url"]
    exchange_resource: str = _GLOBAL["exchange_url"]
    ca_bundle: Path | None = None
    time_zone: TimeZoneName | None = None
    locale: Locale | None = None

    @model_validator(mode="before")
    @classmethod
    def _cloud_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        try:
            endpoints = CLOUD_ENDPOINTS[Cloud(data.get("cloud", Cloud.GLOBAL))]
        except ValueError:
            return data  # the field validator names the allowed values
        defaults = {
            **endpoints,
            "graph_resource": endpoints["graph_url"],
            "exchange_resource": endpoints["exchange_url"],
        }
        return {**defaults, **data}

    @field_validator("domains")
    @classmethod
    def _lower_domains(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(d.lower().strip() for d in value)

    @field_validator("authority_host", "graph_url", "exchange_url", "graph_resource", "exchange_resource")
    @classmethod
    def _https_url(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError("must be an https:// URL (MSAL and Microsoft APIs refuse plain http)")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_credential(self) -> TenantConfig:
        if bool(self.certificate_path) == bool(self.client_secret):
            raise ValueError(
                "give exactly one credential: 'certificate_path' (a .pfx, preferred) or "
                "'client_secret' ('env:VAR' or 'file:PATH')"
            )
        return self


class PolicyConfig(_Section):
    """What mailunblock may do and what it promises the user."""

    eta_min_hours: float = Field(default=3.0, gt=0)
    eta_max_hours: float = Field(default=4.0, gt=0)
    escalate_after_hours: float = Field(default=24.0, gt=0)
    verify_every_minutes: float = Field(default=30.0, gt=0)
    reblock_window_days: float = Field(default=7.0, ge=0)
    approval_timeout_hours: float = Field(default=168.0, gt=0)  # unapproved plans are cancelled after this
    waiting_recheck_minutes: float = Field(default=15.0, gt=0)  # an unchanged ticket waiting on people: looked at again
    stuck_after_hours: float = Field(default=6.0, gt=0)  # a step failing this long without progress: escalate
    excluded_roles: tuple[str, ...] = (ALL_DIRECTORY_ROLES,)
    auto_approve: StrictBool = False
    check_inbox_rules: StrictBool = True
    password_ttl_hours: float = Field(default=24.0, gt=0)
    password_length: int = Field(default=20, ge=12, le=256)
    time_zone: TimeZoneName = "UTC"
    locale: Locale = "en"

    @model_validator(mode="after")
    def _window(self) -> PolicyConfig:
        if self.eta_max_hours < self.eta_min_hours:
            raise ValueError("eta_max_hours must be >= eta_min_hours")
        if self.escalate_after_hours < self.eta_max_hours:
            raise ValueError("escalate_after_hours must be >= eta_max_hours")
        return self


class InFlightConfig(_Section):
    """Requests in flight at once, per service: Jira (the site), and each tenant's identity, Graph and Exchange.

    Requests past the limit wait for a free slot; a 429 still closes the service's gate (Retry-After).
    Exchange's admin endpoint is the slowest and least documented, hence the smallest default.
    """

    jira: int = Field(default=8, ge=1, le=256)
    identity: int = Field(default=2, ge=1, le=64)
    graph: int = Field(default=8, ge=1, le=256)
    exchange: int = Field(default=3, ge=1, le=64)


class HttpConfig(_Section):
    """Shared HTTP policy for every connector."""

    timeout_seconds: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=4, ge=0, le=10)
    max_retry_wait_seconds: float = Field(default=120.0, gt=0)
    in_flight: InFlightConfig = InFlightConfig()


class StoreConfig(_Section):
    """Where state lives. SQLite by default; PostgreSQL for several replicas."""

    # A SQLAlchemy URL, or a reference to one ("env:VAR" / "file:PATH") when it holds a password.
    url: str | None = None
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    vault_key: Secret | None = None  # Fernet key for stored passwords; default: key file in data_dir
    # A replica's claim on a ticket lapses this long after its last renewal (a dead replica's tickets are
    # taken over then); the heartbeat renews every third of it.
    lease_seconds: float = Field(default=60.0, ge=2)

    @field_validator("url")
    @classmethod
    def _no_inline_password(cls, value: str | None) -> str | None:
        if value is None or value.startswith(("env:", "file:")):
            return value
        _, sep, rest = value.partition("://")
        credentials = rest.rpartition("@")[0] if sep else ""
        if ":" in credentials:
            raise ValueError(
                "this URL holds a password: give the whole URL by reference instead, e.g. "
                "url = 'env:MAILUNBLOCK_DATABASE_URL' (or use PGPASSWORD / ~/.pgpass)"
            )
        return value


class PollerConfig(_Section):
    """The polling job."""

    interval_seconds: float = Field(default=60.0, ge=1)
    workers: int = Field(default=16, ge=1, le=256)  # tickets advanced at once by one process
    tickets_per_tenant: int | None = Field(default=None, ge=1)  # of those, at most this many of one tenant
    # CPUs ``mailunblock run`` runs on (Linux), e.g. [0]; unset: wherever the system puts it.
    cpus: list[Annotated[int, Field(ge=0)]] | None = Field(default=None, min_length=1)
    # Linux: the kernel schedules the process as batch work (SCHED_BATCH): woken threads wait their turn.
    batch_scheduling: StrictBool = False
    # glibc: at most this many allocator arenas (0: glibc's default); unset: 2, unless MALLOC_ARENA_MAX is set.
    malloc_arena_max: int | None = Field(default=None, ge=0, le=1024)

    @field_validator("cpus")
    @classmethod
    def _distinct(cls, cpus: list[int] | None) -> list[int] | None:
        if cpus is not None and len(set(cpus)) != len(cpus):
            raise ValueError("each CPU once")
        return cpus


class WebConfig(_Section):
    """Optional one-time password link served by mailunblock itself."""

    enabled: StrictBool = False
    listen: str = "127.0.0.1:8765"
    public_url: str | None = None


class MetricsConfig(_Section):
    """Prometheus metrics and ``/healthz`` of ``mailunblock run`` (off unless a port is set)."""

    port: int | None = Field(default=None, ge=0, le=65535)
    host: str = "127.0.0.1"


class LogConfig(_Section):
    """Log output."""

    format: Literal["text", "json"] = "text"  # json: one object per line (``run --log-format``)


class SlaTargetConfig(_Section):
    """One SLA target: from one milestone to another within ``minutes``."""

    name: str = Field(pattern=r"^[a-z0-9_-]+$")
    start: Milestone
    end: Milestone
    minutes: float = Field(gt=0)
    business_hours: StrictBool = False  # count only working hours of the tenant's calendar

    @model_validator(mode="after")
    def _two_milestones(self) -> SlaTargetConfig:
        if self.start == self.end:
            raise ValueError(f"target {self.name!r}: 'start' and 'end' must be different milestones")
        return self


DEFAULT_SLA_TARGETS = (
    SlaTargetConfig(name="acknowledge", start=Milestone.CREATED, end=Milestone.ACKNOWLEDGED, minutes=15),
    SlaTargetConfig(name="approve", start=Milestone.PLAN_POSTED, end=Milestone.APPROVED, minutes=60),
    SlaTargetConfig(name="remediate", start=Milestone.APPROVED, end=Milestone.UNBLOCKED, minutes=15),
    SlaTargetConfig(name="restore", start=Milestone.CREATED, end=Milestone.RESTORED, minutes=480),
)


class SlaConfig(_Section):
    """SLA targets and the business calendar they may be counted in (``mailunblock report``)."""

    targets: tuple[SlaTargetConfig, ...] = DEFAULT_SLA_TARGETS
    working_days: tuple[Weekday, ...] = (Weekday.MON, Weekday.TUE, Weekday.WED, Weekday.THU, Weekday.FRI)
    day_start: time = time(9, 0)
    day_end: time = time(17, 0)
    holidays: tuple[date, ...] = ()
    # Business hours are counted in each tenant's time_zone, else this, else policy.time_zone.
    time_zone: TimeZoneName | None = None

    @model_validator(mode="after")
    def _sane(self) -> SlaConfig:
        if self.day_end <= self.day_start:
            raise ValueError("day_end must be after day_start (e.g. day_start = 09:00:00, day_end = 17:00:00)")
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError("two SLA targets have the same name; names must be unique")
        return self


class Config(_Section):
    """The whole configuration file."""

    ticketing: str = Field(
        "jira", description="The ticketing backend (entry point group mailunblock.ticketing); jira is built in."
    )
    jira: JiraConfig
    tenants: tuple[TenantConfig, ...] = Field(min_length=1)
    policy: PolicyConfig = PolicyConfig()
    http: HttpConfig = HttpConfig()
    store: StoreConfig = StoreConfig()
    poller: PollerConfig = PollerConfig()
    web: WebConfig = WebConfig()
    log: LogConfig = LogConfig()
    metrics: MetricsConfig = MetricsConfig()
    sla: SlaConfig = SlaConfig()
    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The file this configuration was read from (relative paths are resolved against it)."""
        return self._source

    @model_validator(mode="after")
    def _unique_tenants(self) -> Config:
        names: set[str] = set()
        owners: dict[str, str] = {}
        for tenant in self.tenants:
            if tenant.name in names:
                raise ValueError(f"two tenants are named {tenant.name!r}; names must be unique")
            names.add(tenant.name)
            for domain in tenant.domains:
                if domain in owners:
                    raise ValueError(
                        f"domain {domain!r} is listed by tenants {owners[domain]!r} and "
                        f"{tenant.name!r}; a domain belongs to one tenant"
                    )
                owners[domain] = tenant.name
        return self

    def tenant_for_domain(self, domain: str) -> TenantConfig | None:
        """The tenant owning a mail domain, or None."""
        domain = domain.lower()
        return next((t for t in self.tenants if domain in t.domains), None)

    def tenant(self, name: str) -> TenantConfig:
        """The tenant with this name (KeyError if unknown)."""
        return next(t for t in self.tenants if t.name == name)

    def secret(self, ref: str) -> str:
        """Resolve a secret reference; relative file paths are relative to the config file."""
        secret = SecretRef(ref)
        secret.base_dir = self.source.parent if self.source else Path()
        return secret.resolve()

    @property
    def data_dir(self) -> Path:
        """The data folder (SQLite file, vault key), relative paths resolved against the config file."""
        return self.path(self.store.data_dir)

    @property
    def database_url(self) -> str:
        """SQLAlchemy URL of the state store."""
        url = self.store.url
        if url and url.startswith(("env:", "file:")):
            return self.secret(url)
        return url or f"sqlite:///{self.data_dir / 'mailunblock.db'}"

    def path(self, value: Path) -> Path:
        """Resolve a configured path relative to the config file's folder."""
        value = value.expanduser()
        if value.is_absolute() or self.source is None:
            return value
        return self.source.parent / value


def _describe(error: dict[str, Any], data: dict[str, Any]) -> str:
    loc = list(error["loc"])
    if len(loc) >= 2 and loc[0] == "tenants" and isinstance(loc[1], int):
        # Name the tenant by its name, not by its position in the file.
        tenants = data.get("tenants")
        entry = tenants[loc[1]] if isinstance(tenants, list) and loc[1] < len(tenants) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str) and name:
            loc[1] = f"[{name}]"
    location = ".".join(str(p) for p in loc).replace(".[", "[") or "(top level)"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key (check the spelling against config/example.toml)"
    elif error["type"] == "missing":
        message = "required key is missing"
    return f"  {location}: {message}"


def parse_config(data: dict[str, Any], source: Path | None = None) -> Config:
    """Validate a parsed TOML document."""
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        where = f" in {source}" if source else ""
        lines = "\n".join(_describe(e, data) for e in exc.errors())  # type: ignore[arg-type]
        raise ConfigError(f"invalid configuration{where}:\n{lines}") from None
    config._source = source
    return config


def load_config(path: Path | str) -> Config:
    """Read and validate a TOML configuration file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return parse_config(data, path.resolve())
