# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every core shares (the three scenario cores and cluster_pair): a planned write and its
apply, a monitor's answer, the backoff of every poll loop, a bounded re-read, a deadline and the
retry of a call the API left unanswered.

No Ansible import: the OCF agents on the nodes run this too.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Dict, Iterator, List, Sequence, Tuple, TypeVar

from ansible_collections.ec2ha.cluster.plugins.module_utils.aws import AwsCallError, AwsSession, InputError

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Action:
    """One write a plan needs (a snake_case boto3 operation); made with AwsSession.call, or
    recorded with AwsSession.plan in check mode."""

    operation: str
    resource: str
    params: Dict[str, Any]
    summary: str = ""
    service: str = "ec2"


def apply(aws: AwsSession, actions: Sequence[Action], check_mode: bool = False) -> List[Dict[str, Any]]:
    """Make the writes in order (check mode: record each with ``aws.plan``, make none); returns the
    answers ({} for a planned write). The first failure raises: the next converge finishes the job."""
    answers: List[Dict[str, Any]] = []
    for action in actions:
        if check_mode:
            aws.plan(action.service, action.operation, action.resource, **action.params)
            answers.append({})
        else:
            answers.append(aws.call(action.service, action.operation, action.resource, **action.params))
    return answers


def backoff(first: float, growth: float, most: float) -> Iterator[float]:
    """The pauses of a poll loop: ``first``, then each ``growth`` times the last, capped at ``most``.
    Every wait of the cores takes its pauses from here; the loop itself decides its deadline."""
    pause = first
    while True:
        yield pause
        pause = min(pause * growth, most)


@dataclasses.dataclass
class Status:
    """What a monitor answers: ok, wrong (one line per difference) or unknown (the API did not
    answer: throttling, timeout; not a failure, check again next interval)."""

    status: str
    details: List[str]

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def monitor_reading(read: Callable[[], T], judge: Callable[[T], Status]) -> Status:
    """A monitor's answer from one read: the judge's verdict; unknown when the API did not answer
    (throttling, timeout); wrong when the endpoint itself is gone or replaced (the read's InputError:
    an EIP released, a CNAME put in the record's place). Any other API error is raised."""
    try:
        reading = read()
    except AwsCallError as exc:
        if exc.transient:
            return Status("unknown", [str(exc)])
        raise
    except InputError as exc:
        return Status("wrong", [str(exc)])
    return judge(reading)


def reread_until(read: Callable[[], T], judge: Callable[[T], Status], timeout: float,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> Tuple[T, Status]:
    """Re-read after a write until the judge says ok or ``timeout`` seconds pass (EC2 reads are
    eventually consistent). The interval doubles from 0.25 s up to 2 s and never overshoots the
    deadline. Returns the last reading and its status; the caller decides what a miss means."""
    deadline = clock() + timeout
    for delay in backoff(0.25, 2, 2.0):
        reading = read()
        status = judge(reading)
        if status.ok or clock() + delay > deadline:
            return reading, status
        sleep(delay)
    raise AssertionError("unreachable: backoff never ends")


@dataclasses.dataclass(frozen=True)
class Deadline:
    """The moment (on ``clock``) an action must be done by: an agent's operation timeout minus a
    margin. Every wait inside the action gets what is left of it, never more."""

    at: float
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def after(cls, seconds: float, clock: Callable[[], float] = time.monotonic) -> "Deadline":
        return cls(clock() + seconds, clock)

    def left(self) -> float:
        return max(0.0, self.at - self.clock())


def retry_transient(attempt: Callable[[], T], deadline: Deadline,
                    sleep: Callable[[float], None] = time.sleep,
                    on_retry: Callable[[AwsCallError, float], None] = lambda error, pause: None,
                    first_pause: float = 0.5, max_pause: float = 4.0) -> T:
    """``attempt()`` again after a transient AwsCallError (throttling, 5xx, no answer: botocore's
    own retries were spent), while another try fits before the deadline; the last error is raised.

    A try "fits" when the pause plus as long as the last try took is left: a call timing out costs
    its whole timeout again, a throttle costs milliseconds. Pauses double from ``first_pause`` up
    to ``max_pause``. ``attempt`` must be safe to repeat: each converge re-reads and writes only
    what is still different, so a retry after a half-done move finishes it.
    """
    for pause in backoff(first_pause, 2, max_pause):
        began = deadline.clock()
        try:
            return attempt()
        except AwsCallError as exc:
            took = deadline.clock() - began
            if not exc.transient or deadline.left() < pause + took:
                raise
            on_retry(exc, pause)
        sleep(pause)
    raise AssertionError("unreachable: backoff never ends")
