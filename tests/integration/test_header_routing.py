"""Routing for people on HAProxy (router.kind haproxy, Debian 2.6): during a canary `X-Canary: always`
reaches the canary and `never` the stable color whatever the weights, and deploy.sticky keeps a client
on the version it first got until that version's weight is 0; real haproxy, real colors."""
from __future__ import annotations

import shutil

import httpx
import pytest
import yaml

from ragops.routing.haproxy import BACKEND, PEOPLE_MAP, SOCKET_FILE, runtime
from tests.conftest import need
from tests.integration.conftest import running_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def haproxy_stack():
    need(shutil.which("haproxy") is not None, "the haproxy binary (apt-get install haproxy)")
    with running_stack("header", router_kind="haproxy") as stack:
        yield stack


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


def set_sticky(stack, on: bool) -> None:
    """deploy.sticky in the stack's config file (each CLI run reads it; the next apply reloads haproxy)."""
    data = yaml.safe_load(stack.config_path.read_text())
    data["environments"]["test"].setdefault("deploy", {})["sticky"] = on
    stack.config_path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_sticky_sessions_on_haproxy_keep_a_client_on_its_version_until_its_weight_is_zero(haproxy_stack):
    stack = haproxy_stack
    set_sticky(stack, True)
    clients = [httpx.Client(base_url=stack.router_url, timeout=5) for _ in range(20)]
    try:
        paused = stack.cli("deploy", "--version", "v2", "--strategy", "canary", "--steps", "50,100",
                           "--step-pause", "2s", "--pause-at", "50", "--yes")
        assert paused.returncode == 0 and "paused at 50%" in paused.stderr, paused.stderr
        first = [client.get("/version").json()["version"] for client in clients]    # 20 fresh clients
        assert set(first) == {"v1", "v2"}, first
        for version in ("v1", "v2"):                  # a client of each side keeps its version
            client = clients[first.index(version)]
            assert {client.get("/version").json()["version"] for _ in range(50)} == {version}
        kept = clients[first.index("v1")]             # the header still picks a side over the cookie
        assert {kept.get("/version", headers={"X-Canary": "always"}).json()["version"] for _ in range(5)} == {"v2"}
        # the canary at weight 0 (as a rollback's switch does, its color still running): every client,
        # cookie or not, gets the stable version
        root = next(stack.state_dir.rglob(SOCKET_FILE)).parent
        canary = dict(line.split() for line in (root / PEOPLE_MAP).read_text().splitlines())["always"]
        assert runtime(root / SOCKET_FILE, f"set server {BACKEND}/{canary} weight 0").strip() == ""
        assert {client.get("/version").json()["version"] for client in clients for _ in range(3)} == {"v1"}
        assert {httpx.get(stack.router_url + "/version", timeout=5).json()["version"] for _ in range(10)} == {"v1"}
    finally:
        for client in clients:
            client.close()
        set_sticky(stack, False)
        stack.cli("abort", "--yes", check=True)
