"""Exchange Online admin API EMULATOR: ``InvokeCommand`` for Get-/Remove-BlockedSenderAddress.

EMULATOR CODE — not Microsoft. Models the undocumented REST endpoint behind the ExchangeOnlineManagement
v3 module (``POST /adminapi/beta/{tenantId}/InvokeCommand``) as public clients observe it: a bearer token
for the Exchange resource carrying ``Exchange.ManageAsApp``, a service principal holding an Exchange
role, rows in ``value``, paging by POSTing the same body to ``@odata.nextLink`` under
``Prefer: odata.maxpagesize``, and errors whose useful text sits in ``error.details[].message`` and
``error.innererror.internalexception.message`` (lower-case keys), not in ``error.message``.

Microsoft publishes neither the error texts of Remove-BlockedSenderAddress nor the unblock limit nor the
delay before an unblocked address leaves the list: the texts below are the sandbox's own wording (the
parameter errors reuse PowerShell's standard texts), and the limit and delay are scenario knobs.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from typing import Any

from flask import Flask, Response, request
from mailunblock.sandbox.core import SandboxContext, instrument
from mailunblock.sandbox.identity import TokenRejected, verify_access_token
from mailunblock.sandbox.scenario import BlockedEntry, MicrosoftState, TenantState

MANAGE_AS_APP = "Exchange.ManageAsApp"
EXCHANGE_ROLES = frozenset({"Exchange Administrator", "Global Administrator"})
NOT_FOUND_EXCEPTION = "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException"
LIMIT_EXCEPTION = "Microsoft.Exchange.Hygiene.Data.UnblockLimitExceededException"
PARAMETER_EXCEPTION = "System.Management.Automation.ParameterBindingException"
COMMAND_EXCEPTION = "System.Management.Automation.CommandNotFoundException"
ROLE_EXCEPTION = "Microsoft.Exchange.Configuration.Tasks.AccessDeniedException"
CMDLET_PARAMETERS = {
    "Get-BlockedSenderAddress": frozenset({"SenderAddress"}),
    "Remove-BlockedSenderAddress": frozenset({"SenderAddress", "Reason"}),
}


def _wire_time(moment: datetime) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}0Z"


def exchange_error(status: int, code: str, exception_type: str, text: str) -> Response:
    """An error in the shape the admin API returns (details + lower-case innererror keys)."""
    tagged = f"Ex{secrets.token_hex(3).upper()}|{exception_type}|{text}"
    body = {
        "error": {
            "code": code,
            "message": "Error executing cmdlet",
            "details": [{"code": "Context", "target": "", "message": tagged}],
            "innererror": {
                "message": "Error executing cmdlet",
                "type": "Microsoft.Exchange.Admin.OData.Core.ODataServiceException",
                "stacktrace": "",
                "internalexception": {"message": text, "type": exception_type, "stacktrace": ""},
            },
            "adminapi.warnings@odata.type": "#Collection(String)",
            "@adminapi.warnings": [],
        }
    }
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _fault_body(status: int) -> dict[str, Any]:
    code, message = {
        429: ("TooManyRequests", "The server is busy. Please retry later."),
        401: ("Unauthorized", "The user is not authorized to call this cmdlet."),
        403: ("Forbidden", "Access is denied."),
    }.get(status, ("ServiceUnavailable", "The server is busy. Please retry later."))
    return {"error": {"code": code, "message": message,
                      "innererror": {"message": "", "type": "", "stacktrace": ""}}}


def _unauthorized(reason: str) -> Response:
    response = Response(status=401)
    response.headers["WWW-Authenticate"] = (
        'Bearer client_id="00000002-0000-0ff1-ce00-000000000000", '
        'token_types="app_asserted_user_v1 service_asserted_app_v1", error="invalid_token"'
    )
    response.headers["x-ms-diagnostics"] = f'2000001;reason="{reason}";error_category="invalid_token"'
    return response


def _invalid_address(value: object) -> Response:
    return exchange_error(
        400, "BadRequest", PARAMETER_EXCEPTION,
        f"Cannot process argument transformation on parameter 'SenderAddress'. Cannot convert value "
        f"\"{value}\" to type \"Microsoft.Exchange.Data.SmtpAddress\". Error: \"The email address "
        f"\"{value}\" isn't correct. Please use this format: user name, the @ sign, followed by the "
        "domain name. For example, tonysmith@contoso.com or tony.smith@contoso.com.\"",
    )


def _valid_address(value: object) -> bool:
    if not isinstance(value, str):
        return False
    local, at, domain = value.partition("@")
    return bool(local and at and "." in domain and " " not in value)


def _page_size(default: int) -> tuple[int, bool]:
    for preference in request.headers.get("Prefer", "").split(","):
        name, _, value = preference.strip().partition("=")
        if name.strip().lower() == "odata.maxpagesize" and value.strip().isdigit():
            return max(1, int(value)), True
    return default, False


def create_exchange_app(state: MicrosoftState, ctx: SandboxContext) -> Flask:
    """The Exchange admin API emulator as a Flask app."""
    app = Flask("mailunblock.sandbox.exchange")
    instrument(app, "exchange", ctx, _fault_body)

    def row(entry: BlockedEntry) -> dict[str, Any]:
        return {
            "SenderAddress": entry.sender_address,
            "Reason": entry.reason,
            "CreatedDatetime": _wire_time(entry.created),
            "ChangedDatetime": _wire_time(entry.changed),
            "TemporaryBlock": entry.temporary_block,
        }

    def get_blocked(tenant: TenantState, parameters: dict[str, Any], now: datetime) -> Response:
        wanted = parameters.get("SenderAddress")
        if wanted is not None and not _valid_address(wanted):
            return _invalid_address(wanted)
        with state.lock:
            entries = sorted(
                (e for e in tenant.blocked.values() if state.visible(e, now)),
                key=lambda e: (e.created, e.sender_address.lower()),
            )
            rows = [
                row(e) for e in entries
                if wanted is None or e.sender_address.lower() == str(wanted).lower()
            ]
        size, preferred = _page_size(state.scenario.exchange.page_size)
        skip = request.args.get("$skiptoken", "0")
        start = int(skip) if skip.isdigit() else 0
        body: dict[str, Any] = {
            "@odata.context": f"{state.urls.exchange}/adminapi/beta/{tenant.spec.tenant_id}"
            "/$metadata#Collection(Exchange.GenericHashTable)",
            "adminapi.warnings@odata.type": "#Collection(String)",
            "@adminapi.warnings": [],
            "value": rows[start : start + size],
        }
        if start + size < len(rows):
            body["@odata.nextLink"] = (
                f"{state.urls.exchange}/adminapi/beta/{tenant.spec.tenant_id}/InvokeCommand"
                f"?$skiptoken={start + size}"
            )
        response = Response(json.dumps(body), mimetype="application/json")
        if preferred:
            response.headers["Preference-Applied"] = f"odata.maxpagesize={size}"
        return response

    def remove_blocked(tenant: TenantState, parameters: dict[str, Any], now: datetime) -> Response:
        address = parameters.get("SenderAddress")
        if address is None:
            return exchange_error(
                400, "BadRequest", PARAMETER_EXCEPTION,
                "Cannot process command because of one or more missing mandatory parameters: "
                "SenderAddress.",
            )
        if not _valid_address(address):
            return _invalid_address(address)
        key = str(address).lower()
        with state.lock:
            entry = tenant.blocked.get(key)
            if entry is None or not state.visible(entry, now):
                return exchange_error(
                    404, "NotFound", NOT_FOUND_EXCEPTION,
                    f"The operation couldn't be performed because '{address}' isn't on the list "
                    "of restricted senders (Get-BlockedSenderAddress).",
                )
            history = tenant.unblocks.setdefault(key, [])
            today = [t for t in history if t.date() == now.date()]
            if len(today) >= state.scenario.exchange.unblock_limit_per_day:
                return exchange_error(
                    400, "BadRequest", LIMIT_EXCEPTION,
                    f"The sender '{address}' has reached the limit of unblocks allowed for this "
                    "account. Contact Microsoft Support to remove the sender from the list of "
                    "restricted senders.",
                )
            history.append(now)
            entry.removed_at = entry.removed_at or now
            entry.changed = now
        return Response(
            json.dumps(
                {
                    "@odata.context": f"{state.urls.exchange}/adminapi/beta/"
                    f"{tenant.spec.tenant_id}/$metadata#Collection(Exchange.GenericHashTable)",
                    "adminapi.warnings@odata.type": "#Collection(String)",
                    "@adminapi.warnings": [],
                    "value": [],
                }
            ),
            mimetype="application/json",
        )

    @app.post("/adminapi/beta/<tenant_ref>/InvokeCommand")
    def invoke_command(tenant_ref: str) -> Response:
        now = ctx.clock.now()
        try:
            tenant, claims = verify_access_token(
                request.headers.get("Authorization"), state, "exchange", now
            )
        except TokenRejected as rejected:
            return _unauthorized(str(rejected))
        if state.tenant(tenant_ref) is not tenant:
            return _unauthorized("The token's tenant does not match the tenant in the URL.")
        if MANAGE_AS_APP not in claims.get("roles", ()):
            return _unauthorized(f"The token has no {MANAGE_AS_APP} role.")
        body = request.get_json(silent=True)
        cmdlet_input = body.get("CmdletInput") if isinstance(body, dict) else None
        name = cmdlet_input.get("CmdletName") if isinstance(cmdlet_input, dict) else None
        if not isinstance(cmdlet_input, dict) or not isinstance(name, str):
            return exchange_error(
                400, "BadRequest", "Microsoft.Exchange.Admin.OData.Core.ODataServiceException",
                "The request body must contain CmdletInput with a CmdletName.",
            )
        with state.lock:
            has_role = bool(EXCHANGE_ROLES.intersection(tenant.sp_roles))
        if not has_role:
            return exchange_error(
                403, "Forbidden", ROLE_EXCEPTION,
                f"The role assigned to application {claims.get('appid')} isn't supported in this "
                "scenario. Please check online documentation for assigning correct Directory Roles "
                "to Azure AD Application for EXO App-Only Authentication.",
            )
        if name not in CMDLET_PARAMETERS:
            return exchange_error(
                400, "BadRequest", COMMAND_EXCEPTION,
                f"The term '{name}' is not recognized as a name of a cmdlet, function, script "
                "file, or executable program.",
            )
        parameters = cmdlet_input.get("Parameters") or {}
        if not isinstance(parameters, dict):
            return exchange_error(
                400, "BadRequest", PARAMETER_EXCEPTION, "Parameters must be a JSON object."
            )
        unknown = sorted(set(parameters) - CMDLET_PARAMETERS[name])
        if unknown:
            return exchange_error(
                400, "BadRequest", PARAMETER_EXCEPTION,
                f"A parameter cannot be found that matches parameter name '{unknown[0]}'.",
            )
        if name == "Get-BlockedSenderAddress":
            return get_blocked(tenant, parameters, now)
        return remove_blocked(tenant, parameters, now)

    return app
