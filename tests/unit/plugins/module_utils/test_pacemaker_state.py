# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pacemaker.state.read_state on the real crm_mon's answer for CIB files with a status section:
who is up, who is promoted, where each resource runs, what failed, the node attributes, and the
cluster options a switchover's gates read (issue 11, first part)."""

from __future__ import annotations

import shutil

import pytest

from ec2ha_testkit.cib_status import cib_with_status
from ansible_collections.ec2ha.cluster.plugins.module_utils.pacemaker.runner import PacemakerError, Runner
from ansible_collections.ec2ha.cluster.plugins.module_utils.pacemaker.state import parse_crm_mon, read_state

pytestmark = pytest.mark.skipif(shutil.which("crm_mon") is None or shutil.which("cibadmin") is None,
                                reason="needs crm_mon and cibadmin (apt-get install pacemaker-cli-utils)")

HEALTHY = {"alpha": [("pgsqld", "promote", 0, 0, ""), ("ec2ha-vip-route", "start", 0, 0, ""),
                     ("fence-aws", "start", 0, 0, "")],
           "bravo": [("pgsqld", "start", 0, 0, "")]}


def test_a_healthy_pair(tmp_path):
    cib = cib_with_status(tmp_path / "cib.xml", {"alpha": True, "bravo": True}, HEALTHY,
                          attributes={"alpha": {"ec2ha-pgsql-replication": "sync"}})
    state = read_state(Runner(timeout=30, cib_file=str(cib)))
    assert state.dc == "alpha" and state.quorate and state.stonith_enabled and not state.maintenance_mode
    assert all(n.online and not n.standby and not n.maintenance for n in state.nodes.values())
    assert state.promoted("pgsqld-clone") == ["alpha"] == state.promoted("pgsqld")
    assert state.nodes_in_role("pgsqld-clone", "Unpromoted") == ["bravo"]
    assert state.started_on("ec2ha-vip-route") == ["alpha"]
    assert [d.id for d in state.fencing_devices()] == ["fence-aws"] and state.started_on("fence-aws") == ["alpha"]
    assert state.failed_actions == ()
    assert state.attributes["alpha"]["ec2ha-pgsql-replication"] == "sync"


def test_a_failed_monitor_a_lost_node_and_the_cluster_options(tmp_path):
    history = dict(HEALTHY, alpha=HEALTHY["alpha"] + [("ec2ha-vip-route", "monitor", 1, 10000, "route gone")])
    cib = cib_with_status(tmp_path / "cib.xml", {"alpha": True, "bravo": False}, history,
                          properties={"maintenance-mode": "true", "stonith-enabled": "false"})
    state = read_state(Runner(timeout=30, cib_file=str(cib)))
    assert state.maintenance_mode and not state.stonith_enabled
    assert state.nodes["alpha"].online and not state.nodes["bravo"].online
    failure = state.failed_actions[0]
    assert (failure.resource, failure.operation, failure.node, failure.reason) == (
        "ec2ha-vip-route", "monitor", "alpha", "route gone")


def test_an_answer_that_is_not_crm_mon_is_one_sentence():
    with pytest.raises(PacemakerError, match=r"^crm_mon's answer is not XML"):
        parse_crm_mon("Connection to the cluster failed")
    with pytest.raises(PacemakerError, match="has no summary"):
        parse_crm_mon("<pacemaker-result/>")
