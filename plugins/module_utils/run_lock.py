# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One run at a time on a node: an exclusive, non-blocking flock(2) on a file under /run.

    with RunLock("/run/ec2ha/switchover.lock", "to pg2"):
        ...                        # RunLockHeld("to pg2, pid 4242, since 2026-12-04T01:02:03Z")

The lock belongs to the open file: it goes with the process that holds it, killed or not, so a
crashed run leaves no stale lock (the file stays, empty or with the last holder's line, harmless).
The holder writes one line (what it does, its pid, since when) for the refusal of the next one.
No Ansible import.
"""

from __future__ import annotations

import datetime
import fcntl
import os
from typing import IO, Optional


class RunLockHeld(Exception):
    """Another process holds the lock; the message is its line ("to pg2, pid 4242, since ...")."""


class RunLock:
    def __init__(self, path: str, what: str) -> None:
        self.path, self.what = path, what
        self._file: Optional[IO[str]] = None

    def __enter__(self) -> "RunLock":
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, mode=0o755, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")   # pylint: disable=consider-using-with
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "holder unknown"
            handle.close()
            raise RunLockHeld(holder) from None
        since = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        handle.seek(0)
        handle.truncate()
        handle.write(f"{self.what}, pid {os.getpid()}, since {since}\n")
        handle.flush()
        self._file = handle
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._file is not None:
            self._file.seek(0)
            self._file.truncate()
            self._file.close()          # closing releases the lock
            self._file = None
