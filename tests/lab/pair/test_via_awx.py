"""The build-out and rejoin job templates of extensions/awx run the way AWX runs them (issue 11):
ansible-runner on a private data dir, the survey's answers as extra vars, the AWS access from the
ec2ha_aws credential's injectors (the controller's keys and endpoint taken out of the inventory),
against the lab's pair. Judged from the runner's artifacts (rc, status, job_events) and from the
cluster read back. The switchover template has its own test in test_switchover.py."""

from __future__ import annotations

from lab.helpers import wait_for
from lab.pair import cluster, health


def test_the_build_out_template_on_a_built_pair_changes_nothing(healthy_pair, as_awx):
    primary = cluster.promoted_node(healthy_pair)
    result = as_awx("build_out.yml", {})
    assert (result.rc, result.status) == (0, "successful"), result.stdout[-3000:]
    stats = result.stats()
    assert stats["changed"] == {}, stats["changed"]
    assert stats["failures"] == {} and stats["dark"] == {}
    assert set(stats["ok"]) >= {"localhost", "pg1", "pg2"}
    assert cluster.promoted_node(healthy_pair) == primary and health.healthy(healthy_pair)


def test_the_rejoin_template_brings_a_powered_off_standby_back(healthy_pair, as_awx):
    pair = healthy_pair
    primary, standby = cluster.primary_and_standby(pair)
    cluster.stop_instance(pair, standby)
    wait_for(lambda: health.pair_roles(pair).get(standby) is None, 120, 1, f"{standby} gone from the cluster")
    cluster.ensure_running(pair, standby)          # rejoin.yml wants the node running
    result = as_awx("rejoin.yml", {"ec2ha_rejoin_node": standby})
    assert (result.rc, result.status) == (0, "successful"), result.stdout[-3000:]
    assert result.extravars["ec2ha_rejoin_node"] == standby
    assert result.stats()["failures"] == {}
    wait_for(lambda: health.pair_roles(pair).get(standby) in ("Unpromoted", "Slave"), 240, 2,
             f"{standby} to run as a standby")
    wait_for(lambda: health.healthy(pair), 180, 1, "a healthy pair (standby in sync)")
    assert cluster.promoted_node(pair) == primary
