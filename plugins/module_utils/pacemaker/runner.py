# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pacemaker's command-line tools run with a time bound, their failures as one sentence.

The base of the Pacemaker layer: ``cib`` (stage, verify, diff, patch) and ``state`` (crm_mon)
run every command through a :class:`Runner`. No Ansible import.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from typing import Dict, Mapping, Optional, Sequence


class PacemakerError(Exception):
    """A Pacemaker command failed, timed out, or its answer was not what the cluster should say."""


@dataclasses.dataclass(frozen=True)
class Completed:
    """What a command answered."""

    argv: Sequence[str]
    rc: int
    stdout: str
    stderr: str

    def first_error_line(self) -> str:
        lines = [line.strip() for line in (self.stderr or self.stdout).splitlines() if line.strip()]
        return lines[0] if lines else "no output"


class Runner:
    """Runs one command at a time, each bounded by ``timeout`` seconds.

    ``cib_file`` points every command at a CIB file instead of the live cluster (CIB_file),
    which is how the tests drive the very same code without a cluster.
    """

    def __init__(self, timeout: float = 60.0, cib_file: Optional[str] = None,
                 env: Optional[Mapping[str, str]] = None) -> None:
        self.timeout = timeout
        self.env: Dict[str, str] = dict(os.environ if env is None else env)
        if cib_file is not None:
            self.env["CIB_file"] = cib_file

    def run(self, argv: Sequence[str], ok: Sequence[int] = (0,), stdin: Optional[str] = None) -> Completed:
        """Run ``argv``; raise PacemakerError when it is missing, outlives the bound or exits
        with a code not in ``ok``."""
        name = argv[0]
        try:
            done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True,
                                  timeout=self.timeout, env=self.env, check=False)
        except FileNotFoundError:
            raise PacemakerError(f"{name} is not installed (package pacemaker-cli-utils).") from None
        except subprocess.TimeoutExpired:
            raise PacemakerError(f"{' '.join(argv)} did not answer within {self.timeout:g} s.") from None
        completed = Completed(tuple(argv), done.returncode, done.stdout, done.stderr)
        if done.returncode not in ok:
            raise PacemakerError(f"{' '.join(argv)} failed with exit code {done.returncode}: "
                                 f"{completed.first_error_line()}")
        return completed
