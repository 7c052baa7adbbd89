"""Identity platform emulator: discovery, MSAL client credentials, AAD error shapes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import certifi
import jwt
import msal
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from mailunblock.sandbox.server import Sandbox

CONTOSO_ID = "9188040d-6c67-4c5b-b112-36a304b66dad"


def _token_url(sandbox: Sandbox, tenant: str = CONTOSO_ID) -> str:
    return f"{sandbox.authority_host}/{tenant}/oauth2/v2.0/token"


def _form(sandbox: Sandbox, **changes: str) -> dict[str, str]:
    contoso = sandbox.microsoft.tenants["contoso"]
    form = {
        "grant_type": "client_credentials",
        "client_id": contoso.spec.app.client_id,
        "client_secret": contoso.credentials.client_secret or "",
        "scope": "https://graph.microsoft.com/.default",
    }
    form.update(changes)
    return form


def _assert_aad_error(response: requests.Response, status: int, error: str, code: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert body["error_description"].startswith(f"AADSTS{code}:")
    assert body["error_codes"] == [code]
    for key in ("timestamp", "trace_id", "correlation_id"):
        assert body[key]


def _msal_app(sandbox: Sandbox, credential: Any) -> msal.ConfidentialClientApplication:
    contoso = sandbox.microsoft.tenants["contoso"]
    session = requests.Session()
    session.trust_env = False
    session.verify = str(sandbox.ca_path)
    return msal.ConfidentialClientApplication(
        contoso.spec.app.client_id,
        client_credential=credential,
        authority=f"{sandbox.authority_host}/{CONTOSO_ID}",
        instance_discovery=False,
        http_client=session,
    )


def _claims(sandbox: Sandbox, token: str) -> dict[str, Any]:
    keys = requests.get(
        f"{sandbox.authority_host}/{CONTOSO_ID}/discovery/v2.0/keys",
        verify=str(sandbox.ca_path),
        timeout=10,
    ).json()
    key = jwt.PyJWK(keys["keys"][0]).key
    claims: dict[str, Any] = jwt.decode(
        token, key=key, algorithms=["RS256"], options={"verify_aud": False, "verify_exp": False}
    )
    return claims


def test_openid_configuration_points_at_the_emulator(
    sandbox: Sandbox, http: requests.Session
) -> None:
    config = http.get(
        f"{sandbox.authority_host}/contoso.com/v2.0/.well-known/openid-configuration", timeout=10
    ).json()
    assert config["token_endpoint"] == _token_url(sandbox)
    assert config["issuer"] == f"{sandbox.authority_host}/{CONTOSO_ID}/v2.0"
    assert config["jwks_uri"].startswith(sandbox.authority_host)
    assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]


def test_unknown_tenant_discovery_is_aadsts90002(sandbox: Sandbox, http: requests.Session) -> None:
    response = http.get(
        f"{sandbox.authority_host}/nowhere.example/v2.0/.well-known/openid-configuration",
        timeout=10,
    )
    _assert_aad_error(response, 400, "invalid_request", 90002)


def test_msal_secret_flow_with_hostile_ca_bundle_env(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    contoso = sandbox.microsoft.tenants["contoso"]
    app = _msal_app(sandbox, contoso.credentials.client_secret)
    result = app.acquire_token_for_client(["https://graph.microsoft.com/.default"])
    assert "access_token" in result, result
    claims = _claims(sandbox, result["access_token"])
    assert claims["aud"] == "https://graph.microsoft.com"
    assert claims["tid"] == CONTOSO_ID
    assert claims["appid"] == contoso.spec.app.client_id
    assert claims["oid"] == contoso.spec.app.service_principal_id
    assert "User-PasswordProfile.ReadWrite.All" in claims["roles"]
    assert "Exchange.ManageAsApp" not in claims["roles"]
    assert claims["exp"] - claims["iat"] == 3600


def test_msal_certificate_flow_maps_real_exchange_resource(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    files = sandbox.microsoft.tenants["contoso"].credentials.files
    app = _msal_app(
        sandbox,
        {
            "private_key_pfx_path": str(files.pfx),
            "passphrase": files.pfx_passphrase.read_text().strip(),
        },
    )
    result = app.acquire_token_for_client(["https://outlook.office365.com/.default"])
    assert "access_token" in result, result
    claims = _claims(sandbox, result["access_token"])
    assert claims["roles"] == ["Exchange.ManageAsApp"]
    assert claims["appidacr"] == "2"


def test_msal_without_the_ca_fails_tls(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    contoso = sandbox.microsoft.tenants["contoso"]
    with pytest.raises(requests.exceptions.SSLError):
        msal.ConfidentialClientApplication(
            contoso.spec.app.client_id,
            client_credential=contoso.credentials.client_secret,
            authority=f"{sandbox.authority_host}/{CONTOSO_ID}",
            instance_discovery=False,
        )


@pytest.mark.parametrize(
    ("changes", "status", "error", "code"),
    [
        ({"client_id": "00000000-1111-2222-3333-444444444444"}, 400, "unauthorized_client", 700016),
        ({"client_secret": "not-the-secret"}, 401, "invalid_client", 7000215),
        ({"client_secret": ""}, 401, "invalid_client", 7000218),
        ({"scope": "https://example.com/.default"}, 400, "invalid_resource", 500011),
        ({"scope": "https://graph.microsoft.com/User.Read.All"}, 400, "invalid_scope", 1002012),
    ],
)
def test_token_errors_in_aad_shape(
    sandbox: Sandbox,
    http: requests.Session,
    changes: dict[str, str],
    status: int,
    error: str,
    code: int,
) -> None:
    response = http.post(_token_url(sandbox), data=_form(sandbox, **changes), timeout=10)
    _assert_aad_error(response, status, error, code)


def test_token_for_unknown_tenant(sandbox: Sandbox, http: requests.Session) -> None:
    response = http.post(
        _token_url(sandbox, "11111111-2222-3333-4444-555555555555"), data=_form(sandbox), timeout=10
    )
    _assert_aad_error(response, 400, "invalid_request", 90002)


def _assertion(
    sandbox: Sandbox, key: Any, x5t: str, **claims: Any
) -> dict[str, str]:
    contoso = sandbox.microsoft.tenants["contoso"]
    now = int(time.time())
    payload = {
        "aud": _token_url(sandbox),
        "iss": contoso.spec.app.client_id,
        "sub": contoso.spec.app.client_id,
        "jti": "1",
        "nbf": now,
        "exp": now + 600,
        **claims,
    }
    form = _form(sandbox, client_secret="")
    form.pop("client_secret")
    form["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    form["client_assertion"] = jwt.encode(payload, key, algorithm="RS256", headers={"x5t": x5t})
    return form


@pytest.fixture(scope="module")
def app_key(sandbox: Sandbox) -> tuple[Any, str]:
    files = sandbox.microsoft.tenants["contoso"].credentials.files
    key, _cert, _ = pkcs12.load_key_and_certificates(
        files.pfx.read_bytes(), files.pfx_passphrase.read_text().strip().encode()
    )
    sha1 = next(t for t in sandbox.microsoft.tenants["contoso"].credentials.thumbprints
                if len(t) == 27)
    return key, sha1


def test_client_assertion_with_sha1_x5t(
    sandbox: Sandbox, http: requests.Session, app_key: tuple[Any, str]
) -> None:
    key, x5t = app_key
    response = http.post(_token_url(sandbox), data=_assertion(sandbox, key, x5t), timeout=10)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("case", "code"),
    [("wrong_key", 700027), ("unknown_thumbprint", 700027), ("expired", 700024),
     ("wrong_issuer", 700021), ("wrong_audience", 700212)],
)
def test_bad_client_assertions(
    sandbox: Sandbox,
    http: requests.Session,
    app_key: tuple[Any, str],
    case: str,
    code: int,
) -> None:
    key, x5t = app_key
    variants: dict[str, Callable[[], dict[str, str]]] = {
        "wrong_key": lambda: _assertion(
            sandbox, rsa.generate_private_key(public_exponent=65537, key_size=2048), x5t
        ),
        "unknown_thumbprint": lambda: _assertion(sandbox, key, "AAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        "expired": lambda: _assertion(sandbox, key, x5t, exp=int(time.time()) - 3600),
        "wrong_issuer": lambda: _assertion(sandbox, key, x5t, iss="someone-else"),
        "wrong_audience": lambda: _assertion(sandbox, key, x5t, aud="https://example.com/token"),
    }
    response = http.post(_token_url(sandbox), data=variants[case](), timeout=10)
    _assert_aad_error(response, 401, "invalid_client", code)


def test_secret_is_not_in_the_call_log(sandbox: Sandbox, http: requests.Session) -> None:
    secret = sandbox.microsoft.tenants["contoso"].credentials.client_secret or ""
    http.post(_token_url(sandbox), data=_form(sandbox), timeout=10)
    logged = [r for r in sandbox.calls.records("identity") if r.path.endswith("/token")]
    assert logged
    assert all(secret not in repr(r) for r in logged)



@pytest.mark.parametrize("service", ["graph", "exchange"])
def test_a_scope_naming_the_emulator_url_instead_of_the_resource_is_refused(
    sandbox: Sandbox, http: requests.Session, service: str
) -> None:
    # As Entra does: the URL an API is reached at is not a resource identifier (AADSTS500011).
    url = sandbox.graph_url if service == "graph" else sandbox.exchange_url
    response = http.post(_token_url(sandbox), data=_form(sandbox, scope=f"{url}/.default"), timeout=10)
    _assert_aad_error(response, 400, "invalid_resource", 500011)
    assert "AADSTS500011" in response.json()["error_description"]
