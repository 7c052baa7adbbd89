"""Who may approve: the approver policy, decided here over the ticketing system's membership port."""

from __future__ import annotations

from mailunblock.connectors.models import Person
from mailunblock.workflows.policy import RemediationPolicy
from mailunblock.workflows.ports import Membership


def is_approver(policy: RemediationPolicy, membership: Membership, person: Person) -> bool:
    """True when the person belongs to an approver group, or holds an approver role in a listed project."""
    groups = membership.groups_of(person)
    if {g.lower() for g in policy.approver_groups} & groups:
        return True
    roles = {r.lower() for r in policy.approver_roles}
    return bool(roles) and any(
        membership.in_any_role(person, project, roles, groups) for project in policy.approver_role_projects
    )
