"""Every request JiraClient made while recording its cassettes exists in Atlassian's v3 OpenAPI spec.

Checks path template, method, query parameter names (and integer/boolean values) and the JSON body
against the spec's component schemas, with unknown body keys forbidden (``additionalProperties: false``
is imposed on every object schema that lists its properties). Mapping rules, since the connector speaks
the v2 REST API on both deployments:

- ``/rest/api/2/...`` is checked against its ``/rest/api/3/...`` twin (same resources and parameters);
- ``/rest/api/2/search`` (Data Center) is checked against ``/rest/api/3/search``, which the spec still
  describes although Cloud answers 410 Gone there;
- v2 comment bodies are plain text where v3 expects Atlassian Document Format: a string ``body`` is
  accepted for the ``Comment`` schema (the spec leaves ``body`` untyped);
- ``/rest/servicedeskapi/...`` (Jira Service Management) is not in the platform spec: those requests are
  skipped by the spec check, with a reason, and checked instead against the few JSM operations the
  connector uses, written down from Atlassian's JSM REST documentation (``JSM_OPERATIONS``).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC = REPO_ROOT.parent / "shared" / "specs" / "jira-cloud-platform-v3.openapi.json"
CASSETTES = Path(__file__).parent / "cassettes"
SPEC_URI = "urn:jira-cloud-platform-v3"


def _strict(schema: Any) -> Any:
    """Copy of a schema where every object listing properties forbids unknown keys and read-only ones."""
    if not isinstance(schema, dict):
        return schema
    result = dict(schema)
    for key in ("items", "not"):
        if key in result:
            result[key] = _strict(result[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in result:
            result[key] = [_strict(s) for s in result[key]]
    if isinstance(result.get("additionalProperties"), dict):
        result["additionalProperties"] = _strict(result["additionalProperties"])
    if isinstance(result.get("properties"), dict):
        result["properties"] = {
            name: _strict(sub)
            for name, sub in result["properties"].items()
            if not (isinstance(sub, dict) and sub.get("readOnly"))
        }
        if not isinstance(result.get("additionalProperties"), dict):
            result["additionalProperties"] = False
    return result


class Contract:
    """The spec, indexed for matching requests."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.templates = [
            (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path)
            for path in spec["paths"]
        ]
        schemas = {name: _strict(schema) for name, schema in spec["components"]["schemas"].items()}
        root = {"components": {"schemas": schemas}}
        self.registry: Registry[Any] = Registry().with_resource(
            SPEC_URI, Resource.from_contents(root, default_specification=DRAFT4)
        )

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]]:
        matches = [template for pattern, template in self.templates if pattern.match(path)]
        # A literal segment beats a parameter ("/issue/picker" over "/issue/{key}").
        matches.sort(key=lambda t: t.count("{"))
        assert matches, f"{method} {path}: no such path in the v3 spec"
        operation = self.spec["paths"][matches[0]].get(method.lower())
        assert operation, f"{method} {path}: the spec has no {method} on {matches[0]}"
        return matches[0], operation

    def check(self, method: str, url: str, body: bytes | str | None) -> None:
        parts = urlsplit(url)
        path = parts.path[parts.path.index("/rest/"):]
        v3 = path.replace("/rest/api/2/", "/rest/api/3/", 1)
        template, operation = self.operation(method, v3)
        self._check_query(method, template, operation, parse_qsl(parts.query))
        self._check_body(method, template, operation, body)

    def _check_query(
        self, method: str, template: str, operation: dict[str, Any], query: list[tuple[str, str]]
    ) -> None:
        declared = {
            p["name"]: p.get("schema", {})
            for p in operation.get("parameters", [])
            if p.get("in") == "query"
        }
        for name, value in query:
            assert name in declared, f"{method} {template}: unknown query parameter {name!r}"
            kind = declared[name].get("type")
            if kind == "integer":
                assert value.lstrip("-").isdigit(), f"{method} {template}: {name}={value!r} not int"
            if kind == "boolean":
                assert value in ("true", "false"), f"{method} {template}: {name}={value!r} not bool"

    def _check_body(
        self, method: str, template: str, operation: dict[str, Any], body: bytes | str | None
    ) -> None:
        content = operation.get("requestBody", {}).get("content", {})
        if not body:
            assert not operation.get("requestBody", {}).get("required"), (
                f"{method} {template}: body required"
            )
            return
        assert "application/json" in content, f"{method} {template}: the spec takes no JSON body"
        document = json.loads(body)
        schema = copy.deepcopy(content["application/json"]["schema"])
        if "$ref" in schema:
            schema["$ref"] = SPEC_URI + schema["$ref"]
        validator = jsonschema.Draft4Validator(schema, registry=self.registry)
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
        assert not errors, f"{method} {template}: " + "; ".join(
            f"{'/'.join(map(str, e.path)) or '(body)'}: {e.message}" for e in errors
        )


@pytest.fixture(scope="module")
def contract() -> Contract:
    if not SPEC.exists():
        pytest.skip(f"Jira v3 OpenAPI spec not found at {SPEC} (shared/specs is outside the repo)")
    return Contract(json.loads(SPEC.read_text(encoding="utf-8")))


def jira_requests() -> Iterator[tuple[str, str, str, Any]]:
    """(cassette, method, uri, body) of every recorded Jira request."""
    for cassette in sorted(CASSETTES.glob("**/*.yaml")):
        for interaction in yaml.safe_load(cassette.read_text(encoding="utf-8"))["interactions"]:
            request = interaction["request"]
            if "/rest/" in request["uri"]:
                yield cassette.name, request["method"], request["uri"], request["body"]


RECORDED = list(jira_requests())
SERVICEDESK = "/rest/servicedeskapi/"
NOT_IN_PLATFORM_SPEC = "JSM servicedeskapi path: not in the Jira platform spec (see JSM_OPERATIONS)"
# (method, path pattern) -> integer query parameters; from the JSM Cloud REST docs ("Get approvals").
JSM_OPERATIONS: dict[tuple[str, str], frozenset[str]] = {
    ("GET", r"^/rest/servicedeskapi/request/[^/]+/approval$"): frozenset({"start", "limit"}),
}


def _spec_param(cassette: str, method: str, uri: str, body: Any) -> Any:
    marks = [pytest.mark.skip(reason=NOT_IN_PLATFORM_SPEC)] if SERVICEDESK in uri else []
    return pytest.param(cassette, method, uri, body, marks=marks,
                        id=f"{cassette}:{method} {urlsplit(uri).path}")


def test_cassettes_hold_jira_requests() -> None:
    methods = {(method, re.sub(r"/issue/[^/?]+", "/issue/{key}", urlsplit(uri).path))
               for _, method, uri, _ in RECORDED}
    assert ("POST", "/rest/api/2/issue/{key}/comment") in methods
    assert len(methods) >= 10


@pytest.mark.parametrize(
    ("cassette", "method", "uri", "body"), [_spec_param(*recorded) for recorded in RECORDED]
)
def test_request_matches_the_v3_spec(
    contract: Contract, cassette: str, method: str, uri: str, body: Any
) -> None:
    contract.check(method, uri, body)


def test_datacenter_search_and_servicedesk_requests_were_recorded() -> None:
    paths = {(method, urlsplit(uri).path) for _, method, uri, _ in RECORDED}
    assert ("GET", "/rest/api/2/search") in paths
    assert any(SERVICEDESK in path for _, path in paths)


@pytest.mark.parametrize(
    ("cassette", "method", "uri", "body"),
    [recorded for recorded in RECORDED if SERVICEDESK in recorded[2]],
    ids=[f"{c}:{m} {urlsplit(u).path}" for c, m, u, _ in RECORDED if SERVICEDESK in u],
)
def test_servicedesk_request_matches_a_documented_jsm_operation(
    cassette: str, method: str, uri: str, body: Any
) -> None:
    parts = urlsplit(uri)
    found = [params for (verb, pattern), params in JSM_OPERATIONS.items()
             if verb == method and re.match(pattern, parts.path)]
    assert found, f"{method} {parts.path}: not a JSM operation the connector is meant to use"
    assert not body, f"{method} {parts.path}: this JSM operation takes no body"
    for name, value in parse_qsl(parts.query):
        assert name in found[0], f"{method} {parts.path}: unknown query parameter {name!r}"
        assert value.isdigit(), f"{method} {parts.path}: {name}={value!r} not a non-negative int"


@pytest.mark.parametrize(
    ("method", "url", "body", "complaint"),
    [
        ("GET", "https://x/rest/api/2/issue/SD-1?fieldz=summary", None, "unknown query parameter"),
        ("POST", "https://x/rest/api/2/issue/SD-1/comment", b'{"body": "x", "internal": true}',
         "Additional properties"),
        ("POST", "https://x/rest/api/2/issue/SD-1/frobnicate", b"{}", "no such path"),
        ("DELETE", "https://x/rest/api/2/myself", None, "has no DELETE"),
        ("PUT", "https://x/rest/api/2/issue/SD-1", b'{"update": {"labels": [{"append": "x"}]}}',
         "Additional properties"),
    ],
)
def test_the_contract_check_rejects_what_the_spec_does_not_describe(
    contract: Contract, method: str, url: str, body: bytes | None, complaint: str
) -> None:
    with pytest.raises(AssertionError, match=complaint):
        contract.check(method, url, body)


def test_a_valid_comment_with_properties_and_visibility_passes(contract: Contract) -> None:
    body = {
        "body": "plain text (v2)",
        "visibility": {"type": "group", "value": "jira-servicedesk-users"},
        "properties": [{"key": "mailunblock", "value": {"marker": "m-1"}}],
    }
    contract.check("POST", "https://x/rest/api/2/issue/SD-1/comment", json.dumps(body))
