"""Waiting in tests for an event, never for a guessed time: `wait_for(pred, timeout, what)` polls `pred` until it
returns something truthy and returns that; after `timeout` seconds the test fails naming what it waited for."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

import pytest

T = TypeVar("T")


def wait_for(pred: Callable[[], T], timeout: float, what: str, every: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() >= deadline:
            pytest.fail(f"waited {timeout:g}s for {what}", pytrace=False)
        time.sleep(every)  # the poll interval of a bounded wait, not a guess at how long the event takes
