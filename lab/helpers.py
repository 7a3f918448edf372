"""Helpers every layer of the lab uses: run a command, wait for a condition, take a median.

    run(cmd, stdin=None, check=True, error=CommandError)   # captured, text; `error` names the failure
    poll(check, timeout, interval)                         # first truthy value, or the last one
    wait_for(check, timeout, interval, what)               # first truthy value, or TimeoutError
    median(values, ndigits=None)                           # Nones skipped; None when nothing is left
    fmt(seconds)                                           # "1.23", or "failed" for a figure not seen
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import time
from typing import Callable, Iterable, List, Optional, Type, TypeVar

T = TypeVar("T")


class CommandError(Exception):
    """A command failed; the message names the command and what it printed."""


def run(cmd: List[str], stdin: Optional[str] = None, check: bool = True,
        error: Type[Exception] = CommandError) -> subprocess.CompletedProcess:
    """Run `cmd` with captured text output; with `check`, a non-zero exit raises `error`."""
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise error(f"{' '.join(cmd)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def run_group(cmd: List[str], timeout: float) -> subprocess.CompletedProcess:
    """`cmd` in its own process group, output captured; on timeout the whole group is killed
    (the children it started too, such as ssh's ProxyCommand) and TimeoutExpired raised."""
    with subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def poll(check: Callable[[], T], timeout: float, interval: float = 0.05) -> T:
    """Call `check` until it returns a truthy value; returns it, or its last value at timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def wait_for(check: Callable[[], T], timeout: float, interval: float = 0.05,
             what: str = "condition") -> T:
    """Bounded poll: the first truthy value of `check`, or TimeoutError naming `what`."""
    value = poll(check, timeout, interval)
    if not value:
        raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
    return value


def median(values: Iterable[Optional[float]], ndigits: Optional[int] = None) -> Optional[float]:
    """The median of the figures seen (None: not observed); None when none was."""
    seen = [v for v in values if v is not None]
    if not seen:
        return None
    middle = statistics.median(seen)
    return middle if ndigits is None else round(middle, ndigits)


def fmt(seconds: Optional[float]) -> str:
    """A figure in seconds for a printed table; "failed" when it was not observed."""
    return "failed" if seconds is None else f"{seconds:.2f}"
