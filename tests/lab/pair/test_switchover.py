"""A planned switchover through playbooks/switchover.yml, a client writing numbered rows through
the VIP the whole time (issue 11, first part): the primary and all three endpoints move and back,
every acknowledged row is present, no two servers take writes at once, no move constraint is
left, the old primary streams in sync again; the same target again changes nothing; a leftover
cli- constraint is refused with the CIB unchanged; check mode changes nothing."""

from __future__ import annotations

import json
import os
import re

import pytest

from lab.helpers import wait_for
from lab.pair import client, cluster, cluster_state, health


@pytest.fixture(scope="module")
def clean_pair(healthy_pair):
    """The pair as an operator leaves it before a planned move: old failed actions cleaned up. The
    switchover refuses otherwise (its gate "no failed actions"), and the earlier tests of this
    package leave some behind (seen: a pgsqld monitor on the node that rejoined)."""
    primary = cluster.promoted_node(healthy_pair)
    cluster_state.run(healthy_pair, primary, "crm_resource --cleanup")
    wait_for(lambda: "<failure " not in cluster_state.run(healthy_pair, primary, "crm_mon -1 --output-as=xml"),
             60, 1, "no failed action left")
    wait_for(lambda: health.healthy(healthy_pair), 120, 1, "a healthy pair after the cleanup")
    return healthy_pair


def _switchover(pair, target: str, *extra: str, log: str = "switchover.log") -> cluster.PlaybookRun:
    os.environ["ANSIBLE_SHOW_CUSTOM_STATS"] = "True"     # the set_stats record, as AWX would keep it
    return cluster.run_playbook("playbooks/switchover.yml", pair, log=cluster.WORK_DIR / log,
                                extra=["-e", f"ec2ha_switchover_target={target}", *extra])


def _stats(run: cluster.PlaybookRun) -> dict:
    """The playbook's set_stats record (the default callback prints it after the recap)."""
    at = run.output.rfind("RUN: ")
    return json.JSONDecoder().raw_decode(run.output[at + 5:].lstrip())[0]["ec2ha_switchover"] if at >= 0 else {}


def _moves_left(pair, node: str) -> list:
    return re.findall(r'<rsc_location id="((?:cli-|ec2ha-move-)[^"]+)"',
                      cluster_state.run(pair, node, "cibadmin --query --scope constraints"))


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
        assert health.who_serves("e2h-client", cluster.VIP) == target
        assert _moves_left(pair, target) == []
        assert f"promoted {target}" in timeline and f"{source} in sync" in timeline, record
        assert record["before"]["primary"] == source and record["after"]["primary"] == target
        assert all(g["ok"] for g in record["gates"]) and len(record["gates"]) == 9
        # PAF gives the new standby its promotion score at its next monitor (16 s interval).
        wait_for(lambda: health.healthy(pair), 60, 1, f"{source} a promotable standby in sync again")


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
        epoch = cluster_state.cib_epoch(pair, primary)
        refused = _switchover(pair, standby, log="switchover-refused.log")
        assert refused.rc != 0
        assert "Switchover refused, gate no leftover move constraint" in refused.output
        assert f"cli-ban-pgsqld-clone-on-{standby}" in refused.output
        assert cluster_state.cib_epoch(pair, primary) == epoch
        assert cluster.promoted_node(pair) == primary
    finally:
        cluster_state.run(pair, primary, "crm_resource --resource pgsqld-clone --clear")
