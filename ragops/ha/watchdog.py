"""The fence for a dead or frozen Patroni: one small watchdog process per database node.

Patroni's own watchdog needs /dev/watchdog, which these machines do not have. Without it, a Patroni
that is killed or frozen (SIGSTOP, a stalled disk, an OOM-killed process) leaves its postmaster
running as an unsupervised primary while another node takes the expired key: two primaries. This
process asks its node's Patroni (`GET /liveness`, every POLL seconds) and, when it has not answered
for `fence_after(config)` seconds while the local postmaster is a primary, stops that postmaster:
fast shutdown (SIGINT: it still sends its WAL to the replicas), then immediate (SIGQUIT). The
margin is chosen so the old primary has stopped before the key can expire (the key lives `ttl`
seconds from the last renewal, which was at most `loop_wait` before Patroni's last answer).

What it cannot cover: anything that freezes this process together with Patroni (a whole-VM pause,
the machine's clock jumping), and a node on another machine (it only sees local processes).

`python -m ragops.ha.watchdog CONFIG ENV NODE`, started and supervised with the other HA processes.
Each fence is appended to <state_dir>/ha/fence.jsonl (what `status` shows).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from ragops.process import ManagedProcess

POLL = 0.5
FAST_SHUTDOWN_WAIT = 3.0
SHUTDOWN_SECONDS = FAST_SHUTDOWN_WAIT + 2.0   # the fast then immediate shutdown, at most
MIN_FENCE_AFTER = 3.0


def fence_after(config) -> float:
    """Seconds without an answer before the fence: the key can expire `ttl - loop_wait` after Patroni's
    last answer; the fence (poll + shutdown) must be over before that, with a margin for a loaded host."""
    settings = config.database.patroni
    return max(MIN_FENCE_AFTER, settings.ttl - settings.loop_wait - SHUTDOWN_SECONDS - POLL - 2.5)


def proc_name(node: str) -> str:
    return f"watchdog-{node}"


def proc(config, node: str) -> ManagedProcess:
    return ManagedProcess(proc_name(node), config.state_dir / "run", config.state_dir / "logs")


def start(config, node: str) -> None:
    config_path = str(Path(config.path).resolve())
    module = "ragops.ha.watchdog"
    _stamp(config, node).parent.mkdir(parents=True, exist_ok=True)
    _stamp(config, node).write_text(_settings(config, node))
    proc(config, node).start([sys.executable, "-m", module, config_path, config.env_name, node],
                             marker=f"{module} {config_path} {config.env_name} {node}")


def _settings(config, node: str) -> str:
    """What a running watchdog acts on: restarted by `up` when it changed."""
    from ragops.ha import patroni

    target = patroni.find(config, node)
    return f"{fence_after(config)} {target.rest_url} {target.node.data_dir}"


def _stamp(config, node: str) -> Path:
    return config.state_dir / "run" / f"{proc_name(node)}.settings"


def ensure(config, nodes: list[str], progress) -> list[str]:
    steps = []
    for node in nodes:
        process = proc(config, node)
        try:
            recorded = _stamp(config, node).read_text()
        except OSError:
            recorded = None
        if process.running() and recorded != _settings(config, node):
            progress(f"restarting the fence watchdog for {node}: the ttl, loop_wait or node changed")
            process.stop(timeout=5)
            steps.append(f"restart watchdog-{node} (settings changed)")
        elif process.running():
            continue
        else:
            progress(f"starting the fence watchdog for {node} (stops its primary {fence_after(config):.0f}s "
                     "after its Patroni stops answering)")
            steps.append(f"start watchdog-{node}")
        start(config, node)
    return steps


def stop(config, nodes: list[str]) -> list[str]:
    steps = []
    for node in nodes:
        process = proc(config, node)
        if process.running():
            process.stop(timeout=5)
            steps.append(f"stop watchdog-{node}")
    return steps


def fence_log(config) -> Path:
    return config.state_dir / "ha" / "fence.jsonl"


def answers(rest_url: str, timeout: float = 1.0) -> bool:
    """Patroni's REST API answered at all (any HTTP status: its threads run)."""
    try:
        with urllib.request.urlopen(f"{rest_url}/liveness", timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def is_primary(data_dir: Path) -> bool:
    """A running postmaster whose data directory has no standby.signal/recovery.signal (Patroni writes
    one for every replica): a primary. Read from files: a connection could hang with the node."""
    try:
        return not ((data_dir / "standby.signal").exists() or (data_dir / "recovery.signal").exists())
    except OSError:
        return False


def postmaster_alive(node) -> bool:
    """The node's postmaster runs (postmaster.pid's pid exists and is not a zombie: a postmaster killed
    with its Patroni is reparented to pid 1, which here may take a while to reap it)."""
    pid = node.node.pid()
    return pid is not None and _alive(pid)


def _alive(pid: int) -> bool:
    """Running, not a zombie (a postmaster that exited stays one while its frozen Patroni cannot reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop_postmaster(pid: int) -> str:
    """Fast shutdown, then immediate; returns how it stopped."""
    for sig, wait, how in ((signal.SIGINT, FAST_SHUTDOWN_WAIT, "fast"), (signal.SIGQUIT, 2.0, "immediate")):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return how
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid):
                return how
            time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return "kill"


def record(config, entry: dict) -> None:
    path = fence_log(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(json.dumps(entry) + "\n")


def read_fences(config, last: int = 5) -> list[dict]:
    try:
        lines = fence_log(config).read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines[-last:]:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def watch(config, node_name: str) -> None:
    from ragops.ha import patroni

    node = patroni.find(config, node_name)
    limit = fence_after(config)
    last_answer = time.monotonic()
    print(f"watchdog for {node_name}: fences its primary after {limit:.1f}s without an answer from "
          f"{node.rest_url}", flush=True)
    while True:
        if answers(node.rest_url):
            last_answer = time.monotonic()
        elif time.monotonic() - last_answer > limit:
            pid = node.node.pid()
            if pid is not None and postmaster_alive(node) and is_primary(node.node.data_dir):
                silent = time.monotonic() - last_answer
                how = stop_postmaster(pid)
                entry = {"at": datetime.now(UTC).isoformat(timespec="milliseconds"), "node": node_name,
                         "postmaster": pid, "silent_s": round(silent, 2), "shutdown": how}
                record(config, entry)
                print(f"fenced {node_name}: Patroni silent {silent:.1f}s, postmaster {pid} stopped ({how})",
                      flush=True)
            last_answer = time.monotonic()   # one fence per silence; Patroni restarts PostgreSQL itself
        time.sleep(POLL)


def main(argv: list[str]) -> None:
    from ragops.config import load_config

    config = load_config(Path(argv[0]), argv[1])
    watch(config, argv[2])


if __name__ == "__main__":
    main(sys.argv[1:])
