"""Issue 24: the operations lock (one lease for every command that changes the environment), the
deploy lock's TTL bounds, and rollbacks that cannot undo each other."""
from __future__ import annotations

import threading

import pytest
import yaml

from ragops.cli.main import main


def _config(tmp_path, **deploy) -> str:
    path = tmp_path / "ragops.yaml"
    path.write_text(yaml.safe_dump({"project": "p", "default_env": "local", "environments": {
        "local": {"state_dir": str(tmp_path / "state"), "deploy": deploy}}}))
    return str(path)


@pytest.mark.parametrize("ttl, expected", [("0s", "greater than or equal to 10"), ("9s", "greater than or equal to 10"),
                                           ("2h", "less than or equal to 3600")])
def test_lock_ttl_out_of_bounds_is_refused_at_validate(tmp_path, capsys, ttl, expected):
    assert main(["-c", _config(tmp_path, lock_ttl=ttl), "config", "validate"]) == 2
    err = capsys.readouterr().err
    assert "deploy.lock_ttl" in err and expected in err and "Traceback" not in err


def test_lock_ttl_in_bounds_is_valid(tmp_path, capsys):
    assert main(["-c", _config(tmp_path, lock_ttl="30s"), "config", "validate"]) == 0


class _Platform:
    """What the operations lock asks of a platform: where the lease and the journal live."""

    def __init__(self, tmp_path):
        from ragops.platforms.file_lock import FileLock

        self.backend = FileLock(tmp_path / "deploy" / "lock.json")
        self.dir = tmp_path / "deploy"

    def lock_backend(self):
        return self.backend

    def journal_dir(self):
        return self.dir


def _cfg(ttl: float = 30):
    from types import SimpleNamespace

    return SimpleNamespace(deploy=SimpleNamespace(lock_ttl=ttl))


def test_an_operation_refuses_a_live_holder_naming_it_and_nests_inside_its_own(tmp_path):
    from ragops.deploy.lock import DeployLock
    from ragops.deploy.oplock import operation
    from ragops.errors import LockHeld

    platform = _Platform(tmp_path)
    deploy = DeployLock(platform.backend, 30, "ragops deploy", deploy_id="d-1").acquire()
    with pytest.raises(LockHeld) as held, operation(_cfg(), "ragops down", platform=platform):
        pass
    assert held.value.exit_code == 4
    assert "operations lock is held by" in held.value.message and "`ragops deploy`" in held.value.message
    assert f"pid {__import__('os').getpid()}" in held.value.message
    deploy.release()
    with operation(_cfg(), "ragops drill run x", platform=platform) as outer:
        # a restore the drill runs (same process, same context) goes on under the drill's lease
        with operation(_cfg(), "ragops backup restore", platform=platform) as inner:
            assert inner is not None and inner.nested
        assert platform.backend.read()["token"] == outer.token, "the inner one did not release the outer lease"
        # an unrelated lock of this process (another thread's deploy) is still refused
        refused: list[BaseException] = []

        def other_thread() -> None:
            try:
                DeployLock(platform.backend, 30, "ragops deploy").acquire()
            except LockHeld as exc:
                refused.append(exc)
        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
        assert refused
    assert platform.backend.read() is None


def test_force_goes_past_a_live_holder_and_tells_it(tmp_path):
    from ragops.deploy.history import Journal
    from ragops.deploy.lock import DeployLock
    from ragops.deploy.oplock import FORCED, operation

    platform = _Platform(tmp_path)
    deploy = DeployLock(platform.backend, 30, "ragops deploy", deploy_id="d-1").acquire()
    said: list[str] = []
    with operation(_cfg(), "ragops down", force=True, platform=platform, progress=lambda e: said.append(str(e))) as held:
        assert held is None
    request = Journal(platform.dir).pending_request()
    assert request["action"] == FORCED and "ragops down --force" in request["by"]
    assert platform.backend.read()["token"] == deploy.token, "the holder's lease is left alone"
    deploy.release()


def test_a_paused_canary_does_not_block_down_but_blocks_a_drill(tmp_path):
    from ragops.deploy.lock import DeployLock
    from ragops.deploy.oplock import operation
    from ragops.errors import LockHeld

    platform = _Platform(tmp_path)
    DeployLock(platform.backend, 30, "ragops deploy", deploy_id="d-1").acquire().pause()
    with operation(_cfg(), "ragops down", past_dormant=True, platform=platform) as held:
        assert held is None
    assert platform.backend.read()["paused"], "the paused canary keeps its lease for promote/abort"
    with pytest.raises(LockHeld), operation(_cfg(), "ragops drill run x", platform=platform):
        pass


def test_a_brief_holder_is_waited_for(tmp_path):
    import threading
    import time

    from ragops.deploy.lock import DeployLock
    from ragops.deploy.oplock import operation

    platform = _Platform(tmp_path)
    switchover = DeployLock(platform.backend, 30, "ragops db switchover", brief=True).acquire()
    threading.Timer(0.5, switchover.release).start()
    started = time.monotonic()
    with operation(_cfg(), "ragops deploy", platform=platform) as held:
        assert held is not None and 0.4 < time.monotonic() - started < 5


def test_file_lock_has_one_winner_among_concurrent_takers(tmp_path):
    """Many processes' worth of threads creating and taking over one stale lock: one holder."""
    import threading

    from ragops.platforms.file_lock import FileLock

    path = tmp_path / "lock.json"
    FileLock(path).create({"token": "stale", "expires_at": 0})
    barrier = threading.Barrier(8)
    won: list[str] = []

    def take(i: int) -> None:
        backend = FileLock(path)
        barrier.wait()
        if backend.replace("stale", {"token": f"t{i}"}):
            won.append(f"t{i}")
    threads = [threading.Thread(target=take, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(won) == 1 and FileLock(path).read()["token"] == won[0]
