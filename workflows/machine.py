"""The remediation as data: each stage, the step that runs in it, where it may lead and what it is doing.

Steps decide and return a move (``workflows.moves``); only this module moves the state, and only along
the declared edges. Adding a step is one entry here plus its module, templates, port method and tests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mailunblock.workflows import approval, mailbox, password, restricted, sessions, triage, verify
from mailunblock.workflows.context import StepContext
from mailunblock.workflows.moves import Advance, Finish, Move, Next
from mailunblock.workflows.state import TERMINAL_STAGES, Stage
from mailunblock.workflows.vocabulary import Activity

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageSpec:
    """One stage of the machine."""

    step: Callable[[StepContext], Move]
    activity: Activity
    next: Stage | None  # where ``Next`` leads: the stage after this one when its step succeeds
    branches: frozenset[Stage]  # the other stages the step may choose (``Advance`` / ``Finish``)
    # After the first side effect on the account: a change to the ticket no longer stops the remediation.
    remediating: bool = False

    @property
    def leads_to(self) -> frozenset[Stage]:
        """Every stage this one may lead to."""
        return self.branches | ({self.next} if self.next else set())


def _spec(step: Callable[[StepContext], Move], activity: Activity, next: Stage | None, *branches: Stage,
          remediating: bool = False) -> StageSpec:
    return StageSpec(step, activity, next, frozenset(branches), remediating)


S = Stage
# stage: its step, what it is doing, the next stage, the other stages it may choose.
MACHINE: Mapping[Stage, StageSpec] = {
    S.NEW: _spec(triage.run, Activity.TRIAGE, None, S.REFUSED, S.AWAITING_ACCOUNT, S.AWAITING_APPROVAL),
    S.AWAITING_ACCOUNT: _spec(approval.choose, Activity.APPROVAL, None, S.NEW, S.REJECTED, S.CANCELLED),
    S.AWAITING_APPROVAL: _spec(approval.run, Activity.APPROVAL, None,
                               S.APPROVED, S.NOT_LISTED, S.REJECTED, S.CANCELLED, S.NEW),
    S.APPROVED: _spec(password.run, Activity.PASSWORD, S.PASSWORD_RESET, S.REJECTED, S.NEW),
    S.PASSWORD_RESET: _spec(sessions.run, Activity.SESSIONS, S.SESSIONS_REVOKED, remediating=True),
    S.SESSIONS_REVOKED: _spec(mailbox.run, Activity.MAILBOX, S.MAILBOX_CHECKED, remediating=True),
    S.MAILBOX_CHECKED: _spec(restricted.check, Activity.LIST, S.LIST_CHECKED, remediating=True),
    S.LIST_CHECKED: _spec(restricted.unblock, Activity.UNBLOCK, S.WAITING_FOR_SEND,
                          S.NOT_LISTED, S.ESCALATED, remediating=True),
    S.WAITING_FOR_SEND: _spec(verify.run, Activity.VERIFY, None, S.RESOLVED, S.ESCALATED, remediating=True),
}

# Moves the engine itself makes from any running stage: a person takes over (a permanent failure, a
# stage stuck too long, the tenant gone), or the ticket was closed or untagged.
ENGINE_MOVES = frozenset({Stage.ESCALATED, Stage.CANCELLED})
# Ending a not-listed answer nobody needs to approve when the ticket is closed or untagged.
ENGINE_MOVES_FROM: Mapping[Stage, frozenset[Stage]] = {Stage.AWAITING_APPROVAL: frozenset({Stage.NOT_LISTED})}


class IllegalMove(RuntimeError):
    """A step or the engine tried a move the machine does not declare (a bug, never a ticket's fault)."""


def activity(stage: Stage) -> Activity:
    """What the ticket is doing in ``stage`` (updating the ticket once the stage is final)."""
    spec = MACHINE.get(stage)
    return spec.activity if spec else Activity.CLOSING


def remediating(stage: Stage) -> bool:
    """Whether ``stage`` comes after the first side effect on the account."""
    spec = MACHINE.get(stage)
    return spec is not None and spec.remediating


def allowed(source: Stage, target: Stage, *, by_engine: bool = False) -> bool:
    """Whether the machine declares the move from ``source`` to ``target``."""
    if source in TERMINAL_STAGES:
        return False
    if by_engine:
        return target in ENGINE_MOVES or target in ENGINE_MOVES_FROM.get(source, frozenset())
    return target in MACHINE[source].leads_to


def resolve(source: Stage, move: Next | Advance | Finish) -> Advance | Finish:
    """``Next`` as the move to the stage the machine declares after ``source``."""
    if not isinstance(move, Next):
        return move
    target = MACHINE[source].next if source in MACHINE else None
    if target is None:
        raise IllegalMove(f"{source} declares no next stage")
    return Advance(target)


def apply(ctx: StepContext, move: Next | Advance | Finish, *, by_engine: bool = False) -> None:
    """Make ``move`` on the ticket: record the stage (and the closing actions of a final one), then save."""
    source = ctx.state.stage
    move = resolve(source, move)
    if not allowed(source, move.stage, by_engine=by_engine):
        raise IllegalMove(f"{ctx.state.issue_key}: {source} -> {move.stage} is not a declared move")
    if isinstance(move, Finish):
        if move.stage not in TERMINAL_STAGES:
            raise IllegalMove(f"{ctx.state.issue_key}: {move.stage} is not a final stage")
        ctx.finish(move.stage, move.actions)
    else:
        if move.stage in TERMINAL_STAGES:
            raise IllegalMove(f"{ctx.state.issue_key}: {move.stage} is final: it needs its closing actions")
        ctx.enter(move.stage)


def advance(ctx: StepContext) -> None:
    """Run the step of each stage in turn until one waits or the stage is final."""
    state = ctx.state
    while state.stage not in TERMINAL_STAGES:
        move = MACHINE[state.stage].step(ctx)
        if move is None:
            return
        apply(ctx, move)
