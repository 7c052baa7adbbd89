"""Graph emulator: users, filters, paging, password reset rules, sessions, roles, rules, errors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import requests
from mailunblock.sandbox.core import FaultRule
from mailunblock.sandbox.server import Sandbox

ADELE = "4f1c2a9e-0b6d-4e55-8a11-2c3d4e5f6a01"
GOOD_PASSWORD = "Correct-Horse-42-battery"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _assert_graph_error(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
    return error


def test_get_user_by_upn_with_select(
    sandbox: Sandbox, http: requests.Session, graph_token: str
) -> None:
    response = http.get(
        f"{sandbox.graph_url}/v1.0/users/Adele.Vance@contoso.com",
        params={"$select": "id,mail,proxyAddresses,onPremisesSyncEnabled,lastPasswordChangeDateTime"},
        headers=_auth(graph_token),
        timeout=10,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == ADELE
    assert set(body) == {
        "@odata.context", "id", "mail", "proxyAddresses", "onPremisesSyncEnabled",
        "lastPasswordChangeDateTime",
    }
    assert body["lastPasswordChangeDateTime"].endswith("Z")


def test_default_properties_exclude_proxy_addresses(
    sandbox: Sandbox, http: requests.Session, graph_token: str
) -> None:
    body = http.get(
        f"{sandbox.graph_url}/v1.0/users/{ADELE}", headers=_auth(graph_token), timeout=10
    ).json()
    assert body["userPrincipalName"] == "adele.vance@contoso.com"
    assert "proxyAddresses" not in body


def test_unknown_user_is_request_resource_not_found(
    sandbox: Sandbox, http: requests.Session, graph_token: str
) -> None:
    response = http.get(
        f"{sandbox.graph_url}/v1.0/users/nobody@contoso.com", headers=_auth(graph_token), timeout=10
    )
    _assert_graph_error(response, 404, "Request_ResourceNotFound")


def test_filter_by_alias_or_mail(sandbox: Sandbox, http: requests.Session, graph_token: str) -> None:
    response = http.get(
        f"{sandbox.graph_url}/v1.0/users",
        params={
            "$filter": "mail eq 'sales@contoso.com' or userPrincipalName eq 'sales@contoso.com' "
            "or proxyAddresses/any(x:x eq 'smtp:sales@contoso.com')",
            "$select": "id,userPrincipalName",
        },
        headers=_auth(graph_token),
        timeout=10,
    )
    assert response.status_code == 200
    assert [u["userPrincipalName"] for u in response.json()["value"]] == ["henry.ng@contoso.com"]


def test_users_of_another_tenant_are_invisible(
    sandbox: Sandbox, http: requests.Session, graph_token: str
) -> None:
    response = http.get(
        f"{sandbox.graph_url}/v1.0/users",
        params={"$filter": "mail eq 'chloe.dupont@fabrikam.fr'"},
        headers=_auth(graph_token),
        timeout=10,
    )
    assert response.json()["value"] == []


def test_unsupported_filter_is_400(sandbox: Sandbox, http: requests.Session, graph_token: str) -> None:
    response = http.get(
        f"{sandbox.graph_url}/v1.0/users",
        params={"$filter": "startswith(mail,'a')"},
        headers=_auth(graph_token),
        timeout=10,
    )
    _assert_graph_error(response, 400, "Request_UnsupportedQuery")


def test_paging_with_next_link(sandbox: Sandbox, http: requests.Session, graph_token: str) -> None:
    url: str | None = f"{sandbox.graph_url}/v1.0/users?$top=4&$select=id"
    seen: list[str] = []
    pages = 0
    while url:
        body = http.get(url, headers=_auth(graph_token), timeout=10).json()
        seen += [u["id"] for u in body["value"]]
        url = body.get("@odata.nextLink")
        pages += 1
    assert pages == 3  # 10 contoso users, 4 per page
    assert len(seen) == len(set(seen)) == 10


def test_tokens_are_checked(
    sandbox: Sandbox, http: requests.Session, exchange_token: str
) -> None:
    url = f"{sandbox.graph_url}/v1.0/users/{ADELE}"
    missing = http.get(url, timeout=10)
    assert _assert_graph_error(missing, 401, "InvalidAuthenticationToken")["message"]
    assert "WWW-Authenticate" in missing.headers
    _assert_graph_error(
        http.get(url, headers=_auth(exchange_token), timeout=10), 401, "InvalidAuthenticationToken"
    )
    _assert_graph_error(
        http.get(url, headers=_auth("not.a.jwt"), timeout=10), 401, "InvalidAuthenticationToken"
    )


def test_expired_token_against_sandbox_clock(
    make_sandbox: Callable[..., Sandbox],
    session_for: Callable[[Sandbox], requests.Session],
    token_for: Callable[[Sandbox, str, str], str],
) -> None:
    box = make_sandbox()
    token = token_for(box, "contoso", "graph")
    http = session_for(box)
    url = f"{box.graph_url}/v1.0/users/{ADELE}"
    assert http.get(url, headers=_auth(token), timeout=10).status_code == 200
    box.clock.advance(timedelta(minutes=61))
    error = _assert_graph_error(
        http.get(url, headers=_auth(token), timeout=10), 401, "InvalidAuthenticationToken"
    )
    assert "expired" in error["message"]


def test_password_reset_sets_timestamp_and_counts(
    sandbox: Sandbox, http: requests.Session, graph_token: str
) -> None:
    user = "diego.siciliani@contoso.com"
    before = sandbox.microsoft.reset_count("contoso", user)
    response = http.patch(
        f"{sandbox.graph_url}/v1.0/users/{user}",
        json={"passwordProfile": {"password": GOOD_PASSWORD, "forceChangePasswordNextSignIn": True}},
        headers=_auth(graph_token),
        timeout=10,
    )
    assert response.status_code == 204
    assert sandbox.microsoft.reset_count("contoso", user) == before + 1
    changed = http.get(
        f"{sandbox.graph_url}/v1.0/users/{user}?$select=lastPasswordChangeDateTime",
        headers=_auth(graph_token),
        timeout=10,
    ).json()["lastPasswordChangeDateTime"]
    assert abs(datetime.fromisoformat(changed) - sandbox.clock.now()) < timedelta(minutes=1)
    logged = [r for r in sandbox.calls.records("graph") if r.method == "PATCH"]
    assert logged
    assert all(GOOD_PASSWORD not in repr(r) for r in logged)
    assert all(GOOD_PASSWORD not in repr(r) for r in sandbox.calls)


def test_weak_password_is_refused_with_the_entra_message(
    sandbox: Sandbox, http: requests.Session, graph_token: str
) -> None:
    for weak in ("Sh0rt!A", "alllowercaseletters", "NoDigitsOrSymbols", "é" * 12 + "A1!"):
        response = http.patch(
            f"{sandbox.graph_url}/v1.0/users/diego.siciliani@contoso.com",
            json={"passwordProfile": {"password": weak}},
            headers=_auth(graph_token),
            timeout=10,
        )
        error = _assert_graph_error(response, 400, "Request_BadRequest")
        assert error["message"].startswith(
            "The specified password does not comply with password complexity requirements."
        )


def test_admin_target_needs_privileged_authentication_administrator(
    sandbox: Sandbox, http: requests.Session, graph_token: str
) -> None:
    response = http.patch(
        f"{sandbox.graph_url}/v1.0/users/ben.walters@contoso.com",
        json={"passwordProfile": {"password": GOOD_PASSWORD}},
        headers=_auth(graph_token),
        timeout=10,
    )
    error = _assert_graph_error(response, 403, "Authorization_RequestDenied")
    assert error["message"] == "Insufficient privileges to complete the operation."
    assert sandbox.microsoft.reset_count("contoso", "ben.walters@contoso.com") == 0


def test_synced_user_cannot_be_reset_in_the_cloud(
    sandbox: Sandbox, http: requests.Session, graph_token: str
) -> None:
    response = http.patch(
        f"{sandbox.graph_url}/v1.0/users/frank.synced@contoso.com",
        json={"passwordProfile": {"password": GOOD_PASSWORD}},
        headers=_auth(graph_token),
        timeout=10,
    )
    error = _assert_graph_error(response, 400, "Request_BadRequest")
    assert "on-premises mastered Directory Sync objects" in error["message"]


def test_revoked_permission_gives_403(
    make_sandbox: Callable[..., Sandbox],
    session_for: Callable[[Sandbox], requests.Session],
    token_for: Callable[[Sandbox, str, str], str],
) -> None:
    box = make_sandbox(revoke=[("contoso", "User-PasswordProfile.ReadWrite.All")])
    response = session_for(box).patch(
        f"{box.graph_url}/v1.0/users/{ADELE}",
        json={"passwordProfile": {"password": GOOD_PASSWORD}},
        headers=_auth(token_for(box, "contoso", "graph")),
        timeout=10,
    )
    _assert_graph_error(response, 403, "Authorization_RequestDenied")


def test_missing_directory_role_gives_403(
    make_sandbox: Callable[..., Sandbox],
    session_for: Callable[[Sandbox], requests.Session],
    token_for: Callable[[Sandbox, str, str], str],
) -> None:
    box = make_sandbox(revoke=[("contoso", "User Administrator")])
    response = session_for(box).patch(
        f"{box.graph_url}/v1.0/users/{ADELE}",
        json={"passwordProfile": {"password": GOOD_PASSWORD}},
        headers=_auth(token_for(box, "contoso", "graph")),
        timeout=10,
    )
    _assert_graph_error(response, 403, "Authorization_RequestDenied")
    assert box.microsoft.reset_count("contoso", ADELE) == 0


def test_revoke_sign_in_sessions(sandbox: Sandbox, http: requests.Session, graph_token: str) -> None:
    before = sandbox.microsoft.revocation_count("contoso", "grace.hill@contoso.com")
    response = http.post(
        f"{sandbox.graph_url}/v1.0/users/grace.hill@contoso.com/revokeSignInSessions",
        headers=_auth(graph_token),
        timeout=10,
    )
    assert response.status_code == 200
    assert response.json()["value"] is True
    assert response.json()["@odata.context"].endswith("$metadata#Edm.Boolean")
    assert sandbox.microsoft.revocation_count("contoso", "grace.hill@contoso.com") == before + 1


ADVANCED = {"ConsistencyLevel": "eventual"}
ROLES = "transitiveMemberOf/microsoft.graph.directoryRole?$count=true"


def test_directory_roles_of_users_and_of_the_app(
    sandbox: Sandbox, http: requests.Session, graph_token: str
) -> None:
    headers = {**_auth(graph_token), **ADVANCED}
    admin = http.get(
        f"{sandbox.graph_url}/v1.0/users/ben.walters@contoso.com/{ROLES}", headers=headers, timeout=10
    ).json()
    assert admin["@odata.count"] == 1
    assert [(r["displayName"], r["roleTemplateId"]) for r in admin["value"]] == [
        ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10")
    ]
    plain = http.get(
        f"{sandbox.graph_url}/v1.0/users/{ADELE}/{ROLES}", headers=headers, timeout=10
    ).json()["value"]
    assert plain == []
    sp = sandbox.microsoft.tenants["contoso"].spec.app.service_principal_id
    own = http.get(
        f"{sandbox.graph_url}/v1.0/servicePrincipals/{sp}/{ROLES}", headers=headers, timeout=10
    ).json()["value"]
    assert {r["displayName"] for r in own} == {"User Administrator", "Exchange Administrator"}


def test_role_cast_without_advanced_query_parameters_is_400(
    sandbox: Sandbox, http: requests.Session, graph_token: str
) -> None:
    url = f"{sandbox.graph_url}/v1.0/users/ben.walters@contoso.com/transitiveMemberOf/"
    cast = f"{url}microsoft.graph.directoryRole"
    no_header = http.get(f"{cast}?$count=true", headers=_auth(graph_token), timeout=10)
    _assert_graph_error(no_header, 400, "Request_UnsupportedQuery")
    no_count = http.get(cast, headers={**_auth(graph_token), **ADVANCED}, timeout=10)
    _assert_graph_error(no_count, 400, "Request_UnsupportedQuery")


def test_roles_without_a_role_read_permission_come_back_nameless(
    make_sandbox: Callable[..., Sandbox],
    session_for: Callable[[Sandbox], requests.Session],
    token_for: Callable[[Sandbox, str, str], str],
) -> None:
    box = make_sandbox(revoke=[("contoso", "Directory.Read.All")])
    roles = session_for(box).get(
        f"{box.graph_url}/v1.0/users/ben.walters@contoso.com/{ROLES}",
        headers={**_auth(token_for(box, "contoso", "graph")), **ADVANCED},
        timeout=10,
    ).json()["value"]
    assert len(roles) == 1
    assert roles[0]["@odata.type"] == "#microsoft.graph.directoryRole" and roles[0]["id"]
    assert roles[0]["displayName"] is None and roles[0]["roleTemplateId"] is None


def test_inbox_rules_show_forwarding(
    sandbox: Sandbox, http: requests.Session, graph_token: str
) -> None:
    rules = http.get(
        f"{sandbox.graph_url}/v1.0/users/grace.hill@contoso.com/mailFolders/inbox/messageRules",
        headers=_auth(graph_token),
        timeout=10,
    ).json()["value"]
    forwards = [r for r in rules if r["actions"].get("forwardTo")]
    assert forwards[0]["actions"]["forwardTo"][0]["emailAddress"]["address"].endswith(
        "@attacker.example"
    )


def test_guest_has_no_mailbox(sandbox: Sandbox, http: requests.Session, graph_token: str) -> None:
    response = http.get(
        f"{sandbox.graph_url}/v1.0/users/4f1c2a9e-0b6d-4e55-8a11-2c3d4e5f6a06/mailFolders/inbox/"
        "messageRules",
        headers=_auth(graph_token),
        timeout=10,
    )
    _assert_graph_error(response, 404, "MailboxNotEnabledForRESTAPI")


def test_throttling_fault_has_retry_after_and_graph_body(
    sandbox: Sandbox, http: requests.Session, graph_token: str
) -> None:
    sandbox.faults.add(FaultRule(service="graph", status=429, retry_after=37, path_contains="/users"))
    response = http.get(
        f"{sandbox.graph_url}/v1.0/users/{ADELE}", headers=_auth(graph_token), timeout=10
    )
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "37"
    assert response.json()["error"]["code"] == "TooManyRequests"
    again = http.get(
        f"{sandbox.graph_url}/v1.0/users/{ADELE}", headers=_auth(graph_token), timeout=10
    )
    assert again.status_code == 200


def test_responses_name_the_emulator(
    sandbox: Sandbox, http: requests.Session, graph_token: str
) -> None:
    response = http.get(
        f"{sandbox.graph_url}/v1.0/users/{ADELE}", headers=_auth(graph_token), timeout=10
    )
    assert "EMULATOR" in response.headers["Server"]


BATCH_ROLES = "transitiveMemberOf/microsoft.graph.directoryRole?$select=displayName&$count=true"


def _batch(box: Sandbox, http: requests.Session, token: str, requests_: list[dict[str, Any]]) -> requests.Response:
    return http.post(f"{box.graph_url}/v1.0/$batch", json={"requests": requests_}, headers=_auth(token),
                     timeout=10)


def _by_id(response: requests.Response) -> dict[str, dict[str, Any]]:
    assert response.status_code == 200, response.text
    return {answer["id"]: answer for answer in response.json()["responses"]}


def test_batch_answers_each_request_with_its_own_status_headers_and_body(
    sandbox: Sandbox, http: requests.Session, graph_token: str
) -> None:
    answers = _by_id(_batch(sandbox, http, graph_token, [
        {"id": "1", "method": "GET", "url": "/users?$filter=mail eq 'adele.vance@contoso.com'&$select=id"},
        {"id": "2", "method": "GET", "url": f"/users/ben.walters@contoso.com/{BATCH_ROLES}",
         "headers": ADVANCED},
        {"id": "3", "method": "GET", "url": "/users/nobody@contoso.com/mailFolders/inbox/messageRules"},
        {"id": "4", "method": "GET", "url": f"users/ben.walters@contoso.com/{BATCH_ROLES}"},  # no header
    ]))
    assert [u["id"] for u in answers["1"]["body"]["value"]] == [ADELE]
    assert [r["displayName"] for r in answers["2"]["body"]["value"]] == ["Global Administrator"]
    assert answers["3"]["status"] == 404
    assert answers["3"]["body"]["error"]["code"] == "Request_ResourceNotFound"
    assert answers["4"]["status"] == 400  # each request gets Graph's own checks
    batched = [r for r in sandbox.calls.records("graph") if r.batched][-4:]
    assert len(batched) == 4 and all(r.path.startswith("/v1.0/users") for r in batched)
    assert not sandbox.calls.records("graph")[-1].batched  # the batch itself is the call on the wire


def test_batch_runs_a_dependent_request_only_after_its_dependency_succeeded(
    make_sandbox: Callable[..., Sandbox],
    session_for: Callable[[Sandbox], requests.Session],
    token_for: Callable[[Sandbox, str, str], str],
) -> None:
    box = make_sandbox()
    http, token = session_for(box), token_for(box, "contoso", "graph")
    answers = _by_id(_batch(box, http, token, [
        {"id": "1", "method": "POST", "url": "/users/grace.hill@contoso.com/revokeSignInSessions"},
        {"id": "2", "method": "GET", "url": "/users/grace.hill@contoso.com/mailFolders/inbox/messageRules",
         "dependsOn": ["1"]},
        {"id": "3", "method": "POST", "url": "/users/nobody@contoso.com/revokeSignInSessions"},
        {"id": "4", "method": "GET", "url": "/users/grace.hill@contoso.com/mailFolders/inbox/messageRules",
         "dependsOn": ["3"]},
    ]))
    assert answers["1"]["status"] == 200 and answers["1"]["body"]["value"] is True
    assert box.microsoft.revocation_count("contoso", "grace.hill@contoso.com") == 1
    assert answers["2"]["status"] == 200 and answers["2"]["body"]["value"]
    assert answers["3"]["status"] == 404
    assert answers["4"]["status"] == 424


def test_a_throttled_request_in_a_batch_gets_its_own_429_and_retry_after(
    sandbox: Sandbox, http: requests.Session, graph_token: str
) -> None:
    sandbox.faults.add(FaultRule(service="graph", status=429, retry_after=41, path_contains="messageRules"))
    answers = _by_id(_batch(sandbox, http, graph_token, [
        {"id": "1", "method": "GET", "url": f"/users/{ADELE}?$select=id"},
        {"id": "2", "method": "GET", "url": f"/users/{ADELE}/mailFolders/inbox/messageRules"},
    ]))
    assert answers["1"]["status"] == 200
    assert answers["2"]["status"] == 429
    assert answers["2"]["headers"]["Retry-After"] == "41"


def test_batch_payloads_graph_refuses_as_a_whole(
    sandbox: Sandbox, http: requests.Session, graph_token: str
) -> None:
    one = {"method": "GET", "url": f"/users/{ADELE}"}
    too_many = [{"id": str(i), **one} for i in range(21)]
    _assert_graph_error(_batch(sandbox, http, graph_token, too_many), 400, "BadRequest")
    _assert_graph_error(_batch(sandbox, http, graph_token, [{"id": "1", **one}, {"id": "1", **one}]),
                        400, "BadRequest")
    later = [{"id": "1", **one, "dependsOn": ["2"]}, {"id": "2", **one}]
    _assert_graph_error(_batch(sandbox, http, graph_token, later), 400, "BadRequest")
    no_type = [{"id": "1", "method": "PATCH", "url": f"/users/{ADELE}", "body": {"accountEnabled": True}}]
    _assert_graph_error(_batch(sandbox, http, graph_token, no_type), 400, "BadRequest")
    versioned = _by_id(_batch(sandbox, http, graph_token, [{"id": "1", "method": "GET",
                                                            "url": f"/v1.0/users/{ADELE}"}]))
    assert versioned["1"]["status"] == 400
