# -*- coding: utf-8 -*-
"""scenario.retry_transient under a fake clock: what an agent's start and monitor repair do when
the API leaves a converge unanswered, and that they stop in time."""

from __future__ import annotations

from typing import List

import pytest

from ansible_collections.ec2ha.cluster.plugins.module_utils.aws import AwsCallError
from ansible_collections.ec2ha.cluster.plugins.module_utils.scenario import Deadline, retry_transient
from ec2ha_testkit.clock import FakeClock


def throttled(code: str = "RequestLimitExceeded", transient: bool = True) -> AwsCallError:
    return AwsCallError(f"ec2:ReplaceRoute on rtb-0b failed with {code}.", "ec2", "replace_route", code, transient)


class Attempts:
    """Fails with ``errors`` in turn (each taking ``cost`` seconds of the clock), then answers."""

    def __init__(self, clock: FakeClock, errors: List[AwsCallError], cost: float = 0.0):
        self.clock, self.errors, self.cost, self.made = clock, list(errors), cost, 0

    def __call__(self) -> str:
        self.made += 1
        self.clock.now += self.cost
        if self.errors:
            raise self.errors.pop(0)
        return "moved"


def test_a_transient_error_is_tried_again_with_a_growing_pause():
    clock = FakeClock()
    attempt = Attempts(clock, [throttled(), throttled(), throttled()])
    retried: List[float] = []
    result = retry_transient(attempt, Deadline.after(54, clock), clock.sleep, lambda e, p: retried.append(p))
    assert result == "moved" and attempt.made == 4
    assert clock.slept == retried == [0.5, 1.0, 2.0]


def test_the_pauses_are_capped_and_the_last_error_is_raised_before_the_deadline():
    clock = FakeClock()
    attempt = Attempts(clock, [throttled() for _i in range(100)])
    deadline = Deadline.after(20, clock)
    with pytest.raises(AwsCallError, match="RequestLimitExceeded"):
        retry_transient(attempt, deadline, clock.sleep)
    assert max(clock.slept) == 4.0
    assert clock.now <= deadline.at


def test_a_try_is_not_started_when_it_would_not_end_before_the_deadline():
    """A call that times out costs its timeout again: with 9 s left, a 12 s try is not made."""
    clock = FakeClock()
    attempt = Attempts(clock, [throttled("ConnectTimeoutError"), throttled("ConnectTimeoutError")], cost=12.0)
    with pytest.raises(AwsCallError):
        retry_transient(attempt, Deadline.after(30, clock), clock.sleep)
    assert attempt.made == 2 and clock.now - 1000 == 12 + 0.5 + 12


def test_an_error_that_is_not_transient_is_raised_at_once():
    clock = FakeClock()
    attempt = Attempts(clock, [throttled("UnauthorizedOperation", transient=False)])
    with pytest.raises(AwsCallError, match="UnauthorizedOperation"):
        retry_transient(attempt, Deadline.after(54, clock), clock.sleep)
    assert attempt.made == 1 and clock.slept == []


def test_a_deadline_says_what_is_left_and_never_less_than_nothing():
    clock = FakeClock()
    deadline = Deadline.after(5, clock)
    clock.now += 3
    assert deadline.left() == 2
    clock.now += 10
    assert deadline.left() == 0
