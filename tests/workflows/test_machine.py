"""The machine table: every stage reachable, every running stage has a way out, every declared move used."""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap
from collections import deque
from types import ModuleType

import pytest
from mailunblock.workflows import approval, engine, machine, triage
from mailunblock.workflows.context import StepContext
from mailunblock.workflows.machine import ENGINE_MOVES, ENGINE_MOVES_FROM, MACHINE, IllegalMove
from mailunblock.workflows.moves import Advance, Finish, Next
from mailunblock.workflows.state import TERMINAL_STAGES, Stage
from mailunblock.workflows.tenants import TenantRegistry


def _successors(stage: Stage) -> set[Stage]:
    if stage in TERMINAL_STAGES:
        return set()
    return {*MACHINE[stage].leads_to, *ENGINE_MOVES, *ENGINE_MOVES_FROM.get(stage, ())}


def test_every_stage_is_reachable_from_new() -> None:
    seen, queue = {Stage.NEW}, deque([Stage.NEW])
    while queue:
        for nxt in _successors(queue.popleft()) - seen:
            seen.add(nxt)
            queue.append(nxt)
    assert seen == set(Stage)


def test_every_running_stage_has_a_step_and_a_way_out() -> None:
    assert set(MACHINE) == set(Stage) - TERMINAL_STAGES
    for stage, spec in MACHINE.items():
        assert spec.leads_to, stage
        assert stage not in spec.leads_to, f"{stage} leads to itself: a step that waits returns None"


def test_every_running_stage_can_end_without_the_engine_stepping_in() -> None:
    for start in MACHINE:
        seen, queue = {start}, deque([start])
        while queue:
            for nxt in MACHINE[queue.popleft()].leads_to - seen:
                seen.add(nxt)
                if nxt not in TERMINAL_STAGES:
                    queue.append(nxt)
        assert seen & TERMINAL_STAGES, start


def _calls_next(functions: list[object]) -> bool:
    """Whether these functions return ``Next()`` (go on to the stage the table names next)."""
    return any(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == Next.__name__
        for function in functions
        for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(function))))  # type: ignore[arg-type]
    )


def _moves_in(functions: list[object]) -> set[Stage]:
    """The stages named in ``Advance(Stage.X)`` / ``Finish(Stage.X, ...)`` in these functions' source."""
    found: set[Stage] = set()
    for function in functions:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))  # type: ignore[arg-type]
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in (Advance.__name__, Finish.__name__) and node.args):
                target = node.args[0]
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) \
                        and target.value.id == "Stage":
                    found.add(Stage[target.attr])
    return found


def _module_functions(module: ModuleType) -> list[object]:
    return [f for _, f in inspect.getmembers(module, inspect.isfunction) if f.__module__ == module.__name__]


# A step may hand a move to a helper of another module: approval asks triage to lapse the plan, the
# password step asks approval whether the approval still stands.
_BORROWED: dict[Stage, tuple[ModuleType, ...]] = {
    Stage.AWAITING_APPROVAL: (triage,),
    Stage.APPROVED: (approval, triage),
}


def _modules(stage: Stage) -> tuple[ModuleType, ...]:
    return (sys.modules[MACHINE[stage].step.__module__], *_BORROWED.get(stage, ()))


@pytest.mark.parametrize("stage", list(MACHINE), ids=str)
def test_every_declared_move_is_made_by_the_step(stage: Stage) -> None:
    spec = MACHINE[stage]
    functions = [f for module in _modules(stage) for f in _module_functions(module)]
    made = _moves_in(functions)
    assert spec.branches <= made, f"declared but never made: {spec.branches - made}"
    assert spec.next is None or _calls_next(functions), f"{stage} declares {spec.next} next but never goes on"
    assert spec.next not in spec.branches, "the next stage is reached with Next(), not by naming it"


def test_every_move_a_step_makes_is_declared() -> None:
    modules = {module for stage in MACHINE for module in _modules(stage)}
    for module in modules:
        declared = {s for stage in MACHINE if module in _modules(stage) for s in MACHINE[stage].branches}
        made = _moves_in(_module_functions(module))
        assert made <= declared, f"{module.__name__} makes undeclared moves: {made - declared}"
        if _calls_next(_module_functions(module)):
            assert any(MACHINE[s].next for s in MACHINE if sys.modules[MACHINE[s].step.__module__] is module), module


def test_linear_steps_do_not_name_their_successor() -> None:
    # Inserting a step after one of these is a change to the table, not to the step before it.
    for stage, spec in MACHINE.items():
        if spec.next is not None:
            own = _module_functions(sys.modules[spec.step.__module__])
            assert spec.next not in _moves_in(own), f"{stage}'s step names {spec.next}"


def test_engine_moves_are_made_by_the_engine() -> None:
    made = _moves_in([engine.RemediationEngine])
    assert made == {*ENGINE_MOVES, *(s for moves in ENGINE_MOVES_FROM.values() for s in moves)}


def test_an_undeclared_move_is_refused(world) -> None:  # type: ignore[no-untyped-def]
    state = world.cycle()
    assert state.stage is Stage.AWAITING_APPROVAL
    ctx = StepContext(world.policy, world.tickets, TenantRegistry([]), world.repository, world.vault,
                      world.clock, world.tickets.issue(), state, world.tickets)
    with pytest.raises(IllegalMove):
        machine.apply(ctx, Advance(Stage.WAITING_FOR_SEND))
    with pytest.raises(IllegalMove):
        machine.apply(ctx, Advance(Stage.REJECTED))  # final stages are entered with their closing actions
    with pytest.raises(IllegalMove):
        machine.apply(ctx, Next())  # waiting for a decision has no "next": its step chooses a branch
    assert world.state().stage is Stage.AWAITING_APPROVAL
