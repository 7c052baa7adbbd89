"""The Jira emulator's JQL subset: operators, dates, ordering and Jira's error messages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from jira_fixtures import JiraHarness, jira_fixture  # noqa: F401
from mailunblock.sandbox.jira.jql import JqlError, Query, parse


def found(jira: JiraHarness, jql: str) -> list[str]:
    response = jira.post("/rest/api/3/search/jql",
                         json={"jql": jql, "fields": ["key"], "maxResults": 100})
    assert response.status_code == 200, response.get_json()
    return [issue["key"] for issue in response.get_json()["issues"]]


def error(jira: JiraHarness, jql: str) -> str:
    response = jira.post("/rest/api/3/search/jql", json={"jql": jql})
    assert response.status_code == 400
    body = response.get_json()
    assert body["errors"] == {}
    [message] = body["errorMessages"]
    return str(message)


@pytest.mark.parametrize(
    ("jql", "expected"),
    [
        ("labels = mail-blocked ORDER BY key ASC", ["HELP-1", "HELP-2", "HELP-3", "HELP-4",
                                                    "HELP-5"]),
        ("labels != mail-blocked", ["HELP-6"]),
        ("labels in (hardware, nothing) ", ["HELP-6"]),
        ("labels not in (mail-blocked)", ["HELP-6"]),
        ('status = "In Progress"', ["HELP-6"]),
        ("status != 'In Progress' AND key in (HELP-1, HELP-6)", ["HELP-1"]),
        ("statusCategory = indeterminate", ["HELP-6"]),
        ('statusCategory in ("To Do") AND reporter = "megan.bowen@contoso.com"', ["HELP-3"]),
        ("project = HELP AND key = HELP-2", ["HELP-2"]),
        ("issuekey = HELP-4", ["HELP-4"]),
        ("reporter = 'someone@gmail.com'", ["HELP-5"]),
        ("assignee is EMPTY AND key = HELP-1", ["HELP-1"]),
        ("assignee is not EMPTY", []),
        ("labels is not EMPTY AND key = HELP-6", ["HELP-6"]),
        ('created < "2026-11-27 11:20" ORDER BY created ASC', ["HELP-6", "HELP-1"]),
        ("created >= -20m ORDER BY created DESC", ["HELP-5", "HELP-4"]),
        ("created > -1d AND created <= -25m ORDER BY key DESC", ["HELP-6", "HELP-3", "HELP-2",
                                                                 "HELP-1"]),
        ("key = HELP-1 OR key = HELP-2 ORDER BY key DESC", ["HELP-2", "HELP-1"]),
        ("(key = HELP-1 OR key = HELP-2) AND NOT labels = hardware ORDER BY key", ["HELP-1",
                                                                                   "HELP-2"]),
        ("project = HELP AND NOT (labels = mail-blocked) ", ["HELP-6"]),
        ("key in (HELP-1, HELP-2) && labels = mail-blocked || key = HELP-6 ORDER BY key",
         ["HELP-1", "HELP-2", "HELP-6"]),
        ('summary ~ "send" ORDER BY key', ["HELP-1", "HELP-5"]),
        ("reporter in membersOf('helpdesk-agents')", []),
    ],
)
def test_operators(jira: JiraHarness, jql: str, expected: list[str]) -> None:
    keys = found(jira, jql)
    assert keys == expected if "ORDER BY" in jql.upper() else sorted(keys) == sorted(expected)


def test_not_equal_does_not_match_empty_fields(jira: JiraHarness) -> None:
    key = jira.state.create_issue("no labels", "adele.vance@contoso.com")
    assert key not in found(jira, "labels != mail-blocked")
    assert key in found(jira, "labels is EMPTY")


def test_updated_follows_writes_on_the_sandbox_clock(jira: JiraHarness) -> None:
    assert found(jira, "updated > -5m") == []
    jira.state.clock.advance(timedelta(hours=2))
    jira.state.add_comment("HELP-4", "alice", "looking")
    assert found(jira, "updated > -5m") == ["HELP-4"]


def test_absolute_dates_use_the_searching_users_time_zone(jira: JiraHarness) -> None:
    # HELP-5 was created at 11:38 UTC, which is 12:38 in Paris.
    jql = 'created >= "2026-11-27 12:00"'
    assert "HELP-5" not in found(jira, jql)  # the bot's zone is London (UTC+0 in November)
    jira.state.user("mailunblock").time_zone = "Europe/Paris"
    assert "HELP-5" in found(jira, jql)


def test_current_user_function(jira: JiraHarness) -> None:
    jira.state.create_issue("bot's own", "mailunblock")
    assert found(jira, "reporter = currentUser()") == ["HELP-7"]


@pytest.mark.parametrize(
    ("jql", "message"),
    [
        ("foo = bar", "Field 'foo' does not exist or you do not have permission to view it."),
        ("status = Nope", "The value 'Nope' does not exist for the field 'status'."),
        ("project = NOPE", "The value 'NOPE' does not exist for the field 'project'."),
        ("key = HELP-99", "An issue with key 'HELP-99' does not exist for field 'key'."),
        ("labels > x", "The operator '>' is not supported by the 'labels' field."),
        ("reporter = 'nobody@x.example'",
         "The value 'nobody@x.example' does not exist for the field 'reporter'."),
        ("reporter = nobody@x", "Error in the JQL Query: The character '@' is a reserved JQL "
                                "character. You must enclose it in a string or use the escape "
                                "'\\u0040' instead. (line 1, character 18)"),
        ("labels = ", "Error in the JQL Query: Expecting either a value, list or function but got "
                      "the end of the query."),
        ("labels mail-blocked", "Error in the JQL Query: Expecting operator but got "
                                "'mail-blocked'. The valid operators are '=', '!=', '<', '>', "
                                "'<=', '>=', '~', '!~', 'IN', 'NOT IN', 'IS' and 'IS NOT'. "
                                "(line 1, character 8)"),
        ("labels = a b", "Error in the JQL Query: Expecting either 'OR' or 'AND' but got 'b'. "
                         "(line 1, character 12)"),
        ("(labels = a", "Error in the JQL Query: Expecting ')' before the end of the query."),
        ("labels = 'open", "Error in the JQL Query: The quoted string 'open' has not been "
                           "completed. (line 1, character 10)"),
        ("labels is a", "Error in the JQL Query: The operator 'IS' only supports the 'EMPTY' or "
                        "'null' values."),
        ("updated > yesterday", "Date value 'yesterday' for field 'updated' is invalid. Valid "
                                "formats include: 'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', "
                                "'yyyy/MM/dd', 'yyyy-MM-dd', or a period format e.g. '-5d', "
                                "'4w 2d'."),
        ("reporter = nobody()", "Unable to find JQL function 'nobody()'."),
        ("project = HELP ORDER BY foo", "Field 'foo' does not exist or you do not have "
                                        "permission to view it."),
        ("labels = AND", "Error in the JQL Query: Expecting either a value, list or function but "
                         "got 'AND'. You must surround 'AND' in quotation marks to use it as a "
                         "value. (line 1, character 10)"),
    ],
)
def test_errors_use_jira_messages(jira: JiraHarness, jql: str, message: str) -> None:
    assert error(jira, jql) == message


def test_parser_tree_and_boundedness() -> None:
    query = parse('labels = mail-blocked AND NOT status in ("Resolved", Closed) ORDER BY updated')
    assert isinstance(query, Query)
    assert query.bounded
    assert [k.field for k in query.order_by] == ["updated"]
    assert not parse("ORDER BY key DESC").bounded
    assert not parse("").bounded
    with pytest.raises(JqlError):
        parse("labels in mail-blocked")
