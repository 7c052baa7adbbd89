"""What a step returns: the move it decided. The machine (``workflows.machine``) makes it."""

from __future__ import annotations

from dataclasses import dataclass

from mailunblock.workflows.state import Stage
from mailunblock.workflows.vocabulary import ClosingAction


@dataclass(frozen=True)
class Next:
    """The step did its work: go on to the stage the machine declares next (the step need not know it)."""


@dataclass(frozen=True)
class Advance:
    """Go to ``stage``, a branch the step chose (e.g. back to triage, or waiting for a decision)."""

    stage: Stage


@dataclass(frozen=True)
class Finish:
    """Enter the final ``stage``, with the ticket updates still to make (see ``workflows.closing``)."""

    stage: Stage
    actions: tuple[ClosingAction, ...] = ()


# None: the step is waiting (for a decision, a deadline or a retry); the ticket stays where it is.
Move = Next | Advance | Finish | None
