# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The switchover's gates and its refusals on the real crm_mon and cibadmin over CIB files with a
status section: each gate refuses with one sentence naming it and the value it read, and the CIB
keeps its epoch; already there is no change; check mode plans the promotion with crm_simulate and
writes nothing (issue 11). One switchover at a time (issue 12): a second one on the same node is
refused naming the first (the run lock), a lock left by a killed run does not block, a move placed
from the other node after the gates read refuses this one and is kept. The move itself runs in the
lab (tests/lab/pair)."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from ec2ha_testkit.cib_status import cib_with_status
from ansible_collections.ec2ha.cluster.plugins.module_utils import switchover
from ansible_collections.ec2ha.cluster.plugins.module_utils.pacemaker.runner import Runner
from ansible_collections.ec2ha.cluster.plugins.module_utils.run_lock import RunLock

TOOLS = ("crm_mon", "cibadmin", "crm_simulate", "crm_resource")
pytestmark = pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                                reason="needs the Pacemaker CLI tools (apt-get install pacemaker-cli-utils)")

PRIMARY_ALPHA = {"alpha": [("pgsqld", "promote", 0, 0, ""), ("ec2ha-vip-route", "start", 0, 0, ""),
                           ("fence-aws", "start", 0, 0, "")],
                 "bravo": [("pgsqld", "start", 0, 0, "")]}
PRIMARY_BRAVO = {"bravo": [("pgsqld", "promote", 0, 0, ""), ("ec2ha-vip-route", "start", 0, 0, ""),
                           ("fence-aws", "start", 0, 0, "")],
                 "alpha": [("pgsqld", "start", 0, 0, "")]}
STREAMING = {"bravo": ("streaming", "quorum", 0)}


class FileNode(switchover.Node):
    """The switchover's node on a CIB file: this node's name and pg_stat_replication given."""

    def __init__(self, spec, cib, local="alpha", replication=None):
        spec = dataclasses.replace(spec, lock_path=str(cib.parent / "switchover.lock"))
        super().__init__(spec, Runner(timeout=30, cib_file=str(cib)))
        self.local, self.rows = local, STREAMING if replication is None else replication

    def name(self):
        return self.local

    def replication(self):
        return self.rows


def _epoch(cib) -> tuple:
    root = ET.parse(cib).getroot()
    return root.get("epoch"), root.get("num_updates"), root.find("configuration/constraints") is not None and len(
        root.find("configuration/constraints"))


def _cib(tmp_path, history=None, online=None, **kw):
    return cib_with_status(tmp_path / "cib.xml", online or {"alpha": True, "bravo": True},
                           PRIMARY_ALPHA if history is None else history, **kw)


def _refused(node, cib) -> str:
    before = _epoch(cib)
    with pytest.raises(switchover.SwitchoverError) as refused:
        switchover.run(node, check_mode=False)
    assert _epoch(cib) == before                       # nothing written
    message = str(refused.value)
    assert message.startswith("Switchover refused, gate ") and message.count("\n") == 0
    assert [g for g in refused.value.gates if not g.ok]
    return message


def test_an_unknown_target_is_refused(tmp_path):
    cib = _cib(tmp_path)
    message = _refused(FileNode(switchover.SwitchoverSpec("charlie"), cib), cib)
    assert "gate member: target charlie is not a member of the cluster (nodes: alpha, bravo)" in message


def test_an_offline_target_is_refused(tmp_path):
    cib = _cib(tmp_path, online={"alpha": True, "bravo": False})
    assert "gate online and quorate: the cluster is not whole: offline bravo" in _refused(
        FileNode(switchover.SwitchoverSpec("bravo"), cib, replication={}), cib)


@pytest.mark.parametrize("properties, words", [
    ({"maintenance-mode": "true"}, "gate cluster not in maintenance-mode"),
    ({"stonith-enabled": "false"}, "gate fencing: fencing is not ready (stonith-enabled false"),
])
def test_cluster_options_are_gates(tmp_path, properties, words):
    cib = _cib(tmp_path, properties=properties)
    assert words in _refused(FileNode(switchover.SwitchoverSpec("bravo"), cib), cib)


def test_a_stopped_fence_device_is_refused(tmp_path):
    history = {**PRIMARY_ALPHA, "alpha": PRIMARY_ALPHA["alpha"][:2]}
    cib = _cib(tmp_path, history=history)
    assert "stopped fence-aws" in _refused(FileNode(switchover.SwitchoverSpec("bravo"), cib), cib)


def test_it_runs_on_the_primary_only(tmp_path):
    cib = _cib(tmp_path)
    assert "gate one primary, on this node: the switchover runs on the primary's node: promoted on alpha, " \
           "this is bravo" in _refused(FileNode(switchover.SwitchoverSpec("bravo"), cib, local="bravo"), cib)


@pytest.mark.parametrize("row, force, words", [
    (None, False, "bravo not in pg_stat_replication"),
    (("streaming", "quorum", 4096), False, "bravo streaming, quorum, replay lag 4096 bytes (limit 0)"),
    (("catchup", "potential", 0), True, "bravo catchup"),            # force skips the lag, not the streaming
])
def test_the_target_must_stream_within_the_lag(tmp_path, row, force, words):
    cib = _cib(tmp_path)
    node = FileNode(switchover.SwitchoverSpec("bravo", force=force), cib, replication={} if row is None else {
        "bravo": row})
    message = _refused(node, cib)
    assert "gate target streaming within the lag" in message and words in message


def test_force_lets_a_lagging_streaming_target_through_the_lag_gate(tmp_path):
    cib = _cib(tmp_path)
    node = FileNode(switchover.SwitchoverSpec("bravo", force=True), cib, replication={
        "bravo": ("streaming", "quorum", 10 ** 9)})
    outcome = switchover.run(node, check_mode=True)
    lag = next(g for g in outcome.gates if g.name == "target streaming within the lag")
    assert lag.ok and "force: lag not checked" in lag.value


def test_a_failed_endpoint_action_is_refused(tmp_path):
    history = {**PRIMARY_ALPHA, "alpha": PRIMARY_ALPHA["alpha"] + [("ec2ha-vip-route", "monitor", 1, 10000, "gone")]}
    cib = _cib(tmp_path, history=history)
    assert "gate no failed actions: failed actions to clean up first: ec2ha-vip-route monitor on alpha" in _refused(
        FileNode(switchover.SwitchoverSpec("bravo"), cib), cib)


def test_a_leftover_cli_constraint_is_refused(tmp_path):
    cib = _cib(tmp_path)
    Runner(timeout=30, cib_file=str(cib)).run(["crm_resource", "--resource", "pgsqld-clone", "--ban", "--node",
                                               "alpha", "--promoted"])
    message = _refused(FileNode(switchover.SwitchoverSpec("bravo"), cib), cib)
    assert "gate no leftover move constraint: a move constraint is left from an earlier move: " \
           "cli-ban-pgsqld-clone-on-alpha (pgsqld-clone on alpha)" in message


def test_a_second_switchover_on_the_same_node_is_refused_naming_the_first(tmp_path):
    # Before the run lock, the second one read every gate as passed while the first had not yet
    # placed its constraint, and went on to place a move of its own.
    cib = _cib(tmp_path)
    node = FileNode(switchover.SwitchoverSpec("bravo"), cib)
    with RunLock(node.spec.lock_path, "a switchover to bravo"):
        message = _refused(node, cib)
    assert message.startswith("Switchover refused, gate one switchover at a time: another switchover runs on "
                              "this node: a switchover to bravo, pid ")
    assert switchover.run(node, check_mode=True).changed          # released: the next one runs


def test_a_lock_left_by_a_killed_run_does_not_block(tmp_path):
    cib = _cib(tmp_path)
    node = FileNode(switchover.SwitchoverSpec("bravo"), cib)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path[:0] = sys.argv[2:]; "
                               "from ansible_collections.ec2ha.cluster.plugins.module_utils.run_lock import RunLock; "
                               "lock = RunLock(sys.argv[1], 'a switchover to bravo').__enter__(); print('held', "
                               "flush=True); time.sleep(60)", node.spec.lock_path, *sys.path],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert "gate one switchover at a time" in _refused(node, cib)
    finally:
        holder.kill()
        holder.wait()
    assert "a switchover to bravo, pid" in (tmp_path / "switchover.lock").read_text()    # its line stays
    assert switchover.run(node, check_mode=True).changed


class RacedNode(FileNode):
    """The gates read the constraints before another switchover (run from the other node) placed
    its move; the move itself then meets it in the CIB."""

    def __init__(self, spec, cib, placed_meanwhile):
        super().__init__(spec, cib)
        real_query, self.queries = self.constraints.query, 0

        def query():
            self.queries += 1
            return "<constraints/>" if self.queries == 1 else real_query()
        self.constraints.query = query
        Runner(timeout=30, cib_file=str(cib)).run(["cibadmin", "--create", "--scope", "constraints", "--xml-text",
                                                   placed_meanwhile])


def test_a_move_placed_from_the_other_node_after_the_gates_refuses_this_one_and_is_kept(tmp_path):
    cib = _cib(tmp_path)
    other = "<rsc_location id='ec2ha-move-pgsqld-clone' rsc='pgsqld-clone' node='bravo' role='Promoted' score='INFINITY'/>"
    node = RacedNode(switchover.SwitchoverSpec("bravo"), cib, other)
    message = _refused(node, cib)
    assert message == ("Switchover refused, gate no leftover move constraint: another move placed "
                       "ec2ha-move-pgsqld-clone (pgsqld-clone on bravo) after the gates read; it is left as it is.")
    assert 'id="ec2ha-move-pgsqld-clone"' in Runner(timeout=30, cib_file=str(cib)).run(
        ["cibadmin", "--query", "--scope", "constraints"]).stdout


def test_a_switchovers_own_constraint_left_is_named_as_such(tmp_path):
    cib = _cib(tmp_path)
    Runner(timeout=30, cib_file=str(cib)).run(["cibadmin", "--create", "--scope", "constraints", "--xml-text",
                                               "<rsc_location id='ec2ha-move-pgsqld-clone' rsc='pgsqld-clone' "
                                               "node='bravo' role='Promoted' score='INFINITY'/>"])
    message = _refused(FileNode(switchover.SwitchoverSpec("bravo"), cib), cib)
    assert "gate no leftover move constraint: a switchover is under way from the other node, or one was cut off " \
           "and left ec2ha-move-pgsqld-clone" in message


def test_already_there_is_no_change(tmp_path):
    cib = _cib(tmp_path, history=PRIMARY_BRAVO)
    before = _epoch(cib)
    outcome = switchover.run(FileNode(switchover.SwitchoverSpec("bravo"), cib, local="bravo", replication={}),
                             check_mode=False)
    assert not outcome.changed and outcome.before.as_dict() == outcome.after.as_dict() == {
        "primary": "bravo", "endpoints": {"ec2ha-vip-route": "bravo"}}
    assert _epoch(cib) == before


def test_check_mode_runs_every_gate_and_plans_the_promotion(tmp_path):
    cib = _cib(tmp_path)
    before = _epoch(cib)
    outcome = switchover.run(FileNode(switchover.SwitchoverSpec("bravo"), cib), check_mode=True)
    assert outcome.changed and all(g.ok for g in outcome.gates) and len(outcome.gates) == 9
    assert any("-> Promoted bravo" in line for line in outcome.planned), outcome.planned
    assert outcome.after.as_dict() == {"primary": "bravo", "endpoints": {"ec2ha-vip-route": "bravo"}}
    assert _epoch(cib) == before


class ReadingsNode(switchover.Node):
    """pg_stat_replication as a sequence of readings (the last one repeats); sleeps recorded."""

    def __init__(self, spec, readings):
        self.slept = []
        super().__init__(spec, Runner(timeout=30), sleep=self.slept.append)
        self.readings, self.read = readings, 0

    def replication_reading(self):
        self.read += 1
        return self.readings[min(self.read, len(self.readings)) - 1]


def test_the_lag_gate_takes_the_least_lag_of_several_readings():
    # Before: one reading; under a steady write load the standby was 56 bytes behind at that
    # instant (the lab) and every switchover of a busy database was refused with limit 0.
    busy = [{"bravo": ("streaming", "quorum", 56)}, {"bravo": ("streaming", "quorum", 120)},
            {"bravo": ("streaming", "quorum", 0)}]
    node = ReadingsNode(switchover.SwitchoverSpec("bravo"), busy)
    assert node.replication() == {"bravo": ("streaming", "quorum", 0)}
    assert node.read == 3 and node.slept == [switchover.LAG_INTERVAL] * 2


def test_a_standby_really_behind_stays_refused_after_every_reading():
    behind = [{"bravo": ("streaming", "quorum", 9000)}, {"bravo": ("streaming", "quorum", 8000)}]
    node = ReadingsNode(switchover.SwitchoverSpec("bravo"), behind)
    assert node.replication() == {"bravo": ("streaming", "quorum", 8000)}
    assert node.read == switchover.LAG_READINGS and len(node.slept) == switchover.LAG_READINGS - 1


def test_no_standby_at_all_is_read_once():
    node = ReadingsNode(switchover.SwitchoverSpec("bravo"), [{}])
    assert node.replication() == {} and node.read == 1


def test_a_target_that_is_no_standby_here_is_read_once():
    # Before: the target already primary (the idempotent re-run) or unknown cost all ten readings,
    # a second on every changed=false run, because another standby was listed.
    node = ReadingsNode(switchover.SwitchoverSpec("alpha"), [{"bravo": ("streaming", "quorum", 56)}])
    assert node.replication() == {"bravo": ("streaming", "quorum", 56)} and node.read == 1 and node.slept == []


def test_a_lock_that_cannot_be_taken_is_one_sentence_and_changes_nothing(tmp_path):
    cib = _cib(tmp_path)
    node = FileNode(switchover.SwitchoverSpec("bravo"), cib)
    (tmp_path / "not-a-dir").write_text("")
    node.spec = dataclasses.replace(node.spec, lock_path=str(tmp_path / "not-a-dir" / "switchover.lock"))
    before = _epoch(cib)
    with pytest.raises(switchover.SwitchoverError) as refused:
        switchover.run(node, check_mode=False)
    assert str(refused.value).startswith(f"The switchover lock {tmp_path}/not-a-dir/switchover.lock cannot be taken (")
    assert "nothing was changed" in str(refused.value) and _epoch(cib) == before
