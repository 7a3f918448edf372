# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""psql on this node's PostgreSQL, over its local socket as the postgres user (peer
authentication: no password anywhere), every call bounded in time. Used on the nodes by the sync
guard and the switchover. Standard library only; no Ansible import."""

from __future__ import annotations

import os
import pwd
import subprocess
from typing import List


class LocalPostgres:
    """``psql -XAtq`` against ``host`` (the socket directory) and ``port`` as ``user``."""

    def __init__(self, host: str = "/run/postgresql", port: int = 5432, user: str = "postgres",
                 timeout: float = 10.0) -> None:
        self.host, self.port, self.user, self.timeout = host, port, user, timeout

    def run(self, *commands: str) -> str:
        """Each command as its own -c (ALTER SYSTEM cannot share a transaction); psql's output.
        Raises subprocess.CalledProcessError / TimeoutExpired, OSError when psql is missing."""
        cmd = ["psql", "-XAtq", "-h", self.host, "-p", str(self.port), "-d", "postgres"]
        for c in commands:
            cmd += ["-c", c]
        if pwd.getpwuid(os.getuid()).pw_name != self.user:
            cmd = ["runuser", "-u", self.user, "--"] + cmd
        return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=self.timeout).stdout

    def rows(self, sql: str) -> List[List[str]]:
        """The result rows, fields split on psql's unaligned separator."""
        return [line.split("|") for line in self.run(sql).splitlines() if line]
