# -*- coding: utf-8 -*-
# Copyright: ec2ha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The job templates run as AWX runs them, offline: ansible-runner on a private data dir with the
survey's extra vars and the credential's injected environment (ec2ha_testkit.awx_runner). What
AWX refuses never runs; what the playbook refuses fails in its first task, as a job event."""

from __future__ import annotations

import json
import re

import boto3
import pytest
from ec2ha_testkit import awx_runner, world
from ec2ha_testkit.awx_runner import LaunchRefused, controller_inventory, run_job_template

SWITCHOVER = awx_runner.AWX_DIR / "job_templates" / "switchover.yml"
REJOIN = awx_runner.AWX_DIR / "job_templates" / "rejoin.yml"
REGION = "eu-west-1"


def inventory(**controller_vars) -> dict:
    """The controller with ``controller_vars``, and the in-memory group pair (filled by the plays'
    add_host) held to local connections: nothing here ever reaches for a node's address."""
    found = controller_inventory(**controller_vars)
    found["all"]["children"] = {"pair": {"vars": {"ansible_connection": "local"}}}
    return found


def test_awx_refuses_a_switchover_without_a_target_before_anything_runs(tmp_path):
    with pytest.raises(LaunchRefused) as refused:
        run_job_template(SWITCHOVER, {}, workdir=tmp_path)
    assert refused.value.errors == ["'ec2ha_switchover_target' value missing"]
    assert list(tmp_path.iterdir()) == []


def test_awx_refuses_a_variable_the_survey_does_not_ask(tmp_path):
    with pytest.raises(LaunchRefused, match="Variables ec2ha_switchover_timeout are not allowed on launch"):
        run_job_template(SWITCHOVER, {"ec2ha_switchover_target": "pg2", "ec2ha_switchover_timeout": 300}, workdir=tmp_path)


def test_the_rejoin_has_no_check_job_type(tmp_path):
    with pytest.raises(LaunchRefused, match="job_type: Field is not allowed on launch"):
        run_job_template(REJOIN, {"ec2ha_rejoin_node": "pg1"}, workdir=tmp_path, job_type="check")


def test_a_switchover_with_the_empty_default_target_fails_in_its_first_task(tmp_path, no_aws_env):
    """Past AWX (a launch without the survey's checks), the playbook itself refuses, in one sentence."""
    result = run_job_template(SWITCHOVER, {}, inventory=inventory(), workdir=tmp_path, launch_checks=False)
    assert result.rc != 0 and result.status == "failed"
    assert "ec2ha_switchover_target" not in result.extravars
    assert (result.extravars["ec2ha_switchover_max_lag_bytes"], result.extravars["ec2ha_switchover_force"]) == (0, "false")
    [failed] = result.failures()
    assert failed["task"] == "Check which node to switch over to"
    assert "ec2ha_switchover_target is not set" in failed["res"]["msg"]
    assert [e["event_data"]["task"] for e in result.events if e["event"] == "runner_on_ok"] == []


def test_a_check_switchover_runs_with_check_and_goes_past_the_target(tmp_path, no_aws_env):
    result = run_job_template(SWITCHOVER, {"ec2ha_switchover_target": "pg2"}, inventory=inventory(),
                              workdir=tmp_path, job_type="check")
    assert result.status == "failed"
    [failed] = result.failures()
    assert failed["task"] == "Check that the controller's variables name the cluster"
    command = json.loads(next(result.private_data_dir.glob("artifacts/*/command")).read_text())["command"]
    assert "--check" in command


@pytest.fixture
def cluster(endpoint) -> dict:
    """A moto world whose node1 and node2 carry the cluster tag, as cluster_pair leaves them."""
    found = world.build(endpoint, REGION, "awxrun")
    ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name=REGION,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    ec2.create_tags(Resources=[found["node1"]["id"], found["node2"]["id"]],
                    Tags=[{"Key": "ec2ha:cluster", "Value": found["name"]}])
    return found


def test_a_rejoin_reads_the_cluster_from_aws_with_the_credential_and_refuses_a_stranger(tmp_path, no_aws_env, cluster):
    """The whole path of a job: the survey's answer as an extra var, the credential's keys, region
    and endpoint (the config file) injected into the environment, endpoint_info reading the nodes
    from moto with them, and the play's own refusal naming the cluster's nodes."""
    aws = {"access_key_id": "testing", "secret_access_key": "testing", "region": REGION,
           "endpoint_url": cluster["endpoint_url"]}
    result = run_job_template(REJOIN, {"ec2ha_rejoin_node": "pg9"}, credential_inputs={"ec2ha_aws": aws},
                              inventory=inventory(ec2ha_cluster_name=cluster["name"], ec2ha_region=REGION),
                              workdir=tmp_path)
    assert result.rc != 0 and result.status == "failed", result.stdout[-2000:]
    assert "AWS_ENDPOINT_URL" not in result.envvars and result.envvars["AWS_SESSION_TOKEN"] == ""
    read = [e["event_data"] for e in result.events
            if e["event"] == "runner_on_ok" and e["event_data"]["task"] == "Read the nodes tagged with the cluster name"]
    assert sorted(n["name"] for n in read[0]["res"]["nodes"]) == [cluster["node1"]["name"], cluster["node2"]["name"]]
    [failed] = result.failures()
    assert failed["task"] == "Check that the node to rejoin is a node of the pair"
    # The members in the order AWS lists them.
    members = re.fullmatch(rf"ec2ha_rejoin_node pg9 is not a node of cluster {cluster['name']} \((.*)\)\.", failed["res"]["msg"])
    assert members, failed["res"]["msg"]
    assert sorted(members.group(1).split(", ")) == [cluster["node1"]["name"], cluster["node2"]["name"]]
