"""site.yml re-run with a new corosync authkey, new totem timers and a new replication password,
on a pair that serves: nothing restarts, the new settings take effect (issue 8, items 9 and 13).
Then the same once more with the inventory's values, which puts everything back."""

from __future__ import annotations

import base64
import os

import pytest

from lab.helpers import wait_for
from lab.pair import cluster, cluster_state

NODES = [name for name, _subnet, _address in cluster.NODES]
TOKEN = 3300                                 # the lab inventory runs 3000
PASSWORD = "rotated-replication-password"


def _snapshot(pair) -> dict:
    return {n: {"pids": cluster_state.pids(pair, n), "ring": cluster_state.ring_id(pair, n),
                "token": cluster_state.runtime_token(pair, n),
                "key": cluster_state.run(pair, n, "base64 -w0 /etc/corosync/authkey")} for n in NODES}


def _streams_after_reconnect(pair) -> bool:
    """The walsender is terminated; the standby must log in again (with its passfile) and stream."""
    primary = cluster.promoted_node(pair)
    standby = next(n for n in NODES if n != primary)
    cluster_state.sql(pair, primary, "SELECT pg_terminate_backend(pid) FROM pg_stat_replication")
    try:
        wait_for(lambda: cluster_state.replication_state(pair, primary, standby) == "streaming",
                 60, 1, f"{standby} streaming again after a reconnect")
    except TimeoutError:
        return False
    return True


@pytest.fixture(scope="module")
def runs(healthy_pair):
    pair = healthy_pair
    key = base64.b64encode(os.urandom(256)).decode()
    before = _snapshot(pair)
    changed = cluster.run_playbook("playbooks/site.yml", pair, log=cluster.WORK_DIR / "test-site-rotate.log",
                                   extra=["-e", f"heartbeat_authkey={key}", "-e", f"heartbeat_token={TOKEN}",
                                          "-e", f"replication_password={PASSWORD}"])
    middle = _snapshot(pair)
    middle_streams = _streams_after_reconnect(pair)
    back = cluster.run_playbook("playbooks/site.yml", pair, log=cluster.WORK_DIR / "test-site-back.log")
    after = _snapshot(pair)
    after_streams = _streams_after_reconnect(pair)
    return {"key": key, "before": before, "changed": changed, "middle": middle, "middle_streams": middle_streams,
            "back": back, "after": after, "after_streams": after_streams}


def test_a_new_authkey_and_timers_are_reloaded_without_restarting_anything(runs):
    # Before: the handler stopped Pacemaker and restarted corosync on both nodes at once,
    # stopping PostgreSQL (new process ids everywhere, a new ring).
    assert runs["changed"].rc == 0, runs["changed"].output[-3000:]
    for node in NODES:
        before, middle = runs["before"][node], runs["middle"][node]
        assert middle["pids"] == before["pids"], node
        assert middle["ring"] == before["ring"], node
        assert middle["token"] == TOKEN and middle["key"] == runs["key"], node
    assert "Reload corosync.conf and the authkey on every running member" in runs["changed"].output


def test_the_inventory_s_values_come_back_the_same_way(runs):
    assert runs["back"].rc == 0, runs["back"].output[-3000:]
    for node in NODES:
        before, after = runs["before"][node], runs["after"][node]
        assert after["pids"] == before["pids"] and after["ring"] == before["ring"], node
        assert after["token"] == before["token"], node
        assert after["key"] == runs["key"], node          # the first host's key is the pair's now


def test_a_new_replication_password_reaches_postgresql(runs):
    # Before: only the passfile changed; the role kept its old password and the standby could no
    # longer log in once its connection dropped.
    assert runs["middle_streams"] and runs["after_streams"]
    assert cluster.REPLICATION_PASSWORD not in runs["changed"].output + runs["back"].output
    assert PASSWORD not in runs["changed"].output
