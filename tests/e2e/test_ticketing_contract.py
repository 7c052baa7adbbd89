"""The ticketing contract on Jira Cloud and Jira Data Center (the sandbox), through the runtime's backend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from e2e_world import World, is_internal
from mailunblock.plugin import backends
from mailunblock.plugin.services import remediation_policy
from mailunblock.workflows.policy import RemediationPolicy
from mailunblock.workflows.ports import TicketingBackend
from ticketing_contract import TicketingContract


@dataclass
class JiraHarness:
    """The sandbox Jira, with its agents (alice approves, mallory does not) and a reporter."""

    world: World
    approver: str = "alice"
    outsider: str = "mallory"
    reporter: str = "adele.vance@contoso.com"
    backend: TicketingBackend = field(init=False)
    policy: RemediationPolicy = field(init=False)

    def __post_init__(self) -> None:
        self.backend = self.world.runtime.tickets
        self.policy = remediation_policy(self.world.runtime.config)

    def new_ticket(self, *, tagged: bool = True) -> str:
        return self.world.new_ticket(self.reporter, labels=["mail-blocked"] if tagged else [])

    def comment(self, key: str, author: str, body: str) -> str:
        return self.world.comment(key, author, body)

    def hidden_from_reporter(self, key: str, comment_id: str) -> bool:
        return is_internal(next(c for c in self.world.comments(key) if c.id == comment_id))


@pytest.fixture(params=["cloud", "datacenter"])
def harness(request: pytest.FixtureRequest, make_world: Callable[..., World]) -> JiraHarness:
    return JiraHarness(make_world(jira_deployment=request.param))


class TestJiraTicketing(TicketingContract):
    """Jira, built in: Cloud and Data Center pass the same contract."""


def test_jira_is_the_built_in_backend_registered_by_entry_point() -> None:
    assert "jira" in backends.available()
    from mailunblock.plugin.services import build_jira

    assert backends.load("jira") is build_jira


def test_an_unknown_backend_is_a_one_line_configuration_error() -> None:
    from mailunblock.plugin.config import ConfigError

    with pytest.raises(ConfigError, match=r"ticketing backend 'servicenow' is not installed \(installed: .*jira"):
        backends.load("servicenow")
