"""Saves: one before each side effect holds its intent; confirmations ride on the next one (not timed)."""

from __future__ import annotations

from mailunblock.workflows.state import Stage

SIDE_EFFECTS = frozenset({"post_comment", "reset_password", "revoke_sessions", "unblock", "update_labels",
                          "link_issues", "transition"})
# Saves from first sight to the ETA comment: today's count. A change that saves more per ticket fails
# here and must say why (each save is a synchronous commit).
SAVES_TO_ETA = 7


def _record(world):
    """The labels of every boundary the fakes pass, in order."""
    labels: list[str] = []
    mark = world.boundaries.mark

    def recorded(label: str) -> None:
        labels.append(label)
        mark(label)

    world.boundaries.mark = recorded
    return labels


def test_every_side_effect_is_preceded_by_a_save_of_its_intent(world):
    labels = _record(world)
    pending_when_posted = _pending_when_posted(world)
    world.cycle()
    world.approve()
    world.clock.advance(hours=5)
    assert world.cycle().stage is Stage.RESOLVED
    saved, effects = False, 0
    for label in labels:
        when, _, what = label.partition(" ")
        if (when, what) == ("after", "save"):
            saved = True
        elif when == "before" and what in SIDE_EFFECTS - {"post_comment"}:
            assert saved, f"{what} (side effect {effects + 1}) without a save since the previous side effect"
            saved, effects = False, effects + 1
        elif (when, what) == ("before", "post_comment"):  # its intent is checked below
            saved, effects = False, effects + 1
    assert effects >= 8  # ack, plan, reset, revoke, unblock, summary, ETA, and closing the ticket
    # A comment's intent is its name pending in the stored state: one save may hold several.
    assert [name for name, _ in pending_when_posted] == ["ack", "plan", "summary", "eta", "resolved"]
    assert all(pending for _, pending in pending_when_posted), pending_when_posted


def _pending_when_posted(world):
    """(name, whether the stored state had it pending) for each comment, as it is posted."""
    seen: list[tuple[str, bool]] = []
    post = world.tickets.post_comment

    def posting(issue_key, body, *, internal, marker):
        name = marker.rpartition(":")[2]
        seen.append((name, name in world.repository.saved.get(issue_key, {}).get("pending", ())))
        return post(issue_key, body, internal=internal, marker=marker)

    world.tickets.post_comment = posting
    return seen


def test_a_remediation_saves_once_per_side_effect_plus_the_end_of_each_pass(world):
    world.cycle()
    state = world.approve()
    assert state.stage is Stage.WAITING_FOR_SEND and "eta" in state.posted
    assert world.repository.saves <= SAVES_TO_ETA, world.repository.saves


def test_comments_announced_together_are_not_looked_up_in_a_clean_run(world):
    looked_up: list[str] = []
    find = world.tickets.find_comment

    def finding(issue_key, marker):
        looked_up.append(marker)
        return find(issue_key, marker)

    world.tickets.find_comment = finding
    world.cycle()
    assert world.approve().stage is Stage.WAITING_FOR_SEND
    assert looked_up == []  # pending only because this pass announced them: known not posted yet
