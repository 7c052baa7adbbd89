"""The clients satisfy the workflow's ports: same method names and parameters."""

from __future__ import annotations

import inspect

import pytest
from mailunblock.connectors.exchange import ExchangeClient
from mailunblock.connectors.graph import GraphClient
from mailunblock.connectors.jira import JiraClient
from mailunblock.workflows.ports import Directory, Membership, RestrictedSenders, TicketingBackend, Tickets


@pytest.mark.parametrize(
    ("port", "client"),
    [(Tickets, JiraClient), (Membership, JiraClient), (TicketingBackend, JiraClient), (Directory, GraphClient),
     (RestrictedSenders, ExchangeClient)],
)
def test_client_matches_port(port: type, client: type) -> None:
    methods = [name for name, _ in inspect.getmembers(port, inspect.isfunction) if not name.startswith("_")]
    assert methods
    for name in methods:
        expected = inspect.signature(getattr(port, name))
        actual = inspect.signature(getattr(client, name))
        assert [(p.name, p.kind) for p in actual.parameters.values()] == [
            (p.name, p.kind) for p in expected.parameters.values()
        ], f"{client.__name__}.{name}"
        assert actual.return_annotation == expected.return_annotation, f"{client.__name__}.{name}"
