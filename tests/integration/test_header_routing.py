"""Routing for people on HAProxy (router.kind haproxy, Debian 2.6): during a canary `X-Canary: always`
reaches the canary and `never` the stable color whatever the weights; real haproxy, real colors."""
from __future__ import annotations

import shutil

import httpx
import pytest

from tests.conftest import need, server_tmpdir
from tests.integration.conftest import _start_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def haproxy_stack():
    need(shutil.which("haproxy") is not None, "the haproxy binary (apt-get install haproxy)")
    directory = server_tmpdir("header")
    stack = _start_stack(directory, router_kind="haproxy")
    yield stack
    stack.cli("down", "--purge", "--yes", timeout=120)
    shutil.rmtree(directory, ignore_errors=True)


def versions(stack, n: int, headers: dict | None = None) -> dict[str, int]:
    seen: dict[str, int] = {}
    with httpx.Client(timeout=5) as client:
        for _ in range(n):
            version = client.get(stack.router_url + "/version", headers=headers).json()["version"]
            seen[version] = seen.get(version, 0) + 1
    return seen


def test_canary_header_on_haproxy_picks_a_side_whatever_the_weights(haproxy_stack):
    stack = haproxy_stack
    assert versions(stack, 10, {"X-Canary": "always"}) == {"v1": 10}      # one color: the header changes nothing
    paused = stack.cli("deploy", "--version", "v2", "--strategy", "canary", "--steps", "50,100",
                       "--step-pause", "2s", "--pause-at", "50", "--yes")
    assert paused.returncode == 0 and "paused at 50%" in paused.stderr, paused.stderr
    try:
        assert versions(stack, 30, {"X-Canary": "always"}) == {"v2": 30}
        assert versions(stack, 30, {"X-Canary": "never"}) == {"v1": 30}
        assert set(versions(stack, 40)) == {"v1", "v2"}                     # without it: the 50 % split
    finally:
        stack.cli("abort", "--yes", check=True)
    assert versions(stack, 10, {"X-Canary": "always"}) == {"v1": 10}      # canary gone: back to the one color
