"""The one polling loop: ask until the answer is truthy or the time is up."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.2) -> T:
    """The first truthy value of `predicate()` within `timeout` seconds; asked once more at the deadline,
    and that (falsy) answer is returned when it is still not there."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
