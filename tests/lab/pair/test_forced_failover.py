"""playbooks/failover.yml, the forced failover (issue 12), on the lab's pair: a client writes
numbered rows through the VIP, both nodes are powered off, only the standby is started again:
its cluster stack does not start at boot, and started alone it would wait for its peer
(two-node quorum's wait_for_all).

Then, in order: without the typed confirmation, and with a wrong one, the playbook refuses; with
the old primary powered on again (it answers SSH), it refuses; each refusal leaves the standby's
cluster stack stopped and AWS as it was. With the old primary stopped again and the confirmation
typed, the standby is promoted through Pacemaker, every endpoint is on it as AWS reads it, the
client writes through the VIP again, every row acknowledged before the power-off is there, and
the record names the old primary and the WAL position the standby had, and the standby's data,
crashed in archive recovery, was shut down cleanly before the stack started; the old primary
rejoins (playbooks/rejoin.yml). Last, both down again and both started: the old primary answers,
and with ec2ha_failover_force=true the fencer stops it before the standby is promoted."""

from __future__ import annotations

import json
import os
import time

import pytest

from lab.helpers import wait_for
from lab.pair import client, cluster, cluster_state, health


def _failover(pair, log: str, *extra: str) -> cluster.PlaybookRun:
    os.environ["ANSIBLE_SHOW_CUSTOM_STATS"] = "True"
    return cluster.run_playbook("playbooks/failover.yml", pair, log=cluster.WORK_DIR / log, extra=list(extra))


def _record(run: cluster.PlaybookRun) -> dict:
    at = run.output.rfind("RUN: ")
    return json.JSONDecoder().raw_decode(run.output[at + 5:].lstrip())[0]["ec2ha_failover"] if at >= 0 else {}


def _stack_running(pair, node: str) -> bool:
    return "is running" in cluster_state.run(pair, node, "service corosync status; true")


def _started(pair, node: str) -> None:
    """The node powered on and answering commands over SSH (right after boot sshd may still
    close a connection during the key exchange: seen in the lab)."""
    cluster.ensure_running(pair, node)
    wait_for(lambda: cluster.ssh(pair, cluster.node_address(node), "true", timeout=10).returncode == 0, 60, 1,
             f"{node} answering over SSH")


def _both_powered_off(pair, primary: str, standby: str) -> set:
    """Rows written through the VIP, then the primary powered off and the standby half a second
    later, before it could take over; the rows acknowledged."""
    with client.writing(pair, primary) as writer:
        time.sleep(3)
        cluster.stop_instance(pair, primary)
        time.sleep(0.5)
        cluster.stop_instance(pair, standby)
        time.sleep(2)
    wait_for(lambda: {cluster.instance_state(pair, n) for n in (primary, standby)} == {"stopped"}, 60, 1,
             "both nodes stopped")
    return set(writer.acknowledged())


@pytest.fixture(scope="module")
def both_down(healthy_pair):
    """Rows written through the VIP, then both nodes powered off (the primary first, the standby
    half a second later, before it could take over), then only the standby started again."""
    pair = healthy_pair
    health.make_whole(pair)
    primary, standby = cluster.primary_and_standby(pair)
    holders = cluster.endpoint_holders(pair)
    acknowledged = _both_powered_off(pair, primary, standby)
    _started(pair, standby)
    yield pair, primary, standby, acknowledged, holders
    if "Promoted" not in health.pair_roles(pair).values():         # a test stopped half-way
        cluster.stop_instance(pair, primary)
        _failover(pair, "failover-teardown.log", "-e", f"ec2ha_failover_target={standby}",
                  "-e", f"ec2ha_failover_confirm={primary}", "-e", "ec2ha_failover_force=true")
    _started(pair, primary)
    health.make_whole(pair)


def _refused(pair, standby: str, holders: dict, log: str, *extra: str, words: str) -> cluster.PlaybookRun:
    run = _failover(pair, log, "-e", f"ec2ha_failover_target={standby}", *extra)
    print(f"\nrefusal: {words}")
    assert run.rc != 0
    assert words in run.output and "nothing was changed" in run.output, run.output[-3000:]
    assert not _stack_running(pair, standby)
    assert cluster.endpoint_holders(pair) == holders
    return run


def test_no_confirmation_and_a_wrong_one_are_refused(both_down):
    pair, primary, standby, _acknowledged, holders = both_down
    _refused(pair, standby, holders, "failover-unconfirmed.log",
             words=f"confirm it by naming it, -e ec2ha_failover_confirm={primary} (not given)")
    _refused(pair, standby, holders, "failover-wrong.log", "-e", f"ec2ha_failover_confirm={standby}",
             words=f"-e ec2ha_failover_confirm={primary} (given: {standby})")


def test_an_old_primary_that_answers_is_refused(both_down):
    pair, primary, standby, _acknowledged, holders = both_down
    _started(pair, primary)
    try:
        _refused(pair, standby, holders, "failover-answers.log", "-e", f"ec2ha_failover_confirm={primary}",
                 words=f"{primary} still answers (SSH from {standby})")
    finally:
        cluster.stop_instance(pair, primary)
        wait_for(lambda: cluster.instance_state(pair, primary) == "stopped", 60, 1, f"{primary} stopped again")


def test_the_confirmed_failover_brings_the_service_back_on_the_standby(both_down):
    pair, primary, standby, acknowledged, _holders = both_down
    run = _failover(pair, "failover.log", "-e", f"ec2ha_failover_target={standby}",
                    "-e", f"ec2ha_failover_confirm={primary}")
    assert run.rc == 0, run.output[-4000:]
    record = _record(run)
    print(f"\nforced failover: {run.seconds:.1f} s; record {record}")
    assert health.pair_roles(pair).get(standby) == "Promoted"
    assert set(cluster.endpoint_holders(pair).values()) == {standby}
    assert record["old_primary"] == primary and record["new_primary"] == standby
    assert record["standby_last_received_lsn"].count("/") == 1
    assert record["standby_in_sync_when_last_known"] in (True, "True")
    assert record["standby_data_state_before"] == "in archive recovery"
    assert record["old_primary_last_lsn"] == "unknown (its PostgreSQL did not answer)"
    with client.writing(pair, standby) as writer:
        wait_for(lambda: writer.ok_after(time.time() - 1, standby), 60, 0.5, f"a write acknowledged by {standby}")
    assert acknowledged and not acknowledged - client.rows_present(pair)
    assert cluster.instance_state(pair, primary) in ("stopped", "running")


def test_the_old_primary_rejoins_after(both_down):
    pair, primary, _standby, _acknowledged, _holders = both_down
    assert health.rejoin(pair, primary) in ("Unpromoted", "Slave")


def test_forced_it_stops_an_old_primary_that_answers_first(both_down):
    # Roles now: the standby of the fixture is the primary, the old primary its standby. Both
    # powered off, both started again: the old primary answers SSH, so only force goes on, and
    # the fencer (fence_aws) stops it before anything is promoted.
    pair, new_standby, primary, _acknowledged, _holders = both_down
    acknowledged = _both_powered_off(pair, primary, new_standby)
    _started(pair, new_standby)
    _started(pair, primary)
    run = _failover(pair, "failover-forced.log", "-e", f"ec2ha_failover_target={new_standby}",
                    "-e", f"ec2ha_failover_confirm={primary}", "-e", "ec2ha_failover_force=true")
    assert run.rc == 0, run.output[-4000:]
    record = _record(run)
    print(f"\nforced failover, old primary answering: {run.seconds:.1f} s; record {record}")
    assert "SSH" in record["old_primary_answered"] and record["stopped_by_this_run"] in (True, "True")
    assert cluster.instance_state(pair, primary) in ("stopped", "running")    # a fence_aws reboot may start it
    assert health.pair_roles(pair).get(new_standby) == "Promoted"
    assert set(cluster.endpoint_holders(pair).values()) == {new_standby}
    assert acknowledged and not acknowledged - client.rows_present(pair)
    assert health.rejoin(pair, primary) in ("Unpromoted", "Slave")
