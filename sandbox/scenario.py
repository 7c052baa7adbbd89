"""Sandbox scenarios: the tenants, users and Restricted users list the Microsoft emulators serve.

EMULATOR CODE. A scenario is a TOML file (package data in ``sandbox/scenarios/`` or any path). This module
reads it into frozen specs, generates the app credentials the scenario asks for (a client secret and/or
a certificate in a passphrase-protected PFX) into the state directory, and holds the live state the
emulators change (passwords reset, sessions revoked, the list, unblock counts).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import tomllib
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from mailunblock.sandbox.core import SandboxClock

# Built-in Entra role template ids (stable across tenants; from Microsoft's "built-in roles" reference).
DIRECTORY_ROLE_TEMPLATES: Mapping[str, str] = {
    "Global Administrator": "62e90394-69f5-4237-9190-012177145e10",
    "Privileged Role Administrator": "e8611ab8-c189-46e8-94e1-60213ab1f814",
    "Privileged Authentication Administrator": "7be44c8a-adaf-4e2a-84d6-ab2649e08a13",
    "Authentication Administrator": "c4e39bd9-1100-46d3-8c65-fb160da0071f",
    "User Administrator": "fe930be7-5e62-47db-91af-98c3a49a38b1",
    "Helpdesk Administrator": "729827e3-9c14-49f7-bb1b-9608f156bbb8",
    "Password Administrator": "966707d0-3269-4727-9be2-8c3a10f19b9d",
    "Exchange Administrator": "29232cdf-9323-42fd-ade2-1d097af3e4de",
    "Security Administrator": "194ae4cb-b126-40b2-bd5b-6091b380977d",
    "Global Reader": "f2ef992c-3afb-46b9-b7cf-a126ee74c451",
}
RESOURCES = ("graph", "exchange")
DEFAULT_REASON = (
    "ExceedingLimitType=External;InternalRecipientCountToday=0;ExternalRecipientCountToday=512"
)
CREDENTIAL_KINDS = ("certificate", "secret")


class ScenarioError(Exception):
    """The scenario file is missing or malformed; the message names the key."""


@dataclass(frozen=True)
class UserSpec:
    """One directory user as the scenario describes it."""

    id: str
    user_principal_name: str
    display_name: str
    mail: str | None
    proxy_addresses: tuple[str, ...]
    account_enabled: bool
    user_type: str
    on_premises_sync_enabled: bool | None
    preferred_language: str | None
    directory_roles: tuple[str, ...]
    inbox_rules: tuple[Mapping[str, Any], ...]
    has_mailbox: bool
    password_changed_days_ago: float

    @property
    def smtp_addresses(self) -> tuple[str, ...]:
        """Every SMTP address of the account, lower case (mail, then proxyAddresses)."""
        found: list[str] = []
        for address in ([self.mail] if self.mail else []) + [
            p.split(":", 1)[1] for p in self.proxy_addresses if p.lower().startswith("smtp:")
        ]:
            if address.lower() not in found:
                found.append(address.lower())
        return tuple(found)


@dataclass(frozen=True)
class AppSpec:
    """The mailunblock app registration and its service principal in one tenant."""

    client_id: str
    service_principal_id: str
    display_name: str
    credentials: tuple[str, ...]
    config_credential: str
    permissions: Mapping[str, tuple[str, ...]]
    directory_roles: tuple[str, ...]


@dataclass(frozen=True)
class BlockedSpec:
    """An entry of the Restricted users list at scenario start."""

    sender_address: str
    reason: str
    blocked_hours_ago: float
    temporary_block: bool


@dataclass(frozen=True)
class TenantSpec:
    """One Microsoft 365 tenant."""

    name: str
    tenant_id: str
    display_name: str
    domains: tuple[str, ...]
    locale: str
    time_zone: str
    app: AppSpec
    users: tuple[UserSpec, ...]
    blocked: tuple[BlockedSpec, ...]


@dataclass(frozen=True)
class ExchangeKnobs:
    """Behaviour of the Exchange emulator that Microsoft does not publish."""

    propagation_minutes: float = 20.0
    unblock_limit_per_day: int = 3
    page_size: int = 1000


@dataclass(frozen=True)
class Scenario:
    """A whole scenario file."""

    name: str
    tenants: tuple[TenantSpec, ...]
    exchange: ExchangeKnobs
    approver_groups: tuple[str, ...]
    jira: Mapping[str, Any]


def _req(table: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in table:
        raise ScenarioError(f"{where}: required key {key!r} is missing")
    return table[key]


def _roles(names: list[str], where: str) -> tuple[str, ...]:
    unknown = [n for n in names if n not in DIRECTORY_ROLE_TEMPLATES]
    if unknown:
        raise ScenarioError(f"{where}: unknown directory role(s) {unknown}")
    return tuple(names)


def _user(table: Mapping[str, Any], where: str) -> UserSpec:
    upn = str(_req(table, "user_principal_name", where))
    return UserSpec(
        id=str(table.get("id") or uuid.uuid5(uuid.NAMESPACE_DNS, upn)),
        user_principal_name=upn,
        display_name=str(table.get("display_name", upn.split("@")[0])),
        mail=table.get("mail"),
        proxy_addresses=tuple(table.get("proxy_addresses", ())),
        account_enabled=bool(table.get("account_enabled", True)),
        user_type=str(table.get("user_type", "Member")),
        on_premises_sync_enabled=table.get("on_premises_sync_enabled"),
        preferred_language=table.get("preferred_language"),
        directory_roles=_roles(list(table.get("directory_roles", [])), where),
        inbox_rules=tuple(table.get("inbox_rules", ())),
        has_mailbox=bool(table.get("has_mailbox", table.get("user_type", "Member") == "Member")),
        password_changed_days_ago=float(table.get("password_changed_days_ago", 120)),
    )


def _app(table: Mapping[str, Any], where: str) -> AppSpec:
    credentials = tuple(table.get("credentials", CREDENTIAL_KINDS))
    if not credentials or any(c not in CREDENTIAL_KINDS for c in credentials):
        raise ScenarioError(f"{where}.credentials: use one or both of {CREDENTIAL_KINDS}")
    config_credential = str(table.get("config_credential", credentials[0]))
    if config_credential not in credentials:
        raise ScenarioError(f"{where}.config_credential must be one of {credentials}")
    permissions = dict(table.get("permissions", {}))
    if any(r not in RESOURCES for r in permissions):
        raise ScenarioError(f"{where}.permissions: resources are {RESOURCES}")
    return AppSpec(
        client_id=str(_req(table, "client_id", where)),
        service_principal_id=str(_req(table, "service_principal_id", where)),
        display_name=str(table.get("display_name", "mailunblock")),
        credentials=credentials,
        config_credential=config_credential,
        permissions={r: tuple(permissions.get(r, ())) for r in RESOURCES},
        directory_roles=_roles(list(table.get("directory_roles", [])), f"{where}.directory_roles"),
    )


def _tenant(table: Mapping[str, Any], index: int) -> TenantSpec:
    where = f"tenants[{index}]"
    name = str(_req(table, "name", where))
    where = f"tenant {name!r}"
    return TenantSpec(
        name=name,
        tenant_id=str(_req(table, "tenant_id", where)),
        display_name=str(table.get("display_name", name)),
        domains=tuple(d.lower() for d in _req(table, "domains", where)),
        locale=str(table.get("locale", "en")),
        time_zone=str(table.get("time_zone", "UTC")),
        app=_app(_req(table, "app", where), f"{where}.app"),
        users=tuple(
            _user(u, f"{where}.users[{i}]") for i, u in enumerate(table.get("users", []))
        ),
        blocked=tuple(
            BlockedSpec(
                sender_address=str(_req(b, "sender_address", f"{where}.blocked[{i}]")),
                reason=str(b.get("reason", DEFAULT_REASON)),
                blocked_hours_ago=float(b.get("blocked_hours_ago", 2)),
                temporary_block=bool(b.get("temporary_block", False)),
            )
            for i, b in enumerate(table.get("blocked", []))
        ),
    )


def parse_scenario(data: Mapping[str, Any], name: str) -> Scenario:
    """Validate a parsed scenario document."""
    tenants = tuple(_tenant(t, i) for i, t in enumerate(_req(data, "tenants", name)))
    knobs = dict(data.get("exchange", {}))
    return Scenario(
        name=name,
        tenants=tenants,
        exchange=ExchangeKnobs(
            propagation_minutes=float(knobs.get("propagation_minutes", 20.0)),
            unblock_limit_per_day=int(knobs.get("unblock_limit_per_day", 3)),
            page_size=int(knobs.get("page_size", 1000)),
        ),
        approver_groups=tuple(data.get("mailunblock", {}).get("approver_groups", ())),
        jira=dict(data.get("jira", {})),
    )


def load_scenario(scenario: str | Path) -> Scenario:
    """Load a packaged scenario by name (``"default"``) or a scenario file by path."""
    path = Path(scenario)
    try:
        if path.suffix == ".toml" or path.exists():
            text = path.read_text(encoding="utf-8")
            name = path.stem
        else:
            name = str(scenario)
            package = resources.files("mailunblock.sandbox") / "scenarios"
            text = (package / f"{name}.toml").read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {scenario}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"scenario {scenario} is not valid TOML: {exc}") from None
    return parse_scenario(data, name)


@dataclass(frozen=True)
class CredentialFiles:
    """Where the generated credentials of one tenant's app live."""

    directory: Path

    @property
    def client_secret(self) -> Path:
        """File holding the client secret."""
        return self.directory / "client_secret.txt"

    @property
    def pfx(self) -> Path:
        """The app certificate and key, PKCS#12, passphrase-protected."""
        return self.directory / "app.pfx"

    @property
    def pfx_passphrase(self) -> Path:
        """File holding the PFX passphrase."""
        return self.directory / "pfx_passphrase.txt"


@dataclass(frozen=True)
class AppCredentials:
    """What the identity emulator checks a client against."""

    files: CredentialFiles
    client_secret: str | None
    certificate: x509.Certificate | None

    @property
    def thumbprints(self) -> frozenset[str]:
        """base64url SHA-1 and SHA-256 thumbprints (the JWT ``x5t`` / ``x5t#S256`` values)."""
        if self.certificate is None:
            return frozenset()
        return frozenset(
            base64.urlsafe_b64encode(self.certificate.fingerprint(h)).decode().rstrip("=")
            for h in (hashes.SHA1(), hashes.SHA256())  # noqa: S303 - x5t is SHA-1 by definition
        )


def _write_secret(path: Path, value: str) -> None:
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(0o600)


def _self_signed(tenant: TenantSpec) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"mailunblock sandbox app ({tenant.name})")]
    )
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=730))
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _load_pfx(files: CredentialFiles) -> x509.Certificate | None:
    try:
        passphrase = files.pfx_passphrase.read_text(encoding="utf-8").strip().encode()
        _key, cert, _extra = pkcs12.load_key_and_certificates(files.pfx.read_bytes(), passphrase)
    except (OSError, ValueError):
        return None
    return cert


def provision_credentials(tenant: TenantSpec, directory: Path) -> AppCredentials:
    """Generate (or reuse) the secret and/or PFX the scenario grants the app, as files."""
    files = CredentialFiles(directory)
    directory.mkdir(parents=True, exist_ok=True)
    secret: str | None = None
    if "secret" in tenant.app.credentials:
        try:
            secret = files.client_secret.read_text(encoding="utf-8").strip() or None
        except OSError:
            secret = None
        if secret is None:
            secret = "sbx~" + secrets.token_urlsafe(30)
            _write_secret(files.client_secret, secret)
    certificate: x509.Certificate | None = None
    if "certificate" in tenant.app.credentials:
        certificate = _load_pfx(files)
        if certificate is None:
            certificate, key = _self_signed(tenant)
            passphrase = secrets.token_urlsafe(18)
            blob = pkcs12.serialize_key_and_certificates(
                tenant.name.encode(),
                key,
                certificate,
                None,
                serialization.BestAvailableEncryption(passphrase.encode()),
            )
            files.pfx.write_bytes(blob)
            files.pfx.chmod(0o600)
            _write_secret(files.pfx_passphrase, passphrase)
    return AppCredentials(files=files, client_secret=secret, certificate=certificate)


@dataclass
class ServiceUrls:
    """Base URLs the emulators are reachable at (filled in once the servers are bound)."""

    identity: str = ""
    graph: str = ""
    exchange: str = ""


@dataclass
class LiveUser:
    """A user as the emulators see it now."""

    spec: UserSpec
    last_password_change: datetime
    sessions_valid_from: datetime  # Graph's signInSessionsValidFromDateTime; revokeSignInSessions resets it
    account_enabled: bool
    password_resets: int = 0
    session_revocations: int = 0
    # SHA-256 of every password a reset set, oldest first (the last is in effect): lets a test check that
    # the password a client stored is the one the directory holds, and whether a second reset re-sent the
    # same password or another one, without keeping any password.
    password_digests: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        """Directory object id."""
        return self.spec.id

    def set_password(self, password: str, at: datetime) -> None:
        """A password reset: remember when, how many, and a digest of the new password."""
        self.last_password_change = at
        self.password_resets += 1
        self.password_digests.append(hashlib.sha256(password.encode()).hexdigest())

    def password_is(self, password: str) -> bool:
        """Whether ``password`` is the one a reset put in effect."""
        digest = hashlib.sha256(password.encode()).hexdigest()
        return bool(self.password_digests) and hmac.compare_digest(digest, self.password_digests[-1])


@dataclass
class BlockedEntry:
    """One row of the Restricted users list; ``removed_at`` set once an admin unblocked it."""

    sender_address: str
    reason: str
    created: datetime
    changed: datetime
    temporary_block: bool
    removed_at: datetime | None = None


@dataclass
class TenantState:
    """Live state of one tenant."""

    spec: TenantSpec
    credentials: AppCredentials
    users: dict[str, LiveUser]
    permissions: dict[str, set[str]]
    sp_roles: set[str]
    blocked: dict[str, BlockedEntry] = field(default_factory=dict)
    unblocks: dict[str, list[datetime]] = field(default_factory=dict)

    def user(self, ref: str) -> LiveUser | None:
        """A user by object id or userPrincipalName (case-insensitive)."""
        ref = ref.lower()
        return next(
            (
                u
                for u in self.users.values()
                if u.id.lower() == ref or u.spec.user_principal_name.lower() == ref
            ),
            None,
        )


class MicrosoftState:
    """Everything the identity, Graph and Exchange emulators share; thread-safe via ``lock``."""

    def __init__(
        self, scenario: Scenario, credentials: Mapping[str, AppCredentials], clock: SandboxClock
    ) -> None:
        self.lock = threading.RLock()
        self.scenario = scenario
        self.clock = clock
        start = clock.now()
        self.urls = ServiceUrls()
        self.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.signing_kid = hashlib.sha256(
            self.signing_key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ).hexdigest()[:32]
        self.tenants: dict[str, TenantState] = {}
        for spec in scenario.tenants:
            tenant = TenantState(
                spec=spec,
                credentials=credentials[spec.name],
                users={
                    u.id: LiveUser(
                        spec=u,
                        last_password_change=start - timedelta(days=u.password_changed_days_ago),
                        sessions_valid_from=start - timedelta(days=u.password_changed_days_ago),
                        account_enabled=u.account_enabled,
                    )
                    for u in spec.users
                },
                permissions={r: set(spec.app.permissions.get(r, ())) for r in RESOURCES},
                sp_roles=set(spec.app.directory_roles),
            )
            for row in spec.blocked:
                at = start - timedelta(hours=row.blocked_hours_ago)
                tenant.blocked[row.sender_address.lower()] = BlockedEntry(
                    row.sender_address, row.reason, at, at, row.temporary_block
                )
            self.tenants[spec.name] = tenant

    def __iter__(self) -> Iterator[TenantState]:
        return iter(self.tenants.values())

    def tenant(self, ref: str) -> TenantState | None:
        """A tenant by name, tenant id or one of its domains (case-insensitive)."""
        ref = ref.lower()
        return next(
            (
                t
                for t in self.tenants.values()
                if ref in (t.spec.name.lower(), t.spec.tenant_id.lower(), *t.spec.domains)
            ),
            None,
        )

    def _tenant(self, ref: str) -> TenantState:
        tenant = self.tenant(ref)
        if tenant is None:
            raise KeyError(f"no tenant {ref!r} in scenario {self.scenario.name!r}")
        return tenant

    def revoke(self, tenant: str, permission: str) -> None:
        """Withdraw an app permission (or a directory role of the service principal)."""
        with self.lock:
            state = self._tenant(tenant)
            found = permission in state.sp_roles
            state.sp_roles.discard(permission)
            for granted in state.permissions.values():
                found = found or permission in granted
                granted.discard(permission)
            if not found:
                raise KeyError(f"tenant {tenant!r} has no permission or role {permission!r}")

    def block(self, tenant: str, address: str, reason: str = DEFAULT_REASON) -> None:
        """Put an address (back) on the Restricted users list, now."""
        at = self.clock.now()
        with self.lock:
            self._tenant(tenant).blocked[address.lower()] = BlockedEntry(
                address, reason, at, at, temporary_block=False
            )

    def is_listed(self, tenant: str, address: str) -> bool:
        """Whether Get-BlockedSenderAddress would list the address now."""
        now = self.clock.now()
        with self.lock:
            entry = self._tenant(tenant).blocked.get(address.lower())
            return entry is not None and self.visible(entry, now)

    def visible(self, entry: BlockedEntry, now: datetime) -> bool:
        """An unblocked entry stays listed until the propagation delay has passed."""
        if entry.removed_at is None:
            return True
        return now < entry.removed_at + timedelta(minutes=self.scenario.exchange.propagation_minutes)

    def unblock_count(self, tenant: str, address: str) -> int:
        """How many times Remove-BlockedSenderAddress succeeded for an address, ever."""
        with self.lock:
            return len(self._tenant(tenant).unblocks.get(address.lower(), []))

    def reset_count(self, tenant: str, user: str) -> int:
        """How many password resets a user (id or UPN) received."""
        with self.lock:
            found = self._tenant(tenant).user(user)
            if found is None:
                raise KeyError(f"no user {user!r} in tenant {tenant!r}")
            return found.password_resets

    def password_in_effect(self, tenant: str, user: str, password: str) -> bool:
        """Whether ``password`` is the password a reset put in effect for a user (id or UPN)."""
        with self.lock:
            found = self._tenant(tenant).user(user)
            if found is None:
                raise KeyError(f"no user {user!r} in tenant {tenant!r}")
            return found.password_is(password)

    def distinct_passwords(self, tenant: str, user: str) -> int:
        """How many different passwords resets set for a user (a re-sent password counts once)."""
        with self.lock:
            found = self._tenant(tenant).user(user)
            if found is None:
                raise KeyError(f"no user {user!r} in tenant {tenant!r}")
            return len(set(found.password_digests))

    def revocation_count(self, tenant: str, user: str) -> int:
        """How many times a user's sessions were revoked."""
        with self.lock:
            found = self._tenant(tenant).user(user)
            if found is None:
                raise KeyError(f"no user {user!r} in tenant {tenant!r}")
            return found.session_revocations
