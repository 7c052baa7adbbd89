"""The Jira emulator in Data Center mode: PAT auth, /rest/api/2/search with total, name/key users."""

from __future__ import annotations

import pytest
from jira_fixtures import BOT_EMAIL, BOT_TOKEN, JiraHarness, basic, make_harness
from mailunblock.sandbox.jira import demo_scenario

PAT = {"Authorization": f"Bearer {BOT_TOKEN}"}


@pytest.fixture
def dc() -> JiraHarness:
    section = demo_scenario()
    section["deployment"] = "datacenter"
    return make_harness(section, PAT)


def test_bearer_pat_authenticates_and_basic_does_not(dc: JiraHarness) -> None:
    me = dc.get("/rest/api/2/myself").get_json()
    assert (me["name"], me["emailAddress"]) == ("mailunblock", BOT_EMAIL)
    assert "accountId" not in me
    refused = dc.client.get("/rest/api/2/myself", headers=basic(BOT_EMAIL, BOT_TOKEN))
    assert refused.status_code == 401
    assert dc.client.get("/rest/api/2/myself",
                         headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_search_pages_with_start_at_and_total(dc: JiraHarness) -> None:
    page = dc.get("/rest/api/2/search", query_string={
        "jql": "labels = mail-blocked ORDER BY key", "startAt": 3, "maxResults": 2,
        "fields": "labels,reporter"}).get_json()
    assert (page["startAt"], page["maxResults"], page["total"]) == (3, 2, 5)
    assert [i["key"] for i in page["issues"]] == ["HELP-4", "HELP-5"]
    reporter = page["issues"][0]["fields"]["reporter"]
    assert reporter["name"] == "ben.walters"
    assert reporter["key"].startswith("JIRAUSER")
    assert "accountId" not in reporter


def test_search_defaults_to_navigable_fields_and_allows_empty_jql(dc: JiraHarness) -> None:
    page = dc.post("/rest/api/2/search", json={"jql": ""}).get_json()
    assert page["total"] == 6
    assert "summary" in page["issues"][0]["fields"]
    assert "comment" not in page["issues"][0]["fields"]


def test_reporter_jql_uses_username(dc: JiraHarness) -> None:
    page = dc.get("/rest/api/2/search", query_string={"jql": "reporter = chloe.dupont"})
    assert [i["key"] for i in page.get_json()["issues"]] == ["HELP-2"]


def test_cloud_only_endpoints_do_not_exist(dc: JiraHarness) -> None:
    assert dc.get("/rest/api/3/myself").status_code == 404
    assert dc.post("/rest/api/2/search/jql", json={"jql": "project = HELP"}).status_code == 404


def test_user_lookup_by_username(dc: JiraHarness) -> None:
    user = dc.get("/rest/api/2/user", query_string={"username": "chloe.dupont"}).get_json()
    assert (user["locale"], user["timeZone"]) == ("fr_FR", "Europe/Paris")
    assert dc.get("/rest/api/2/serverInfo").get_json()["deploymentType"] == "Server"


def test_comment_has_no_jsd_public_but_internal_property_works(dc: JiraHarness) -> None:
    created = dc.post("/rest/api/2/issue/HELP-1/comment", json={
        "body": "note", "properties": [{"key": "sd.public.comment",
                                        "value": {"internal": True}}]}).get_json()
    assert "jsdPublic" not in created
    assert dc.state.notifications("HELP-1") == []


@pytest.mark.parametrize(
    "expand",
    [["changelog"], ["renderedFields", "changelog"], "names,changelog"],
    ids=["list", "list-of-two", "string"],
)
def test_post_search_expands_the_changelog_given_as_list_or_string(
    dc: JiraHarness, expand: list[str] | str
) -> None:
    dc.state.set_labels("HELP-1", ["mail-blocked", "seen"], actor="alice")
    page = dc.post("/rest/api/2/search", json={
        "jql": "key = HELP-1", "fields": ["labels"], "expand": expand}).get_json()
    [issue] = page["issues"]
    [history] = issue["changelog"]["histories"]
    assert history["author"]["name"] == "alice"
    assert history["items"][0]["toString"] == "mail-blocked seen"


def test_get_search_expands_a_repeated_expand_parameter(dc: JiraHarness) -> None:
    dc.state.set_labels("HELP-1", ["mail-blocked", "seen"], actor="alice")
    page = dc.client.get("/rest/api/2/search?jql=key%3DHELP-1&expand=names&expand=changelog",
                         headers=dc.headers).get_json()
    assert "changelog" in page["issues"][0]
