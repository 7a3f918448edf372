# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The replication role's entry point `rejoin`: the decision that keeps a data directory when
pg_rewind fails (the role's own expression, evaluated on pg_rewind's real messages), and the
rules that rejoin.yml keeps no secret in `environment:` and never deletes a data directory.
The rejoin itself runs in the lab (tests/lab/pair/test_build_and_failover.py)."""

from __future__ import annotations

import pytest
import yaml

from roletools import ROLES

TASKS = yaml.safe_load((ROLES / "replication" / "tasks" / "rejoin.yml").read_text())


def _task(name: str) -> dict:
    return next(t for t in TASKS if t.get("name") == name)


def _unreachable(inventory_factory, rc: int, stderr: str) -> bool:
    task = _task("Tell why the rewind failed")
    inv = inventory_factory()
    expression = task["ansible.builtin.set_fact"]["__rejoin_unreachable"]
    with_vars = dict(task["vars"], __rejoin_rewind={"rc": rc, "stderr": stderr})
    inv.common.update(with_vars)
    return str(inv.evaluate("alpha", expression)).strip() == "True"


@pytest.mark.parametrize("stderr", [
    'pg_rewind: error: connection to server at "10.0.2.10", port 5432 failed: timeout expired',
    'pg_rewind: error: connection to server at "10.0.2.10", port 5432 failed: FATAL:  password authentication '
    'failed for user "replicator"',
    'pg_rewind: error: connection to server at "10.0.2.10", port 5432 failed: Connection refused',
    'pg_rewind: error: connection to server at "10.0.2.10", port 5432 failed: FATAL:  no pg_hba.conf entry for '
    'replication connection from host "10.0.1.10", user "replicator", no encryption',
    'pg_rewind: error: connection to server at "10.0.2.10", port 5432 failed: server certificate for "pg2" does '
    'not match host name "10.0.2.10"',
])
def test_a_primary_out_of_reach_stops_the_rejoin_with_the_data_kept(inventory_factory, stderr):
    # Before: any pg_rewind failure emptied the data directory, then tried a copy.
    assert _unreachable(inventory_factory, 1, stderr)


@pytest.mark.parametrize("stderr", [
    "pg_rewind: error: could not find previous WAL record at 0/3000028",
    'pg_rewind: error: could not open file "/var/lib/postgresql/15/main/pg_wal/000000010000000000000003": '
    "No such file or directory",
])
def test_a_rewind_that_ran_and_could_not_rewind_takes_the_copy_path(inventory_factory, stderr):
    assert not _unreachable(inventory_factory, 1, stderr)


def test_a_rewind_that_worked_is_no_failure(inventory_factory):
    assert not _unreachable(inventory_factory, 0, "pg_rewind: Done!")


def _all_tasks(tasks):
    for task in tasks:
        yield task
        yield from _all_tasks(task.get("block", []))


def test_rejoin_keeps_secrets_out_of_the_environment_and_never_deletes_a_data_directory():
    tasks = list(_all_tasks(TASKS))
    assert all("environment" not in t for t in tasks)
    removed = [t["ansible.builtin.file"]["path"] for t in tasks
               if t.get("ansible.builtin.file", {}).get("state") == "absent"]
    # Only the unfinished copy, and the replaced directory when asked: never the data directory.
    assert removed == ["{{ replication_pg_datadir }}.rejoin-copy", "{{ __rejoin_kept }}"]
    checkpoint = _task("Checkpoint the primary, so that its control file names its current timeline")
    # As postgres on the primary's own socket: the replication user may not CHECKPOINT (PostgreSQL 15).
    assert "runuser -u postgres" in checkpoint["ansible.builtin.command"]["cmd"]
    assert "-U" not in checkpoint["ansible.builtin.command"]["cmd"] and "failed_when" not in checkpoint
