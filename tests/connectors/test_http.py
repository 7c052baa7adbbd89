"""The shared HTTP policy: retries only for safe calls, capped waits, CA bundle precedence, classification."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from mailunblock.connectors.errors import (
    AuthenticationError,
    NotFoundError,
    PermanentError,
    PermissionDeniedError,
    ThrottledError,
    TransientError,
)
from mailunblock.connectors.http import (
    HttpPolicy,
    build_session,
    error_for_exception,
    error_for_status,
    retry_after_seconds,
)
from requests.adapters import BaseAdapter


class Flaky:
    """A call failing with the given errors first, then returning 'ok'."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def policy(waits: list[float], **kwargs: Any) -> HttpPolicy:
    return HttpPolicy(sleep=waits.append, **kwargs)


def test_safe_call_is_retried_after_a_short_throttle_but_never_before_a_long_one() -> None:
    waits: list[float] = []
    call = Flaky(ThrottledError("slow down", retry_after=30), ThrottledError("again", retry_after=500))
    with pytest.raises(ThrottledError) as caught:
        policy(waits, max_retry_wait=120).call(call, safe=True)
    assert caught.value.retry_after == 500  # beyond max_retry_wait: the caller schedules the next try
    assert call.calls == 2
    assert len(waits) == 1 and 30 <= waits[0] <= 31  # Retry-After plus jitter, never less


def test_transient_errors_back_off_exponentially() -> None:
    waits: list[float] = []
    call = Flaky(TransientError("503"), TransientError("503"), TransientError("timeout"))
    assert policy(waits).call(call, safe=True) == "ok"
    assert [int(w) for w in waits] == [1, 2, 4]


def test_unsafe_call_is_never_retried() -> None:
    waits: list[float] = []
    call = Flaky(ThrottledError("slow down", retry_after=1))
    with pytest.raises(ThrottledError):
        policy(waits).call(call, safe=False)
    assert call.calls == 1
    assert waits == []


def test_permanent_errors_are_not_retried() -> None:
    waits: list[float] = []
    call = Flaky(PermanentError("bad request"))
    with pytest.raises(PermanentError):
        policy(waits).call(call, safe=True)
    assert call.calls == 1


def test_gives_up_after_max_retries_and_reraises_the_typed_error() -> None:
    waits: list[float] = []
    call = Flaky(*[TransientError("503") for _ in range(10)])
    with pytest.raises(TransientError):
        policy(waits, max_retries=2).call(call, safe=True)
    assert call.calls == 3


class RecordingAdapter(BaseAdapter):
    """Transport that records each request and the TLS and timeout settings it is sent with."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[dict[str, Any]] = []
        self.requests: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append(kwargs)
        self.requests.append(request)
        response = requests.Response()
        response.status_code = 200
        response.request = request
        return response

    def close(self) -> None:
        pass


def test_configured_ca_bundle_wins_over_requests_ca_bundle(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    session = build_session(HttpPolicy(ca_bundle=str(tmp_path / "ca.pem"), timeout=7))
    adapter = RecordingAdapter()
    session.mount("https://", adapter)
    session.get("https://service.invalid/x")
    assert adapter.sent[0]["verify"] == str(tmp_path / "ca.pem")
    assert adapter.sent[0]["timeout"] == 7


def test_without_a_configured_bundle_the_environment_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    session = build_session(HttpPolicy())
    adapter = RecordingAdapter()
    session.mount("https://", adapter)
    session.get("https://service.invalid/x", timeout=3)
    assert adapter.sent[0]["verify"] == "/etc/ssl/certs/ca-certificates.crt"
    assert adapter.sent[0]["timeout"] == 3


def test_the_environment_proxies_apply_and_no_proxy_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    for lower in ("https_proxy", "no_proxy"):
        monkeypatch.delenv(lower, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "direct.invalid")
    session = build_session(HttpPolicy())
    adapter = RecordingAdapter()
    session.mount("https://", adapter)
    session.get("https://service.invalid/x")
    session.get("https://service.invalid/y")
    session.get("https://direct.invalid/x")
    assert [sent["proxies"].get("https") for sent in adapter.sent] == [
        "http://proxy.invalid:3128", "http://proxy.invalid:3128", None]


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (429, ThrottledError),
        (500, TransientError),
        (503, ThrottledError),  # with a Retry-After: a throttle, not a plain outage
        (400, PermanentError),
        (409, PermanentError),
    ],
)
def test_status_classification(status: int, kind: type[Exception]) -> None:
    error = error_for_status(status, "message", service="svc", retry_after=12)
    assert type(error) is kind
    assert error.service == "svc"
    if isinstance(error, ThrottledError):
        assert error.retry_after == 12


def test_throttled_without_retry_after_gets_a_default_wait() -> None:
    error = error_for_status(429, "slow", service="svc")
    assert isinstance(error, ThrottledError)
    assert error.retry_after > 0
    assert type(error_for_status(503, "down", service="svc")) is TransientError


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (requests.ConnectTimeout("secret-url?token=abc"), TransientError),
        (requests.ReadTimeout("x"), TransientError),
        (requests.ConnectionError("x"), TransientError),
        (requests.exceptions.SSLError("x"), PermanentError),
    ],
)
def test_transport_failures_are_typed_and_do_not_repeat_the_request(
    exc: requests.RequestException, kind: type[Exception]
) -> None:
    error = error_for_exception(exc, service="svc")
    assert type(error) is kind
    assert "token" not in str(error)


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert retry_after_seconds({"Retry-After": "17"}) == 17
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert retry_after_seconds({"Retry-After": "Thu, 01 Jan 2026 12:01:00 GMT"}, now) == 60
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"Retry-After": "soon"}) is None


_SAMPLES: list[dict[str, Any]] = [
    {"method": "get", "url": "https://service.invalid/x", "params": {"a": "1", "gone": None, "b": "two words"}},
    {"method": "post", "url": "https://service.invalid/y?q=1", "json": {"body": "é"},
     "headers": {"X-Extra": "yes", "Accept": "text/plain", "X-Dropped": None}},
    {"method": "patch", "url": "https://service.invalid/z", "data": {"form": "1"}, "auth": ("other", "secret")},
    {"method": "put", "url": "https://service.invalid/w", "data": b"raw", "params": [("k", "v"), ("k", "w")]},
    {"method": "get", "url": "https://service.invalid/ä b?x=ü#frag", "params": {"n": 3, "f": 0.5, "t": True}},
    {"method": "get", "url": "https://service.invalid/v", "params": {"list": ["a", "b"], "empty": ""}},
    {"method": "delete", "url": "https://service.invalid/u", "params": {}},
]


@pytest.mark.parametrize("sample", _SAMPLES, ids=lambda s: str(s["method"]))
def test_a_prepared_request_is_what_requests_would_prepare(sample: dict[str, Any]) -> None:
    ours = build_session(HttpPolicy())
    theirs = requests.Session()
    for session in (ours, theirs):
        session.headers.update({"Accept": "application/json", "X-Session": "s"})
        session.auth = ("user", "token")
    reference = theirs.prepare_request(requests.Request(**sample))
    for _ in range(2):  # the second time, its URL is the one kept from the first
        mine = ours.prepare_request(requests.Request(**sample))
        assert (mine.method, mine.url, mine.body) == (reference.method, reference.url, reference.body)
        assert dict(mine.headers) == dict(reference.headers)


def test_a_kept_url_is_kept_with_its_parameters_and_an_invalid_one_is_refused_every_time() -> None:
    session = build_session(HttpPolicy())
    urls = [session.prepare_request(requests.Request("GET", "https://service.invalid/s", params=params)).url
            for params in ({"page": "1"}, {"page": "2"}, None, {"page": "1"})]
    assert urls == ["https://service.invalid/s?page=1", "https://service.invalid/s?page=2",
                    "https://service.invalid/s", "https://service.invalid/s?page=1"]
    for _ in range(2):
        with pytest.raises(requests.exceptions.InvalidURL):
            session.prepare_request(requests.Request("GET", "https://*.invalid/x"))


def test_session_parameters_still_go_through_requests() -> None:
    ours, theirs = build_session(HttpPolicy()), requests.Session()
    for session in (ours, theirs):
        session.params = {"api-version": "2"}
    sample: dict[str, Any] = {"method": "GET", "url": "https://service.invalid/x", "params": {"a": "1"}}
    url = ours.prepare_request(requests.Request(**sample)).url
    assert url == theirs.prepare_request(requests.Request(**sample)).url
    assert "api-version=2" in str(url)


def test_cookies_and_hooks_still_go_through_requests() -> None:
    session = build_session(HttpPolicy())
    adapter = RecordingAdapter()
    session.mount("https://", adapter)
    session.cookies.set("JSESSIONID", "abc", domain="service.invalid")
    session.get("https://service.invalid/x")
    session.get("https://service.invalid/x", cookies={"extra": "1"})
    assert [r.headers["Cookie"] for r in adapter.requests] == ["JSESSIONID=abc", "JSESSIONID=abc; extra=1"]
    session.cookies.clear()
    session.get("https://service.invalid/x", cookies={"only": "2"})
    assert adapter.requests[-1].headers["Cookie"] == "only=2"
    seen: list[int] = []
    session.get("https://service.invalid/x", hooks={"response": [lambda r, *a, **k: seen.append(r.status_code)]})
    assert seen == [200] and "Cookie" not in adapter.requests[-1].headers


@pytest.mark.parametrize("proxies", [{}, {"https": "http://proxy.invalid:3128"}, {"https": None, "http": "http://p:1"}])
@pytest.mark.parametrize("stream", [None, True, False])
@pytest.mark.parametrize("verify", [None, True, False, "/etc/ca.pem"])
@pytest.mark.parametrize("cert", [None, "client.pem"])
def test_environment_settings_merge_as_requests_merges_them(
    proxies: dict[str, str], stream: bool | None, verify: bool | str | None, cert: str | None
) -> None:
    ours, theirs = build_session(HttpPolicy(ca_bundle="/etc/bundle.pem")), requests.Session()
    theirs.trust_env, theirs.verify = False, ours.verify
    url = "https://service.invalid/x"
    assert ours.merge_environment_settings(url, dict(proxies), stream, verify, cert) == \
        theirs.merge_environment_settings(url, dict(proxies), stream, verify, cert)


def test_session_level_settings_still_merge_through_requests() -> None:
    ours, theirs = build_session(HttpPolicy()), requests.Session()
    theirs.trust_env = False
    for session in (ours, theirs):
        session.proxies = {"https": "http://session-proxy.invalid:3128", "http": "http://other.invalid:1"}
        session.cert, session.stream = "session.pem", True
    merged = ours.merge_environment_settings("https://service.invalid/x", {"http": None}, None, True, None)
    assert merged == theirs.merge_environment_settings("https://service.invalid/x", {"http": None}, None, True, None)
    assert merged["proxies"] == {"https": "http://session-proxy.invalid:3128"} and merged["cert"] == "session.pem"
