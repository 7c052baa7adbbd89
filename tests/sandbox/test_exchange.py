"""Exchange admin API emulator: list paging, unblock propagation, unblock limit, auth, error shape."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import requests
from mailunblock.sandbox.server import Sandbox

CONTOSO_ID = "9188040d-6c67-4c5b-b112-36a304b66dad"


def _invoke_url(box: Sandbox, tenant: str = CONTOSO_ID) -> str:
    return f"{box.exchange_url}/adminapi/beta/{tenant}/InvokeCommand"


def _cmdlet(name: str, **parameters: Any) -> dict[str, Any]:
    return {"CmdletInput": {"CmdletName": name, "Parameters": parameters}}


class Exo:
    """Small test client for one sandbox."""

    def __init__(self, box: Sandbox, http: requests.Session, token: str) -> None:
        self.box, self.http = box, http
        self.headers = {"Authorization": f"Bearer {token}"}

    def invoke(self, name: str, **parameters: Any) -> requests.Response:
        return self.http.post(
            _invoke_url(self.box), json=_cmdlet(name, **parameters), headers=self.headers,
            timeout=10,
        )

    def listed(self, address: str) -> list[dict[str, Any]]:
        response = self.invoke("Get-BlockedSenderAddress", SenderAddress=address)
        assert response.status_code == 200, response.text
        rows: list[dict[str, Any]] = response.json()["value"]
        return rows


@pytest.fixture
def private_exo(
    make_sandbox: Callable[..., Sandbox],
    session_for: Callable[[Sandbox], requests.Session],
    token_for: Callable[[Sandbox, str, str], str],
) -> Exo:
    box = make_sandbox()
    return Exo(box, session_for(box), token_for(box, "contoso", "exchange"))


def _error_text(response: requests.Response) -> str:
    error = response.json()["error"]
    assert error["message"] == "Error executing cmdlet"
    inner = error["innererror"]["internalexception"]["message"]
    detail: str = error["details"][0]["message"]
    assert detail.endswith(inner)
    return inner


def test_get_all_pages_by_posting_the_same_body_to_next_link(
    sandbox: Sandbox, http: requests.Session, exchange_token: str
) -> None:
    headers = {"Authorization": f"Bearer {exchange_token}", "Prefer": "odata.maxpagesize=3"}
    body = _cmdlet("Get-BlockedSenderAddress")
    url: str | None = _invoke_url(sandbox)
    rows: list[dict[str, Any]] = []
    pages = 0
    while url:
        response = http.post(url, json=body, headers=headers, timeout=10)
        assert response.status_code == 200
        assert response.headers["Preference-Applied"] == "odata.maxpagesize=3"
        page = response.json()
        assert len(page["value"]) <= 3
        rows += page["value"]
        url = page.get("@odata.nextLink")
        pages += 1
    addresses = {r["SenderAddress"] for r in rows}
    assert pages == 3
    assert "sales@contoso.com" in addresses and "megan.bowen@contoso.com" not in addresses
    assert set(rows[0]) == {
        "SenderAddress", "Reason", "CreatedDatetime", "ChangedDatetime", "TemporaryBlock"
    }


def test_get_by_address(sandbox: Sandbox, http: requests.Session, exchange_token: str) -> None:
    exo = Exo(sandbox, http, exchange_token)
    assert [r["SenderAddress"] for r in exo.listed("Adele.Vance@contoso.com")] == [
        "adele.vance@contoso.com"
    ]
    assert exo.listed("megan.bowen@contoso.com") == []


def test_unblock_stays_listed_until_propagation(private_exo: Exo) -> None:
    address = "adele.vance@contoso.com"
    removed = private_exo.invoke("Remove-BlockedSenderAddress", SenderAddress=address)
    assert removed.status_code == 200, removed.text
    assert private_exo.listed(address)
    private_exo.box.clock.advance(timedelta(minutes=19))
    assert private_exo.listed(address)
    private_exo.box.clock.advance(timedelta(minutes=2))
    assert private_exo.listed(address) == []
    assert private_exo.box.microsoft.unblock_count("contoso", address) == 1


def test_removing_an_address_not_listed_is_an_error(private_exo: Exo) -> None:
    response = private_exo.invoke("Remove-BlockedSenderAddress", SenderAddress="megan.bowen@contoso.com")
    assert response.status_code == 404
    assert "megan.bowen@contoso.com" in _error_text(response)


def test_unblock_limit_per_day(
    private_exo: Exo, token_for: Callable[[Sandbox, str, str], str]
) -> None:
    box, address = private_exo.box, "lidia.holloway@contoso.com"
    for _ in range(3):
        assert private_exo.invoke(
            "Remove-BlockedSenderAddress", SenderAddress=address
        ).status_code == 200
        box.clock.advance(timedelta(minutes=5))
        box.microsoft.block("contoso", address)
    refused = private_exo.invoke("Remove-BlockedSenderAddress", SenderAddress=address)
    assert refused.status_code == 400
    assert "limit" in _error_text(refused)
    assert box.microsoft.is_listed("contoso", address)
    box.clock.advance(timedelta(days=1))
    private_exo.headers = {"Authorization": f"Bearer {token_for(box, 'contoso', 'exchange')}"}
    assert private_exo.invoke(
        "Remove-BlockedSenderAddress", SenderAddress=address
    ).status_code == 200


def test_parameter_errors_use_powershell_texts(
    sandbox: Sandbox, http: requests.Session, exchange_token: str
) -> None:
    exo = Exo(sandbox, http, exchange_token)
    missing = exo.invoke("Remove-BlockedSenderAddress")
    assert "missing mandatory parameters: SenderAddress" in _error_text(missing)
    unknown = exo.invoke("Get-BlockedSenderAddress", Identity="x")
    assert "parameter name 'Identity'" in _error_text(unknown)
    malformed = exo.invoke("Get-BlockedSenderAddress", SenderAddress="not an address")
    assert "isn't correct" in _error_text(malformed)
    cmdlet = exo.invoke("Get-Mailbox")
    assert "not recognized" in _error_text(cmdlet)


def test_graph_token_is_refused(
    sandbox: Sandbox, http: requests.Session, graph_token: str
) -> None:
    response = Exo(sandbox, http, graph_token).invoke("Get-BlockedSenderAddress")
    assert response.status_code == 401
    assert "invalid_token" in response.headers["WWW-Authenticate"]


def test_token_of_another_tenant_is_refused(
    sandbox: Sandbox, http: requests.Session, token_for: Callable[[Sandbox, str, str], str]
) -> None:
    response = Exo(sandbox, http, token_for(sandbox, "fabrikam", "exchange")).invoke(
        "Get-BlockedSenderAddress"
    )
    assert response.status_code == 401


def test_without_manage_as_app(
    make_sandbox: Callable[..., Sandbox],
    session_for: Callable[[Sandbox], requests.Session],
    token_for: Callable[[Sandbox, str, str], str],
) -> None:
    box = make_sandbox(revoke=[("contoso", "Exchange.ManageAsApp")])
    response = Exo(box, session_for(box), token_for(box, "contoso", "exchange")).invoke(
        "Get-BlockedSenderAddress"
    )
    assert response.status_code == 401


def test_without_exchange_administrator_role(
    make_sandbox: Callable[..., Sandbox],
    session_for: Callable[[Sandbox], requests.Session],
    token_for: Callable[[Sandbox, str, str], str],
) -> None:
    box = make_sandbox(revoke=[("contoso", "Exchange Administrator")])
    response = Exo(box, session_for(box), token_for(box, "contoso", "exchange")).invoke(
        "Get-BlockedSenderAddress"
    )
    assert response.status_code == 403
    assert "role assigned to application" in _error_text(response)


def test_cmdlet_name_is_in_the_call_log(
    sandbox: Sandbox, http: requests.Session, exchange_token: str
) -> None:
    Exo(sandbox, http, exchange_token).invoke("Get-BlockedSenderAddress")
    assert "Get-BlockedSenderAddress" in {r.cmdlet for r in sandbox.calls.records("exchange")}
    assert all(
        r.headers.get("Authorization") in (None, "***") for r in sandbox.calls.records("exchange")
    )
