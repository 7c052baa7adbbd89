"""Jira Cloud / Data Center and Jira Service Management emulator (EMULATOR CODE)."""

from mailunblock.sandbox.jira.app import create_jira_app
from mailunblock.sandbox.jira.seed import demo_scenario
from mailunblock.sandbox.jira.state import JiraApiError, JiraState, Notification

__all__ = ["JiraApiError", "JiraState", "Notification", "create_jira_app", "demo_scenario"]
