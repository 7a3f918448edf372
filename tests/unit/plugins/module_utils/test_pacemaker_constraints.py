# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pacemaker.constraints on CIB files with the real cibadmin, crm_verify and crm_simulate: the
switchover's move constraint has a lifetime, makes Pacemaker plan the promotion on the target, and
goes again; leftover cli- and ec2ha-move- constraints are found (issue 11, first part)."""

from __future__ import annotations

import datetime
import shutil
import subprocess

import pytest

from ec2ha_testkit.cib_status import cib_with_status
from ansible_collections.ec2ha.cluster.plugins.module_utils.pacemaker.constraints import (
    Constraints,
    leftover_moves,
    locations,
)
from ansible_collections.ec2ha.cluster.plugins.module_utils.pacemaker.runner import Runner

TOOLS = ("cibadmin", "crm_verify", "crm_simulate", "crm_resource")
pytestmark = pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                                reason="needs the Pacemaker CLI tools (apt-get install pacemaker-cli-utils)")

HISTORY = {"alpha": [("pgsqld", "promote", 0, 0, ""), ("fence-aws", "start", 0, 0, "")],
           "bravo": [("pgsqld", "start", 0, 0, "")]}
NOW = datetime.datetime(2026, 12, 2, 12, 0, tzinfo=datetime.timezone.utc)


def _cib(tmp_path):
    path = cib_with_status(tmp_path / "cib.xml", {"alpha": True, "bravo": True}, HISTORY)
    return path, Constraints(Runner(timeout=30, cib_file=str(path)))


def _simulated_promotion(path) -> str:
    done = subprocess.run(["crm_simulate", "--xml-file", str(path), "--simulate"], capture_output=True, text=True,
                          timeout=60, check=True)
    return next((line for line in done.stdout.splitlines() if "-> Promoted" in line), "")


def test_the_move_constraint_promotes_the_target_and_then_goes(tmp_path):
    path, constraints = _cib(tmp_path)
    assert "bravo" not in _simulated_promotion(path)
    cid = constraints.place_move("pgsqld-clone", "bravo", 300, now=NOW)
    placed = [c for c in locations(constraints.query()) if c.id == cid]
    assert [(c.resource, c.node, c.role, c.score, c.until) for c in placed] == [
        ("pgsqld-clone", "bravo", "Promoted", "INFINITY", "2026-12-02T12:05:00Z")]
    verify = subprocess.run(["crm_verify", "--xml-file", str(path)], capture_output=True, text=True, check=False)
    assert "error" not in verify.stderr.lower(), verify.stderr
    # Pacemaker judges the lifetime by its own clock: a constraint placed now, for 5 minutes.
    constraints.clear_move("pgsqld-clone")
    live = constraints.place_move("pgsqld-clone", "bravo", 300)
    assert "bravo" in _simulated_promotion(path)
    assert constraints.clear_move("pgsqld-clone") is True and live not in {c.id for c in locations(constraints.query())}
    assert constraints.clear_move("pgsqld-clone") is False


def test_an_expired_move_no_longer_moves_anything(tmp_path):
    path, constraints = _cib(tmp_path)
    constraints.place_move("pgsqld-clone", "bravo", 60, now=datetime.datetime.now(datetime.timezone.utc)
                           - datetime.timedelta(hours=1))
    assert "bravo" not in _simulated_promotion(path)


def test_leftover_moves_by_hand_and_by_an_earlier_switchover_are_found(tmp_path):
    path, constraints = _cib(tmp_path)
    runner = Runner(timeout=30, cib_file=str(path))
    runner.run(["crm_resource", "--resource", "pgsqld-clone", "--move", "--node", "bravo", "--promoted"])
    constraints.place_move("pgsqld-clone", "alpha", 300, now=NOW)
    found = sorted((c.id, c.node) for c in leftover_moves(constraints.query()))
    assert found == [("cli-prefer-pgsqld-clone", "bravo"), ("ec2ha-move-pgsqld-clone", "alpha")]
