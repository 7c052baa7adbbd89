"""Behaviour of the Jira Cloud emulator's REST API, checked against Atlassian's documentation."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from jira_fixtures import BOT_EMAIL, BOT_TOKEN, JiraHarness, basic, jira_fixture  # noqa: F401
from mailunblock.sandbox.core import FaultRule

MAIL_BLOCKED = ["HELP-1", "HELP-2", "HELP-3", "HELP-4", "HELP-5"]
JIRA_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4}$")


def search(jira: JiraHarness, jql: str, **body: Any) -> Any:
    response = jira.post("/rest/api/3/search/jql", json={"jql": jql, **body})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def keys(result: Any) -> list[str]:
    return [issue["key"] for issue in result["issues"]]


# ---------------------------------------------------------------- auth, server info, call log


def test_missing_or_wrong_credentials_get_401(jira: JiraHarness) -> None:
    anonymous = jira.client.get("/rest/api/3/myself")
    wrong = jira.client.get("/rest/api/3/myself", headers=basic(BOT_EMAIL, "nope"))
    other_email = jira.client.get("/rest/api/3/myself", headers=basic("alice@x.example", BOT_TOKEN))
    as_bearer = jira.client.get("/rest/api/3/myself",
                                headers={"Authorization": f"Bearer {BOT_TOKEN}"})
    for response in (anonymous, wrong, other_email, as_bearer):
        assert response.status_code == 401
        assert response.get_data(as_text=True) == (
            "Client must be authenticated to access this resource."
        )


def test_myself_returns_the_bot_with_locale_and_time_zone(jira: JiraHarness) -> None:
    response = jira.get("/rest/api/3/myself")
    body = response.get_json()
    assert response.status_code == 200
    assert body["emailAddress"] == BOT_EMAIL
    assert body["accountId"] == jira.state.user("mailunblock").account_id
    assert (body["locale"], body["timeZone"]) == ("en_GB", "Europe/London")
    assert "EMULATOR" in response.headers["Server"]


def test_server_info_is_anonymous_and_says_emulator(jira: JiraHarness) -> None:
    body = jira.client.get("/rest/api/2/serverInfo").get_json()
    assert body["deploymentType"] == "Cloud"
    assert "EMULATOR" in body["serverTitle"]
    assert JIRA_TIME.match(body["serverTime"])


def test_every_call_is_logged_with_secrets_redacted(jira: JiraHarness) -> None:
    jira.get("/rest/api/3/issue/HELP-1")
    record = jira.ctx.calls.records("jira")[-1]
    assert (record.method, record.path, record.status) == ("GET", "/rest/api/3/issue/HELP-1", 200)
    assert record.headers["Authorization"] == "***"


def test_injected_fault_uses_jira_error_body(jira: JiraHarness) -> None:
    jira.ctx.faults.add(FaultRule("jira", status=429, retry_after=7, path_contains="/search/jql"))
    response = jira.post("/rest/api/3/search/jql", json={"jql": "project = HELP"})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert set(response.get_json()) == {"errorMessages", "errors"}
    assert jira.post("/rest/api/3/search/jql", json={"jql": "project = HELP"}).status_code == 200


# ---------------------------------------------------------------- search


def test_search_returns_only_ids_by_default_and_no_total(jira: JiraHarness) -> None:
    result = search(jira, "labels = mail-blocked")
    assert "total" not in result
    assert result["isLast"] is True
    assert "nextPageToken" not in result
    assert all(set(issue) == {"id"} for issue in result["issues"])
    assert len(result["issues"]) == 5


def test_search_pages_with_next_page_token(jira: JiraHarness) -> None:
    jql = "labels = mail-blocked ORDER BY key ASC"
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        body: dict[str, Any] = {"maxResults": 2, "fields": ["labels"]}
        if token:
            body["nextPageToken"] = token
        page = search(jira, jql, **body)
        pages += 1
        assert "total" not in page
        seen += keys(page)
        if page["isLast"]:
            assert "nextPageToken" not in page
            break
        token = page["nextPageToken"]
    assert pages == 3
    assert seen == MAIL_BLOCKED


def test_next_page_token_of_another_query_is_rejected(jira: JiraHarness) -> None:
    first = search(jira, "labels = mail-blocked", maxResults=1)
    response = jira.post("/rest/api/3/search/jql",
                         json={"jql": "project = HELP", "nextPageToken": first["nextPageToken"]})
    assert response.status_code == 400


def test_get_search_accepts_comma_separated_fields(jira: JiraHarness) -> None:
    response = jira.get("/rest/api/2/search/jql",
                        query_string={"jql": "key = HELP-2", "fields": "summary,status,nope"})
    issue = response.get_json()["issues"][0]
    assert set(issue["fields"]) == {"summary", "status"}  # unknown field ids are ignored
    assert issue["fields"]["summary"] == "Je ne peux plus envoyer d'e-mails"


def test_search_all_fields_minus_comment(jira: JiraHarness) -> None:
    issue = search(jira, "key = HELP-3", fields=["*all", "-comment"])["issues"][0]
    assert "comment" not in issue["fields"]
    assert issue["fields"]["customfield_10050"] == "lidia.holloway@contoso.com"
    assert issue["fields"]["reporter"]["emailAddress"] == "megan.bowen@contoso.com"


@pytest.mark.parametrize("jql", ["", "   ", "ORDER BY created DESC", "order by key"])
def test_unbounded_jql_is_refused(jira: JiraHarness, jql: str) -> None:
    response = jira.post("/rest/api/3/search/jql", json={"jql": jql})
    assert response.status_code == 400
    assert response.get_json() == {
        "errorMessages": ["Unbounded JQL queries are not allowed here. "
                          "Please add a search restriction to your query."],
        "errors": {},
    }


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("version", ["2", "3"])
def test_old_search_endpoint_is_gone(jira: JiraHarness, method: str, version: str) -> None:
    response = jira.client.open(f"/rest/api/{version}/search", method=method,
                                headers=jira.headers, json={"jql": "project = HELP"}
                                if method == "POST" else None,
                                query_string={"jql": "project = HELP"})
    assert response.status_code == 410
    assert "migrate to the /rest/api/3/search/jql API" in response.get_json()["errorMessages"][0]


def test_unknown_body_field_is_rejected(jira: JiraHarness) -> None:
    response = jira.post("/rest/api/3/search/jql", json={"jql": "project = HELP", "startAt": 5})
    assert response.status_code == 400


def test_search_is_eventually_consistent_unless_reconciled() -> None:
    from jira_fixtures import make_harness
    from mailunblock.sandbox.jira import demo_scenario

    section = demo_scenario()
    section["search_lag_seconds"] = 30
    lagging = make_harness(section)
    lagging.state.clock.advance(timedelta(minutes=1))  # the seed has been indexed
    lagging.state.set_labels("HELP-6", ["hardware", "mail-blocked"])
    issue_id = lagging.state.issue("HELP-6").id
    assert "HELP-6" not in keys(search(lagging, "labels = mail-blocked", fields=["labels"]))
    reconciled = search(lagging, "labels = mail-blocked", fields=["labels"],
                        reconcileIssues=[int(issue_id)])
    assert "HELP-6" in keys(reconciled)
    lagging.state.clock.advance(timedelta(seconds=31))
    assert "HELP-6" in keys(search(lagging, "labels = mail-blocked", fields=["labels"]))


def test_customer_only_finds_own_requests(jira: JiraHarness) -> None:
    jira.state.set_api_token("adele.vance@contoso.com", "adele-token")
    adele = jira.as_user(basic("adele.vance@contoso.com", "adele-token"))
    assert keys(search(adele, "project = HELP", fields=["summary"])) == ["HELP-1"]
    assert adele.get("/rest/api/3/issue/HELP-2").status_code == 404


# ---------------------------------------------------------------- issues and labels


def test_unknown_issue_404_body(jira: JiraHarness) -> None:
    response = jira.get("/rest/api/3/issue/HELP-999")
    assert response.status_code == 404
    assert response.get_json() == {
        "errorMessages": ["Issue does not exist or you do not have permission to see it."],
        "errors": {},
    }


def test_dates_use_jira_format_in_viewer_time_zone(jira: JiraHarness) -> None:
    fields = jira.get("/rest/api/3/issue/HELP-1").get_json()["fields"]
    assert fields["created"] == "2026-11-27T11:08:21.000+0000"
    jira.state.set_api_token("chloe.dupont@fabrikam.fr", "chloe-token")
    chloe = jira.as_user(basic("chloe.dupont@fabrikam.fr", "chloe-token"))
    assert chloe.get("/rest/api/3/issue/HELP-2").get_json()["fields"]["created"] == (
        "2026-11-27T12:23:21.000+0100"
    )


def test_v3_description_is_adf_and_v2_is_text(jira: JiraHarness) -> None:
    v2 = jira.get("/rest/api/2/issue/HELP-1?fields=description").get_json()["fields"]
    v3 = jira.get("/rest/api/3/issue/HELP-1?fields=description").get_json()["fields"]
    assert v2["description"].startswith("Every message bounces with:\n550 5.1.8")
    assert v3["description"]["type"] == "doc"
    assert v3["description"]["content"][0]["content"][0] == {
        "type": "text", "text": "Every message bounces with:"}


def test_labels_update_add_remove_bumps_updated_and_changelog(jira: JiraHarness) -> None:
    before = jira.state.issue("HELP-1").updated
    jira.state.clock.advance(timedelta(minutes=5))
    response = jira.put("/rest/api/3/issue/HELP-1", json={"update": {"labels": [
        {"add": "mailunblock-processing"}, {"remove": "mail-blocked"}]}})
    assert response.status_code == 204
    issue = jira.state.issue("HELP-1")
    assert issue.labels == ["mailunblock-processing"]
    assert issue.updated == jira.state.clock.now() > before
    item = issue.changelog[-1].items[0]
    assert (item["field"], item["fromString"], item["toString"]) == (
        "labels", "mail-blocked", "mailunblock-processing")


def test_labels_set_through_fields(jira: JiraHarness) -> None:
    response = jira.put("/rest/api/2/issue/HELP-2", json={"fields": {"labels": ["a", "b"]}})
    assert response.status_code == 204
    assert jira.state.issue("HELP-2").labels == ["a", "b"]


def test_label_with_space_is_rejected(jira: JiraHarness) -> None:
    response = jira.put("/rest/api/3/issue/HELP-1",
                        json={"update": {"labels": [{"add": "mail blocked"}]}})
    assert response.status_code == 400
    assert response.get_json()["errors"] == {
        "labels": "The label 'mail blocked' contains spaces which is invalid."}
    assert jira.state.issue("HELP-1").labels == ["mail-blocked"]


def test_unknown_field_cannot_be_set(jira: JiraHarness) -> None:
    response = jira.put("/rest/api/3/issue/HELP-1", json={"fields": {"priority": {"id": "1"}}})
    assert response.status_code == 400
    assert "priority" in response.get_json()["errors"]


# ---------------------------------------------------------------- comments


def test_public_comment_is_emailed_to_reporter(jira: JiraHarness) -> None:
    response = jira.post("/rest/api/2/issue/HELP-1/comment", json={"body": "We are on it."})
    body = response.get_json()
    assert response.status_code == 201
    assert body["jsdPublic"] is True
    assert body["author"]["emailAddress"] == BOT_EMAIL
    assert body["body"] == "We are on it."
    [mail] = jira.state.notifications("HELP-1")
    assert (mail.to, mail.comment_id, mail.locale) == ("adele.vance@contoso.com", body["id"],
                                                       "en_US")
    assert "We are on it." in mail.body


def test_comment_restricted_to_group_is_not_emailed(jira: JiraHarness) -> None:
    response = jira.post("/rest/api/2/issue/HELP-1/comment", json={
        "body": "agents only", "visibility": {"type": "group", "value": "helpdesk-agents"}})
    assert response.status_code == 201
    assert response.get_json()["visibility"]["value"] == "helpdesk-agents"
    assert jira.state.notifications("HELP-1") == []
    assert jira.state.comments("HELP-1")[0].visibility is not None


def test_comment_restricted_to_role_by_identifier(jira: JiraHarness) -> None:
    response = jira.post("/rest/api/2/issue/HELP-1/comment", json={
        "body": "team only", "visibility": {"type": "role", "identifier": "Service Desk Team"}})
    assert response.status_code == 201
    assert response.get_json()["visibility"]["type"] == "role"
    assert jira.state.notifications("HELP-1") == []


def test_visibility_group_author_is_not_in(jira: JiraHarness) -> None:
    response = jira.post("/rest/api/2/issue/HELP-1/comment", json={
        "body": "x", "visibility": {"type": "group", "value": "jira-administrators"}})
    assert response.status_code == 400
    assert response.get_json()["errors"]["commentLevel"] == (
        "You are currently not a member of the group: jira-administrators.")


def test_sd_public_comment_property_makes_comment_internal(jira: JiraHarness) -> None:
    response = jira.post("/rest/api/2/issue/HELP-1/comment", json={
        "body": "internal note",
        "properties": [{"key": "sd.public.comment", "value": {"internal": True}}]})
    assert response.status_code == 201
    assert response.get_json()["jsdPublic"] is False
    assert jira.state.notifications("HELP-1") == []
    [comment] = jira.state.comments("HELP-1")
    assert comment.internal is True
    listed = jira.get("/rest/api/2/issue/HELP-1/comment?expand=properties").get_json()
    assert listed["total"] == 1
    assert "properties" not in listed["comments"][0]  # Cloud: expand accepts renderedBody only
    prop = jira.get(f"/rest/api/2/comment/{comment.id}/properties/sd.public.comment").get_json()
    assert prop == {"key": "sd.public.comment", "value": {"internal": True}}


def test_marking_internal_after_posting_is_too_late_for_the_email(jira: JiraHarness) -> None:
    comment_id = jira.post("/rest/api/2/issue/HELP-1/comment",
                           json={"body": "oops"}).get_json()["id"]
    response = jira.put(f"/rest/api/2/comment/{comment_id}/properties/sd.public.comment",
                        json={"internal": True})
    assert response.status_code == 201
    assert jira.state.comments("HELP-1")[0].internal is True
    assert len(jira.state.notifications("HELP-1")) == 1
    prop = jira.get(f"/rest/api/2/comment/{comment_id}/properties/sd.public.comment")
    assert prop.get_json() == {"key": "sd.public.comment", "value": {"internal": True}}


def test_reporter_does_not_see_internal_or_restricted_comments(jira: JiraHarness) -> None:
    jira.state.add_comment("HELP-1", "alice", "public answer")
    jira.state.add_comment("HELP-1", "alice", "internal", internal=True)
    jira.state.add_comment("HELP-1", "alice", "group",
                           visibility={"type": "group", "value": "helpdesk-agents"})
    jira.state.set_api_token("adele.vance@contoso.com", "adele-token")
    adele = jira.as_user(basic("adele.vance@contoso.com", "adele-token"))
    seen = adele.get("/rest/api/2/issue/HELP-1/comment").get_json()
    assert [c["body"] for c in seen["comments"]] == ["public answer"]
    assert jira.get("/rest/api/2/issue/HELP-1/comment").get_json()["total"] == 3


def test_v3_comment_needs_adf_and_returns_adf(jira: JiraHarness) -> None:
    rejected = jira.post("/rest/api/3/issue/HELP-1/comment", json={"body": "plain"})
    assert rejected.status_code == 400
    assert "Atlassian Document" in rejected.get_json()["errors"]["comment"]
    adf = {"type": "doc", "version": 1, "content": [
        {"type": "paragraph", "content": [{"type": "text", "text": "Line one"},
                                          {"type": "hardBreak"},
                                          {"type": "text", "text": "Line two"}]}]}
    created = jira.post("/rest/api/3/issue/HELP-1/comment", json={"body": adf})
    assert created.status_code == 201
    assert created.get_json()["body"] == adf
    assert jira.state.comments("HELP-1")[0].body == "Line one\nLine two"
    v2 = jira.get(f"/rest/api/2/issue/HELP-1/comment/{created.get_json()['id']}").get_json()
    assert v2["body"] == "Line one\nLine two"


def test_v2_comment_body_must_be_a_string(jira: JiraHarness) -> None:
    response = jira.post("/rest/api/2/issue/HELP-1/comment",
                         json={"body": {"type": "doc", "version": 1, "content": []}})
    assert response.status_code == 400


def test_comment_list_paging_and_order(jira: JiraHarness) -> None:
    for text in ("one", "two", "three"):
        jira.state.add_comment("HELP-1", "alice", text)
    page = jira.get("/rest/api/2/issue/HELP-1/comment",
                    query_string={"startAt": 1, "maxResults": 1, "orderBy": "-created"}).get_json()
    assert (page["startAt"], page["maxResults"], page["total"]) == (1, 1, 3)
    assert [c["body"] for c in page["comments"]] == ["two"]
    bad = jira.get("/rest/api/2/issue/HELP-1/comment", query_string={"orderBy": "updated"})
    assert bad.status_code == 400


def test_edit_comment_and_comment_bumps_updated(jira: JiraHarness) -> None:
    jira.state.clock.advance(timedelta(minutes=3))
    comment_id = jira.post("/rest/api/2/issue/HELP-1/comment", json={"body": "v1"}).get_json()["id"]
    assert jira.state.issue("HELP-1").updated == jira.state.clock.now()
    response = jira.put(f"/rest/api/2/issue/HELP-1/comment/{comment_id}", json={"body": "v2"})
    assert response.status_code == 200
    assert response.get_json()["body"] == "v2"


# ---------------------------------------------------------------- Jira Service Management


def test_servicedesk_internal_comment_is_not_emailed(jira: JiraHarness) -> None:
    response = jira.post("/rest/servicedeskapi/request/HELP-2/comment",
                         json={"body": "note interne", "public": False})
    body = response.get_json()
    assert response.status_code == 201
    assert body["public"] is False
    assert set(body["created"]) == {"iso8601", "jira", "friendly", "epochMillis"}
    assert jira.state.comments("HELP-2")[0].internal is True
    assert jira.state.notifications("HELP-2") == []
    public = jira.post("/rest/servicedeskapi/request/HELP-2/comment",
                       json={"body": "Bonjour", "public": True})
    assert public.status_code == 201
    [mail] = jira.state.notifications("HELP-2")
    assert (mail.to, mail.locale) == ("chloe.dupont@fabrikam.fr", "fr_FR")


def test_servicedesk_approvals_empty_page(jira: JiraHarness) -> None:
    body = jira.get("/rest/servicedeskapi/request/HELP-1/approval").get_json()
    assert body["values"] == []
    assert body["isLastPage"] is True
    missing = jira.get("/rest/servicedeskapi/request/HELP-99/approval")
    assert missing.status_code == 404
    assert "errorMessage" in missing.get_json()


# ---------------------------------------------------------------- properties


def test_issue_properties_roundtrip(jira: JiraHarness) -> None:
    path = "/rest/api/3/issue/HELP-1/properties/mailunblock.state"
    assert jira.get(path).status_code == 404
    assert jira.put(path, json={"state": "approved", "attempt": 1}).status_code == 201
    assert jira.put(path, json={"state": "done", "attempt": 1}).status_code == 200
    assert jira.get(path).get_json() == {"key": "mailunblock.state",
                                         "value": {"state": "done", "attempt": 1}}
    listed = jira.get("/rest/api/3/issue/HELP-1/properties").get_json()
    assert [k["key"] for k in listed["keys"]] == ["mailunblock.state"]
    assert jira.state.properties("HELP-1") == {"mailunblock.state": {"state": "done",
                                                                     "attempt": 1}}
    found = search(jira, "key = HELP-1", properties=["mailunblock.state"])["issues"][0]
    assert found["properties"] == {"mailunblock.state": {"state": "done", "attempt": 1}}
    assert jira.delete(path).status_code == 204
    assert jira.get(path).status_code == 404


# ---------------------------------------------------------------- transitions and links


def test_transitions_listed_and_performed_with_changelog(jira: JiraHarness) -> None:
    listed = jira.get("/rest/api/3/issue/HELP-1/transitions").get_json()["transitions"]
    names = {t["name"]: t for t in listed}
    assert {"Start progress", "Escalate", "Resolve"} <= set(names)
    assert "Reopen" not in names
    start = names["Start progress"]
    assert start["to"]["statusCategory"]["key"] == "indeterminate"
    response = jira.post("/rest/api/3/issue/HELP-1/transitions",
                         json={"transition": {"id": start["id"]}})
    assert response.status_code == 204
    issue = jira.get("/rest/api/3/issue/HELP-1?expand=changelog&fields=status").get_json()
    assert issue["fields"]["status"]["name"] == "In Progress"
    history = issue["changelog"]["histories"][-1]
    assert history["author"]["emailAddress"] == BOT_EMAIL
    assert history["items"][0]["fromString"] == "Waiting for support"
    assert history["items"][0]["toString"] == "In Progress"


def test_resolving_sets_resolution_and_done_category(jira: JiraHarness) -> None:
    jira.state.transition("HELP-1", "Resolve", "alice")
    fields = jira.get("/rest/api/2/issue/HELP-1?fields=status,resolution").get_json()["fields"]
    assert fields["status"]["statusCategory"]["key"] == "done"
    assert fields["resolution"]["name"] == "Done"
    assert jira.state.issue("HELP-1").changelog[-1].author == jira.state.user("alice").account_id


@pytest.mark.parametrize("transition_id", ["61", "999"])
def test_unavailable_transition_is_400(jira: JiraHarness, transition_id: str) -> None:
    response = jira.post("/rest/api/3/issue/HELP-1/transitions",
                         json={"transition": {"id": transition_id}})
    assert response.status_code == 400
    assert response.get_json()["errorMessages"] == [
        f"Transition id '{transition_id}' is not valid for this issue."]
    assert jira.state.issue("HELP-1").status == "Waiting for support"


def test_issue_link_visible_on_both_issues(jira: JiraHarness) -> None:
    response = jira.post("/rest/api/3/issueLink", json={
        "type": {"name": "Relates"}, "inwardIssue": {"key": "HELP-3"},
        "outwardIssue": {"key": "HELP-1"}})
    assert response.status_code == 201
    one = jira.get("/rest/api/3/issue/HELP-1?fields=issuelinks").get_json()["fields"]
    three = jira.get("/rest/api/3/issue/HELP-3?fields=issuelinks").get_json()["fields"]
    assert one["issuelinks"][0]["inwardIssue"]["key"] == "HELP-3"
    assert three["issuelinks"][0]["outwardIssue"]["key"] == "HELP-1"
    unknown = jira.post("/rest/api/3/issueLink", json={
        "type": {"name": "Clones"}, "inwardIssue": {"key": "HELP-3"},
        "outwardIssue": {"key": "HELP-1"}})
    assert unknown.status_code == 404


def test_issue_link_types(jira: JiraHarness) -> None:
    types = jira.get("/rest/api/2/issueLinkType").get_json()["issueLinkTypes"]
    assert {"Relates", "Duplicate", "Blocks"} == {t["name"] for t in types}


# ---------------------------------------------------------------- users, groups, roles, fields


def test_user_lookup_has_locale_and_time_zone(jira: JiraHarness) -> None:
    chloe = jira.state.user("chloe.dupont@fabrikam.fr")
    body = jira.get("/rest/api/3/user", query_string={"accountId": chloe.account_id}).get_json()
    assert (body["locale"], body["timeZone"], body["emailAddress"]) == (
        "fr_FR", "Europe/Paris", "chloe.dupont@fabrikam.fr")
    assert jira.get("/rest/api/3/user", query_string={"accountId": "nope"}).status_code == 404


def test_user_groups_and_group_members(jira: JiraHarness) -> None:
    alice = jira.state.user("alice")
    groups = jira.get("/rest/api/3/user/groups", query_string={"accountId": alice.account_id})
    assert [g["name"] for g in groups.get_json()] == ["helpdesk-agents"]
    page = jira.get("/rest/api/3/group/member",
                    query_string={"groupname": "helpdesk-agents", "maxResults": 2}).get_json()
    assert (page["total"], page["isLast"], len(page["values"])) == (3, False, 2)
    assert "nextPage" in page
    names = {v["displayName"] for v in page["values"]}
    assert names <= {"Alice Martin", "Bob Nguyen", "mailunblock (bot)"}
    assert "Mallory Stone" not in names


def test_project_roles(jira: JiraHarness) -> None:
    roles = jira.get("/rest/api/3/project/HELP/role").get_json()
    assert roles["Service Desk Team"].endswith("/rest/api/3/project/10000/role/10100")
    team = jira.get("/rest/api/3/project/HELP/role/10100").get_json()
    actor_types = {a["type"] for a in team["actors"]}
    assert actor_types == {"atlassian-user-role-actor", "atlassian-group-role-actor"}


def test_field_list_has_affected_account(jira: JiraHarness) -> None:
    fields = jira.get("/rest/api/3/field").get_json()
    custom = next(f for f in fields if f["id"] == "customfield_10050")
    assert (custom["name"], custom["custom"]) == ("Affected account", True)


def test_summary_and_affected_account_edits_are_in_the_changelog(jira: JiraHarness) -> None:
    response = jira.put("/rest/api/3/issue/HELP-3", json={"fields": {
        "summary": "Lidia blocked", "customfield_10050": "lidia@contoso.com"}})
    assert response.status_code == 204
    issue = jira.state.issue("HELP-3")
    assert (issue.summary, issue.custom["customfield_10050"]) == ("Lidia blocked",
                                                                  "lidia@contoso.com")
    fields = {item["fieldId"] for item in issue.changelog[-1].items}
    assert fields == {"summary", "customfield_10050"}


def test_delete_comment(jira: JiraHarness) -> None:
    comment_id = jira.state.add_comment("HELP-1", "alice", "bye")
    assert jira.delete(f"/rest/api/2/issue/HELP-1/comment/{comment_id}").status_code == 204
    assert jira.state.comments("HELP-1") == []
    assert jira.delete(f"/rest/api/2/issue/HELP-1/comment/{comment_id}").status_code == 404


def test_every_change_moves_updated_even_while_the_clock_stands_still(jira: JiraHarness) -> None:
    def updated() -> str:
        fields = jira.get("/rest/api/2/issue/HELP-1", query_string={"fields": "updated"}).get_json()["fields"]
        return str(fields["updated"])

    seen = [updated()]
    comment = jira.post("/rest/api/2/issue/HELP-1/comment", json={"body": "first"})
    assert comment.status_code == 201
    seen.append(updated())
    jira.post("/rest/api/2/issue/HELP-1/comment", json={"body": "second"})
    seen.append(updated())
    jira.put("/rest/api/2/issue/HELP-1", json={"update": {"labels": [{"add": "touched"}]}})
    seen.append(updated())
    assert seen == sorted(set(seen)) and len(seen) == 4  # each change later than the one before
    assert all(JIRA_TIME.match(value) for value in seen)
