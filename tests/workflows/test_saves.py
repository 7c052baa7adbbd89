"""Saves: one before each side effect holds its intent; confirmations ride on the next one (not timed)."""

from __future__ import annotations

from mailunblock.workflows.state import Stage

SIDE_EFFECTS = frozenset({"post_comment", "reset_password", "revoke_sessions", "unblock", "update_labels",
                          "link_issues", "transition"})
# Saves from first sight to the ETA comment: today's count. A change that saves more per ticket fails
# here and must say why (each save is a synchronous commit).
SAVES_TO_ETA = 10


def _record(world):
    """The labels of every boundary the fakes pass, in order."""
    labels: list[str] = []
    mark = world.boundaries.mark

    def recorded(label: str) -> None:
        labels.append(label)
        mark(label)

    world.boundaries.mark = recorded
    return labels


def test_every_side_effect_is_preceded_by_a_save_since_the_previous_one(world):
    labels = _record(world)
    world.cycle()
    world.approve()
    world.clock.advance(hours=5)
    assert world.cycle().stage is Stage.RESOLVED
    saved, effects = False, 0
    for label in labels:
        when, _, what = label.partition(" ")
        if (when, what) == ("after", "save"):
            saved = True
        elif when == "before" and what in SIDE_EFFECTS:
            assert saved, f"{what} (side effect {effects + 1}) without a save since the previous side effect"
            saved, effects = False, effects + 1
    assert effects >= 8  # ack, plan, reset, revoke, unblock, summary, ETA, and closing the ticket


def test_a_remediation_saves_once_per_side_effect_plus_the_end_of_each_pass(world):
    world.cycle()
    state = world.approve()
    assert state.stage is Stage.WAITING_FOR_SEND and "eta" in state.posted
    assert world.repository.saves <= SAVES_TO_ETA, world.repository.saves
