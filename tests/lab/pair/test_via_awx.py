"""The build-out and rejoin job templates of extensions/awx run the way AWX runs them (issue 11):
ansible-runner on a private data dir, the survey's answers as extra vars, the AWS access from the
ec2ha_aws credential's injectors (the controller's keys and endpoint taken out of the inventory),
against the lab's pair. Judged from the runner's artifacts (rc, status, job_events) and from the
cluster read back. The switchover template has its own test in test_switchover.py."""

from __future__ import annotations

import os

import pytest
from ec2ha_testkit import awx_runner

from lab.helpers import wait_for
from lab.pair import cluster, health

TEMPLATES = awx_runner.AWX_DIR / "job_templates"


@pytest.fixture
def as_awx(healthy_pair, tmp_path, monkeypatch):
    """run(template, extravars) through ansible-runner with the lab's credential and inventory;
    none of this process's AWS_* variables reach the job."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    info = healthy_pair.info
    aws = {"access_key_id": info["aws_access_key_id"], "secret_access_key": info["aws_secret_access_key"],
           "region": info["region"], "endpoint_url": info["endpoint_url"]}

    def run(template: str, extravars: dict) -> awx_runner.RunnerResult:
        result = awx_runner.run_job_template(TEMPLATES / template, extravars, credential_inputs={"ec2ha_aws": aws},
                                             inventory=awx_runner.awx_inventory(healthy_pair.inventory),
                                             workdir=tmp_path, timeout=1500)
        print(f"\nAWX {template}: rc {result.rc}, status {result.status}")
        return result
    return run


def _stats(result: awx_runner.RunnerResult) -> dict:
    [stats] = [e["event_data"] for e in result.events if e["event"] == "playbook_on_stats"]
    return stats


def test_the_build_out_template_on_a_built_pair_changes_nothing(healthy_pair, as_awx):
    primary = cluster.promoted_node(healthy_pair)
    result = as_awx("build_out.yml", {})
    assert (result.rc, result.status) == (0, "successful"), result.stdout[-3000:]
    stats = _stats(result)
    assert stats["changed"] == {}, stats["changed"]
    assert stats["failures"] == {} and stats["dark"] == {}
    assert set(stats["ok"]) >= {"localhost", "pg1", "pg2"}
    assert cluster.promoted_node(healthy_pair) == primary and health.healthy(healthy_pair)


def test_the_rejoin_template_brings_a_powered_off_standby_back(healthy_pair, as_awx):
    pair = healthy_pair
    primary, standby = cluster.primary_and_standby(pair)
    cluster.stop_instance(pair, standby)
    wait_for(lambda: health.pair_roles(pair).get(standby) is None, 120, 1, f"{standby} gone from the cluster")
    cluster.start_instance(pair, standby)          # rejoin.yml wants the node running
    cluster.wait_for_ssh(pair, standby)
    result = as_awx("rejoin.yml", {"ec2ha_rejoin_node": standby})
    assert (result.rc, result.status) == (0, "successful"), result.stdout[-3000:]
    assert result.extravars["ec2ha_rejoin_node"] == standby
    assert _stats(result)["failures"] == {}
    wait_for(lambda: health.pair_roles(pair).get(standby) in ("Unpromoted", "Slave"), 240, 2,
             f"{standby} to run as a standby")
    wait_for(lambda: health.healthy(pair), 180, 1, "a healthy pair (standby in sync)")
    assert cluster.promoted_node(pair) == primary
