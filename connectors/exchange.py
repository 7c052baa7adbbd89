"""Exchange Online: the Restricted users list through the admin API's ``InvokeCommand`` endpoint.

No documented API covers ``Get-/Remove-BlockedSenderAddress``; this is the REST endpoint behind the
ExchangeOnlineManagement v3 module. Everything about it lives in this one module so it can switch to an
official API once one exists.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

import requests
from mailunblock.connectors.errors import (
    ConnectorError,
    NotBlockedError,
    UnblockLimitReachedError,
)
from mailunblock.connectors.http import (
    HttpPolicy,
    error_for_status,
    json_body,
    parse_instant,
    retry_after_seconds,
    send,
)
from mailunblock.connectors.identity import TokenProvider
from mailunblock.connectors.models import BlockedSender

log = logging.getLogger(__name__)

SERVICE = "exchange"
EXCHANGE_RESOURCE = "https://outlook.office365.com"  # the resource tokens are asked for
INVOKE_COMMAND = "/adminapi/beta/{tenant}/InvokeCommand"
ANCHOR_MAILBOX = "APP:SystemMailbox{{bb558c35-97f1-4cb9-8ff7-d53741dc928c}}@{tenant}"
GET_BLOCKED = "Get-BlockedSenderAddress"
REMOVE_BLOCKED = "Remove-BlockedSenderAddress"

# Microsoft does not publish these texts. Real details read "Ex<id>|<exception type>|<text>"; the
# patterns cover the wordings reported for the limit ("... has reached the limit of unblocks ... Contact
# Microsoft Support", "exceeded the number of times it can be unblocked") and for an address that is not
# listed ("... isn't on the list of restricted senders", "couldn't be found", "is not blocked").
_UNBLOCK_LIMIT = re.compile(
    r"(unblock|remov)\w*\b.{0,80}\blimit|limit\b.{0,80}\b(unblock|remov)|exceeded.{0,60}"
    r"\b(times|number)\b|UnblockLimit",
    re.IGNORECASE | re.DOTALL,
)
_NOT_BLOCKED = re.compile(
    r"\bnot\b.{0,20}\b(blocked|restricted)\b|is(n't| not) (on|in) the (list of )?(blocked|restricted)"
    r"|(couldn't|could not|cannot|can't) be found|ManagementObjectNotFound",
    re.IGNORECASE | re.DOTALL,
)


class ExchangeClient:
    """One tenant's Restricted users list (satisfies ``workflows.ports.RestrictedSenders``)."""

    def __init__(
        self,
        base_url: str,
        tenant_id: str,
        tokens: TokenProvider,
        session: requests.Session,
        policy: HttpPolicy,
        resource: str = EXCHANGE_RESOURCE,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._resource = resource.rstrip("/")
        self._tenant_id = tenant_id
        self._tokens = tokens
        self._session = session
        self._policy = policy

    def blocked_entries(self, addresses: Sequence[str]) -> list[BlockedSender]:
        """Entries of the list matching any of ``addresses`` (case-insensitive).

        Reads the whole list once (paged) and filters here, rather than asking per address: one call
        covers every SMTP address of the account, and matching does not depend on how the service
        compares ``-SenderAddress`` (UPN vs primary SMTP, case). The list holds only restricted
        accounts, so it is short in practice and paging covers the rest.
        """
        wanted = {a.lower() for a in addresses}
        if not wanted:
            return []
        rows = self._invoke_pages(GET_BLOCKED, {})
        return [
            _blocked_sender(row)
            for row in rows
            if str(_ci(row, "SenderAddress") or "").lower() in wanted
        ]

    def list_blocked(self) -> list[BlockedSender]:
        """The whole Restricted users list (for reports and the doctor)."""
        return [_blocked_sender(row) for row in self._invoke_pages(GET_BLOCKED, {})]

    def unblock(self, address: str, reason: str) -> tuple[str, ...]:
        """Remove one address from the list; return Exchange's warnings (then the removal is unconfirmed).

        Raises NotBlockedError / UnblockLimitReachedError.
        """
        parameters = {"SenderAddress": address, "Reason": reason}
        return warnings(self._invoke(REMOVE_BLOCKED, parameters, self._url()))

    @property
    def resource(self) -> str:
        """The resource identifier this client's tokens are for."""
        return self._resource

    def _url(self) -> str:
        return f"{self._base}{INVOKE_COMMAND.format(tenant=self._tenant_id)}"

    def _invoke_pages(self, cmdlet: str, parameters: dict[str, Any]) -> Iterator[dict[str, Any]]:
        url: str | None = self._url()
        while url:
            page = self._policy.call(partial(self._invoke, cmdlet, parameters, url), safe=True)
            yield from (row for row in page.get("value", []) if isinstance(row, dict))
            url = page.get("@odata.nextLink")

    def _invoke(self, cmdlet: str, parameters: dict[str, Any], url: str) -> dict[str, Any]:
        body = {"CmdletInput": {"CmdletName": cmdlet, "Parameters": parameters}}

        def attempt(token: str) -> Any:
            headers = {
                "Authorization": f"Bearer {token}",
                "X-AnchorMailbox": ANCHOR_MAILBOX.format(tenant=self._tenant_id),
                "Prefer": "odata.maxpagesize=1000",
                "X-ResponseFormat": "json",
                "X-CmdletName": cmdlet,
            }
            response = send(self._session, "POST", url, service=SERVICE, headers=headers, json=body)
            document = json_body(response)
            if not response.ok:
                raise _exchange_error(response, document, cmdlet)
            return document

        document = self._tokens.authorized(self._resource, attempt)
        if not isinstance(document, dict):
            return {}
        for warning in warnings(document):
            log.warning("%s: %s", cmdlet, warning)
        return document


def warnings(document: Any) -> tuple[str, ...]:
    """The ``@adminapi.warnings`` of an InvokeCommand answer: a cmdlet's warnings ride on a 200."""
    found = _ci(document, "@adminapi.warnings")
    if isinstance(found, str):
        found = [found]
    if not isinstance(found, list):
        return ()
    return tuple(
        str(_ci(w, "message") or w) if isinstance(w, dict) else str(w) for w in found if w
    )


def _ci(mapping: Any, key: str) -> Any:
    """``mapping[key]`` ignoring the key's case (real bodies mix 'innerError' and 'innererror')."""
    if not isinstance(mapping, dict):
        return None
    if key in mapping:
        return mapping[key]
    lowered = key.lower()
    return next((v for k, v in mapping.items() if str(k).lower() == lowered), None)


def error_text(document: Any) -> str:
    """The most specific error text of an InvokeCommand error body."""
    error = _ci(document, "error")
    details = _ci(error, "details")
    if isinstance(details, list):
        messages = [_strip_tag(str(_ci(d, "message"))) for d in details if _ci(d, "message")]
        if messages:
            return "; ".join(messages)
    inner = _ci(_ci(_ci(error, "innererror"), "internalexception"), "message")
    if inner:
        return str(inner)
    return str(_ci(error, "message") or "")


def _strip_tag(message: str) -> str:
    """Drop the "Ex1A2B3C|Some.Exception.Type|" prefix of a cmdlet error detail."""
    parts = message.split("|", 2)
    return parts[2] if len(parts) == 3 and parts[0].startswith("Ex") else message


def _raw_details(document: Any) -> str:
    details = _ci(_ci(document, "error"), "details")
    if not isinstance(details, list):
        return ""
    return " ".join(str(_ci(d, "message") or "") for d in details)


def _exchange_error(
    response: requests.Response, document: Any, cmdlet: str
) -> ConnectorError:
    text = error_text(document) or response.reason or f"HTTP {response.status_code}"
    evidence = f"{_raw_details(document)} {text}"
    code = _ci(_ci(document, "error"), "code")
    code = str(code) if code else None
    message = f"{cmdlet}: {text}"
    if cmdlet == REMOVE_BLOCKED and response.status_code < 500 and response.status_code != 429:
        if _UNBLOCK_LIMIT.search(evidence):
            return UnblockLimitReachedError(message, service=SERVICE, code=code)
        if _NOT_BLOCKED.search(evidence):
            return NotBlockedError(message, service=SERVICE, code=code)
    return error_for_status(
        response.status_code,
        message,
        service=SERVICE,
        code=code,
        retry_after=retry_after_seconds(response.headers),
    )


def _blocked_sender(row: dict[str, Any]) -> BlockedSender:
    return BlockedSender(
        sender_address=str(_ci(row, "SenderAddress") or ""),
        reason=str(_ci(row, "Reason") or ""),
        created=parse_instant(_ci(row, "CreatedDatetime")),
        changed=parse_instant(_ci(row, "ChangedDatetime")),
    )
