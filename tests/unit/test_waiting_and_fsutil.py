"""The foundation's polling loop and atomic file replacement."""
from __future__ import annotations

import os
import stat
import time

import pytest

from ragops.fsutil import write_atomic
from ragops.waiting import wait_until


def test_wait_until_returns_the_first_truthy_answer_or_the_last_one_at_the_deadline():
    answers = iter([None, 0, "leader-1"])
    assert wait_until(lambda: next(answers), 5, interval=0.01) == "leader-1"
    calls = []
    started = time.monotonic()
    assert wait_until(lambda: calls.append(1), 0.1, interval=0.02) is None
    assert 0.1 <= time.monotonic() - started < 2 and len(calls) >= 2   # asked again at the deadline


def test_write_atomic_replaces_whole_with_the_mode_asked_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "sub" / "weights.yml"
    write_atomic(target, "old\n", mode=0o644)
    write_atomic(target, "new\n")
    assert target.read_text() == "new\n" and stat.S_IMODE(target.stat().st_mode) == 0o600
    write_atomic(target, "x", mode=0o644)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert os.listdir(target.parent) == ["weights.yml"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temp_file(tmp_path):
    target = tmp_path / "weights.yml"
    write_atomic(target, "old\n")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(target, "bad \udcff surrogate")
    assert target.read_text() == "old\n" and os.listdir(tmp_path) == ["weights.yml"]
