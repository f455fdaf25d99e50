"""Router: HAProxy (Debian `haproxy` 2.6), run by the local platform as a master-worker process.

Files under the router's folder:
  haproxy.cfg      frontend on router.listen, backend `rag` with one server per color (weights,
                   health checks on the readiness path), a loopback stats/health frontend on router.api.
                   Its first line records ragops's state (backends, weights, maintenance) as JSON.
  maintenance.map  one line, `maintenance on|off`: the frontend answers the maintenance page while
                   it says `on`
  people.map       header value -> color for routing people during a canary (`always green`,
                   `never blue`; `none` when no canary runs): a request with the canary header
                   (deploy.canary_header) goes to that color's server (`use-server`: whatever the
                   weights, 0 included, as HAProxy does for persistent connections)
  (deploy.sticky)  the backend inserts a cookie (PeopleRouting.cookie, as on Traefik) naming the server
                   a client first got, so it keeps its version while the weights are between 0 and
                   100. A server at weight 0 still takes the clients its cookie names (measured on
                   2.6: weight 0 only stops load-balancing), so an `ignore-persist` rule per color
                   (`srv_weight(rag/<color>) eq 0`, read live: no reload for a weight change) sends
                   them where the weights go: a rollback to 100 % stable moves every client. A DOWN
                   server's clients are redispatched by HAProxy itself. The cookie lines are static:
                   turning sticky on or off (or renaming the cookie) is a reload.
  haproxy.sock     the runtime API (stats socket, mode 0600, level admin)
  haproxy.pid      the master's pid (for reloads)

Every normal operation goes through the runtime API and is ALSO written to the files (runtime
changes live only in memory; a restart must keep them):
  - weights: `set server` (measured at ~2 ms per change with 0 errors under load), the new side
    raised before the old one is lowered;
  - maintenance on/off: `set map` on maintenance.map;
  - the canary header's targets: `set map` on people.map (they follow the weights).
A reload (SIGUSR2 to the master) happens ONLY when the set of declared servers or a color's backend
ADDRESS changes. On the local platform every color has a fixed port and all colors are declared at
the first start, so deploys, rollbacks, canary steps and maintenance never reload.

Why avoid reloads: on a reload (soft-stop) HAProxy 2.6 closes the old worker's IDLE client
keep-alive connections at once; a client that sends its next request on such a connection at that
moment gets a reset (ReadError / RemoteProtocolError), at most once per idle connection and reload.
New connections and requests in flight are not affected (busy connections are answered with
`Connection: close`). 2.6 has no fix, measured: `idle-close-on-response` is 2.7+; `close-spread-time 2s`
still reset one and answered two with 408; `close-spread-time infinite` keeps the old workers serving
until hard-stop-after kills their busy connections.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

from ragops.errors import ConfigError, OperationFailed
from ragops.routing.base import PEOPLE_VALUES, FileStore, PeopleRouting, Router, RouterState, people_targets

CONFIG_FILE = "haproxy.cfg"
SOCKET_FILE = "haproxy.sock"
PID_FILE = "haproxy.pid"
MAP_FILE = "maintenance.map"
PEOPLE_MAP = "people.map"
NO_COLOR = "none"
BACKEND = "rag"
STATE_MARK = "# ragops-state: "
FAIL_OPEN_SUFFIX = "-open"    # a color's unchecked backup server (fail open, see render)
FAIL_OPEN_SCHEME = 1          # recorded: a config written before the backup servers is reloaded once
MAINTENANCE_PAGE = ("<!doctype html><html><head><title>Maintenance</title></head><body>"
                    "<h1>503 Service Unavailable</h1><p>The service is down for maintenance.</p></body></html>")
SOCKET_PATH_MAX = 100       # sun_path is 108 bytes


def _server_address(url: str) -> str:
    parsed = urlparse(url)
    return f"{parsed.hostname}:{parsed.port or 80}"


def render(*, listen: str, api: str, root: str, state: RouterState, servers: dict[str, str] | None = None,
           health_path: str = "/readyz", people: PeopleRouting | None = None) -> str:
    """The whole haproxy.cfg for `state` (backends: color -> URL, weights 0..100). `servers` (color ->
    URL) are declared too, at weight 0, so a color that starts later needs no reload. The canary
    header picks a server through people.map (`use-server`), whatever the weights."""
    people = people or PeopleRouting()
    servers = {**(servers or {}), **state.backends}
    record = {"backends": state.backends, "weights": {c: int(w) for c, w in state.weights.items()},
              "maintenance": state.maintenance, "servers": servers, "fail_open": FAIL_OPEN_SCHEME}
    if people.sticky:
        record["cookie"] = people.cookie           # recorded: a change of the static cookie lines is a reload
    lines = [
        STATE_MARK + json.dumps(record, sort_keys=True),
        "# written by ragops: weights also change at runtime through haproxy.sock",
        "global",
        f"    stats socket {root}/{SOCKET_FILE} mode 600 level admin expose-fd listeners",
        "    stats timeout 10s",
        "    hard-stop-after 30s",
        "defaults",
        "    mode http",
        "    timeout connect 1s",
        "    timeout client 30s",
        "    timeout server 30s",
        "    timeout http-keep-alive 10s",
        "    option http-server-close",
        "    option forwardfor",      # the service asks a proxied /metrics request for the API key
        # a refused or reset backend connection is retried on the other color
        "    retries 3",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response",
        "frontend web",
        f"    bind {listen}",
    ]
    # maintenance is a runtime-settable map entry, not a config line: switching it needs no reload
    lines += [
        f'    http-request return status 503 content-type "text/html" string "{MAINTENANCE_PAGE}" '
        f"if {{ str(maintenance),map({root}/{MAP_FILE},off) -m str on }}",
        f"    default_backend {BACKEND}",
        f"backend {BACKEND}",
        "    balance roundrobin",
        f"    option httpchk GET {health_path}",
        "    http-check expect status 200",
        "    default-server inter 1s fall 2 rise 1",
        "    timeout check 3s",          # above the service's tail latency under load (the probe answers in ms)
        # fail open: each color has an unchecked backup twin at the same weight; when every checked
        # server is down (a probe timing out under load, a switchover failing every readiness at
        # once) the backups carry the traffic with the live weights instead of a 503 for everyone
        "    option allbackups",
    ]
    # the canary header picks a server whatever the weights (people.map is set at runtime), with the
    # semantics of routing/base.py PEOPLE_VALUES: req.hdr() in a condition tries every line and every
    # comma-separated item (spaces trimmed); `lower` and -i ignore case; both values -> the weights
    header = people.header
    for color in sorted(servers):
        mapped = f"{{ req.hdr({header}),lower,map({root}/{PEOPLE_MAP}) -m str {color} }}"
        lines.append(f"    use-server {color} if {mapped} !{{ req.hdr({header}) -i always }} || "
                     f"{mapped} !{{ req.hdr({header}) -i never }}")
    lines += _sticky_lines(people, servers)
    cookie = " cookie {}" if people.sticky else ""
    for color, url in sorted(servers.items()):
        lines.append(f"    server {color} {_server_address(url)} weight {int(state.weights.get(color, 0))} check"
                     + cookie.format(color))
    for color, url in sorted(servers.items()):
        lines.append(f"    server {fail_open_name(color)} {_server_address(url)} "
                     f"weight {int(state.weights.get(color, 0))} backup")
    lines += [
        "frontend stats",
        f"    bind {api}",
        '    http-request return status 200 content-type "text/plain" string "ok" if { path /ping }',
        "    stats enable",
        "    stats uri /stats",
    ]
    return "\n".join(lines) + "\n"


def fail_open_name(color: str) -> str:
    """The unchecked backup twin of a color's server (see render)."""
    return f"{color}{FAIL_OPEN_SUFFIX}"


def _sticky_lines(people: PeopleRouting, servers: dict[str, str]) -> list[str]:
    """deploy.sticky: the cookie naming a client's server, ignored while that server's live weight is 0."""
    if not people.sticky:
        return []
    return [f"    cookie {people.cookie} insert indirect nocache httponly"] + [
        f"    ignore-persist if {{ req.cook({people.cookie}) -m str {color} }} {{ srv_weight({BACKEND}/{color}) eq 0 }}"
        for color in sorted(servers)]


def render_map(maintenance: bool) -> str:
    """maintenance.map: the one entry the frontend's maintenance rule reads."""
    return f"maintenance {'on' if maintenance else 'off'}\n"


def people_map(state: RouterState) -> dict[str, str]:
    """people.map's entries: header value -> color (`none` when no canary runs, so both keys exist
    and the runtime API can `set map` them)."""
    targets = {} if state.maintenance else people_targets(state.backends, state.weights)
    return {value: targets.get(value, NO_COLOR) for value in PEOPLE_VALUES}


def render_people_map(state: RouterState) -> str:
    return "".join(f"{value} {backend}\n" for value, backend in people_map(state).items())


def recorded(text: str | None) -> dict:
    """The JSON record on the first line of a haproxy.cfg written by `render` ({} when none)."""
    first = (text or "").split("\n", 1)[0]
    if not first.startswith(STATE_MARK):
        return {}
    try:
        data = json.loads(first[len(STATE_MARK):])
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def parse(text: str | None) -> RouterState:
    """Read back the state a haproxy.cfg written by `render` records (empty when none)."""
    data = recorded(text)
    return RouterState(backends=dict(data.get("backends") or {}),
                       weights={c: int(w) for c, w in (data.get("weights") or {}).items()},
                       maintenance=bool(data.get("maintenance")))


def runtime(path: Path, command: str, timeout: float = 2.0) -> str:
    """One command line (several joined by ';') on the runtime API; its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


def parse_servers_state(text: str) -> dict[str, int]:
    """`show servers state <backend>` -> server name -> user weight (the colors' servers; their
    fail-open backup twins follow them)."""
    weights = {}
    for line in text.splitlines():
        fields = line.split()
        if (len(fields) > 7 and not line.startswith("#") and fields[1] == BACKEND
                and not fields[3].endswith(FAIL_OPEN_SUFFIX)):
            weights[fields[3]] = int(fields[7])
    return weights


def _handles_usr2(pid: int) -> bool:
    """True when the process catches SIGUSR2 and does not block it (/proc/<pid>/status masks)."""
    bit = 1 << (signal.SIGUSR2 - 1)
    masks = {}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key in ("SigBlk", "SigCgt"):
                    masks[key] = int(value.strip(), 16)
    except (OSError, ValueError):
        return False
    return bool(masks.get("SigCgt", 0) & bit) and not masks.get("SigBlk", 0) & bit


class HAProxyRouter(Router):
    kind = "haproxy"

    @property
    def root(self) -> Path:
        if not isinstance(self.store, FileStore):   # config validation allows haproxy on the local platform only
            raise ConfigError("router.kind: haproxy runs only on the local platform")
        return self.store.root

    @property
    def socket_path(self) -> Path:
        return self.root / SOCKET_FILE

    def _render(self, state: RouterState, declared: dict[str, str] | None = None) -> str:
        return render(listen=self.listen, api=self.api, root=str(self.root), state=state,
                      servers={**(declared or {}), **self.colors}, health_path=self.health_path, people=self.people)

    # ---- change and confirm --------------------------------------------------------------
    def apply(self, backends: dict[str, str], weights: dict[str, int], maintenance: bool) -> None:
        text = self.snapshot()
        declared = recorded(text).get("servers") or {}
        state = RouterState(dict(backends), {c: int(weights.get(c, 0)) for c in backends}, maintenance)
        self._put(self._render(state, declared), text)

    def _put(self, new_text: str, old_text: str | None) -> None:
        """Write the files (first: a restart keeps them), then make the running haproxy serve them:
        through the runtime API, or by a reload when the declared servers (names, addresses) change."""
        old, new = recorded(old_text), recorded(new_text)
        state = parse(new_text)
        self.store.write_text(MAP_FILE, render_map(state.maintenance))
        self.store.write_text(PEOPLE_MAP, render_people_map(state))
        self.store.write_text(CONFIG_FILE, new_text)
        worker = self._worker_pid()
        if worker is None:
            return                                                # not running: the files are enough
        servers = new.get("servers") or {}
        # a reload when the declared servers or the sticky cookie change, or once for a config
        # written before people.map
        if (servers != (old.get("servers") or {}) or new.get("cookie") != old.get("cookie")
                or new.get("fail_open") != old.get("fail_open") or PEOPLE_MAP not in (old_text or "")):
            self.reload(worker)                                   # the only reloads: see the module docstring
        else:
            self._set_weights({c: state.weights.get(c, 0) for c in servers}, parse(old_text).weights,
                              maintenance=state.maintenance,
                              then=[f"set map {self.root}/{PEOPLE_MAP} {value} {color}"
                                    for value, color in people_map(state).items()])

    def _set_weights(self, new: dict[str, int], old: dict[str, int], maintenance: bool | None = None,
                     then: list[str] | None = None) -> None:
        # raise the new side before lowering the old: never a moment with no weight at all. A raised
        # server is forced healthy (the platform checked its readiness; checks go on and can still
        # take it out): otherwise it waits for its next health check while the old side is lowered.
        # Maintenance (when given) goes on before and off after the weights, in the same call.
        commands = []
        for color in [c for c in new if new[c] > old.get(c, 0)]:
            commands += [f"set server {BACKEND}/{color} state ready", f"set server {BACKEND}/{color} health up",
                         f"set server {BACKEND}/{color} weight {new[color]}",
                         f"set server {BACKEND}/{fail_open_name(color)} weight {new[color]}"]
        for color in [c for c in new if new[c] <= old.get(c, 0)]:
            commands += [f"set server {BACKEND}/{color} weight {new[color]}",
                         f"set server {BACKEND}/{fail_open_name(color)} weight {new[color]}"]
        commands += then or []       # the canary header's targets follow the weights
        if maintenance is not None:
            # always sent (idempotent): the running haproxy follows the file even after a failed call
            flag = f"set map {self.root}/{MAP_FILE} maintenance {'on' if maintenance else 'off'}"
            commands = [flag, *commands] if maintenance else [*commands, flag]
        self._runtime(commands)

    def _runtime(self, commands: list[str]) -> None:
        """Commands in one runtime API call; any answer is a refusal."""
        if not commands:
            return
        try:
            answer = runtime(self.socket_path, ";".join(commands)).strip()
        except OSError as exc:
            raise OperationFailed(f"haproxy runtime API {self.socket_path}: {exc}") from None
        if answer:
            raise OperationFailed(f"haproxy refused a runtime change: {' '.join(answer.split())[:200]}")

    def _worker_pid(self) -> str | None:
        try:
            info = runtime(self.socket_path, "show info", timeout=1.0)
        except OSError:
            return None
        for line in info.splitlines():
            if line.startswith("Pid:"):
                return line.split(":", 1)[1].strip()
        return None

    def reload(self, old: str | None, timeout: float = 10.0) -> None:
        """SIGUSR2 to the master, then wait until a worker other than `old` answers on the socket
        and the re-executed master handles SIGUSR2 again (one sent before that is lost: measured)."""
        try:
            master = int((self.root / PID_FILE).read_text().split()[0])
        except (OSError, ValueError, IndexError) as exc:
            raise OperationFailed(f"could not reload haproxy ({self.root / PID_FILE}): {exc}") from None
        deadline = time.monotonic() + timeout
        sent = False
        while True:
            if not sent and _handles_usr2(master):
                try:
                    os.kill(master, signal.SIGUSR2)
                except OSError as exc:
                    raise OperationFailed(f"could not reload haproxy (pid {master}): {exc}") from None
                sent = True
            elif sent:
                pid = self._worker_pid()
                if pid is not None and pid != old and _handles_usr2(master):
                    return
            if time.monotonic() > deadline:
                raise OperationFailed(f"haproxy did not reload within {timeout:.0f}s "
                                      f"(check {self.root / CONFIG_FILE} with haproxy -c -f)")
            time.sleep(0.005)

    def confirm(self, weights: dict[str, int], timeout: float) -> float:
        """Until the running haproxy serves what was written: `weights` AND the maintenance flag the
        config file records (the runtime map answers for it; a reload re-reads the map file)."""
        want = ({c: int(w) for c, w in weights.items() if int(w) > 0}, self.desired().maintenance)
        start = time.monotonic()
        while True:
            live = self.served()
            if live == want:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                seen = (f"it serves {json.dumps(live[0])}{' in maintenance' if live[1] else ''}" if live
                        else "its runtime API does not answer")
                raise OperationFailed(f"router did not apply weights {json.dumps(want[0])}"
                                      f"{' in maintenance' if want[1] else ''} within {timeout:.0f}s ({seen})")
            time.sleep(0.002)

    def served(self) -> tuple[dict[str, int], bool] | None:
        """(weights > 0, maintenance on) as the running haproxy serves them; None if it does not answer."""
        try:
            text = runtime(self.socket_path, f"show servers state {BACKEND};show map {self.root}/{MAP_FILE}",
                          timeout=1.0)
        except OSError:
            return None
        flags = [f[2] for f in (line.split() for line in text.splitlines()) if len(f) == 3 and f[1] == "maintenance"]
        if not flags:
            return None
        return {c: w for c, w in parse_servers_state(text).items() if w > 0}, flags[-1] == "on"

    def live_weights(self) -> dict[str, int] | None:
        try:
            text = runtime(self.socket_path, f"show servers state {BACKEND}", timeout=1.0)
        except OSError:
            return None
        return {c: w for c, w in parse_servers_state(text).items() if w > 0}

    def desired(self) -> RouterState:
        return parse(self.snapshot())

    def ready(self) -> bool:
        from ragops import loopback

        try:
            return loopback.get(f"http://{self.api_address()}/ping", timeout=1.0).status_code == 200
        except loopback.HttpError:
            return False

    def snapshot(self) -> str | None:
        try:
            return self.store.read_text(CONFIG_FILE)
        except OSError:
            return None

    def restore(self, text: str) -> None:
        self._put(text, self.snapshot())

    # ---- the process --------------------------------------------------------------------------
    def binary(self) -> str:
        found = shutil.which("haproxy")
        if not found:
            raise ConfigError("router.kind haproxy needs the haproxy binary: apt-get install haproxy")
        return found

    def prepare(self, root: str) -> None:
        """(Re)write haproxy.cfg from the recorded state: a restart keeps weights and backends."""
        if len(str(Path(root) / SOCKET_FILE)) > SOCKET_PATH_MAX:
            raise ConfigError(f"state_dir: {root} is too long for haproxy's socket path (max {SOCKET_PATH_MAX})")
        self.store.makedirs(".")
        # a socket file left by a killed haproxy would make apply() try the runtime API
        Path(root, SOCKET_FILE).unlink(missing_ok=True)
        text = self.snapshot()
        state = parse(text)
        self.store.write_text(MAP_FILE, render_map(state.maintenance))   # haproxy refuses a missing map
        self.store.write_text(PEOPLE_MAP, render_people_map(state))
        self.store.write_text(CONFIG_FILE, self._render(state, recorded(text).get("servers")))

    def start_args(self, root: str) -> list[str]:
        # -W master-worker (reload with SIGUSR2), -db: stay in the foreground for ragops's process manager
        return ["-W", "-db", "-f", f"{root}/{CONFIG_FILE}", "-p", f"{root}/{PID_FILE}"]
