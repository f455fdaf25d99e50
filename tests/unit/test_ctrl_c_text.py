"""What a Ctrl-C of a deploy or rollback says (journaled as its `interrupted` step and printed)."""
from __future__ import annotations

from ragops.deploy.states import interrupted_text


def test_before_the_journal_nothing_changed():
    text = interrupted_text(None)
    assert "nothing was changed" in text and "lock is released" in text


def test_names_the_phase_the_change_cut_short_and_the_next_command():
    text = interrupted_text({"strategy": "blue-green", "phase": "switched",
                             "intent": {"action": "weights", "weights": {"green": 100}}})
    assert "at phase switched" in text and "during a weights change" in text
    assert "ragops deploy --resume" in text and "ragops abort" in text


def test_a_rollback_is_resumed_as_a_rollback():
    text = interrupted_text({"strategy": "rollback", "phase": "flip"})
    assert "at phase flip" in text and "during a" not in text
    assert "ragops rollback --resume" in text
