# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The replication role's entry point `preflight` (site.yml runs it before the heartbeat role):
the role's own assertion, evaluated on what each node reported, refuses to start the cluster
stack on a former primary that crashed while the peer was promoted, and nothing else."""

from __future__ import annotations

import pytest
import yaml

from roletools import ROLES

TASKS = yaml.safe_load((ROLES / "replication" / "tasks" / "preflight.yml").read_text())
PROMOTED = ('<resource id="pgsqld" resource_agent="ocf:heartbeat:pgsqlms" role="Promoted" active="true">'
            '<node name="bravo" id="2" cached="true"/></resource>')


def _allowed(inventory_factory, alpha_mon_rc: int, alpha_state: str, bravo_stdout: str) -> bool:
    inv = inventory_factory()
    inv.hostvars["alpha"].update(__replication_preflight_mon={"rc": alpha_mon_rc, "stdout": ""},
                                 __replication_preflight_controldata={
                                     "stdout": f"Database cluster state:               {alpha_state}\n"})
    inv.hostvars["bravo"].update(__replication_preflight_mon={"rc": 0, "stdout": bravo_stdout})
    inv.common.update(ansible_play_hosts=["alpha", "bravo"])
    task = next(t for t in TASKS if t["name"] == "Refuse to start the cluster stack on a crashed former primary")
    expression = "{{ " + task["ansible.builtin.assert"]["that"] + " }}"
    return str(inv.evaluate("alpha", expression)).strip() == "True"


def test_a_crashed_former_primary_is_refused_while_the_peer_is_promoted(inventory_factory):
    assert not _allowed(inventory_factory, 1, "in production", PROMOTED)


@pytest.mark.parametrize("mon_rc, state, bravo", [
    (0, "in production", PROMOTED),                     # its Pacemaker runs: the cluster decides
    (1, "in archive recovery", PROMOTED),               # a standby: PAF starts it as one
    (1, "in production", ""),                           # a first build-out or both down: nobody promoted
    (1, "shut down", PROMOTED),                         # stopped cleanly
])
def test_everything_else_goes_on(inventory_factory, mon_rc, state, bravo):
    assert _allowed(inventory_factory, mon_rc, state, bravo)
