"""`ragops deploy --strategy shadow`: option checks and the plan-time refusal of routers that cannot mirror."""
from __future__ import annotations

import pytest

from ragops.cli.main import main
from ragops.deploy.shadow import ShadowSettings, plan_lines
from ragops.devstack import write_local_config
from ragops.errors import UsageError


@pytest.mark.parametrize("argv,error", [
    (["--strategy", "shadow"], "error: --strategy shadow needs --duration"),
    (["--strategy", "shadow", "--duration", "2m", "--mirror-percent", "0"], "error: --mirror-percent: 0 is outside 1..100"),
    (["--strategy", "shadow", "--duration", "soon"], "error: --duration:"),
    (["--strategy", "shadow", "--duration", "2m", "--then", "canary"], "error: --then: expected blue-green"),
    (["--mirror-writes"], "error: --duration, --mirror-writes and --then apply to --strategy shadow only"),
    (["--strategy", "canary", "--duration", "2m"], "error: --duration, --mirror-writes and --then apply"),
])
def test_shadow_options_are_checked_before_anything(capsys, tmp_path, argv, error):
    config = write_local_config(tmp_path)
    assert main(["-c", str(config), "deploy", "--version", "v2", "--plan", *argv]) == 2
    assert capsys.readouterr().err.startswith(error)


def test_a_router_that_cannot_mirror_refuses_shadow_at_plan_time_naming_itself(capsys, tmp_path):
    config = write_local_config(tmp_path, router_kind="haproxy")
    assert main(["-c", str(config), "deploy", "--version", "v2", "--strategy", "shadow", "--duration", "2m",
                 "--plan"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "error: router haproxy: cannot mirror traffic, so it cannot run a shadow deploy"
    assert len(err) == 2 and err[1].startswith("hint:")


def test_help_says_why_writes_are_not_mirrored(capsys):
    main(["deploy", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--mirror-writes" in text and "a mirrored write is applied twice" in text
    assert "--strategy shadow --duration 2m" in text


def test_plan_lines_say_what_is_mirrored_and_what_happens_after():
    reads = plan_lines(ShadowSettings(duration=120, mirror_percent=20), "green", "blue", "v2", "error rate <= 5%")
    assert reads[0].startswith("mirror 20% of read requests (GET/HEAD) from blue to green")
    assert "writes are not mirrored" in reads[0]
    assert "for 2m" in reads[1] and reads[-1].startswith("stop green")
    deploy = plan_lines(ShadowSettings(duration=60, mirror_writes=True, then="blue-green"), "blue", "green", "v3", "")
    assert deploy[0].startswith("mirror 100% of all requests") and "writes" not in deploy[0]
    assert deploy[-1].startswith("then blue-green: switch the router to blue 100%")


def test_settings_round_trip_through_the_journal_record():
    settings = ShadowSettings(duration=30, mirror_percent=5, mirror_writes=True, then="blue-green").validate()
    assert ShadowSettings.of({"options": {"shadow": settings.as_dict()}}) == settings
    with pytest.raises(UsageError):
        ShadowSettings(duration=0).validate()
