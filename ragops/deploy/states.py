"""The deploy, rollback, promote and abort state machine, and the test hook that stops it at a named point.

Blue-green (phases journaled in `current.json` under the platform's journal_dir, in this order):

  phase        before it (disk / router)                     after it
  lock         lock file may exist, no journal               lock held (heartbeat), journal written
  preflight    journal: phase preflight; router unchanged    from/to colors chosen; expand-only migrations applied
  start        router unchanged                              new color runs the version (colors/<c>.json names
                                                             this deploy's id); gates "ready:<c>", "smoke:<c>"
  smoke        (part of start: the smoke suite against the new color directly, no traffic)
  switched     gates ready+smoke passed; router unchanged    router: new 100 %, old 0 % (confirmed by its API)
  analysis     router on new                                 gate "analysis:<c>@100" passed; on a breach the
                                                             record gets `failing`, router back to old, new stopped
  drain        analysis passed                               old color has nothing in flight; kept warm (or stopped)
  (finish)     -                                             record moved to history.jsonl, journal removed, lock freed

Canary: lock, preflight, start/smoke as above, then per weight W < 100: `canary-step` (step_index) ->
router new W / old 100-W -> gate "analysis:<c>@W"; optionally `paused` (lock kept with paused=true,
no process); then `promote` -> router new 100 % -> gate "analysis:<c>@100" (a breach switches back) ->
`drain` -> finish. `ragops promote` continues a paused canary at the next step.

Shadow (ragops/deploy/shadow.py; strategy "shadow", never a weight on the new color): lock, preflight,
start/smoke as above, then `mirror` (the router copies a share of live reads to the new color; its
answers are dropped; confirmed through the router's API) -> `shadow-analysis` (gate "analysis:<c>@shadow")
-> `mirror-off` (the verdict journaled as `shadow_verdict`, then the mirror removed) -> `stop-shadow`
(the new color stopped) -> finish; or, with then: blue-green and a passed verdict, blue-green's
`switched`/`analysis`/`drain`. Resume runs the same flow (a journaled verdict is not re-measured);
abort removes the mirror first, then stops the new color. The points it adds: phase:mirror,
before:mirror/after:mirror (action "mirror"; #2 is the removal), phase:shadow-analysis,
phase:mirror-off, phase:stop-shadow.

Rollback (strategy "rollback"; the record is journaled before the router changes): lock -> `start`
only when the target color is not warm (then readiness + smoke as above) -> `flip` (router to the
target 100 %) -> `drain` (the version rolled back from stays warm) -> finish. There is no preflight.

External changes are written down twice: an `intent` (action, color/weights) is journaled before the
router write, color start/stop or migration, and the outcome is journaled after it as a step (the
intent removed). A kill between the two leaves the intent in the journal.

`deploy --resume` (also `rollback --resume`) takes over a dead owner's lock, then RECONCILES with the
platform before anything else: it reads the router's live weights and the colors (process table,
version, deploy id), settles a pending intent from what is really there, forgets the gates of a new
color that is no longer running this deploy's version, and moves traffic back to the old color when
the new one serves traffic without having passed its gates. It then runs the same strategy again;
every step is idempotent against that reality: a color already running this deploy's version is
not restarted, a gate recorded as passed is not redone (any other gate is), a router write whose
weights the router already serves is skipped. An interrupted rollback finishes the rollback; an
automatic switch-back (`failing`) finishes switching back.

`abort` (any phase, also a paused canary): reconciles the same way, puts the router back to the old
color 100 % when it is not already there, stops the new color only when this deploy started it
(its deploy id, from the platform), and records the deploy as aborted. A lock with no journal
(killed between lock and journal) is cleared. A kill before the journal's `start` phase leaves the
warm color untouched.

Ctrl-C (SIGINT) at any point unwinds instead of dying: run() journals an `interrupted` step (the phase,
a change it cut short, what to run next), releases the lock, and the CLI exits 130 printing that step.
What is on disk is then what a SIGKILL at the same point leaves, minus the lock, so `--resume` and
`abort` continue from it the same way. Stopped before the journal existed (`lock-taken`), nothing
changed and nothing is left: `--resume`/`abort` refuse with "no deploy is in progress" (exit 2) and
the deploy is simply run again.

Test hook (tests only, never set in production): with RAGOPS_TEST_STOP_AT=<point> the process
stops itself right at that named point, with SIGKILL, or with SIGINT when
RAGOPS_TEST_STOP_SIGNAL=INT (the Ctrl-C path). `<point>#N` stops at its N-th occurrence. Points:
  lock-taken                   the lock is held, the journal not written yet
  phase:<phase>                right after the phase is journaled (every row of the tables above)
  before:<action>              the intent is journaled, the change not made     (action: weights,
  after:<action>               the change is made, its result not journaled yet  start, stop, migrate)
  journaled:<action>           the result is journaled
"""
from __future__ import annotations

import os
import signal
from collections import Counter

STOP_AT_ENV = "RAGOPS_TEST_STOP_AT"
STOP_SIGNAL_ENV = "RAGOPS_TEST_STOP_SIGNAL"

# the points each flow passes, in order (the crash-safety test walks every one)
BLUE_GREEN_POINTS = ("lock-taken", "phase:preflight", "phase:start", "before:start", "after:start",
                     "journaled:start", "phase:smoke", "phase:switched", "before:weights", "after:weights",
                     "journaled:weights", "phase:analysis", "phase:drain")
# canary points for steps 50,100 (the start/smoke points are blue-green's, the same code)
CANARY_POINTS = ("phase:canary-step", "before:weights", "after:weights", "journaled:weights", "phase:canary-step#2",
                 "phase:promote", "before:weights#2", "after:weights#2", "phase:drain")
ROLLBACK_POINTS = ("lock-taken", "phase:flip", "before:weights", "after:weights", "journaled:weights",
                   "phase:drain")

_hits: Counter = Counter()


def checkpoint(point: str) -> None:
    """Stop this process here when RAGOPS_TEST_STOP_AT names this point (a test hook; a no-op otherwise)."""
    wanted = os.environ.get(STOP_AT_ENV)
    if not wanted:
        return
    name, _, nth = wanted.partition("#")
    if name != point:
        return
    _hits[point] += 1
    if _hits[point] != int(nth or 1):
        return
    interrupt = os.environ.get(STOP_SIGNAL_ENV, "KILL").upper() == "INT"
    os.kill(os.getpid(), signal.SIGINT if interrupt else signal.SIGKILL)


def live_matches(live: dict[str, int] | None, weights: dict[str, int]) -> bool:
    """Whether the router's live weights are `weights` (zero weights are the same as absent)."""
    if live is None:
        return False
    return {c: w for c, w in live.items() if w} == {c: w for c, w in weights.items() if w}


def unfinished_kind(record: dict) -> str:
    return "rollback" if record.get("strategy") == "rollback" else "deploy"


def next_step(record: dict) -> str:
    """What to run after an interruption of this journaled deploy or rollback."""
    if record.get("phase") == "paused":
        return "continue with `ragops promote`, or undo it with `ragops abort`"
    return f"finish it with `ragops {unfinished_kind(record)} --resume`, or undo it with `ragops abort`"


def interrupted_text(record: dict | None) -> str:
    """What a Ctrl-C left behind, for the journal and the user: the phase, a change it may have cut
    short, and what to run next (None: stopped before the deploy was journaled, nothing changed)."""
    if record is None:
        return "interrupted (Ctrl-C) before the deploy was journaled: nothing was changed, the lock is released"
    intent = record.get("intent")
    cut = (f", during a {intent.get('action')} change (resume reads the router and the colors to settle it)"
           if intent else "")
    return (f"interrupted (Ctrl-C) at phase {record.get('phase')}{cut}; nothing more was changed and the "
            f"lock is released: {next_step(record)}")
