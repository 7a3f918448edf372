# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The replication bootstrap's proof that a data directory holds nothing a user made (issue 8):
the role's own command, run as the task runs it (bash, in the data directory), on a fresh cluster's
base/ and on one with many user relations."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from roletools import ROLES

TASK = next(t for t in yaml.safe_load((ROLES / "replication" / "tasks" / "bootstrap.yml").read_text())
            if t.get("name") == "Look for anything a user created in the data directory")


def _run(datadir: Path) -> subprocess.CompletedProcess:
    shell = TASK["ansible.builtin.shell"]
    return subprocess.run([shell["executable"], "-c", shell["cmd"]], cwd=datadir, capture_output=True, text=True,
                          timeout=120, check=False)


def _files(base: Path, names) -> None:
    for name in names:
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def test_a_fresh_cluster_holds_nothing_a_user_made(tmp_path):
    _files(tmp_path / "base", ["1/1259", "1/1259_fsm", "4/2619.1", "5/112", "5/PG_VERSION"])
    done = _run(tmp_path)
    assert (done.returncode, done.stdout) == (0, "")


def test_many_user_relations_are_found_in_one_line(tmp_path):
    # Before: awk stopped at the first hit while find still wrote; under pipefail the task failed
    # with rc 141 (SIGPIPE) instead of naming the object (seen in the lab, a re-run after failover).
    _files(tmp_path / "base", ["1/1259"] + [f"5/{16384 + i}" for i in range(30000)])
    done = _run(tmp_path)
    assert done.returncode == 0, done.stderr
    found = done.stdout.strip()
    assert found.count("\n") == 0 and found.startswith("5/") and int(found.split("/")[1]) >= 16384
