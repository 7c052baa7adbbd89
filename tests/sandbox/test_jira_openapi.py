"""The Jira emulator's responses validate against Atlassian's published OpenAPI schemas."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from jira_fixtures import JiraHarness, jira_fixture  # noqa: F401
from openapi_schema_validator import OAS30ReadValidator

SPEC_NAME = "jira-cloud-platform-v3.openapi.json"


def _spec_path() -> Path | None:
    repo = Path(__file__).resolve().parents[2]
    candidates = [repo / "specs" / SPEC_NAME, repo.parent / "shared" / "specs" / SPEC_NAME]
    if os.environ.get("MAILUNBLOCK_SPECS"):
        candidates.insert(0, Path(os.environ["MAILUNBLOCK_SPECS"]) / SPEC_NAME)
    return next((path for path in candidates if path.is_file()), None)


@pytest.fixture(scope="module")
def components() -> dict[str, Any]:
    path = _spec_path()
    if path is None:
        pytest.skip(f"{SPEC_NAME} not found (set MAILUNBLOCK_SPECS to its folder)")
    spec: dict[str, Any] = json.loads(path.read_text())
    return dict(spec["components"])


def validate(components: dict[str, Any], schema: dict[str, Any], instance: Any) -> None:
    OAS30ReadValidator({**schema, "components": components}).validate(instance)


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def body(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def test_validator_rejects_a_wrong_shape(components: dict[str, Any]) -> None:
    with pytest.raises(Exception, match="Additional properties"):
        validate(components, ref("SearchAndReconcileResults"), {"issues": [], "total": 3})


def test_search_results(jira: JiraHarness, components: dict[str, Any]) -> None:
    jira.state.add_comment("HELP-1", "alice", "hello")
    jira.state.transition("HELP-1", "Start progress", "alice")
    jira.state.set_property("HELP-1", "mailunblock.state", {"step": "approved"})
    result = body(jira.post("/rest/api/3/search/jql", json={
        "jql": "project = HELP", "fields": ["*all"], "expand": "changelog,names",
        "properties": ["mailunblock.state"], "maxResults": 2}))
    assert result["nextPageToken"]
    validate(components, ref("SearchAndReconcileResults"), result)
    ids_only = body(jira.get("/rest/api/3/search/jql", query_string={"jql": "project = HELP"}))
    validate(components, ref("SearchAndReconcileResults"), ids_only)


def test_issue_and_comments(jira: JiraHarness, components: dict[str, Any]) -> None:
    jira.post("/rest/api/3/issueLink", json={"type": {"name": "Relates"},
                                            "inwardIssue": {"key": "HELP-3"},
                                            "outwardIssue": {"key": "HELP-1"}})
    created = body(jira.post("/rest/api/2/issue/HELP-1/comment", json={
        "body": "x", "visibility": {"type": "group", "value": "helpdesk-agents"},
        "properties": [{"key": "k", "value": 1}]}), 201)
    validate(components, ref("Comment"), created)
    issue = body(jira.get("/rest/api/3/issue/HELP-1?expand=changelog,transitions"))
    validate(components, ref("IssueBean"), issue)
    page = body(jira.get("/rest/api/3/issue/HELP-1/comment?expand=properties,renderedBody"))
    validate(components, ref("PageOfComments"), page)


def test_transitions_properties_links(jira: JiraHarness, components: dict[str, Any]) -> None:
    validate(components, ref("Transitions"),
             body(jira.get("/rest/api/3/issue/HELP-1/transitions")))
    jira.put("/rest/api/3/issue/HELP-1/properties/p", json={"a": 1})
    validate(components, ref("EntityProperty"),
             body(jira.get("/rest/api/3/issue/HELP-1/properties/p")))
    validate(components, ref("PropertyKeys"), body(jira.get("/rest/api/3/issue/HELP-1/properties")))
    validate(components, ref("IssueLinkTypes"), body(jira.get("/rest/api/3/issueLinkType")))


def test_users_groups_roles_fields(jira: JiraHarness, components: dict[str, Any]) -> None:
    validate(components, ref("ServerInformation"), body(jira.get("/rest/api/3/serverInfo")))
    validate(components, ref("User"), body(jira.get("/rest/api/3/myself")))
    alice = jira.state.user("alice").account_id
    validate(components, ref("User"),
             body(jira.get("/rest/api/3/user", query_string={"accountId": alice})))
    validate(components, {"type": "array", "items": ref("GroupName")},
             body(jira.get("/rest/api/3/user/groups", query_string={"accountId": alice})))
    validate(components, ref("PageBeanUserDetails"), body(jira.get(
        "/rest/api/3/group/member", query_string={"groupname": "helpdesk-agents",
                                                  "maxResults": 1})))
    validate(components, ref("ProjectRole"), body(jira.get("/rest/api/3/project/HELP/role/10100")))
    validate(components, {"type": "array", "items": ref("FieldDetails")},
             body(jira.get("/rest/api/3/field")))


def test_error_bodies(jira: JiraHarness, components: dict[str, Any]) -> None:
    for response in (
        jira.get("/rest/api/3/issue/NOPE-1"),
        jira.post("/rest/api/3/search/jql", json={"jql": "foo = bar"}),
        jira.get("/rest/api/3/search", query_string={"jql": "project = HELP"}),
        jira.put("/rest/api/3/issue/HELP-1", json={"fields": {"labels": ["a b"]}}),
    ):
        assert response.status_code >= 400
        validate(components, ref("ErrorCollection"), response.get_json())
