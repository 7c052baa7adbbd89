"""What mailunblock's app needs from Microsoft, and how to grant it: one table for the doctor and the notes.

Role template ids are the same in every tenant (Microsoft's "Microsoft Entra built-in roles").
"""

from __future__ import annotations

from dataclasses import dataclass

CONSENT_FIX = (
    "Entra admin center > App registrations > {app} > API permissions > Add a permission > "
    "{api} > Application permissions > {permission}, then 'Grant admin consent'"
)
ROLE_FIX = (
    "Entra admin center > Roles and administrators > {role} > Add assignments > select the app {app}"
)

ROLE_TEMPLATES = {
    "62e90394-69f5-4237-9190-012177145e10": "Global Administrator",
    "fe930be7-5e62-47db-91af-98c3a49a38b1": "User Administrator",
    "729827e3-9c14-49f7-bb1b-9608f156bbb8": "Helpdesk Administrator",
    "7be44c8a-adaf-4e2a-84d6-ab2649e08a13": "Privileged Authentication Administrator",
    "29232cdf-9323-42fd-ade2-1d097af3e4de": "Exchange Administrator",
}
PASSWORD_RESET_ROLES = {"User Administrator", "Helpdesk Administrator", "Privileged Authentication Administrator",
                        "Global Administrator"}
EXCHANGE_ROLES = {"Exchange Administrator", "Global Administrator"}


@dataclass(frozen=True)
class Permission:
    """An application permission a step needs; any of ``accepted`` will do."""

    purpose: str
    api: str
    permission: str
    accepted: frozenset[str]

    def fix(self, app: str) -> str:
        """Where to grant it."""
        return CONSENT_FIX.format(app=app, api=self.api, permission=self.permission)


@dataclass(frozen=True)
class EntraRole:
    """An Entra role the app's service principal must hold for a step; any of ``accepted`` will do."""

    purpose: str
    role: str
    accepted: frozenset[str]

    def fix(self, app: str) -> str:
        """Where to assign it."""
        return ROLE_FIX.format(role=self.role, app=app)


READ_USERS = Permission(
    "read accounts", "Microsoft Graph", "User.Read.All",
    frozenset({"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}))
RESET_PASSWORDS = Permission(
    "reset passwords", "Microsoft Graph", "User-PasswordProfile.ReadWrite.All",
    frozenset({"User-PasswordProfile.ReadWrite.All", "User.ReadWrite.All", "Directory.ReadWrite.All"}))
REVOKE_SESSIONS = Permission(
    "revoke sign-in sessions", "Microsoft Graph", "User.RevokeSessions.All",
    frozenset({"User.RevokeSessions.All", "User.ReadWrite.All", "Directory.ReadWrite.All"}))
READ_ROLES = Permission(
    "read directory roles (keep admins out)", "Microsoft Graph", "Directory.Read.All",
    frozenset({"Directory.Read.All", "Directory.ReadWrite.All", "RoleManagement.Read.Directory",
               "RoleManagement.Read.All", "RoleManagement.ReadWrite.Directory"}))
GRAPH_PERMISSIONS = (READ_USERS, RESET_PASSWORDS, REVOKE_SESSIONS, READ_ROLES)
INBOX_RULES_PERMISSION = Permission(
    "list inbox rules", "Microsoft Graph", "MailboxSettings.Read",
    frozenset({"MailboxSettings.Read", "MailboxSettings.ReadWrite"}),
)
EXCHANGE_PERMISSION = Permission(
    "read and clear the Restricted users list", "Office 365 Exchange Online", "Exchange.ManageAsApp",
    frozenset({"Exchange.ManageAsApp"}),
)
PASSWORD_RESET_ROLE = EntraRole("reset passwords", "User Administrator", frozenset(PASSWORD_RESET_ROLES))
EXCHANGE_ROLE = EntraRole("read and clear the Restricted users list", "Exchange Administrator",
                          frozenset(EXCHANGE_ROLES))

# Sign-in errors that waiting does not heal, with the fix (Microsoft's AADSTS error code reference).
SIGN_IN_FIXES = {
    "AADSTS7000215": "the client secret is wrong: create a new secret (Entra admin center > App registrations > "
                     "{app} > Certificates & secrets) and update the tenant's client_secret reference",
    "AADSTS7000222": "the client secret has expired: create a new secret (Entra admin center > App registrations "
                     "> {app} > Certificates & secrets) and update the tenant's client_secret reference",
    "AADSTS700016": "the application {app} is not found in the tenant: check tenant_id and client_id, and that "
                    "an administrator of that tenant granted consent to the app",
    "AADSTS700027": "the certificate is not registered on the app: upload its public key (Entra admin center > "
                    "App registrations > {app} > Certificates & secrets > Certificates)",
}
