"""Issue 24: the operations lock (one lease for every command that changes the environment), the
deploy lock's TTL bounds, and rollbacks that cannot undo each other."""
from __future__ import annotations

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
