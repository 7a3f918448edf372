"""A planned switchover through playbooks/switchover.yml, a client writing numbered rows through
the VIP the whole time (issue 11): the primary and all three endpoints move and back (the VIP
from e2h-client, the EIP from e2h-internet, the record from e2h-onprem reach the target), every
acknowledged row is present, no two servers take writes at once, no move constraint is left, the
old primary streams in sync again; the AWX job template moves the primary too, run through
ansible-runner with the survey's answer and the credential's environment; the same target again
changes nothing; check mode changes nothing; every gate a user meets is refused with the CIB
unchanged: a leftover cli- constraint, an unknown target, maintenance-mode. A target whose replay
is paused (lagging), a target powered off, two switchovers at once and the AWS API throttling
during the move are faults of the matrix, run under writes in test_fault_matrix.py."""

from __future__ import annotations

import json
import os

import pytest

from lab import topology
from lab.helpers import poll, wait_for
from lab.pair import client, cluster, cluster_state, health


@pytest.fixture(scope="module")
def clean_pair(healthy_pair):
    """The pair as an operator leaves it before a planned move: old failed actions cleaned up. The
    switchover refuses otherwise (its gate "no failed actions"), and the earlier tests of this
    package leave some behind (seen: a pgsqld monitor on the node that rejoined)."""
    health.make_whole(healthy_pair)
    return healthy_pair


def _switchover(pair, target: str, *extra: str, log: str = "switchover.log") -> cluster.PlaybookRun:
    os.environ["ANSIBLE_SHOW_CUSTOM_STATS"] = "True"     # the set_stats record, as AWX would keep it
    return cluster.run_playbook("playbooks/switchover.yml", pair, log=cluster.WORK_DIR / log,
                                extra=["-e", f"ec2ha_switchover_target={target}", *extra])


def _stats(run: cluster.PlaybookRun) -> dict:
    """The playbook's set_stats record (the default callback prints it after the recap)."""
    at = run.output.rfind("RUN: ")
    return json.JSONDecoder().raw_decode(run.output[at + 5:].lstrip())[0]["ec2ha_switchover"] if at >= 0 else {}


def _refused(pair, target: str, gate: str, log: str) -> cluster.PlaybookRun:
    """The switchover to `target` refused at `gate`, the CIB and the primary as they were."""
    primary = cluster.promoted_node(pair)
    epoch = cluster_state.cib_epoch(pair, primary)
    run = _switchover(pair, target, log=log)
    print(f"\nrefusal ({gate}): " + next((line.strip() for line in run.output.splitlines()
                                          if "Switchover refused" in line), "none printed"))
    assert run.rc != 0
    assert f"Switchover refused, gate {gate}: " in run.output, run.output[-3000:]
    assert cluster_state.cib_epoch(pair, primary) == epoch
    assert cluster.promoted_node(pair) == primary
    return run


def _one_writer_at_a_time(writes) -> bool:
    """Acknowledged writes, in order of their start, never switch server back and forth."""
    servers = [w.server for w in sorted((w for w in writes if w.ok), key=lambda w: w.t0)]
    changes = [b for a, b in zip(servers, servers[1:]) if a != b]
    return len(changes) <= 1


def test_switchover_there_and_back_under_writes(clean_pair):
    pair = clean_pair
    first, second = cluster.primary_and_standby(pair)
    for source, target in ((first, second), (second, first)):
        with client.writing(pair, source) as writer:
            run = _switchover(pair, target, log=f"switchover-to-{target}.log")
            wait_for(lambda: writer.ok_after(writer.snapshot()[-1].t0, target) is not None, 30, 0.2,
                     f"a write acknowledged by {target}")
        assert run.rc == 0, run.output[-3000:]
        acknowledged = writer.acknowledged()
        missing = set(acknowledged) - client.rows_present(pair)
        outage = writer.outage(writer.snapshot()[0].t0)
        record = _stats(run)
        timeline = {e["event"]: e["t"] for e in record.get("timeline", [])}
        print(f"\nswitchover {source} -> {target}: timeline {timeline}; client outage "
              f"{(outage[1] - outage[0]) if outage else 0:.2f} s; rows {len(acknowledged)}, missing {len(missing)}")
        assert not missing
        assert _one_writer_at_a_time(writer.snapshot())
        assert cluster.promoted_node(pair) == target
        assert cluster.endpoint_holders(pair) == {"vip": target, "eip": target, "dns": target}
        assert health.who_serves(topology.CLIENT_NS, cluster.VIP) == target
        assert poll(lambda: health.who_serves(topology.INTERNET_NS, pair.public_ip) == target, 30, 0.5)
        assert poll(lambda: health.resolves(topology.ONPREM_NS, cluster.RECORD) == (cluster.node_address(target),), 30, 0.5)
        assert cluster_state.move_constraints(pair, target) == []
        assert f"promoted {target}" in timeline and f"{source} in sync" in timeline, record
        assert record["before"]["primary"] == source and record["after"]["primary"] == target
        assert all(g["ok"] for g in record["gates"]) and len(record["gates"]) == 9
        # PAF gives the new standby its promotion score at its next monitor (16 s interval).
        wait_for(lambda: health.healthy(pair), 60, 1, f"{source} a promotable standby in sync again")


def test_the_awx_job_template_switches_over_through_ansible_runner(clean_pair, as_awx):
    """extensions/awx/job_templates/switchover.yml as AWX runs it (conftest's as_awx): judged from
    its artifacts and from the cluster and AWS read back."""
    pair = clean_pair
    primary, standby = cluster.primary_and_standby(pair)
    result = as_awx("switchover.yml", {"ec2ha_switchover_target": standby})
    assert (result.rc, result.status) == (0, "successful"), result.stdout[-3000:]
    assert result.extravars["ec2ha_switchover_target"] == standby
    assert result.envvars["AWS_ACCESS_KEY_ID"] == pair.info["aws_access_key_id"] and "AWS_ENDPOINT_URL" not in result.envvars
    moved = [e["event_data"] for e in result.events if e["event"] == "runner_on_ok"
             and e["event_data"]["task"] == "Move the primary and its endpoints"]
    assert [m["res"]["changed"] for m in moved] == [True]
    record = result.stats()["artifact_data"]["ec2ha_switchover"]
    assert (record["before"]["primary"], record["after"]["primary"]) == (primary, standby)
    # Read back, not taken from the job's word.
    assert cluster.promoted_node(pair) == standby
    assert cluster.endpoint_holders(pair) == {"vip": standby, "eip": standby, "dns": standby}
    assert cluster_state.move_constraints(pair, standby) == []
    wait_for(lambda: health.healthy(pair), 90, 1, f"{primary} a promotable standby in sync again")


def test_the_same_target_again_changes_nothing(clean_pair):
    pair = clean_pair
    primary, _standby = cluster.primary_and_standby(pair)
    epoch = cluster_state.cib_epoch(pair, primary)
    run = _switchover(pair, primary, log="switchover-again.log")
    assert run.rc == 0, run.output[-3000:]
    assert run.changed() == 0, run.output[-3000:]
    assert cluster_state.cib_epoch(pair, primary) == epoch
    assert cluster.promoted_node(pair) == primary


def test_a_leftover_cli_constraint_is_refused_and_check_mode_changes_nothing(clean_pair):
    pair = clean_pair
    primary, standby = cluster.primary_and_standby(pair)
    check = _switchover(pair, standby, "--check", log="switchover-check.log")
    assert check.rc == 0, check.output[-3000:]
    assert "-> Promoted" in check.output and cluster.promoted_node(pair) == primary
    cluster_state.run(pair, primary, f"crm_resource --resource pgsqld-clone --ban --node {standby} --promoted")
    try:
        refused = _refused(pair, standby, "no leftover move constraint", "switchover-refused.log")
        assert f"cli-ban-pgsqld-clone-on-{standby}" in refused.output
    finally:
        cluster_state.run(pair, primary, "crm_resource --resource pgsqld-clone --clear")


def test_an_unknown_target_is_refused(clean_pair):
    run = _refused(clean_pair, "pg9", "member", "switchover-unknown.log")
    assert "target pg9 is not a member of the cluster (nodes: pg1, pg2)" in run.output


def test_maintenance_mode_is_refused(clean_pair):
    pair = clean_pair
    primary, standby = cluster.primary_and_standby(pair)
    cluster_state.run(pair, primary, "crm_attribute --type crm_config --name maintenance-mode --update true")
    try:
        run = _refused(pair, standby, "cluster not in maintenance-mode", "switchover-maintenance.log")
        assert "Pacemaker would not move anything" in run.output
    finally:
        cluster_state.run(pair, primary, "crm_attribute --type crm_config --name maintenance-mode --delete")
    wait_for(lambda: health.healthy(pair), 60, 1, "the pair managed again")
